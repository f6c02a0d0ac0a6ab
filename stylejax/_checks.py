"""Input validation shared by every public entry point.

Value checks (NaN/inf, sign, range) need concrete arrays: under ``jit``/``grad``
the inputs are tracers and only the static checks (rank, shape, dtype) run.
Every failure is a ``ValueError`` whose message names the argument and the problem.
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check_rank(x, name: str, *, min_rank: int = 2, max_rank: int | None = None):
    """Require ``min_rank <= x.ndim (<= max_rank)``."""
    ndim = np.ndim(x)
    if ndim < min_rank or (max_rank is not None and ndim > max_rank):
        want = f"{min_rank}" if max_rank == min_rank else (
            f"at least {min_rank}" if max_rank is None else f"{min_rank}..{max_rank}")
        raise ValueError(f"{name} must have rank {want} (got shape {tuple(np.shape(x))})")


def check_image(x, name: str = "image", *, min_rank: int = 2, max_rank: int | None = None,
                min_size: int = 1, positive: bool = False, nonnegative: bool = False,
                unit_range: bool = False):
    """Validate an image array ``[..., H, W]`` and return it unchanged.

    Args:
      x: array-like; real floating or integer dtype.
      name: argument name used in error messages.
      min_rank, max_rank: allowed number of dimensions.
      min_size: minimum height and width in pixels.
      positive / nonnegative / unit_range: value constraints (concrete inputs only).
    Returns:
      ``x`` (unchanged).
    Raises:
      ValueError naming the problem.
    """
    check_rank(x, name, min_rank=min_rank, max_rank=max_rank)
    shape = tuple(np.shape(x))
    if 0 in shape:
        raise ValueError(f"{name} is empty (shape {shape})")
    if shape[-2] < min_size or shape[-1] < min_size:
        raise ValueError(f"{name} is too small: {shape[-2]}x{shape[-1]} pixels, "
                         f"need at least {min_size}x{min_size}")
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array (got dtype {dtype})")
    if not is_concrete(x):
        return x
    values = np.asarray(x)
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    if positive and np.any(values <= 0):
        raise ValueError(f"{name} must be strictly positive (minimum is {values.min():g}); "
                         "raw detector images are linear positive intensities")
    if nonnegative and np.any(values < 0):
        raise ValueError(f"{name} must be non-negative (minimum is {values.min():g})")
    if unit_range and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] (got {values.min():g}..{values.max():g})")
    return x


def check_not_constant(x, name: str = "image"):
    """Reject an image (or each image of a batch) with no contrast at all."""
    if not is_concrete(x):
        return x
    values = np.asarray(x)
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    spread = flat.max(axis=1) - flat.min(axis=1)
    if np.any(spread == 0):
        raise ValueError(f"{name} is constant (no contrast): style is undefined for it")
    return x


def check_range(value, name: str, low: float, high: float):
    """Require every element of ``value`` to lie in ``[low, high]`` (concrete only)."""
    if not is_concrete(value):
        return value
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} is not finite ({v})")
    if np.any(v < low) or np.any(v > high):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}] (got {v.min():g}..{v.max():g})")
    return value
