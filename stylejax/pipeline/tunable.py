"""The tunable-pipeline interface: a differentiable pipeline with a bounded parameter pytree.

A :class:`Pipeline` is what :mod:`stylejax.tune` optimises: a function
``apply(x, params) -> image`` of the normalised log raw images
(:func:`stylejax.pipeline.lap.normalize_log`) plus a parameter pytree that fixes the
structure, the first start point and, with ``low``/``high``, the box the optimiser
stays in. :data:`LAP` is the three-parameter LAP; :mod:`stylejax.pipeline.extended_lap`
has one gain per pyramid band; :mod:`stylejax.pipeline.registry` gives them (and
pipelines users register) names.

Example, a user pipeline with a gamma and a gain::

    import jax.numpy as jnp
    from stylejax.pipeline import registry, tunable

    def gamma_gain(x, p):
        return jnp.clip(p["gain"] * jnp.clip(x, 0, 1) ** p["gamma"], 0, 1)

    registry.register("gamma", tunable.Pipeline(
        "gamma", gamma_gain, init={"gamma": 1.0, "gain": 1.0},
        low={"gamma": 0.3, "gain": 0.5}, high={"gamma": 3.0, "gain": 2.0}))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from stylejax import _checks
from stylejax.pipeline import lap as _lap
from stylejax.pipeline import pyramid


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Pipeline:
    """A differentiable pipeline with a bounded parameter pytree.

    Attributes:
      name: short name (reports, JSON).
      apply: ``(x, params) -> image``; ``x`` is :func:`stylejax.pipeline.lap.normalize_log`
        of the raw images ``[R, H, W]``, ``params`` has the structure of ``init``
        with scalar leaves (or arrays of ``init``'s leaf shapes); returns
        ``[R, H, W]`` in [0, 1]. Must be jit- and grad-safe.
      init: parameter pytree; sets the structure, the leaf shapes and the first start.
      low, high: bounds, scalars or pytrees like ``init``.
      param_names: one name per flat parameter (order of :meth:`flatten`); default
        derived from the pytree paths (``w``, ``l``, ``h`` for LAP; ``field0``,
        ``field1``, ... for array leaves).
    """

    name: str
    apply: Callable[[jax.Array, Any], jax.Array]
    init: Any
    low: Any = _lap.PARAM_MIN
    high: Any = _lap.PARAM_MAX
    param_names: Sequence[str] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"pipeline name must be a non-empty string (got {self.name!r})")
        if not callable(self.apply):
            raise ValueError(f"pipeline {self.name!r}: apply must be callable "
                             f"(got {type(self.apply).__name__})")
        # numpy only: defining a pipeline (e.g. at import) must not start a JAX backend
        first = _np_flat(self.init)
        if first.size == 0:
            raise ValueError(f"pipeline {self.name!r} has no parameters")
        low, high = (_np_flat(_np_bound(b, self.init)) for b in (self.low, self.high))
        if low.size != first.size or high.size != first.size:
            raise ValueError(f"pipeline {self.name!r}: low and high must be scalars or have "
                             f"init's structure and leaf shapes ({first.size} values)")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise ValueError(f"pipeline {self.name!r}: bounds must be finite with low < high "
                             f"(got low {low}, high {high})")
        if np.any(first < low) or np.any(first > high) or not np.all(np.isfinite(first)):
            raise ValueError(f"pipeline {self.name!r}: init {first} lies outside its bounds")
        if self.param_names is not None:
            names = tuple(self.param_names)
            if len(names) != first.size or len(set(names)) != len(names):
                raise ValueError(f"pipeline {self.name!r}: param_names must be {first.size} "
                                 f"distinct names (got {names})")
            object.__setattr__(self, "param_names", names)

    @property
    def size(self) -> int:
        """Number of flat parameters ``P``."""
        return int(self.flatten(self.init).size)

    def flatten(self, params) -> np.ndarray:
        """Parameter pytree -> flat float32 vector ``[P]``."""
        return np.asarray(ravel_pytree(_as_float_tree(params))[0])

    def unflatten(self, flat):
        """Flat vector ``[P]`` -> parameter pytree (JAX arrays)."""
        return ravel_pytree(_as_float_tree(self.init))[1](jnp.asarray(flat, jnp.float32))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat ``(low [P], high [P])``."""
        return tuple(self.flatten(_bound_tree(b, self.init)) for b in (self.low, self.high))

    def names(self) -> list[str]:
        """One name per flat parameter, e.g. ``["w", "l", "h"]`` or ``["w", "band0", ...]``."""
        if self.param_names is not None:
            return list(self.param_names)
        out = []
        for path, leaf in jax.tree_util.tree_flatten_with_path(_as_float_tree(self.init))[0]:
            base = "".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path)
            size = int(np.size(leaf))
            out += [base] if np.ndim(leaf) == 0 else [f"{base}{i}" for i in range(size)]
        return out

    def to_dict(self, params) -> dict[str, float]:
        """Parameter pytree -> ``{name: float}`` for JSON."""
        return {n: float(v) for n, v in zip(self.names(), self.flatten(params))}


