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


def _move(x, axis):
    return jnp.moveaxis(x, axis, -1)


def _reduce_1d(x, axis):
    """Blur and decimate by 2 along ``axis``: length n -> ceil(n / 2)."""
    x = _move(x, axis)
    n = x.shape[-1]
    m = (n + 1) // 2
    # Mirror padding by 2 on each side (requires n >= 3).
    xp = jnp.concatenate([x[..., 2:0:-1], x, x[..., -2:-4:-1]], axis=-1)
    out = _W[0] * xp[..., 0:2 * m - 1:2]
    for k in range(1, 5):
        out = out + _W[k] * xp[..., k:k + 2 * m - 1:2]
    return jnp.moveaxis(out, -1, axis)


def _expand_1d(x, axis, n):
    """Zero-insert to length ``n`` and blur with gain 2 along ``axis``."""
    x = _move(x, axis)
    m = x.shape[-1]  # == ceil(n / 2)
    # Left border: the zero-inserted signal mirrors x[1] to position -2.
    # Right border: for even n the odd tail sample mirrors back onto x[m-1];
    # for odd n the even tail sample mirrors onto x[m-2].
    right = x[..., m - 1:m] if n % 2 == 0 else x[..., m - 2:m - 1]
    xp = jnp.concatenate([x[..., 1:2], x, right], axis=-1)
    even = (xp[..., 0:m] + 6.0 * xp[..., 1:m + 1] + xp[..., 2:m + 2]) * 0.125
    odd = (xp[..., 1:m + 1] + xp[..., 2:m + 2]) * 0.5
    out = jnp.stack([even, odd], axis=-1).reshape(*x.shape[:-1], 2 * m)[..., :n]
    return jnp.moveaxis(out, -1, axis)


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
