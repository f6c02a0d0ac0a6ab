"""Gradient-based pipeline tuning with a style metric as the loss.

A radiologist picks reference images in the style they like; their content never
matches ours. Because the pipeline (LAP) and the style encoder (StyleX) are both
differentiable, the pipeline parameters that reproduce that style on our raw
images can be found by gradient descent:

* target ``t = mean_j e(ref_j) / |e(ref_j)|`` (mean of L2-normalised embeddings);
* for parameters ``p``: ``m(p) = mean_i e(P(raw_i; p)) / |e(P(raw_i; p))|``;
* loss ``d(p) = 1 - cos(m(p), t)`` (the StyleX distance of the paper's Eq. 1,
  between the average styles).

Parameters live in a box (``[0, 10]`` for LAP) through the smooth
reparameterisation ``p = low + (high - low) * sigmoid(u)``, so the optimiser works
on an unconstrained ``u`` and no step can leave the box. The optimiser is optax's
L-BFGS with a zoom line search (default: it reaches the objective's optimum in
about 15 evaluations on LAP, 5-10x fewer than Adam or Nelder-Mead, see the README)
or Adam. Several starts run at once: the pipeline is ``vmap``-ped over starts and
all styled images go through the encoder as one batch; the start with the lowest
distance is kept.

Any differentiable pipeline can be tuned: a :class:`Pipeline` is a function
``(normalised_log_raw [..., H, W], params) -> image [..., H, W]`` plus a
parameter pytree with bounds. :data:`LAP` (3 parameters) is the default;
:func:`extended_lap` gives one gain per pyramid band.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from stylejax import _checks
from stylejax.pipeline import lap as _lap
from stylejax.pipeline import pyramid

#: Smallest image side accepted for the encoder when the model does not say
#: (a ResNet-18 reduces a side by 32).
MIN_IMAGE_SIZE = 32


# ----------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Pipeline:
    """A differentiable pipeline with a bounded parameter pytree.

    Attributes:
      name: short name (reports, JSON).
      apply: ``(x, params) -> image``; ``x`` is :func:`stylejax.lap.normalize_log`
        of the raw images ``[R, H, W]``, ``params`` has the structure of ``init``
        with scalar leaves (or arrays of ``init``'s leaf shapes); returns
        ``[R, H, W]`` in [0, 1]. Must be jit- and grad-safe.
      init: parameter pytree; sets the structure, the leaf shapes and the first start.
      low, high: bounds, scalars or pytrees like ``init``.
    """

    name: str
    apply: Callable[[jax.Array, Any], jax.Array]
    init: Any
    low: Any = _lap.PARAM_MIN
    high: Any = _lap.PARAM_MAX

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
        out = []
        for path, leaf in jax.tree_util.tree_flatten_with_path(_as_float_tree(self.init))[0]:
            base = "".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path)
            size = int(np.size(leaf))
            out += [base] if np.ndim(leaf) == 0 else [f"{base}{i}" for i in range(size)]
        return out

    def to_dict(self, params) -> dict[str, float]:
        """Parameter pytree -> ``{name: float}`` for JSON."""
        return {n: float(v) for n, v in zip(self.names(), self.flatten(params))}


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

#: Band gain of :func:`extended_lap`: ``2 ** ((b - 5) / BAND_OCTAVES)`` (0.25..4, like ``h``).
BAND_OCTAVES = _lap.H_OCTAVES


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExtendedLAPParams:
    """Window ``w`` plus one gain parameter per pyramid band (finest first), 0..10 each."""

    w: Any
    bands: Any

    @classmethod
    def from_lap(cls, params: _lap.LAPParams, levels: int) -> "ExtendedLAPParams":
        """The extended parameters that reproduce ``params`` exactly."""
        high, low = _lap.band_groups(levels)
        to_band = 5.0 + (float(params.l) - 5.0) * BAND_OCTAVES / _lap.L_OCTAVES
        bands = [float(params.h) if k in high else to_band for k in range(levels)]
        return cls(w=float(params.w), bands=np.asarray(bands, np.float32))


@functools.lru_cache(maxsize=None)  # one object per levels: compiled steps are reused
def extended_lap(levels: int) -> Pipeline:
    """LAP with one gain per Laplacian band: ``1 + levels`` parameters.

    Args:
      levels: number of pyramid bands; images need a side of at least
        ``2 ** (levels + 2)`` pixels (see :func:`pyramid.default_levels`).
    Returns:
      a :class:`Pipeline` with :class:`ExtendedLAPParams`.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1 (got {levels})")

    def apply(x, params):
        bands, residual = pyramid.laplacian_pyramid(x, levels)
        gains = jnp.exp2((jnp.asarray(params.bands, jnp.float32) - 5.0) / BAND_OCTAVES)
        y = pyramid.reconstruct([b * gains[k] for k, b in enumerate(bands)], residual)
        return _lap.soft_window(y, params.w)

    init = ExtendedLAPParams(w=5.0, bands=np.full((levels,), 5.0, np.float32))
    return Pipeline(name=f"extended_lap{levels}", apply=apply, init=init)


def apply(raw, params, pipeline: Pipeline | None = None) -> np.ndarray:
    """Run a pipeline on raw images with given parameters (e.g. tuned ones).

    Args:
      raw: ``[H, W]`` or ``[N, H, W]`` positive raw images.
      params: the pipeline's parameter pytree (e.g. ``TuneResult.params``).
      pipeline: default :data:`LAP`.
    Returns:
      float32 numpy array of ``raw``'s shape, in [0, 1].
    """
    pipeline = LAP if pipeline is None else pipeline
    _checks.check_image(raw, "raw", max_rank=3, min_size=pyramid.MIN_SIZE, positive=True)
    x = jnp.asarray(raw, jnp.float32)
    out = _apply_jit(pipeline, _lap.normalize_log(x[None] if x.ndim == 2 else x),
                     pipeline.unflatten(pipeline.flatten(params)))
    return np.asarray(out[0] if x.ndim == 2 else out)


def _apply_impl(pipeline, x, params):
    return pipeline.apply(x, params)


_apply_jit = jax.jit(_apply_impl, static_argnums=0)


# ----------------------------------------------------------------------------
# Reparameterisation
# ----------------------------------------------------------------------------

def to_bounded(u, low, high):
    """Unconstrained ``u`` -> ``low + (high - low) * sigmoid(u)`` (inside the box)."""
    return low + (high - low) * jax.nn.sigmoid(u)


def to_unconstrained(p, low, high, eps: float = 1e-4):
    """Inverse of :func:`to_bounded`; values on the bounds are pulled inside by ``eps``."""
    s = np.clip((np.asarray(p, np.float64) - low) / (high - low), eps, 1.0 - eps)
    return np.log(s / (1.0 - s)).astype(np.float32)


# ----------------------------------------------------------------------------
# Inputs and the model
# ----------------------------------------------------------------------------

def image_list(images, name: str, *, min_size: int, raw: bool,
               labels: list[str] | None = None) -> list[np.ndarray]:
    """Validate images and return them as a list of float32 ``[H, W]`` arrays.

    Args:
      images: one ``[H, W]`` image, a stack ``[N, H, W]``, or a sequence of
        ``[H, W]`` images (sizes may differ).
      name: argument name for error messages ("raw", "reference").
      min_size: smallest accepted side in pixels.
      raw: True for linear raw detector images (must be > 0); False for styled
        images (must lie in [0, 1]).
      labels: names for the items of a sequence in error messages (e.g. file
        names); default ``name[i]``.
    Returns:
      list of ``[H, W]`` float32 numpy arrays.
    Raises:
      ValueError naming the problem (empty, rank, size, non-finite, range, constant).
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"the {name} list is empty: give at least one {name} image")
        names = labels if labels is not None else [f"{name}[{i}]" for i in range(len(images))]
        items = list(zip(names, images))
        ranks = (2, 2)
    else:
        items = [(name, images)]
        ranks = (2, 3)
    out = []
    for label, im in items:
        _checks.check_image(im, label, min_rank=ranks[0], max_rank=ranks[1], min_size=min_size,
                            positive=raw, unit_range=not raw)
        _checks.check_not_constant(im, label)
        arr = np.asarray(im, np.float32)
        out += list(arr) if arr.ndim == 3 else [arr]
    return out


def min_image_size(model) -> int:
    """Smallest image side accepted for ``model`` (its ``min_size``/``MIN_SIZE``, at
    least the pyramid's and :data:`MIN_IMAGE_SIZE` when the model does not say)."""
    size = getattr(model, "min_size", getattr(model, "MIN_SIZE", MIN_IMAGE_SIZE))
    return max(pyramid.MIN_SIZE, int(size))


def _group_by_shape(images: list[np.ndarray]) -> list[np.ndarray]:
    groups: dict[tuple, list] = {}
    for im in images:
        groups.setdefault(im.shape, []).append(im)
    return [np.stack(g) for g in groups.values()]


def resolve_model(model):
    """The style encoder to use.

    Args:
      model: None (the StyleX model shipped with the package), a directory of a
        StyleX training run, or any object with a differentiable
        ``embed(images [N, H, W] in [0, 1]) -> [N, D]``.
    Returns:
      an object with ``embed``.
    Raises:
      ValueError: a path that is not a StyleX run, or an object without ``embed``.
    """
    if model is None:
        from stylejax import stylex
        return stylex.load_pretrained()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isdir(path):
            raise ValueError(f"model directory {path!r} does not exist (or is not a directory)")
        from stylejax import stylex
        try:
            return stylex.load(path)
        except Exception as err:  # any loader failure means "not a run" to the user
            raise ValueError(f"model directory {path!r} is not a StyleX run: {err}") from err
    if not callable(getattr(model, "embed", None)):
        raise ValueError(f"model must have an embed(images) method (got {type(model).__name__})")
    return model


def _embed_pytree(model, images):
    return model.embed(images)


class _ClosedEmbed:
    """Embedding of a model that is not a pytree; hashed by identity so compiled
    programs are reused for the same model object."""

    def __init__(self, model):
        self.model = model

    def __call__(self, _, images):
        return self.model.embed(images)

    def __hash__(self):
        return id(self.model)

    def __eq__(self, other):
        return isinstance(other, _ClosedEmbed) and other.model is self.model


def _bind_embed(model):
    """``(model_arg, fn)`` with ``fn(model_arg, images)``; pytrees (NNX modules) travel
    as jit arguments so their weights are not baked into each compiled program."""
    leaves = jax.tree_util.tree_leaves(model)
    if leaves and all(isinstance(v, (jax.Array, np.ndarray)) for v in leaves):
        return model, _embed_pytree
    return None, _ClosedEmbed(model)


def _normalize(e, axis=-1):
    return e / jnp.maximum(jnp.linalg.norm(e, axis=axis, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------
# The objective. Module-level jitted functions with the pipeline and the embedding
# as static arguments: every fit with the same model, pipeline and image shapes
# reuses one compiled program.
# ----------------------------------------------------------------------------

def _mean_embeddings(pipeline, embed, model_arg, xs, p):
    """``p [S, P]`` bounded flat parameters -> ``[S, D]`` mean normalised embedding
    of the raw images styled with each candidate."""
    unravel = ravel_pytree(_as_float_tree(pipeline.init))[1]
    total, count = 0.0, 0
    for x in xs:  # one group per image size
        styled = jax.vmap(lambda q, x=x: pipeline.apply(x, unravel(q)))(p)
        e = _normalize(embed(model_arg, styled.reshape((-1,) + styled.shape[2:])))
        total = total + e.reshape(p.shape[0], x.shape[0], -1).sum(axis=1)
        count += x.shape[0]
    return total / count


def cosine_distance(mean_embedding, target):
    """``1 - cos`` between ``[..., D]`` mean embeddings and a ``[D]`` target."""
    return 1.0 - jnp.sum(_normalize(mean_embedding) * _normalize(target), axis=-1)


def _distances(pipeline, embed, model_arg, xs, target, p):
    """``p [S, P]`` bounded flat parameters -> ``[S]`` distances ``1 - cos``."""
    return cosine_distance(_mean_embeddings(pipeline, embed, model_arg, xs, p), target)


_distances_jit = jax.jit(_distances, static_argnums=(0, 1))
_mean_embeddings_jit = jax.jit(_mean_embeddings, static_argnums=(0, 1))


def _embed_call(embed, model_arg, images):
    return embed(model_arg, images)


_embed_jit = jax.jit(_embed_call, static_argnums=0)


def _value_and_grad(pipeline, embed, model_arg, xs, target, p):
    return jax.value_and_grad(lambda q: _distances(pipeline, embed, model_arg, xs, target,
                                                   q[None])[0])(p)


_value_and_grad_jit = jax.jit(_value_and_grad, static_argnums=(0, 1))

#: Adam with the learning rate held in its state, so one compiled step serves any lr.
_ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)


def _step(pipeline, embed, model_arg, xs, target, low, high, u, opt_state, best_u, best_d):
    def loss(v):
        d = _distances(pipeline, embed, model_arg, xs, target, to_bounded(v, low, high))
        return d.sum(), d  # starts are independent: the sum's gradient is per start

    (_, d), g = jax.value_and_grad(loss, has_aux=True)(u)
    updates, opt_state = _ADAM.update(g, opt_state, u)
    better = d < best_d
    best_u = jnp.where(better[:, None], u, best_u)
    best_d = jnp.where(better, d, best_d)
    return optax.apply_updates(u, updates), opt_state, best_u, best_d, d


_step_jit = jax.jit(_step, static_argnums=(0, 1), donate_argnums=(7, 8, 9, 10))

def _values_and_grads(pipeline, embed, model_arg, xs, target, p):
    """``p [S, P]`` bounded parameters -> distances ``[S]`` and their gradients ``[S, P]``
    (the starts are independent, so the gradient of the sum is per start)."""
    def total(q):
        d = _distances(pipeline, embed, model_arg, xs, target, q)
        return d.sum(), d

    (_, d), g = jax.value_and_grad(total, has_aux=True)(p)
    return d, g


_values_and_grads_jit = jax.jit(_values_and_grads, static_argnums=(0, 1))


def _lbfgs_lockstep(values_and_grads, p0, low, high, max_evaluations, on_row):
    """L-BFGS-B (scipy) from each row of ``p0 [S, P]``, the S runs in lockstep.

    Each run is a scipy minimisation in its own thread; whenever every unfinished
    run waits for an evaluation, their points are evaluated as one batch by
    ``values_and_grads(points [S, P]) -> (d [S], g [S, P])`` (finished runs are
    padded with their last point, so the batch shape and the compiled program stay
    the same). A run ends when L-BFGS-B converges or after ``max_evaluations``. ``on_row(points [S, P], d [S], active [S] bool)`` is called after each
    batch. Box bounds are L-BFGS-B's own, no reparameterisation.
    """
    import threading

    from scipy.optimize import minimize

    n = len(p0)
    cond = threading.Condition()
    pending, results = {}, {}
    finished, errors = [False] * n, []

    class Abort(Exception):
        pass
    bounds = list(zip(np.asarray(low, np.float64), np.asarray(high, np.float64)))

    used = [0] * n

    def objective(k):
        def f(x):
            if used[k] >= max_evaluations:  # scipy's maxfun can overshoot in a line search
                raise Abort
            used[k] += 1
            with cond:
                pending[k] = np.clip(x, low, high).astype(np.float32)
                cond.notify_all()
                while k not in results and not errors:
                    cond.wait()
                if errors:
                    raise Abort
                d, g = results.pop(k)
            return d, g
        return f

    def run(k):
        try:
            minimize(objective(k), np.asarray(p0[k], np.float64), jac=True, method="L-BFGS-B",
                     bounds=bounds, options=dict(maxfun=max_evaluations, ftol=1e-7, gtol=1e-6))
        except Abort:
            pass
        except Exception as err:  # surfaced in the calling thread
            with cond:
                errors.append(err)
        finally:
            with cond:
                finished[k] = True
                cond.notify_all()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    last = np.asarray(p0, np.float32).copy()
    while True:
        with cond:
            while not all(finished[k] or k in pending for k in range(n)):
                cond.wait()
            if not pending:
                break
            active = np.array([k in pending for k in range(n)])
            for k, x in pending.items():
                last[k] = x
            pending.clear()
        try:
            d, g = (np.asarray(v, np.float64) for v in values_and_grads(jnp.asarray(last)))
            on_row(last.copy(), d, active)
        except BaseException as err:  # e.g. KeyboardInterrupt: stop every run
            with cond:
                errors.append(err)
                cond.notify_all()
            break
        with cond:
            for k in np.flatnonzero(active):
                finite = np.isfinite(d[k]) and np.all(np.isfinite(g[k]))
                results[int(k)] = (float(d[k]), g[k]) if finite else (np.inf, np.zeros_like(g[k]))
            cond.notify_all()
        with cond:
            if errors:
                break
    for t in threads:
        t.join(timeout=10)
    if errors:
        raise errors[0]


OPTIMIZERS = ("lbfgs", "adam")


class Objective:
    """The tuning loss for fixed raw images, references, encoder and pipeline.

    Also the common objective of the black-box baselines in
    ``experiments/benchmarks/tuning_recovery.py``.

    Args:
      raw: raw images (see :func:`image_list`).
      reference: reference images in [0, 1] (see :func:`image_list`).
      model: see :func:`resolve_model`.
      pipeline: a :class:`Pipeline` (default :data:`LAP`).
    """

    def __init__(self, raw, reference, *, model=None, pipeline: Pipeline | None = None):
        self.pipeline = LAP if pipeline is None else pipeline
        if not isinstance(self.pipeline, Pipeline):
            raise ValueError(f"pipeline must be a stylejax.tune.Pipeline "
                             f"(got {type(self.pipeline).__name__})")
        self.model = resolve_model(model)
        min_size = min_image_size(self.model)
        raws = image_list(raw, "raw", min_size=min_size, raw=True)
        refs = image_list(reference, "reference", min_size=min_size, raw=False)
        self.num_raw, self.num_reference = len(raws), len(refs)
        self._model_arg, self._embed = _bind_embed(self.model)
        ref_emb = [_normalize(self.embed(g)) for g in _group_by_shape(refs)]
        self.target = jnp.mean(jnp.concatenate(ref_emb), axis=0)
        if not bool(jnp.all(jnp.isfinite(self.target))):
            raise ValueError("the model's embeddings of the references are not finite")
        self._xs = [_lap.normalize_log(jnp.asarray(g)) for g in _group_by_shape(raws)]
        low, high = self.pipeline.bounds()
        self.low, self.high = jnp.asarray(low), jnp.asarray(high)
        self.size = int(low.size)

    def embed(self, images) -> jax.Array:
        """The model's embeddings ``[N, D]`` of ``images`` ``[N, H, W]`` (jitted)."""
        return _embed_jit(self._embed, self._model_arg, jnp.asarray(images, jnp.float32))

    def images(self, params) -> list[np.ndarray]:
        """The pipeline's output on the raw images (one ``[R, H, W]`` array per size)."""
        p = self.pipeline.unflatten(self.pipeline.flatten(params))
        return [np.asarray(_apply_jit(self.pipeline, x, p)) for x in self._xs]

    def _chunks(self, params, chunk, fn):
        if not isinstance(params, (np.ndarray, jax.Array, list, tuple)):
            params = self.pipeline.flatten(params)
        p = np.asarray(params, np.float32)
        single = p.ndim == 1
        p = np.atleast_2d(p)
        if p.ndim != 2 or p.shape[-1] != self.size:
            raise ValueError(f"expected [S, {self.size}] parameters (got shape {p.shape})")
        size = min(chunk, p.shape[0])
        out = []
        for start in range(0, p.shape[0], size):
            block = p[start:start + size]
            pad = size - block.shape[0]
            if pad:  # same shape for every call: one compilation
                block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
            out.append(np.asarray(fn(jnp.asarray(block)), np.float64)[:size - pad])
        out = np.concatenate(out)
        return out[0] if single else out

    def mean_embeddings(self, params, *, chunk: int = 32) -> np.ndarray:
        """Mean normalised embedding ``[S, D]`` (or ``[D]``) of the raw images styled
        with each candidate; :func:`cosine_distance` to any target gives its distance.
        """
        return self._chunks(params, chunk, lambda p: _mean_embeddings_jit(
            self.pipeline, self._embed, self._model_arg, self._xs, p))

    def __call__(self, params, *, chunk: int = 32):
        """Distances of candidate parameters (forward only).

        Args:
          params: ``[P]`` or ``[S, P]`` flat parameters (order :meth:`Pipeline.names`),
            or a parameter pytree.
          chunk: candidates per compiled call (the last chunk is padded so that
            every call has the same shape and compiles once).
        Returns:
          ``[S]`` float64 distances ``1 - cos`` (a float for one candidate).
        """
        d = self._chunks(params, chunk, lambda p: _distances_jit(
            self.pipeline, self._embed, self._model_arg, self._xs, self.target, p))
        return float(d) if np.ndim(d) == 0 else d

    def value_and_grad(self, params):
        """Distance and its gradient w.r.t. the bounded flat parameters ``[P]``.

        Returns:
          ``(distance float, gradient [P] numpy)``.
        """
        p = jnp.asarray(np.asarray(params, np.float32).reshape(self.size))
        d, g = _value_and_grad_jit(self.pipeline, self._embed, self._model_arg, self._xs,
                                   self.target, p)
        return float(d), np.asarray(g)

    def values_and_grads(self, params):
        """Distances ``[S]`` and gradients ``[S, P]`` at bounded flat parameters
        ``[S, P]`` (jitted; one compiled program per ``S``)."""
        return _values_and_grads_jit(self.pipeline, self._embed, self._model_arg, self._xs,
                                     self.target, jnp.asarray(params, jnp.float32))

    def step(self, u, opt_state, best_u, best_d):
        """One Adam step on unconstrained ``u [S, P]`` for all starts (jitted, donating).

        Returns:
          ``(u, opt_state, best_u, best_d, d)``: ``d [S]`` is the distance at the
          incoming ``u``; ``best_*`` keep each start's lowest distance so far.
        """
        return _step_jit(self.pipeline, self._embed, self._model_arg, self._xs, self.target,
                         self.low, self.high, u, opt_state, best_u, best_d)


# ----------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class TuneResult:
    """Outcome of :func:`fit`.

    Attributes:
      params: best parameters (the pipeline's pytree, e.g. :class:`LAPParams`, floats).
      distance: StyleX distance ``1 - cos`` reached by ``params``.
      history: ``[T, S]`` distance of each start at each step (before its update).
      trajectory: ``[T, S, P]`` bounded parameters of each start at each step.
      steps: steps run (``T``; fewer than asked when stopped early).
      elapsed: ``[T]`` seconds from the call of :func:`fit` to the end of each step.
      seconds: wall time of :func:`fit` (validation, compilation and the loop).
      best_start: index of the start that gave ``params``.
      initial_distance: the distance of that start at step 0.
      stopped_early: True when the patience criterion ended the run.
      screened: ``[K, P]`` points evaluated forward-only to choose the starts
        (``K = 0`` without screening); screened_distances: ``[K]``; screen_seconds:
        the wall time of that screening (included in ``elapsed``).
      pipeline: the :class:`Pipeline` tuned.
      optimizer: "lbfgs" or "adam".
      step_evaluations: ``[T]`` value-and-gradient evaluations computed in each
        step, all starts together (Adam: ``starts``; L-BFGS: ``starts`` times the
        most line-search evaluations any start needed, since vmapped starts run
        the line search in lockstep).
    """

    params: Any
    distance: float
    history: np.ndarray
    trajectory: np.ndarray
    steps: int
    elapsed: np.ndarray
    seconds: float
    best_start: int
    initial_distance: float
    stopped_early: bool
    pipeline: Pipeline
    screened: np.ndarray
    screened_distances: np.ndarray
    screen_seconds: float
    optimizer: str
    step_evaluations: np.ndarray

    @property
    def starts(self) -> int:
        return int(self.history.shape[1])

    @property
    def evaluations(self) -> int:
        """Pipeline + encoder evaluations: those of the steps (with their backward
        pass, see ``step_evaluations``) plus the forward-only screening."""
        return int(self.step_evaluations.sum() + len(self.screened))

    @property
    def best_history(self) -> np.ndarray:
        """``[T]`` lowest distance reached so far over all starts."""
        return np.minimum.accumulate(self.history.min(axis=1))

    def to_dict(self) -> dict:
        """JSON-ready summary (``params`` as ``{name: value}``)."""
        return {"params": self.pipeline.to_dict(self.params), "distance": self.distance,
                "initial_distance": self.initial_distance, "steps": self.steps,
                "seconds": self.seconds, "starts": self.starts, "best_start": self.best_start,
                "evaluations": self.evaluations, "stopped_early": self.stopped_early,
                "pipeline": self.pipeline.name, "optimizer": self.optimizer}


def initial_points(pipeline: Pipeline, starts: int, seed: int, init=None) -> np.ndarray:
    """Start points ``[starts, P]``.

    ``init`` first (a parameter pytree, or ``[k, P]`` flat start points; default the
    pipeline's neutral parameters), then a Latin hypercube over the middle 80% of
    the box, so the other starts spread out in every parameter.
    """
    low, high = pipeline.bounds()
    if init is None:
        first = pipeline.flatten(pipeline.init)[None]
    elif isinstance(init, (np.ndarray, jax.Array, list, tuple)) and np.ndim(init) == 2:
        first = np.asarray(init, np.float32)
    else:
        first = pipeline.flatten(init)[None]
    if first.shape[-1] != low.size:
        raise ValueError(f"init has {first.shape[-1]} parameters per start, the pipeline "
                         f"{pipeline.name} has {low.size}")
    if np.any(first < low) or np.any(first > high) or not np.all(np.isfinite(first)):
        raise ValueError(f"init must lie within the pipeline's bounds "
                         f"[{low.min():g}, {high.max():g}] (got {first.min():g}..{first.max():g})")
    n = starts - len(first)
    if n <= 0:
        return first[:starts].astype(np.float32)
    rng = np.random.default_rng(seed)
    strata = (np.stack([rng.permutation(n) for _ in range(low.size)], axis=1)
              + rng.random((n, low.size))) / n
    others = low + (high - low) * (0.1 + 0.8 * strata)
    return np.concatenate([first, others]).astype(np.float32)


def fit(raw, reference, *, model=None, steps: int = 150, seed: int = 0, starts: int = 4,
        optimizer: str = "lbfgs", lr: float = 0.1, lr_final: float = 0.05,
        pipeline: Pipeline | None = None, init=None, patience: int = 30,
        tol: float = 1e-3, screen: int = 64, progress: bool = False,
        objective: Objective | None = None) -> TuneResult:
    """Tune pipeline parameters so the raw images take the references' style.

    Args:
      raw: raw detector images: ``[H, W]``, ``[N, H, W]`` or a list of ``[H, W]``
        (positive, linear, any scale; sizes may differ).
      reference: reference images in the wanted style, in [0, 1], same forms;
        their content need not match ``raw``. More images of both kinds average
        out how content colours the metric: on synthetic LAP targets at the shipped
        model's scale (256 px), 16 raw images and 32 references recovered every
        parameter within 0.5 on 97 % of 60 (three draws of phantoms: 95 / 100 /
        95 %), 2 and 3 on 50-55 % (README, Tuning).
      model: the style encoder: None (shipped StyleX), a StyleX run directory,
        or any object with a differentiable ``embed([N, H, W]) -> [N, D]``.
      steps: maximum Adam steps, or L-BFGS evaluations per start (L-BFGS-B
        usually converges in 15-40).
      seed: seed of the random start points.
      starts: optimisations run side by side (one batch per round); the best is kept.
      optimizer: "lbfgs" (scipy's L-BFGS-B on the box itself, the starts in
        lockstep so that each round of evaluations is one batch; no learning rate)
        or "adam" (optax, on the unconstrained parameters, with ``lr`` and ``lr_final``).
      lr: peak Adam learning rate on the unconstrained parameters (near the middle
        of the box, 0.1 moves a 0..10 parameter by up to about 0.25 per step).
      lr_final: the learning rate decays from ``lr`` to ``lr * lr_final`` over
        ``steps`` (cosine), so late steps refine instead of oscillating.
      pipeline: a :class:`Pipeline`; default :data:`LAP`.
      init: parameters of the first start (default the pipeline's neutral ones),
        or ``[k, P]`` flat start points for the first ``k`` starts.
      screen: evaluate this many quasi-random points (Latin hypercube, plus the
        neutral one) forward-only first and start from the best; given ``init``
        points are always kept as starts. Cheap (no backward pass, one batch)
        insurance against starting in a poor basin; 0 disables it.
      patience, tol: Adam stops when the best distance has not improved by more
        than the fraction ``tol`` of itself for ``patience`` steps. (L-BFGS-B stops
        by its own test: a step lowers the distance by less than 1e-7, or the
        projected gradient is below 1e-6.)
      progress: show a tqdm progress bar on stderr.
      objective: a prepared :class:`Objective` (then ``raw``, ``reference``,
        ``model`` and ``pipeline`` are ignored); saves re-validating and
        re-embedding the references over repeated fits.
    Returns:
      a :class:`TuneResult`.
    Raises:
      ValueError: bad images (constant, non-finite, wrong rank, too small, out of
        range), an empty reference list, a model directory that is not a StyleX
        run, or bad settings.
    """
    t0 = time.perf_counter()
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} (got {optimizer!r})")
    if steps < 1 or starts < 1 or not lr > 0 or patience < 1 or not 0 < lr_final <= 1:
        raise ValueError(f"need steps >= 1, starts >= 1, lr > 0, 0 < lr_final <= 1, patience "
                         f">= 1 (got steps={steps}, starts={starts}, lr={lr}, lr_final="
                         f"{lr_final}, patience={patience})")
    if objective is None:
        objective = Objective(raw, reference, model=model, pipeline=pipeline)
    pipe = objective.pipeline
    low, high = (np.asarray(b) for b in pipe.bounds())
    screen_t0 = time.perf_counter()
    if screen > 0:
        keep = 0 if init is None else len(np.atleast_2d(
            init if np.ndim(init) == 2 else pipe.flatten(init)))
        screened = initial_points(pipe, max(screen, starts + keep), seed, init)
        screened_d = objective(screened, chunk=min(len(screened), 32))
        order = keep + np.argsort(screened_d[keep:], kind="stable")
        p0 = np.concatenate([screened[:keep], screened[order]])[:starts]
    else:
        p0 = initial_points(pipe, starts, seed, init)
        screened, screened_d = np.zeros((0, len(low)), np.float32), np.zeros((0,))
    screen_seconds = time.perf_counter() - screen_t0
    history, trajectory, elapsed, evaluations = [], [], [], []
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"tune {pipe.name} ({optimizer})", unit="step",
                   leave=False, file=sys.stderr)
    try:
        if optimizer == "lbfgs":
            best_u, best_d, stopped = _fit_lbfgs(objective, p0, steps, bar, t0, history,
                                                 trajectory, elapsed, evaluations)
        else:
            best_u, best_d, stopped = _fit_adam(objective, p0, steps, lr, lr_final, patience,
                                                tol, bar, t0, history, trajectory, elapsed,
                                                evaluations)
    finally:
        if bar is not None:
            bar.close()

    if not np.any(np.isfinite(best_d)):
        raise ValueError("the distance was not finite at any step: check the model and images")
    k = int(np.nanargmin(best_d))
    flat = np.asarray(best_u[k], np.float32)
    params = jax.tree.map(lambda v: float(v) if np.ndim(v) == 0 else np.asarray(v),
                          pipe.unflatten(flat))
    history = np.stack(history)
    return TuneResult(params=params, distance=float(best_d[k]), history=history,
                      trajectory=np.stack(trajectory), steps=len(history),
                      elapsed=np.asarray(elapsed), seconds=time.perf_counter() - t0, best_start=k,
                      initial_distance=float(history[0, k]), stopped_early=stopped,
                      pipeline=pipe, screened=screened, screened_distances=screened_d,
                      screen_seconds=screen_seconds, optimizer=optimizer,
                      step_evaluations=np.asarray(evaluations, np.int64))


def _fit_adam(objective, p0, steps, lr, lr_final, patience, tol, bar, t0, history, trajectory,
              elapsed, evaluations):
    """Vmapped multi-start Adam on the unconstrained parameters; appends to the lists.

    Returns ``(best bounded parameters [S, P], best distances [S], stopped_early)``.
    """
    low, high = (np.asarray(b) for b in objective.pipeline.bounds())
    starts = len(p0)
    u = jnp.asarray(to_unconstrained(p0, low, high))
    state = (u, _ADAM.init(u), jnp.array(u), jnp.full((starts,), jnp.inf, jnp.float32))
    best, since_best = np.inf, 0
    for t in range(steps):
        trajectory.append(np.asarray(to_bounded(state[0], low, high)))
        decay = 0.5 * (1.0 + np.cos(np.pi * t / steps))
        state[1].hyperparams["learning_rate"] = jnp.asarray(
            lr * (lr_final + (1.0 - lr_final) * decay), jnp.float32)
        *state, d = objective.step(*state)
        d = np.asarray(d, np.float64)
        history.append(d)
        elapsed.append(time.perf_counter() - t0)
        evaluations.append(starts)
        current = float(np.nanmin(d)) if np.any(np.isfinite(d)) else np.inf
        if current < best - tol * abs(best) or not np.isfinite(best):
            best, since_best = current, 0
        else:
            since_best += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(distance=f"{min(best, current):.5f}")
        if since_best >= patience:
            return np.asarray(to_bounded(state[2], low, high)), np.asarray(state[3]), True
    return np.asarray(to_bounded(state[2], low, high)), np.asarray(state[3]), False


def _fit_lbfgs(objective, p0, steps, bar, t0, history, trajectory, elapsed, evaluations):
    """Multi-start L-BFGS-B in lockstep (:func:`_lbfgs_lockstep`); appends to the lists.

    Returns ``(best bounded parameters [S, P], best distances [S], stopped_early)``.
    """
    low, high = (np.asarray(b) for b in objective.pipeline.bounds())
    starts = len(p0)
    best_u = np.asarray(p0, np.float32).copy()
    best_d = np.full(starts, np.inf)

    def on_row(points, d, active):
        better = np.isfinite(d) & (d < best_d)
        best_u[better], best_d[better] = points[better], d[better]
        trajectory.append(points)
        history.append(d)
        elapsed.append(time.perf_counter() - t0)
        evaluations.append(starts)  # padded rows cost as much as full ones
        if bar is not None:
            bar.update(1)
            bar.set_postfix(distance=f"{np.min(best_d):.5f}", running=int(active.sum()))

    _lbfgs_lockstep(objective.values_and_grads, p0, low, high, steps, on_row)
    return best_u, best_d, len(history) < steps
