"""Frechet distance between two sets of features, and on any feature extractor.

The Frechet (2-Wasserstein) distance between Gaussians fitted to two feature sets::

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

is the FID when the features are Inception-v3 pool features. Here any extractor can
supply them: :func:`frechet_distance_on` global-average-pools the maps of an extractor
``extractor(images, taps) -> {tap: [N, h, w, C]}`` (VGG, the StyleX encoder, ...). The
value depends on the extractor, so distances are only comparable for one extractor and
tap; Inception weights are not shipped (pass your own extractor for a classic FID).

The trace of the matrix square root is computed from the eigenvalues of the symmetric
positive semi-definite ``S_a^{1/2} S_b S_a^{1/2}`` (similar to ``S_a S_b``, so the same
eigenvalues), in float64: no complex parts, no failure on singular covariances (fewer
samples than dimensions), tiny negative eigenvalues from rounding clipped to 0.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["frechet_distance", "frechet_distance_on", "gaussian_stats", "pooled_features"]


def _check_features(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix (got shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers (got dtype {arr.dtype})")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} sample(s); a covariance needs at least 2")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no feature dimensions")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr.astype(np.float64)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``[N, D]`` features."""
    x = _check_features(features, "features")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product(sa: np.ndarray, sb: np.ndarray) -> float:
    """``Tr((S_a S_b)^{1/2})`` for symmetric PSD ``S_a``, ``S_b``."""
    root = _psd_sqrt(sa)
    m = root @ sb @ root
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    Args:
      features_a: ``[N, D]`` (N >= 2), finite.
      features_b: ``[M, D]`` (M >= 2), finite, same D.
    Returns:
      ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` as a float >= 0 (the squared
      2-Wasserstein distance; FID when the features are Inception pool features).
    Raises:
      ValueError for fewer than 2 samples, different D, NaN/inf or a wrong rank.
    """
    a = _check_features(features_a, "features_a")
    b = _check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: features_a has D={a.shape[1]}, "
                         f"features_b has D={b.shape[1]}")
    mu_a, sa = a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False))
    mu_b, sb = b.mean(axis=0), np.atleast_2d(np.cov(b, rowvar=False))
    d = (float(np.sum(np.square(mu_a - mu_b))) + float(np.trace(sa)) + float(np.trace(sb))
         - 2.0 * _trace_sqrt_product(sa, sb))
    return max(d, 0.0)


def _check_images(images, name: str) -> np.ndarray:
    arr = np.asarray(images, np.float32)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{name} must be images [N, H, W] (or [N, H, W, C]) (got shape "
                         f"{arr.shape})")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} image(s); a Frechet distance needs at "
                         "least 2 per set")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _resolve_taps(extractor, tap) -> tuple[str, ...]:
    if tap is None:
        content = getattr(extractor, "content_taps", None)
        if not content:
            raise ValueError("tap is None and the extractor has no content_taps: name the "
                             "layer(s) to pool")
        return (tuple(content)[-1],)
    taps = (tap,) if isinstance(tap, str) else tuple(tap)
    if not taps:
        raise ValueError("tap is empty: name at least one layer")
    return taps


def _pool(feats, taps) -> jax.Array:
    """Global average pool each tap (``[N, h, w, C]`` -> ``[N, C]``; ``[N, C]`` as is), concat."""
    out = []
    for t in taps:
        if t not in feats:
            raise ValueError(f"the extractor returned no {t!r} features (got {sorted(feats)})")
        f = jnp.asarray(feats[t], jnp.float32)
        if f.ndim == 4:
            f = f.mean(axis=(1, 2))
        elif f.ndim != 2:
            raise ValueError(f"features {t!r} must be [N, h, w, C] or [N, C] (got shape "
                             f"{tuple(f.shape)})")
        out.append(f)
    return jnp.concatenate(out, axis=-1)


@nnx.jit(static_argnums=2)
def _pooled_module(extractor, images, taps):
    return _pool(extractor(images, taps), taps)


def pooled_features(extractor: Callable, images, taps: Sequence[str], *,
                    batch: int = 16) -> np.ndarray:
    """Globally average-pooled features ``[N, sum C]`` of ``images`` at ``taps``.

    Args:
      extractor: ``extractor(images, taps) -> {tap: [n, h, w, C] or [n, C]}``; an
        ``nnx.Module`` extractor runs jit-compiled (the last batch is padded so that one
        program serves all batches).
      images: ``[N, H, W]`` (or ``[N, H, W, C]``) in the extractor's range.
      taps: layer names; pooled features are concatenated in this order.
      batch: images per extractor call.
    Returns:
      float32 numpy ``[N, sum of channels]``.
    """
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    x = np.asarray(images, np.float32)
    taps = tuple(taps)
    jitted = isinstance(extractor, nnx.Module)
    out = []
    for start in range(0, len(x), int(batch)):
        chunk = x[start:start + int(batch)]
        n = len(chunk)
        if jitted:
            if n < batch and len(x) > batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
            pooled = _pooled_module(extractor, jnp.asarray(chunk), taps)
        else:
            pooled = _pool(extractor(jnp.asarray(chunk), taps), taps)
        out.append(np.asarray(pooled)[:n])
    return np.concatenate(out)


def frechet_distance_on(extractor: Callable, images_a, images_b, *,
                        tap: str | Sequence[str] | None = None, batch: int = 16) -> float:
    """Frechet distance between two image sets in an extractor's pooled feature space.

    Args:
      extractor: ``extractor(images, taps) -> {tap: [N, h, w, C]}`` (any
        ``stylejax.models.features`` extractor, or a callable returning ``[N, C]``
        embeddings per tap).
      images_a, images_b: ``[N, H, W]`` / ``[M, H', W']`` (or with a channel axis), at least
        2 images each; the two sets may differ in size.
      tap: layer name(s) whose globally average-pooled features are compared
        (concatenated if several); default the extractor's deepest ``content_taps``.
      batch: images per extractor call.
    Returns:
      the Frechet distance (float >= 0).
    Raises:
      ValueError for bad images (rank, fewer than 2, NaN) or taps the extractor lacks.
    """
    a = _check_images(images_a, "images_a")
    b = _check_images(images_b, "images_b")
    taps = _resolve_taps(extractor, tap)
    fa = pooled_features(extractor, a, taps, batch=batch)
    fb = pooled_features(extractor, b, taps, batch=batch)
    return frechet_distance(fa, fb)
