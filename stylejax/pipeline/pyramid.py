"""Burt-Adelson Gaussian and Laplacian pyramids in JAX.

Blur kernel: the 5-tap binomial ``[1, 4, 6, 4, 1] / 16``, separable, with
mirror padding (``numpy.pad(mode="reflect")``, i.e. the edge sample is not
repeated). Reduction blurs and keeps every second sample (output size
``ceil(n / 2)``); expansion is the textbook zero insertion followed by the same
blur with a 4x gain (2x per axis). Both are written as shifted, strided slices,
never as a single-channel ``lax.conv`` (slow on CPU) and without computing the
samples that decimation would throw away:

* reduce: ``out[i] = sum_k w[k] * x_pad[2 i + k]``;
* expand, polyphase form of "zero insert, then blur x4":
  ``even[i] = (x[i-1] + 6 x[i] + x[i+1]) / 8`` and ``odd[i] = (x[i] + x[i+1]) / 2``,
  with the borders taken from the mirror-padded zero-inserted signal.

All functions act on the last two axes and accept any leading batch axes and
any image size (odd sizes too). Reconstruction from a Laplacian pyramid is exact
up to float32 rounding because each band stores ``G_k - expand(G_{k+1})``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

_W = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)

#: Smallest image side accepted by the pyramid (a 2-level pyramid of a 16-pixel
#: side has a 4-pixel coarsest level).
MIN_SIZE = 16


def default_levels(shape, max_levels: int = 6) -> int:
    """Number of Laplacian bands used for an image of ``shape`` ``[..., H, W]``.

    Chosen so the coarsest Gaussian level keeps at least 4 pixels per side:
    ``floor(log2(min(H, W))) - 2``, clipped to ``[1, max_levels]``
    (512 -> 6 bands, 64 -> 4, 16 -> 2).
    """
    side = min(shape[-2], shape[-1])
    if side < 2:
        return 1
    return int(min(max_levels, max(1, math.floor(math.log2(side)) - 2)))


def _take(x, start, stop, axis):
    """``x[..., start:stop, ...]`` along ``axis`` (negative), without transposing."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _phases(x, axis):
    """Split ``axis`` of even length 2m into (even, odd) samples, each of length m."""
    axis = axis % x.ndim
    shape = x.shape[:axis] + (x.shape[axis] // 2, 2) + x.shape[axis + 1:]
    pairs = x.reshape(shape)
    return _take(pairs, 0, 1, axis + 1).squeeze(axis + 1), \
        _take(pairs, 1, 2, axis + 1).squeeze(axis + 1)


def _reduce_1d(x, axis):
    """Blur and decimate by 2 along ``axis``: length n -> m = ceil(n / 2)."""
    n = x.shape[axis]
    m = (n + 1) // 2
    # Mirror padding by 2 on each side (n >= 3), plus one unused sample for odd n so
    # that the padded length 2m + 4 splits into even/odd phases E, O:
    # out[i] = w0 E[i] + w1 O[i] + w2 E[i+1] + w3 O[i+1] + w4 E[i+2].
    pieces = [_take(x, 2, 3, axis), _take(x, 1, 2, axis), x,
              _take(x, n - 2, n - 1, axis), _take(x, n - 3, n - 2, axis)]
    if n % 2:
        pieces.append(pieces[-1])
    xp = jnp.concatenate(pieces, axis=axis)
    even, odd = _phases(xp, axis)
    out = (_W[0] * (_take(even, 0, m, axis) + _take(even, 2, m + 2, axis))
           + _W[1] * (_take(odd, 0, m, axis) + _take(odd, 1, m + 1, axis))
           + _W[2] * _take(even, 1, m + 1, axis))
    return out


def _expand_1d(x, axis, n):
    """Zero-insert to length ``n`` and blur with gain 2 along ``axis``."""
    m = x.shape[axis]  # == ceil(n / 2)
    # Left border: the zero-inserted signal mirrors x[1] to position -2.
    # Right border: for even n the odd tail sample mirrors back onto x[m-1];
    # for odd n the even tail sample mirrors onto x[m-2].
    right = _take(x, m - 1, m, axis) if n % 2 == 0 else _take(x, m - 2, m - 1, axis)
    xp = jnp.concatenate([_take(x, 1, 2, axis), x, right], axis=axis)
    centre = _take(xp, 1, m + 1, axis)
    nxt = _take(xp, 2, m + 2, axis)
    even = (_take(xp, 0, m, axis) + 6.0 * centre + nxt) * 0.125
    odd = (centre + nxt) * 0.5
    axis = axis % x.ndim
    out = jnp.stack([even, odd], axis=axis + 1)
    out = out.reshape(x.shape[:axis] + (2 * m,) + x.shape[axis + 1:])
    return _take(out, 0, n, axis)


def pyr_reduce(image):
    """One Gaussian pyramid step: ``[..., H, W] -> [..., ceil(H/2), ceil(W/2)]``."""
    return _reduce_1d(_reduce_1d(image, -1), -2)


def pyr_expand(image, shape):
    """Upsample ``[..., h, w]`` to ``[..., H, W]`` (``h == ceil(H/2)``, likewise w)."""
    return _expand_1d(_expand_1d(image, -2, shape[-2]), -1, shape[-1])


def _check_levels(image, levels):
    if image.ndim < 2:
        raise ValueError(f"image must have rank >= 2 (got shape {image.shape})")
    h, w = image.shape[-2], image.shape[-1]
    if levels < 1:
        raise ValueError(f"levels must be >= 1 (got {levels})")
    # Every level that gets reduced needs >= 3 samples per axis for the mirror pad.
    side = min(h, w)
    for _ in range(levels):
        if side < 3:
            raise ValueError(f"image of {h}x{w} pixels is too small for {levels} pyramid levels")
        side = (side + 1) // 2


def gaussian_pyramid(image, levels: int):
    """Gaussian pyramid ``[G_0 = image, G_1, ..., G_levels]`` (levels + 1 arrays)."""
    image = jnp.asarray(image)
    _check_levels(image, levels)
    out = [image]
    for _ in range(levels):
        out.append(pyr_reduce(out[-1]))
    return out


def laplacian_pyramid(image, levels: int | None = None):
    """Laplacian pyramid of ``image`` ``[..., H, W]``.

    Args:
      image: float array ``[..., H, W]``.
      levels: number of band-pass levels; ``None`` uses :func:`default_levels`.
    Returns:
      ``(bands, residual)``: ``bands[k]`` has the shape of Gaussian level ``k``
      (finest first); ``residual`` is the coarsest Gaussian level.
    """
    image = jnp.asarray(image)
    if levels is None:
        levels = default_levels(image.shape)
    gauss = gaussian_pyramid(image, levels)
    bands = [g - pyr_expand(g_next, g.shape) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return bands, gauss[-1]


def reconstruct(bands, residual):
    """Invert :func:`laplacian_pyramid`: ``G_k = L_k + expand(G_{k+1})``."""
    image = residual
    for band in reversed(bands):
        image = band + pyr_expand(image, band.shape)
    return image
