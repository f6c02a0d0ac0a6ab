"""Quantitative tools for judging an embedding of images by style.

The StyleX paper judges its encoder by pictures (t-SNE plots); these functions
turn the same questions into numbers:

* :func:`tsne` - exact t-SNE (van der Maaten & Hinton 2008) to 1-D or 2-D, for the
  paper's Fig. 3. Exact gradients, O(N^2) memory: meant for a few hundred points.
* :func:`spearman` - rank correlation (ties get average ranks), e.g. of a sweep's
  1-D t-SNE coordinate with the swept LAP parameter.
* :func:`silhouette_samples` / :func:`silhouette_score` - cluster quality of the
  styles (Rousseeuw 1987), Euclidean or cosine distance.
* :func:`retrieval_accuracy` - nearest-neighbour style retrieval across
  non-matching content: the nearest image *of other content* must share the style.
* :func:`roc_auc` / :func:`content_invariance_auc` - the Mann-Whitney AUC, and its
  use for "is the distance driven by style rather than by content".

Embeddings are arrays ``[N, D]``; labels are integer arrays ``[N]``. Everything
returns numpy values (float64 scalars or arrays).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("euclidean", "cosine")


# ----------------------------------------------------------------------------
# Validation and distances.
# ----------------------------------------------------------------------------

def _as_embedding(x, name: str = "x", min_points: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] array of embeddings (got shape {x.shape})")
    if x.shape[0] < min_points or x.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_points} points of dimension >= 1 "
                         f"(got shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x


def _as_labels(labels, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the embeddings "
                         f"(got {labels.shape})")
    return labels


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (got {metric!r})")
    return metric


def normalize_rows(x) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def pairwise_distances(a, b=None, metric: str = "euclidean") -> np.ndarray:
    """Distance matrix between the rows of ``a`` ``[N, D]`` and ``b`` ``[M, D]``.

    Args:
      a: ``[N, D]`` embeddings.
      b: ``[M, D]`` embeddings; ``None`` means ``a``.
      metric: ``"euclidean"`` or ``"cosine"`` (``1 - cos``, the StyleX distance).
    Returns:
      ``[N, M]`` float64 distances (exact zeros on the diagonal when ``b`` is None).
    """
    _check_metric(metric)
    a = np.asarray(a, dtype=np.float64)
    same = b is None
    b = a if same else np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D] (got {a.shape} and {b.shape})")
    if metric == "cosine":
        d = 1.0 - normalize_rows(a) @ normalize_rows(b).T
    else:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        d = np.sqrt(np.maximum(sq, 0.0))
    if same:
        np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def paired_distances(a, b, metric: str = "euclidean") -> np.ndarray:
    """Distance between corresponding rows: ``[N, D], [N, D] -> [N]``."""
    _check_metric(metric)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"paired embeddings must both be [N, D] (got {a.shape} and {b.shape})")
    if metric == "cosine":
        return np.maximum(1.0 - np.sum(normalize_rows(a) * normalize_rows(b), axis=1), 0.0)
    return np.linalg.norm(a - b, axis=1)


# ----------------------------------------------------------------------------
# t-SNE.
# ----------------------------------------------------------------------------

def conditional_probabilities(sq_dist, perplexity: float, *, tol: float = 1e-5,
                              max_iter: int = 200) -> np.ndarray:
    """Row-wise Gaussian affinities ``p_{j|i}`` with a given perplexity.

    For each row the precision ``beta_i`` is found by bisection so that the
    entropy of ``p_{.|i}`` (in nats) equals ``log(perplexity)``.

    Args:
      sq_dist: ``[N, N]`` squared distances (the diagonal is ignored).
      perplexity: effective number of neighbours, ``1 < perplexity < N``.
      tol: tolerance on the entropy.
      max_iter: bisection steps.
    Returns:
      ``[N, N]`` row-stochastic matrix with a zero diagonal.
    """
    d = np.array(sq_dist, dtype=np.float64)
    n = d.shape[0]
    if d.ndim != 2 or d.shape != (n, n):
        raise ValueError(f"sq_dist must be a square matrix (got shape {d.shape})")
    if not 1.0 < perplexity < n:
        raise ValueError(f"perplexity must lie in (1, N) = (1, {n}) (got {perplexity})")
    np.fill_diagonal(d, np.inf)
    # Shifting each row by its smallest distance leaves p_{.|i} unchanged but keeps exp() finite.
    d = d - d.min(axis=1, keepdims=True)
    target = math.log(perplexity)
    finite = np.where(np.isfinite(d), d, np.nan)
    scale = np.nanmedian(finite, axis=1)
    beta = 1.0 / np.where(scale > 0, scale, 1.0)
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    for _ in range(max_iter):
        p = np.exp(-d * beta[:, None])
        s = p.sum(axis=1)
        entropy = np.log(s) + beta * (np.where(np.isfinite(d), d, 0.0) * p).sum(axis=1) / s
        diff = entropy - target
        if np.all(np.abs(diff) < tol):
            break
        too_flat = diff > 0  # entropy too high: sharpen (increase beta)
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
    p = np.exp(-d * beta[:, None])
    return p / p.sum(axis=1, keepdims=True)


def joint_probabilities(x, perplexity: float, metric: str = "euclidean") -> np.ndarray:
    """Symmetrised t-SNE input affinities ``P = (p_{j|i} + p_{i|j}) / 2N``.

    Args:
      x: ``[N, D]`` embeddings. With ``metric="cosine"`` the rows are first scaled
        to unit norm (squared Euclidean distance then equals twice the cosine distance).
      perplexity: see :func:`conditional_probabilities`.
      metric: ``"euclidean"`` or ``"cosine"``.
    Returns:
      ``[N, N]`` symmetric matrix summing to 1, zero diagonal.
    """
    x = _as_embedding(x, min_points=3)
    if _check_metric(metric) == "cosine":
        x = normalize_rows(x)
    sq = pairwise_distances(x) ** 2
    cond = conditional_probabilities(sq, perplexity)
    p = (cond + cond.T) / (2.0 * x.shape[0])
    return np.maximum(p, 1e-12) * (1 - np.eye(x.shape[0]))


def tsne_kl_and_grad(p, y):
    """t-SNE objective ``KL(P || Q)`` and its exact gradient.

    ``Q`` uses the Student-t kernel with one degree of freedom,
    ``q_ij = (1 + |y_i - y_j|^2)^-1 / sum_{k != l} (1 + |y_k - y_l|^2)^-1``, and
    ``dKL/dy_i = 4 sum_j (p_ij - q_ij) (y_i - y_j) / (1 + |y_i - y_j|^2)``.

    Args:
      p: ``[N, N]`` joint input affinities (symmetric, zero diagonal, sum 1).
      y: ``[N, d]`` low-dimensional coordinates.
    Returns:
      ``(kl, grad)``: a scalar and ``[N, d]`` (JAX arrays, dtype of ``y``).
    """
    n = y.shape[0]
    diff = y[:, None, :] - y[None, :, :]
    num = 1.0 / (1.0 + jnp.sum(diff * diff, axis=-1))
    num = num * (1.0 - jnp.eye(n, dtype=y.dtype))
    q = jnp.maximum(num / jnp.sum(num), 1e-12)
    kl = jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-12) / q), 0.0))
    grad = 4.0 * jnp.einsum("ij,ijd->id", (p - q) * num, diff)
    return kl, grad


@functools.partial(jax.jit, static_argnames=("n_iter", "exaggeration_iters"))
def _optimize(p, y0, learning_rate, exaggeration, n_iter: int, exaggeration_iters: int):
    """Gradient descent with momentum and per-coordinate gains (Jacobs 1988)."""

    def body(i, state):
        y, update, gains = state
        early = i < exaggeration_iters
        _, grad = tsne_kl_and_grad(jnp.where(early, exaggeration, 1.0) * p, y)
        momentum = jnp.where(early, 0.5, 0.8)
        same_sign = (update * grad) > 0
        gains = jnp.maximum(jnp.where(same_sign, gains * 0.8, gains + 0.2), 0.01)
        update = momentum * update - learning_rate * gains * grad
        y = y + update
        # The objective ignores translation; centring keeps the (tiny, during early
        # exaggeration) differences between points representable.
        return y - jnp.mean(y, axis=0), update, gains

    y, _, _ = jax.lax.fori_loop(0, n_iter, body, (y0, jnp.zeros_like(y0), jnp.ones_like(y0)))
    kl, _ = tsne_kl_and_grad(p, y)
    return y, kl


def _pca_init(x, dim: int) -> np.ndarray:
    """First ``dim`` principal components, scaled to std 1e-4 (deterministic signs)."""
    xc = x - x.mean(axis=0)
    n, d = xc.shape
    # Eigen-decompose the smaller of the two Gram matrices (N x N or D x D).
    if n <= d:
        evals, evecs = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(evals)[::-1][:dim]
        pcs = evecs[:, order] * np.sqrt(np.maximum(evals[order], 0.0))
    else:
        evals, evecs = np.linalg.eigh(xc.T @ xc)
        pcs = xc @ evecs[:, np.argsort(evals)[::-1][:dim]]
    if pcs.shape[1] < dim:  # fewer input dimensions than output dimensions
        pcs = np.pad(pcs, ((0, 0), (0, dim - pcs.shape[1])))
    # Fix each component's sign so the largest-magnitude coordinate is positive.
    idx = np.argmax(np.abs(pcs), axis=0)
    pcs = pcs * np.where(pcs[idx, np.arange(dim)] < 0, -1.0, 1.0)
    std = pcs[:, 0].std()
    return pcs / (std if std > 0 else 1.0) * 1e-4


def tsne(x, dim: int = 2, *, perplexity: float = 30.0, metric: str = "euclidean",
         n_iter: int = 1000, early_exaggeration: float = 12.0, exaggeration_iters: int = 250,
         learning_rate: float | None = None, init: str = "pca", seed: int = 0,
         return_kl: bool = False):
    """Exact t-SNE embedding of ``x`` into ``dim`` dimensions.

    Input affinities: Gaussian with a per-point bandwidth matching ``perplexity``;
    output affinities: Student-t (1 degree of freedom). Optimisation as in the
    reference implementation: ``exaggeration_iters`` steps with P multiplied by
    ``early_exaggeration`` and momentum 0.5, then momentum 0.8, adaptive gains.

    Args:
      x: ``[N, D]`` embeddings, ``N >= 4``.
      dim: output dimension, 1 or 2 (any positive integer works).
      perplexity: effective neighbour count; must be below ``N`` (use about
        ``min(30, (N - 1) / 3)`` for small sets).
      metric: ``"euclidean"`` or ``"cosine"`` (rows normalised first).
      n_iter: total gradient steps (> ``exaggeration_iters``).
      early_exaggeration, exaggeration_iters: early exaggeration phase.
      learning_rate: step size; ``None`` uses ``N / early_exaggeration`` (Belkina et
        al. 2019). Larger fixed floors (as in some libraries) make small 1-D
        embeddings overshoot in the first steps and scramble the order of points.
      init: ``"pca"`` (deterministic) or ``"random"`` (Gaussian, std 1e-4, from ``seed``).
      seed: random seed for ``init="random"``.
      return_kl: also return the final KL divergence.
    Returns:
      ``[N, dim]`` float64 coordinates (and the KL divergence if ``return_kl``).
    """
    x = _as_embedding(x, min_points=4)
    if dim < 1:
        raise ValueError(f"dim must be >= 1 (got {dim})")
    if n_iter <= exaggeration_iters:
        raise ValueError(f"n_iter ({n_iter}) must exceed exaggeration_iters ({exaggeration_iters})")
    n = x.shape[0]
    p = joint_probabilities(x, perplexity, metric)
    if init == "pca":
        y0 = _pca_init(normalize_rows(x) if metric == "cosine" else x, dim)
    elif init == "random":
        y0 = np.random.default_rng(seed).normal(0.0, 1e-4, size=(n, dim))
    else:
        raise ValueError(f"init must be 'pca' or 'random' (got {init!r})")
    if learning_rate is None:
        learning_rate = n / early_exaggeration
    # float64: early exaggeration can shrink weakly clustered data below float32
    # resolution, where points become identical and never separate again.
    with jax.enable_x64(True):
        y, kl = _optimize(jnp.asarray(p, jnp.float64), jnp.asarray(y0, jnp.float64),
                          jnp.float64(learning_rate), jnp.float64(early_exaggeration),
                          n_iter=int(n_iter), exaggeration_iters=int(exaggeration_iters))
    y = np.asarray(y, dtype=np.float64)
    return (y, float(kl)) if return_kl else y


# ----------------------------------------------------------------------------
# Rank correlation.
# ----------------------------------------------------------------------------

def rankdata(x) -> np.ndarray:
    """Ranks ``1..N`` of a 1-D array; tied values share their average rank."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"rankdata expects a 1-D array (got shape {x.shape})")
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    # Ranks occupied by a group of tied values: start+1 .. start+count; average them.
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (start + (counts + 1) / 2.0)[inverse.reshape(-1)]


