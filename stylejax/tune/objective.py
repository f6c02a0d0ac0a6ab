"""The tuning objective: StyleX distance between the average styles.

For raw images ``raw_i``, references ``ref_j``, an encoder ``e`` and a pipeline
``P`` with parameters ``p``:

* target ``t = mean_j e(ref_j) / |e(ref_j)|`` (mean of L2-normalised embeddings);
* ``m(p) = mean_i e(P(raw_i; p)) / |e(P(raw_i; p))|``;
* distance ``d(p) = 1 - cos(m(p), t)`` (the StyleX distance of the paper's Eq. 1,
  between the average styles).

Candidates are evaluated in batches: ``S`` flat parameter vectors ``[S, P]``
style every raw image (the pipeline ``vmap``-ped over candidates) and all styled
images go through the encoder as one batch. The jitted functions are module-level
with the pipeline and the embedding function as static arguments, so every
objective with the same model, pipeline and image shapes reuses one compiled
program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from stylejax import _xla
from stylejax.pipeline import lap as _lap
from stylejax.pipeline import registry
from stylejax.pipeline.tunable import LAP, Pipeline, apply_normalized
from stylejax.tune.inputs import group_by_shape, image_list, min_image_size, resolve_model


def _as_float_tree(tree):
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), tree)


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


def bind_embed(model):
    """``(model_arg, fn)`` with ``fn(model_arg, images) == model.embed(images)``.

    Pytrees of arrays (NNX modules) travel as jit arguments so their weights are not
    baked into each compiled program; other objects are closed over (``model_arg``
    is None) and hashed by identity.
    """
    leaves = jax.tree_util.tree_leaves(model)
    if leaves and all(isinstance(v, (jax.Array, np.ndarray)) for v in leaves):
        return model, _embed_pytree
    return None, _ClosedEmbed(model)


def normalize(e, axis=-1):
    """L2-normalise along ``axis`` (norms below 1e-12 treated as 1e-12)."""
    return e / jnp.maximum(jnp.linalg.norm(e, axis=axis, keepdims=True), 1e-12)


def mean_embeddings(pipeline, embed, model_arg, xs, p):
    """Mean normalised embedding of the styled raw images, per candidate.

    Args:
      pipeline: a :class:`Pipeline` (static).
      embed, model_arg: from :func:`bind_embed` (``embed`` static).
      xs: list of normalised log raw images, one ``[R_g, H_g, W_g]`` array per size.
      p: ``[S, P]`` bounded flat parameters.
    Returns:
      ``[S, D]``.
    """
    unravel = ravel_pytree(_as_float_tree(pipeline.init))[1]
    total, count = 0.0, 0
    for x in xs:  # one group per image size
        styled = jax.vmap(lambda q, x=x: pipeline.apply(x, unravel(q)))(p)
        e = normalize(embed(model_arg, styled.reshape((-1,) + styled.shape[2:])))
        total = total + e.reshape(p.shape[0], x.shape[0], -1).sum(axis=1)
        count += x.shape[0]
    return total / count


def cosine_distance(mean_embedding, target):
    """``1 - cos`` between ``[..., D]`` mean embeddings and a ``[D]`` target."""
    return 1.0 - jnp.sum(normalize(mean_embedding) * normalize(target), axis=-1)


def distances(pipeline, embed, model_arg, xs, target, p):
    """``p [S, P]`` bounded flat parameters -> ``[S]`` distances ``1 - cos`` to
    ``target [D]`` (arguments as :func:`mean_embeddings`)."""
    return cosine_distance(mean_embeddings(pipeline, embed, model_arg, xs, p), target)


_distances_jit = _xla.jit(distances, static_argnums=(0, 1))
_mean_embeddings_jit = _xla.jit(mean_embeddings, static_argnums=(0, 1))


def _embed_call(embed, model_arg, images):
    return embed(model_arg, images)


_embed_jit = _xla.jit(_embed_call, static_argnums=0)


def _value_and_grad(pipeline, embed, model_arg, xs, target, p):
    return jax.value_and_grad(lambda q: distances(pipeline, embed, model_arg, xs, target,
                                                  q[None])[0])(p)


_value_and_grad_jit = _xla.jit(_value_and_grad, static_argnums=(0, 1))


def _values_and_grads(pipeline, embed, model_arg, xs, target, p):
    """``p [S, P]`` bounded parameters -> distances ``[S]`` and their gradients ``[S, P]``
    (the candidates are independent, so the gradient of the sum is per candidate)."""
    def total(q):
        d = distances(pipeline, embed, model_arg, xs, target, q)
        return d.sum(), d

    (_, d), g = jax.value_and_grad(total, has_aux=True)(p)
    return d, g


_values_and_grads_jit = _xla.jit(_values_and_grads, static_argnums=(0, 1))


def resolve_pipeline(pipeline, image_shape) -> Pipeline:
    """None (:data:`LAP`), a :class:`Pipeline`, or a registered name
    (:mod:`stylejax.pipeline.registry`, factories get ``image_shape``)."""
    if pipeline is None:
        return LAP
    if isinstance(pipeline, str):
        return registry.get(pipeline, image_shape=image_shape)
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"pipeline must be a stylejax.pipeline.tunable.Pipeline or a "
                         f"registered name (got {type(pipeline).__name__})")
    return pipeline


class Objective:
    """The tuning loss for fixed raw images, references, encoder and pipeline.

    Also the common objective of the black-box baselines in
    ``experiments/benchmarks/tuning_recovery.py``.

    Args:
      raw: raw images (see :func:`stylejax.tune.inputs.image_list`).
      reference: reference images in [0, 1] (same forms).
      model: see :func:`stylejax.tune.inputs.resolve_model`.
      pipeline: a :class:`Pipeline`, a name registered in
        :mod:`stylejax.pipeline.registry` (e.g. ``"extended-lap"``, built for the
        smallest raw image), or None (:data:`LAP`).
    Raises:
      ValueError: bad images, model or pipeline (see the functions named above), or
        references whose embeddings are not finite.
    """

    def __init__(self, raw, reference, *, model=None, pipeline: Pipeline | str | None = None):
        # Fail on a bad pipeline before loading a model.
        if pipeline is not None and not isinstance(pipeline, Pipeline) and not (
                isinstance(pipeline, str) and pipeline in registry.names()):
            resolve_pipeline(pipeline, None)  # raises the message naming the problem
        self.model = resolve_model(model)
        min_size = min_image_size(self.model)
        raws = image_list(raw, "raw", min_size=min_size, raw=True)
        refs = image_list(reference, "reference", min_size=min_size, raw=False)
        smallest = (min(r.shape[0] for r in raws), min(r.shape[1] for r in raws))
        self.pipeline = resolve_pipeline(pipeline, smallest)
        self.num_raw, self.num_reference = len(raws), len(refs)
        self._model_arg, self._embed = bind_embed(self.model)
        ref_emb = [normalize(self.embed(g)) for g in group_by_shape(refs)]
        self.target = jnp.mean(jnp.concatenate(ref_emb), axis=0)
        if not bool(jnp.all(jnp.isfinite(self.target))):
            raise ValueError("the model's embeddings of the references are not finite")
        self._xs = [_lap.normalize_log(jnp.asarray(g)) for g in group_by_shape(raws)]
        low, high = self.pipeline.bounds()
        self.low, self.high = jnp.asarray(low), jnp.asarray(high)
        self.size = int(low.size)

    @property
    def arguments(self) -> tuple:
        """``(pipeline, embed, model_arg, xs, target)``: ``distances(*arguments, p)``
        is this objective at ``p [S, P]`` (the first two are static jit arguments)."""
        return self.pipeline, self._embed, self._model_arg, self._xs, self.target

    def embed(self, images) -> jax.Array:
        """The model's embeddings ``[N, D]`` of ``images`` ``[N, H, W]`` (jitted)."""
        return _embed_jit(self._embed, self._model_arg, jnp.asarray(images, jnp.float32))

    def images(self, params) -> list[np.ndarray]:
        """The pipeline's output on the raw images (one ``[R, H, W]`` array per size)."""
        p = self.pipeline.unflatten(self.pipeline.flatten(params))
        return [np.asarray(apply_normalized(self.pipeline, x, p)) for x in self._xs]

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
        d = self._chunks(params, chunk, lambda p: _distances_jit(*self.arguments, p))
        return float(d) if np.ndim(d) == 0 else d

    def value_and_grad(self, params):
        """Distance and its gradient w.r.t. the bounded flat parameters ``[P]``.

        Returns:
          ``(distance float, gradient [P] numpy)``.
        """
        p = jnp.asarray(np.asarray(params, np.float32).reshape(self.size))
        d, g = _value_and_grad_jit(*self.arguments, p)
        return float(d), np.asarray(g)

    def values_and_grads(self, params):
        """Distances ``[S]`` and gradients ``[S, P]`` at bounded flat parameters
        ``[S, P]`` (jitted; one compiled program per ``S``)."""
        return _values_and_grads_jit(*self.arguments, jnp.asarray(params, jnp.float32))
