"""Contextual loss (Mechrez et al. 2018; CT paper Eq. 5-10) on feature maps ``[B, H, W, C]``.

For source features ``x_i`` (the image being generated, N positions) and target
features ``y_j`` (M positions) of one sample:

1. centre both by the mean of the target features, ``mu = mean_j y_j``;
2. L2-normalise every position: ``x^_i = (x_i - mu) / |x_i - mu|``, likewise ``y^_j``;
3. cosine distance ``d_ij = 1 - <x^_i, y^_j>`` (paper Eq. 6);
4. relative distance ``d~_ij = d_ij / (min_k d_ik + 1e-5)``: the minimum runs over the
   targets ``k`` for each source ``i`` (Eq. 7; Mechrez's ``calc_relative_distances``
   reduces over the target axis);
5. ``w_ij = exp((1 - d~_ij) / h)`` with bandwidth ``h`` (Eq. 8), normalised over targets:
   ``CX_ij = w_ij / sum_k w_ik`` (Eq. 9), computed as a softmax over ``j`` of ``-d~_ij / h``
   (the constant ``1/h`` cancels and nothing overflows);
6. ``CX = (1 / M) sum_j max_i CX_ij``: for each target, its best-matching source (Eq. 5);
7. loss ``= -log(CX)`` (Eq. 10), between 0 (every target has a distinct source that
   matches it exactly) and ``log M``.

Reading choices, stated because the sources differ in small ways: the distance is
``1 - cos`` as in the paper and DESIGN.md (Mechrez's TensorFlow code uses ``(1 - cos) /
2``, which only changes the weight of the 1e-5); the target mean is taken per sample
(the TF code averages over the batch too); ``x`` and ``y`` may have different numbers
of positions.

Memory: the dense form materialises ``[N, M]`` matrices per sample (16384 x 16384
float32 = 1 GiB each at 128x128 positions). With ``tile`` the sources are processed in
blocks of ``tile`` rows by ``lax.scan`` with a running max per target, and each block is
rematerialised in the backward pass (``jax.checkpoint``), so the peak is a few
``tile x M`` blocks. Rows are independent in steps 3-5 and a max is exact, so every tile
size gives the same value up to float rounding of the matrix products. Optionally a
random subset of positions is used (``max_positions``, e.g. 65 x 65 as suggested for
large maps).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from stylejax._checks import is_concrete

__all__ = ["contextual_loss", "contextual_similarity", "AUTO_TILE_ELEMENTS"]

# tile=None: dense when N * M is at most this many elements, else tiles of about this size.
AUTO_TILE_ELEMENTS = 2 ** 22
_EPS_REL = 1e-5


def _check(x, y, band_width, max_positions, tile):
    for name, f in (("x", x), ("y", y)):
        if np.ndim(f) != 4:
            raise ValueError(f"contextual loss: {name} must be feature maps [B, H, W, C] (got "
                             f"shape {tuple(np.shape(f))})")
        if 0 in np.shape(f):
            raise ValueError(f"contextual loss: {name} is empty (shape {tuple(np.shape(f))})")
        if is_concrete(f) and not np.all(np.isfinite(np.asarray(f))):
            raise ValueError(f"contextual loss: {name} contains non-finite values (NaN or inf)")
    if np.shape(x)[-1] != np.shape(y)[-1]:
        raise ValueError(f"contextual loss: channel counts differ (x {np.shape(x)[-1]}, "
                         f"y {np.shape(y)[-1]})")
    if np.shape(y)[0] not in (1, np.shape(x)[0]):
        raise ValueError(f"contextual loss: y batch {np.shape(y)[0]} must be 1 or match x "
                         f"batch {np.shape(x)[0]}")
    if isinstance(band_width, bool) or not isinstance(band_width, numbers.Real) \
            or not math.isfinite(band_width) or band_width <= 0:
        raise ValueError(f"contextual loss: band_width must be > 0 (got {band_width!r})")
    for name, v in (("max_positions", max_positions), ("tile", tile)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              or v < 1):
            raise ValueError(f"contextual loss: {name} must be a positive integer or None "
                             f"(got {v!r})")


def _normalise(f, mu):
    f = f - mu
    return f * jax.lax.rsqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), 1e-12))


def _block_max(xs, yn, band_width):
    """Max over the sources in a block of ``CX_ij``: xs [T, C] normalised, yn [M, C] -> [M]."""
    d = 1.0 - xs @ yn.T                                            # [T, M]
    rel = d / (jnp.min(d, axis=1, keepdims=True) + _EPS_REL)
    cx = jax.nn.softmax(-rel / band_width, axis=1)
    return jnp.max(cx, axis=0)


def _similarity_one(x, y, band_width, tile):
    """CX of one sample: x [N, C], y [M, C] -> scalar."""
    mu = jnp.mean(y, axis=0)
    xn, yn = _normalise(x, mu), _normalise(y, mu)
    n = xn.shape[0]
    if tile >= n:
        best = _block_max(xn, yn, band_width)
    else:
        blocks = -(-n // tile)
        # Padding repeats the last source: a duplicate row cannot change a max, and no
        # mask is needed (a mask would be saved per block for the backward pass).
        xb = jnp.pad(xn, ((0, blocks * tile - n), (0, 0)), mode="edge")
        xb = xb.reshape(blocks, tile, -1)
        body = jax.checkpoint(lambda xs: _block_max(xs, yn, band_width), prevent_cse=False)

        def step(carry, xs):
            return jnp.maximum(carry, body(xs)), None

        best, _ = jax.lax.scan(step, jnp.zeros((yn.shape[0],), xn.dtype), xb)
    return jnp.mean(best)


@functools.partial(jax.jit, static_argnames=("band_width", "tile"))
def _similarity(x, y, band_width, tile):
    b = x.shape[0]
    y = jnp.broadcast_to(y, (b,) + y.shape[1:])
    fn = lambda pair: _similarity_one(pair[0], pair[1], band_width, tile)
    if tile >= x.shape[1]:
        return jax.vmap(lambda a, c: fn((a, c)))(x, y)
    return jax.lax.map(fn, (x, y))     # one sample at a time: memory independent of B


def _subsample(x, y, max_positions, key):
    n, m = x.shape[1], y.shape[1]
    if max_positions is None or (n <= max_positions and m <= max_positions):
        return x, y
    if key is None:
        raise ValueError(f"contextual loss: subsampling {n}/{m} positions to max_positions="
                         f"{max_positions} needs a PRNG key (key=...)")
    kx, ky = jax.random.split(key)
    if n > max_positions:
        ix = jax.random.choice(kx, n, (max_positions,), replace=False)
        x = x[:, ix]
    if m > max_positions:
        # Same subset when both have the same positions, so aligned maps stay aligned.
        iy = ix if m == n else jax.random.choice(ky, m, (max_positions,), replace=False)
        y = y[:, iy]
    return x, y


def contextual_similarity(x, y, *, band_width: float = 0.5, max_positions: int | None = None,
                          tile: int | None = None, key=None) -> jax.Array:
    """Contextual similarity ``CX`` (Eq. 5) per sample, in ``[1/M, 1]``.

    Arguments as :func:`contextual_loss`. Returns ``[B]`` float32.
    """
    _check(x, y, band_width, max_positions, tile)
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    xf = x.reshape(x.shape[0], -1, x.shape[-1])
    yf = y.reshape(y.shape[0], -1, y.shape[-1])
    xf, yf = _subsample(xf, yf, max_positions, key)
    n, m = xf.shape[1], yf.shape[1]
    if tile is None:
        tile = n if n * m <= AUTO_TILE_ELEMENTS else max(1, AUTO_TILE_ELEMENTS // m)
    return _similarity(xf, yf, float(band_width), int(min(tile, n)))


def contextual_loss(x, y, *, band_width: float = 0.5, max_positions: int | None = None,
                    tile: int | None = None, key=None) -> jax.Array:
    """Contextual loss ``-log CX(x, y)`` per sample (CT paper Eq. 10; Mechrez et al.).

    Args:
      x: source (generated) feature maps ``[B, H, W, C]``.
      y: target feature maps ``[B, H', W', C]`` or ``[1, H', W', C]`` (broadcast over the
        batch); the number of positions may differ from ``x``.
      band_width: ``h`` in ``exp((1 - d~) / h)``, > 0.
      max_positions: use at most this many positions of each map, a random subset drawn
        with ``key`` (the same subset for x and y when they have as many positions).
        None: all positions.
      tile: sources per block of the streamed form (peak memory ~ a few ``tile x M``
        float32 blocks per sample, samples processed one after another). None picks the
        dense form when ``N * M <= AUTO_TILE_ELEMENTS`` and blocks of about that many
        elements otherwise. Any value gives the same loss up to float rounding.
      key: ``jax.random`` key, required when ``max_positions`` subsamples.
    Returns:
      ``[B]`` float32, each in ``[0, log M]``; differentiable in ``x`` and ``y``.
    Raises:
      ValueError for wrong ranks, mismatched channels or batch, non-finite values, a
      non-positive band width / tile / max_positions, or subsampling without a key.
    """
    return -jnp.log(contextual_similarity(x, y, band_width=band_width,
                                          max_positions=max_positions, tile=tile, key=key))