def _np_flat(tree) -> np.ndarray:
    """Flat float32 leaves in :func:`ravel_pytree`'s order, with numpy."""
    leaves = [np.ravel(np.asarray(v, np.float32)) for v in jax.tree_util.tree_leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros((0,), np.float32)


def _np_bound(bound, init):
    if jax.tree_util.tree_structure(bound) == jax.tree_util.tree_structure(init):
        return bound
    return jax.tree.map(lambda leaf: np.full(np.shape(leaf), bound, np.float32), init)


def _as_float_tree(tree):
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), tree)


def _bound_tree(bound, init):
    if jax.tree_util.tree_structure(bound) == jax.tree_util.tree_structure(init):
        return bound
    return jax.tree.map(lambda leaf: jnp.full(np.shape(leaf), bound, jnp.float32), init)


def _lap_apply(x, params):
    return _lap.process_normalized(x, params)


#: The three-parameter LAP pipeline (w, l, h on 0..10, neutral 5).
LAP = Pipeline(name="lap", apply=_lap_apply, init=_lap.LAPParams(5.0, 5.0, 5.0))


def apply(raw, params, pipeline: Pipeline | None = None) -> np.ndarray:
    """Run a pipeline on raw images with given parameters (e.g. tuned ones).

    Args:
      raw: ``[H, W]`` or ``[N, H, W]`` positive raw images.
      params: the pipeline's parameter pytree (e.g. ``TuneResult.params``).
      pipeline: default :data:`LAP`.
    Returns:
      float32 numpy array of ``raw``'s shape, in [0, 1].
    Raises:
      ValueError: bad ``raw`` (rank, size, non-finite or non-positive values) or a
        ``pipeline`` that is not a :class:`Pipeline`.
    """
    pipeline = LAP if pipeline is None else pipeline
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"pipeline must be a stylejax.pipeline.tunable.Pipeline "
                         f"(got {type(pipeline).__name__})")
    _checks.check_image(raw, "raw", max_rank=3, min_size=pyramid.MIN_SIZE, positive=True)
    x = jnp.asarray(raw, jnp.float32)
    out = apply_normalized(pipeline, _lap.normalize_log(x[None] if x.ndim == 2 else x),
                           pipeline.unflatten(pipeline.flatten(params)))
    return np.asarray(out[0] if x.ndim == 2 else out)


def _apply_impl(pipeline, x, params):
    return pipeline.apply(x, params)


#: ``apply_normalized(pipeline, x [R, H, W], params) -> [R, H, W]``, jitted with the
#: pipeline static (one compiled program per pipeline object and shape).
apply_normalized = jax.jit(_apply_impl, static_argnums=0)
