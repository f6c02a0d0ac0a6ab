"""LAP: a differentiable Laplacian-pyramid X-ray processing pipeline.

The StyleX paper describes LAP only as a pipeline that "weights the frequency
bands and maps a parameterized part of the full pixel range"; its flowchart is
not public, so this design is ours. Every step is smooth, so gradients with
respect to the parameters and to the raw image are informative anywhere in
``[0, 10]^3``:

1. ``x = -log(raw)``: attenuation; dense tissue becomes large (bright).
2. Robust normalisation: ``x`` is mapped so that its 1st and 99th percentiles go
   to 0 and 1. They are estimated on the regular subsample ``x[::s, ::s]`` with
   ``s = max(1, min(H, W) // 128)`` (about 128 samples per side; XLA sorts slowly on CPU), which keeps
   the sort cheap for large detectors.
3. Laplacian pyramid (5-tap binomial, :mod:`stylejax.pipeline.pyramid`) with
   ``n`` bands. The finest ``ceil(n / 3)`` bands ("high") are multiplied by
   ``gain_h``, the remaining bands ("low to mid") by ``gain_l``; the residual
   (coarsest Gaussian level) is untouched.
4. Reconstruction.
5. Soft window: ``out = (1 + tanh((y - 0.5) / width)) / 2``, centred on the
   middle of the normalised range. Its slope at the centre is ``1 / (2 width)``
   and it saturates smoothly instead of clipping, so no pixel's gradient is
   exactly zero.

Parameter mapping (each parameter on the paper's 0..10 scale, 5 = neutral):

=========  ===========================  ==========  =========  ==========
parameter  formula                      value at 0  at 5       at 10
=========  ===========================  ==========  =========  ==========
h          gain_h = 2 ** ((h - 5) / 2.5)  0.25        1          4
l          gain_l = 2 ** ((l - 5) / 3.5)  0.37        1          2.69
w          width = 0.6 * 2 ** ((5 - w) / 3.5)  1.62    0.6        0.22
=========  ===========================  ==========  =========  ==========

A larger ``w`` narrows the window (more contrast); ``experiments/figures/lap_sweep.py``
draws the mapping and a sweep of each parameter (the paper's Fig. 2).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from stylejax import _checks
from stylejax.pipeline import pyramid

PARAM_MIN = 0.0
PARAM_MAX = 10.0
PARAM_NAMES = ("w", "l", "h")

# Mapping constants (see the module docstring table).
H_OCTAVES = 2.5
L_OCTAVES = 3.5
W_OCTAVES = 3.5
WIDTH_AT_5 = 0.6
NORM_QUANTILES = (0.01, 0.99)
NORM_SAMPLES_PER_SIDE = 128


def norm_stride(shape) -> int:
    """Subsampling step of the percentile estimate for an image ``[..., H, W]``."""
    return max(1, min(shape[-2], shape[-1]) // NORM_SAMPLES_PER_SIDE)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LAPParams:
    """LAP parameters on the 0..10 scale; scalars or arrays (batch of styles).

    A pytree, so it passes through ``jit``, ``grad`` and ``vmap``. Arrays of shape
    ``S`` style a batch of images ``[*S, H, W]`` element by element.
    """

    w: jax.Array | float = 5.0
    l: jax.Array | float = 5.0  # noqa: E741 - the paper's name
    h: jax.Array | float = 5.0

    def as_array(self):
        """``[..., 3]`` array ordered (w, l, h)."""
        return jnp.stack(jnp.broadcast_arrays(*(jnp.asarray(v, jnp.float32) for v in
                                                (self.w, self.l, self.h))), axis=-1)

    @classmethod
    def from_array(cls, values):
        """Inverse of :meth:`as_array`."""
        values = jnp.asarray(values, jnp.float32)
        return cls(w=values[..., 0], l=values[..., 1], h=values[..., 2])

    def to_dict(self):
        """Plain Python floats (scalar parameters only), for JSON."""
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}

    def validate(self):
        """Raise ValueError if a concrete parameter lies outside [0, 10]."""
        for name in PARAM_NAMES:
            _checks.check_range(getattr(self, name), f"LAP parameter {name}", PARAM_MIN, PARAM_MAX)
        return self


def gain_h(h):
    """High-frequency band gain for ``h`` in [0, 10]."""
    return jnp.exp2((jnp.asarray(h, jnp.float32) - 5.0) / H_OCTAVES)


def gain_l(l):  # noqa: E741
    """Low-to-mid frequency band gain for ``l`` in [0, 10]."""
    return jnp.exp2((jnp.asarray(l, jnp.float32) - 5.0) / L_OCTAVES)


def window_width(w):
    """Soft-window half-width (normalised units) for ``w`` in [0, 10]."""
    return WIDTH_AT_5 * jnp.exp2((5.0 - jnp.asarray(w, jnp.float32)) / W_OCTAVES)


def band_groups(levels: int):
    """Indices of the bands scaled by ``h`` and by ``l`` for ``levels`` bands."""
    n_high = max(1, math.ceil(levels / 3))
    return tuple(range(n_high)), tuple(range(n_high, levels))


@jax.jit
def normalize_log(raw):
    """Attenuation image ``-log(raw)`` robustly scaled to about [0, 1].

    Args:
      raw: ``[..., H, W]`` positive linear raw signal.
    Returns:
      ``[..., H, W]`` float32; the 1st/99th percentiles map to 0/1.
    """
    x = -jnp.log(jnp.maximum(jnp.asarray(raw, jnp.float32), jnp.finfo(jnp.float32).tiny))
    stride = norm_stride(x.shape)
    sample = x[..., ::stride, ::stride]
    sample = sample.reshape(*sample.shape[:-2], -1)
    lo, hi = jnp.quantile(sample, jnp.asarray(NORM_QUANTILES), axis=-1)
    scale = jnp.maximum(hi - lo, 1e-6)
    return (x - lo[..., None, None]) / scale[..., None, None]


def soft_window(y, w):
    """Map normalised intensities to [0, 1] with a smooth window set by ``w``."""
    width = window_width(w)
    return 0.5 + 0.5 * jnp.tanh((y - 0.5) / width)


def _broadcast_param(value):
    """Append two unit axes so a per-image parameter broadcasts over H, W."""
    value = jnp.asarray(value, jnp.float32)
    return value.reshape(value.shape + (1, 1))


@functools.partial(jax.jit, static_argnames="levels")
def process_normalized(x, params: LAPParams, *, levels: int | None = None):
    """LAP steps 3-5 on an already normalised attenuation image ``[..., H, W]``."""
    if levels is None:
        levels = pyramid.default_levels(x.shape)
    bands, residual = pyramid.laplacian_pyramid(x, levels)
    high, low = band_groups(levels)
    gh = _broadcast_param(gain_h(params.h))
    gl = _broadcast_param(gain_l(params.l))
    scaled = [b * (gh if k in high else gl) for k, b in enumerate(bands)]
    y = pyramid.reconstruct(scaled, residual)
    return soft_window(y, _broadcast_param(params.w))


def process(raw, params: LAPParams, *, levels: int | None = None):
    """Apply LAP to a raw detector image.

    Args:
      raw: ``[..., H, W]`` linear raw image (positive, any scale), H, W >= 16.
      params: :class:`LAPParams`; each field a scalar or an array broadcastable
        to the leading (batch) shape of ``raw``.
      levels: number of pyramid bands (default: :func:`pyramid.default_levels`).
    Returns:
      ``[..., H, W]`` float32 styled image in [0, 1].
    Raises:
      ValueError: wrong rank, too small, non-finite or non-positive ``raw``, or
        parameters outside [0, 10] (value checks only outside ``jit``).
    """
    _checks.check_image(raw, "raw", min_size=pyramid.MIN_SIZE, positive=True)
    if not isinstance(params, LAPParams):
        raise ValueError(f"params must be a LAPParams (got {type(params).__name__})")
    params.validate()
    return _process(raw, params, levels=levels)


@functools.partial(jax.jit, static_argnames="levels")
def _process(raw, params, *, levels):
    return process_normalized(normalize_log(raw), params, levels=levels)


def lap_grid(values=(0, 2, 4, 6, 8, 10)):
    """All (w, l, h) combinations of ``values`` as a ``[N, 3]`` numpy array.

    The default gives the 216 training styles of the paper (even values).
    """
    v = np.asarray(values, np.float32)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(-1, 3)