def spearman(x, y) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties).

    Returns:
      the Pearson correlation of the ranks, in [-1, 1]; NaN when either input is
      constant (the correlation is undefined).
    """
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    # A [N, 1] t-SNE output is accepted as the 1-D coordinate it is.
    x, y = (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v for v in (x, y))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"spearman needs two 1-D arrays of equal length "
                         f"(got {np.shape(x)} and {np.shape(y)})")
    if x.size < 2:
        raise ValueError(f"spearman needs at least 2 points (got {x.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("spearman inputs contain non-finite values")
    rx = rankdata(x) - (x.size + 1) / 2.0
    ry = rankdata(y) - (y.size + 1) / 2.0
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float("nan") if denom == 0 else float((rx * ry).sum() / denom)


# ----------------------------------------------------------------------------
# Cluster quality, retrieval, AUC.
# ----------------------------------------------------------------------------

def silhouette_samples(x, labels, metric: str = "euclidean") -> np.ndarray:
    """Silhouette value of every point.

    ``s_i = (b_i - a_i) / max(a_i, b_i)`` with ``a_i`` the mean distance to the other
    members of its cluster and ``b_i`` the smallest mean distance to another
    cluster; ``s_i = 0`` for a point alone in its cluster.

    Args:
      x: ``[N, D]`` embeddings.
      labels: ``[N]`` cluster (style) labels; between 2 and N - 1 distinct values.
      metric: ``"euclidean"`` or ``"cosine"``.
    Returns:
      ``[N]`` values in [-1, 1].
    """
    x = _as_embedding(x)
    labels = _as_labels(labels, x.shape[0], "labels")
    uniq, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(-1)
    if not 2 <= uniq.size <= x.shape[0] - 1:
        raise ValueError(f"silhouette needs 2..N-1 distinct labels (got {uniq.size} for "
                         f"N={x.shape[0]})")
    d = pairwise_distances(x, metric=metric)
    onehot = np.eye(uniq.size)[inv]                      # [N, K]
    counts = onehot.sum(axis=0)                          # [K]
    sums = d @ onehot                                    # [N, K] summed distance to each cluster
    own = counts[inv]
    a = sums[np.arange(x.shape[0]), inv] / np.maximum(own - 1, 1)
    mean_other = sums / counts[None, :]
    mean_other[np.arange(x.shape[0]), inv] = np.inf
    b = mean_other.min(axis=1)
    denom = np.maximum(a, b)
    s = np.where(denom > 0, (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(own > 1, s, 0.0)


def silhouette_score(x, labels, metric: str = "euclidean") -> float:
    """Mean of :func:`silhouette_samples` (1: tight, separated clusters; ~0: overlap)."""
    return float(silhouette_samples(x, labels, metric).mean())


def retrieval_accuracy(x, styles, contents, metric: str = "euclidean", queries=None) -> float:
    """Nearest-neighbour style retrieval across non-matching content.

    For each query image the nearest other image **showing different content** is
    retrieved; it counts as a hit when it has the query's style. Images of the
    query's own content are excluded, so a content-driven embedding cannot score.

    Args:
      x: ``[N, D]`` embeddings (the gallery; queries are drawn from it).
      styles: ``[N]`` style labels.
      contents: ``[N]`` content labels (e.g. phantom seed).
      metric: ``"euclidean"`` or ``"cosine"``.
      queries: optional boolean mask ``[N]`` or index array selecting the queries
        (e.g. the held-out styles); the gallery is always every image.
    Returns:
      fraction of queries whose retrieved image has the same style, in [0, 1].
    """
    x = _as_embedding(x)
    n = x.shape[0]
    styles = _as_labels(styles, n, "styles")
    contents = _as_labels(contents, n, "contents")
    if queries is None:
        q = np.arange(n)
    else:
        queries = np.asarray(queries)
        q = np.flatnonzero(queries) if queries.dtype == bool else queries.astype(int)
        if queries.dtype == bool and queries.shape != (n,):
            raise ValueError(f"queries mask must have shape ({n},) (got {queries.shape})")
    if q.size == 0:
        raise ValueError("retrieval needs at least one query")
    d = pairwise_distances(x[q], x, metric=metric)
    other = contents[None, :] != contents[q][:, None]
    if not np.all(other.any(axis=1)):
        raise ValueError("every query needs at least one image of different content")
    d = np.where(other, d, np.inf)
    nearest = np.argmin(d, axis=1)
    return float(np.mean(styles[nearest] == styles[q]))


def roc_auc(positive, negative) -> float:
    """Area under the ROC curve, ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2``.

    Computed from ranks (Mann-Whitney U), O((n+m) log(n+m)).

    Args:
      positive: scores of the positive class (higher = more positive), 1-D.
      negative: scores of the negative class, 1-D.
    Returns:
      AUC in [0, 1] (0.5 = chance).
    """
    pos = np.asarray(positive, dtype=np.float64).reshape(-1)
    neg = np.asarray(negative, dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"roc_auc needs both classes (got {pos.size} positive, "
                         f"{neg.size} negative scores)")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise ValueError("roc_auc scores contain non-finite values")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def style_content_pairs(styles, contents):
    """Index pairs ``(i < j)`` split into the two content-invariance classes.

    Returns:
      ``(same_style, same_content)``: ``[P, 2]`` pairs with the same style and
      different content, and ``[Q, 2]`` pairs with different style and the same
      content.
    """
    styles = np.asarray(styles)
    contents = np.asarray(contents)
    i, j = np.triu_indices(styles.size, k=1)
    ss = styles[i] == styles[j]
    sc = contents[i] == contents[j]
    return np.stack([i[ss & ~sc], j[ss & ~sc]], 1), np.stack([i[~ss & sc], j[~ss & sc]], 1)


def content_invariance_auc(x, styles, contents, metric: str = "euclidean") -> float:
    """AUC of the embedding distance separating style from content.

    Positives: pairs with the same style and different content; negatives: pairs
    with different styles and the same content. The score is the negative
    distance, so 1.0 means every same-style pair is closer than every
    same-content pair - the distance ignores content and sees style.

    Args:
      x: ``[N, D]`` embeddings; styles, contents: ``[N]`` labels.
      metric: ``"euclidean"`` or ``"cosine"``.
    Returns:
      AUC in [0, 1].
    """
    x = _as_embedding(x)
    styles = _as_labels(styles, x.shape[0], "styles")
    contents = _as_labels(contents, x.shape[0], "contents")
    pos, neg = style_content_pairs(styles, contents)
    d = pairwise_distances(x, metric=metric)
    return roc_auc(-d[pos[:, 0], pos[:, 1]], -d[neg[:, 0], neg[:, 1]])
