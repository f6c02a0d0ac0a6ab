"""Content and style losses on feature maps ``[..., h, w, C]`` (NHWC, any leading dims).

Normalisations follow the ultrasound NST thesis (chapter 2):

* content loss, Eq. 2.2: ``sum (F[C] - F[O])^2 / (2 h w C)``;
* Gram matrix, Eq. 2.3: ``G = F^T F / (h w)``;
* style loss per layer, Eq. 2.4: ``sum_ij (G[S] - G[O])_ij^2 / (2 C^2)``;
* augmented style loss, Eq. 2.5 / 3.1: the same per label ``d`` on ``F * M_d`` and summed
  over labels, with the masks ``M_d`` carried through the network by ``fake_conv`` (a 3x3
  average per convolution) and ``fake_pool`` (nearest-neighbour halving per pool).
  A per-label Gram is normalised by the mask's mean (``sum F M F M / sum M``), so a
  label's Gram is an average over its own region and labels of different area compare.

Also: average style (feature space or Gram space), the mean/std (AdaIN) style loss and
the mr2NST multi-reference Gram (element-wise max over references, Eq. 5, followed by
histogram specification against the stacked reference Grams).

Everything is ``jit``/``grad`` safe (reverse mode; the Gram has a custom VJP, so
forward-mode derivatives of it are not available); shapes are checked statically.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _check_features(f, name: str, min_rank: int = 3):
    if np.ndim(f) < min_rank:
        raise ValueError(f"{name} must be feature maps [..., h, w, C] (got shape "
                         f"{tuple(np.shape(f))})")


@jax.custom_vjp
def _outer(flat):
    """``flat^T flat`` over the position axis: ``[..., P, C] -> [..., C, C]``."""
    return jnp.einsum("...pc,...pd->...cd", flat, flat)


def _outer_fwd(flat):
    return _outer(flat), flat


def _outer_bwd(flat, g):
    # d(F^T F) = F (G + G^T): one [P, C] x [C, C] product in the layout of F. Autodiff of
    # the einsum instead emits two products with transposed [C, P] outputs plus a
    # transposing add, which cost more than the forward Gram on XLA's CPU backend.
    return (jnp.einsum("...pc,...cd->...pd", flat, g + jnp.swapaxes(g, -1, -2)),)


_outer.defvjp(_outer_fwd, _outer_bwd)


def gram(features, mask=None, *, eps: float = 1e-8) -> jax.Array:
    """Gram matrix ``F^T F / (h w)`` (Eq. 2.3), optionally of ``F * M`` normalised by mean(M).

    Args:
      features: ``[..., h, w, C]``.
      mask: optional ``[..., h, w]`` weights broadcastable against the leading dims of
        ``features`` (e.g. features ``[N, 1, h, w, C]`` with masks ``[D, h, w]`` gives
        per-label Grams ``[N, D, C, C]``).
      eps: guards the division for an empty mask (its Gram is then 0).
    Returns:
      ``[..., C, C]`` float32.
    """
    _check_features(features, "features")
    f = jnp.asarray(features, jnp.float32)
    h, w, c = f.shape[-3:]
    if mask is None:
        return _outer(f.reshape(f.shape[:-3] + (h * w, c))) / (h * w)
    m = jnp.asarray(mask, jnp.float32)
    if m.shape[-2:] != (h, w):
        raise ValueError(f"mask spatial size {tuple(m.shape[-2:])} does not match the "
                         f"feature map ({h}, {w})")
    fm = f * m[..., None]
    lead = jnp.broadcast_shapes(f.shape[:-3], m.shape[:-2])
    flat = jnp.broadcast_to(fm, lead + (h, w, c)).reshape(lead + (h * w, c))
    area = jnp.broadcast_to(m.sum(axis=(-2, -1)), lead)  # = h w mean(M)
    return _outer(flat) / jnp.maximum(area, eps)[..., None, None]


def content_loss(features, target) -> jax.Array:
    """Eq. 2.2: ``sum (F - F_target)^2 / (2 h w C)``, averaged over leading (batch) dims.

    Args:
      features, target: ``[..., h, w, C]`` of the same shape (target may omit/broadcast
        leading dims).
    Returns:
      scalar.
    """
    _check_features(features, "features")
    if np.shape(target)[-3:] != np.shape(features)[-3:]:
        raise ValueError(f"content target shape {tuple(np.shape(target))} does not match "
                         f"features {tuple(np.shape(features))}")
    diff = jnp.asarray(features, jnp.float32) - jnp.asarray(target, jnp.float32)
    return 0.5 * jnp.mean(jnp.square(diff))


def style_layer_loss(g, g_target, *, norm: float = 2.0) -> jax.Array:
    """Eq. 2.4: ``sum_ij (G - G_target)_ij^2 / (norm C^2)``, summed over leading dims.

    Summing over leading dims gives Eq. 2.5/3.1 for per-label Grams ``[D, C, C]``.
    ``norm=2`` is the thesis; mr2NST's Eq. 3 uses ``norm=4``.

    Args:
      g: ``[..., C, C]``; g_target: broadcastable to it.
    Returns:
      scalar.
    """
    if np.ndim(g) < 2 or np.shape(g)[-1] != np.shape(g)[-2]:
        raise ValueError(f"Gram matrices must be [..., C, C] (got {tuple(np.shape(g))})")
    if np.shape(g_target)[-2:] != np.shape(g)[-2:]:
        raise ValueError(f"style target Gram {tuple(np.shape(g_target))} does not match "
                         f"{tuple(np.shape(g))}: different channel counts")
    c = np.shape(g)[-1]
    diff = jnp.asarray(g) - jnp.asarray(g_target)
    return jnp.sum(jnp.square(diff)) / (norm * c * c)


def style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
               weights: Mapping[str, float] | float = 1.0, masks: Mapping | None = None,
               *, norm: float = 2.0) -> jax.Array:
    """Weighted sum over layers of :func:`style_layer_loss` (the style half of Eq. 2.1).

    Args:
      features: ``{tap: [..., h, w, C]}`` of the image being optimised.
      target_grams: ``{tap: [..., C, C]}`` (per-label ``[D, C, C]`` when ``masks`` given).
      weights: a float for every layer or ``{tap: beta}``.
      masks: optional ``{tap: [D, h, w]}`` propagated content masks (augmented loss).
      norm: see :func:`style_layer_loss`.
    Returns:
      scalar.
    """
    total = jnp.zeros((), jnp.float32)
    for tap, target in target_grams.items():
        if tap not in features:
            raise ValueError(f"style layer {tap!r} missing from the extracted features")
        beta = weights[tap] if isinstance(weights, Mapping) else weights
        f = features[tap]
        g = gram(f[..., None, :, :, :], masks[tap]) if masks is not None else gram(f)
        total = total + beta * style_layer_loss(g, target, norm=norm)
    return total


def fake_conv(masks) -> jax.Array:
    """3x3 average of ``[..., H, W]`` masks, 'SAME' size, padding excluded from the count.

    Mirrors a 3x3 convolution's receptive field growth (thesis ``fake_conv``); excluding
    the padding keeps a full mask at 1 up to the border.
    """
    m = jnp.asarray(masks, jnp.float32)
    h, w = m.shape[-2:]
    pad = [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)]
    padded = jnp.pad(m, pad)
    ones = jnp.pad(jnp.ones((h, w), jnp.float32), 1)
    total = sum(padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3))
    count = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
    return total / count


def fake_pool(masks) -> jax.Array:
    """Nearest-neighbour halving ``[..., H, W] -> [..., H//2, W//2]`` (thesis ``fake_pool``)."""
    m = jnp.asarray(masks, jnp.float32)
    h, w = m.shape[-2:]
    return m[..., : 2 * (h // 2): 2, : 2 * (w // 2): 2]


def propagate_masks(masks, plan: Sequence[tuple[str, str]], taps: Sequence[str]
                    ) -> dict[str, jax.Array]:
    """Carry image-space masks to the resolution of each tap along an extractor's ``plan``.

    Args:
      masks: ``[D, H, W]`` (or ``[H, W]``) masks in image space.
      plan: ``((kind, name), ...)`` as ``VGG.plan``; ``conv`` -> :func:`fake_conv`,
        ``pool`` -> :func:`fake_pool`, anything else (``relu``) leaves masks unchanged.
      taps: names in ``plan`` to return.
    Returns:
      ``{tap: [D, h, w]}``.
    """
    names = [name for _, name in plan]
    bad = [t for t in taps if t not in names]
    if bad:
        raise ValueError(f"taps {bad} are not layers of the extractor's plan")
    if np.ndim(masks) < 2:
        raise ValueError(f"masks must be [D, H, W] or [H, W] (got shape {np.shape(masks)})")
    return _propagate(jnp.asarray(masks, jnp.float32), tuple(map(tuple, plan)), tuple(taps))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _propagate(m, plan, taps):
    names = [name for _, name in plan]
    wanted, out = set(taps), {}
    last = max(names.index(t) for t in taps)
    for kind, name in plan[: last + 1]:
        if kind == "conv":
            m = fake_conv(m)
        elif kind == "pool":
            m = fake_pool(m)
        if name in wanted:
            out[name] = m
    return {t: out[t] for t in taps}


def average_style_grams(features, mode: str = "gram", mask=None) -> jax.Array:
    """Average style over ``S`` style images (thesis 3.2), as a target Gram.

    Args:
      features: ``[S, h, w, C]`` features of the style images (same size for
        ``mode="features"``).
      mode: ``"gram"`` -> mean over images of their Grams; ``"features"`` -> Gram of the
        mean feature map.
      mask: optional per-label masks ``[D, h, w]`` (result ``[D, C, C]``).
    Returns:
      ``[C, C]`` (or ``[D, C, C]``).
    """
    _check_features(features, "style features", min_rank=4)
    f = jnp.asarray(features, jnp.float32)
    if mode == "features":
        mean = f.mean(axis=0)
        return gram(mean[None], mask) if mask is not None else gram(mean)
    if mode == "gram":
        g = gram(f[:, None], mask) if mask is not None else gram(f)
        return g.mean(axis=0)
    raise ValueError(f"average style mode must be 'gram' or 'features' (got {mode!r})")


def mean_std(features, *, eps: float = 1e-5) -> tuple[jax.Array, jax.Array]:
    """Per-channel spatial mean and std ``sqrt(var + eps)`` of ``[..., h, w, C]`` -> ``[..., C]``."""
    _check_features(features, "features")
    f = jnp.asarray(features, jnp.float32)
    mu = f.mean(axis=(-3, -2))
    var = jnp.square(f - mu[..., None, None, :]).mean(axis=(-3, -2))
    return mu, jnp.sqrt(var + eps)


def mean_std_loss(features, target, *, eps: float = 1e-5) -> jax.Array:
    """AdaIN style loss: MSE of channel means plus MSE of channel stds.

    Args:
      features, target: ``[..., h, w, C]`` (spatial sizes may differ; channels must agree).
    Returns:
      scalar.
    """
    if np.shape(features)[-1] != np.shape(target)[-1]:
        raise ValueError(f"channel counts differ: {np.shape(features)[-1]} vs "
                         f"{np.shape(target)[-1]}")
    mu, sd = mean_std(features, eps=eps)
    mu_t, sd_t = mean_std(target, eps=eps)
    return jnp.mean(jnp.square(mu - mu_t)) + jnp.mean(jnp.square(sd - sd_t))


def max_gram(grams) -> jax.Array:
    """mr2NST Eq. 5: element-wise max over references, ``[n, ..., C, C] -> [..., C, C]``."""
    g = jnp.asarray(grams)
    if g.ndim < 3:
        raise ValueError(f"grams must be stacked [n, C, C] (got shape {tuple(g.shape)})")
    return g.max(axis=0)


@jax.jit
def histogram_specification(values, reference) -> jax.Array:
    """Give ``values`` the empirical distribution of ``reference`` (exact, rank based).

    Each value's rank (ties get their average rank, so equal values - e.g. the two halves
    of a symmetric Gram matrix - stay equal) is turned into a quantile ``q = rank /
    (n - 1)`` and replaced by the linearly interpolated ``q``-quantile of ``reference``.
    This is histogram specification in the limit of one bin per value.

    Args:
      values: any shape, ``n`` elements.
      reference: any shape, ``m`` elements.
    Returns:
      array shaped like ``values``.
    """
    v = jnp.asarray(values, jnp.float32)
    flat = v.ravel()
    ref = jnp.sort(jnp.asarray(reference, jnp.float32).ravel())
    n, m = flat.size, ref.size
    if n == 0 or m == 0:
        raise ValueError("histogram specification needs non-empty values and reference")
    ordered = jnp.sort(flat)
    left = jnp.searchsorted(ordered, flat, side="left")
    right = jnp.searchsorted(ordered, flat, side="right") - 1
    rank = 0.5 * (left + right).astype(jnp.float32)
    q = rank / (n - 1) if n > 1 else jnp.full_like(rank, 0.5)
    mapped = jnp.interp(q * (m - 1), jnp.arange(m, dtype=jnp.float32), ref)
    return mapped.reshape(v.shape)


def multi_reference_gram(grams) -> jax.Array:
    """mr2NST target Gram: ``H(max_k G_k, hist(stack_k G_k))`` over ``n`` references.

    Args:
      grams: ``[n, C, C]`` Grams of the ``n`` reference style images at one layer.
    Returns:
      ``[C, C]``.
    """
    g = jnp.asarray(grams)
    return histogram_specification(max_gram(g), g)
