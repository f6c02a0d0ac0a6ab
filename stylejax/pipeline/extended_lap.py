"""Extended LAP: the window ``w`` plus one gain parameter per Laplacian band.

LAP (:mod:`stylejax.pipeline.lap`) ties the bands into two groups, the finest
``ceil(n / 3)`` scaled by ``h`` and the rest by ``l``. The extended pipeline gives
each band its own parameter ``b_k`` on the same 0..10 scale with the gain
``2 ** ((b_k - 5) / BAND_OCTAVES)`` (0.25..4, the range of LAP's ``h``); the
residual is untouched and the soft window is LAP's. Band 0 is the finest. Every LAP
style has an exact extended equivalent (:meth:`ExtendedLAPParams.from_lap`), so the
extended pipeline can only fit a target at least as well.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylejax.pipeline import lap as _lap
from stylejax.pipeline import pyramid
from stylejax.pipeline.tunable import Pipeline

#: Band gain ``2 ** ((b - 5) / BAND_OCTAVES)`` (0.25..4, like LAP's ``h``).
BAND_OCTAVES = _lap.H_OCTAVES

#: Most bands :func:`extended_lap` accepts (the deepest pyramid LAP uses by default).
MAX_LEVELS = 6


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExtendedLAPParams:
    """Window ``w`` plus one gain parameter per pyramid band (finest first), 0..10 each.

    Attributes:
      w: window, as LAP's ``w``; a scalar.
      bands: ``[levels]`` band parameters, band 0 the finest.
    """

    w: Any
    bands: Any

    @classmethod
    def from_lap(cls, params: _lap.LAPParams, levels: int) -> "ExtendedLAPParams":
        """The extended parameters that reproduce ``params`` exactly (scalar fields).

        Args:
          params: scalar :class:`stylejax.pipeline.lap.LAPParams`.
          levels: number of bands (as the ``levels`` of ``lap.process``).
        Returns:
          :class:`ExtendedLAPParams` with ``bands`` a float32 ``[levels]`` array.
        """
        high, _ = _lap.band_groups(levels)
        to_band = 5.0 + (float(params.l) - 5.0) * BAND_OCTAVES / _lap.L_OCTAVES
        bands = [float(params.h) if k in high else to_band for k in range(levels)]
        return cls(w=float(params.w), bands=np.asarray(bands, np.float32))

    def to_dict(self) -> dict:
        """``{"w": float, "bands": [float, ...]}`` for JSON (scalar ``w`` only)."""
        return {"w": float(self.w), "bands": [float(b) for b in np.ravel(self.bands)]}


@functools.lru_cache(maxsize=None)  # one object per levels: compiled programs are reused
def extended_lap(levels: int) -> Pipeline:
    """LAP with one gain per Laplacian band: ``1 + levels`` parameters.

    Args:
      levels: number of pyramid bands, 1..:data:`MAX_LEVELS`; images need a side of
        at least ``2 ** (levels + 2)`` pixels for the default choice
        (:func:`stylejax.pipeline.pyramid.default_levels`).
    Returns:
      a :class:`Pipeline` named ``"extended-lap"`` with :class:`ExtendedLAPParams`
      and flat parameter names ``w, band0 (finest), ..., band{levels-1}``; the same
      object for the same ``levels``.
    Raises:
      ValueError: ``levels`` not an integer in 1..MAX_LEVELS.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) \
            or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer in 1..{MAX_LEVELS} (got {levels!r})")
    levels = int(levels)

    def apply(x, params):
        bands, residual = pyramid.laplacian_pyramid(x, levels)
        gains = jnp.exp2((jnp.asarray(params.bands, jnp.float32) - 5.0) / BAND_OCTAVES)
        y = pyramid.reconstruct([b * gains[k] for k, b in enumerate(bands)], residual)
        return _lap.soft_window(y, params.w)

    init = ExtendedLAPParams(w=5.0, bands=np.full((levels,), 5.0, np.float32))
    return Pipeline(name="extended-lap", apply=apply, init=init,
                    param_names=("w",) + tuple(f"band{k}" for k in range(levels)))


def for_shape(image_shape) -> Pipeline:
    """:func:`extended_lap` with LAP's default number of bands for images of
    ``image_shape`` ``(..., H, W)`` (the smallest images when sizes differ)."""
    return extended_lap(pyramid.default_levels(tuple(image_shape)))
