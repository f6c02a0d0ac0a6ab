"""Tests for stylejax.metrics.embedding against independent references."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from stylejax.metrics import embedding as E


def _blobs(n_per=20, k=4, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, size=(k, dim))
    x = np.concatenate([c + rng.normal(0.0, spread, size=(n_per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), n_per)


def _silhouette_loop(x, labels, dist):
    """Textbook double loop (Rousseeuw 1987)."""
    n = len(x)
    out = np.zeros(n)
    for i in range(n):
        own = [j for j in range(n) if labels[j] == labels[i] and j != i]
        if not own:
            continue
        a = np.mean([dist(x[i], x[j]) for j in own])
        b = min(np.mean([dist(x[i], x[j]) for j in range(n) if labels[j] == other])
                for other in set(labels) if other != labels[i])
        out[i] = (b - a) / max(a, b)
    return out


def test_pairwise_distances_match_direct_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    eu = E.pairwise_distances(a, b)
    cos = E.pairwise_distances(a, b, metric="cosine")
    for i, j in itertools.product(range(5), range(4)):
        assert eu[i, j] == pytest.approx(np.sqrt(np.sum((a[i] - b[j]) ** 2)), rel=1e-9)
        c = a[i] @ b[j] / np.linalg.norm(a[i]) / np.linalg.norm(b[j])
        assert cos[i, j] == pytest.approx(1.0 - c, abs=1e-12)
    with pytest.raises(ValueError, match="metric"):
        E.pairwise_distances(a, metric="manhattan")


def test_conditional_probabilities_reach_the_perplexity():
    x, _ = _blobs(n_per=10, k=3)
    sq = E.pairwise_distances(x) ** 2
    p = E.conditional_probabilities(sq, perplexity=7.0)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.all(np.diag(p) == 0)
    for row in p:
        q = row[row > 0]
        entropy = -np.sum(q * np.log(q))
        assert math.exp(entropy) == pytest.approx(7.0, rel=1e-3)
    with pytest.raises(ValueError, match="perplexity"):
        E.conditional_probabilities(sq, perplexity=30.0)


def test_tsne_gradient_matches_finite_differences_of_kl():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4))
    p = E.joint_probabilities(x, perplexity=3.0)
    y = rng.normal(size=(9, 2))

    def kl(yy):  # independent float64 numpy formula
        d2 = np.sum((yy[:, None] - yy[None]) ** 2, -1)
        num = 1.0 / (1.0 + d2)
        np.fill_diagonal(num, 0.0)
        q = num / num.sum()
        mask = ~np.eye(len(yy), dtype=bool)
        return np.sum(p[mask] * np.log(p[mask] / q[mask]))

    import jax
    with jax.enable_x64(True):
        value, grad = E.tsne_kl_and_grad(np.asarray(p), np.asarray(y))
    assert float(value) == pytest.approx(kl(y), rel=1e-9)
    eps = 1e-6
    numeric = np.zeros_like(y)
    for idx in np.ndindex(*y.shape):
        dy = np.zeros_like(y)
        dy[idx] = eps
        numeric[idx] = (kl(y + dy) - kl(y - dy)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dim", [1, 2])
def test_tsne_separates_clusters(dim):
    x, labels = _blobs(n_per=15, k=4, dim=16)
    y = E.tsne(x, dim, perplexity=10.0, n_iter=400)
    assert y.shape == (60, dim)
    assert E.silhouette_score(y, labels) > 0.7
    np.testing.assert_array_equal(y, E.tsne(x, dim, perplexity=10.0, n_iter=400))


def test_tsne_cosine_ignores_scale():
    x, labels = _blobs(n_per=10, k=3, dim=6)
    scaled = x * np.random.default_rng(3).uniform(0.5, 5.0, size=(len(x), 1))
    y = E.tsne(scaled, 2, perplexity=8.0, n_iter=600, metric="cosine")
    assert E.silhouette_score(y, labels) > 0.7


def test_tsne_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        E.tsne(np.full((10, 3), np.nan), 2, perplexity=3.0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        E.tsne(np.zeros(10), 2)
    with pytest.raises(ValueError, match="init"):
        E.tsne(np.random.default_rng(0).normal(size=(10, 3)), 2, perplexity=3.0, init="spectral")


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(5):
        a = rng.integers(0, 6, size=40).astype(float)
        b = a + rng.integers(0, 4, size=40)
        expected = scipy.stats.spearmanr(a, b).statistic
        assert E.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert E.spearman(np.arange(5), np.arange(5)[::-1]) == pytest.approx(-1.0)
    assert math.isnan(E.spearman(np.ones(5), np.arange(5)))
    with pytest.raises(ValueError, match="equal length"):
        E.spearman(np.arange(5), np.arange(4))


def test_rankdata_matches_scipy():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 0.5])
    np.testing.assert_allclose(E.rankdata(x), scipy.stats.rankdata(x))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_silhouette_matches_double_loop(metric):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(13, 3))
    labels = np.array([0] * 5 + [1] * 4 + [2] * 3 + [3])  # a singleton cluster too
    if metric == "euclidean":
        dist = lambda u, v: np.linalg.norm(u - v)  # noqa: E731
    else:
        dist = lambda u, v: 1 - u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    ref = _silhouette_loop(x, labels, dist)
    np.testing.assert_allclose(E.silhouette_samples(x, labels, metric), ref, atol=1e-10)
    assert E.silhouette_score(x, labels, metric) == pytest.approx(ref.mean(), abs=1e-10)
    with pytest.raises(ValueError, match="distinct labels"):
        E.silhouette_score(x, np.zeros(13))


def test_retrieval_excludes_matching_content():
    # Content dominates the raw features; style is a small offset on axis 1.
    contents = np.repeat(np.arange(3), 2)
    styles = np.tile(np.arange(2), 3)
    x = np.stack([contents * 10.0, styles * 0.1], 1)
    # The nearest image overall shares the content (wrong style); across other
    # content the nearest of the same style is 10 away vs 10.0005 for the other style.
    assert E.retrieval_accuracy(x, styles, contents) == 1.0
    content_only = np.stack([contents * 10.0, np.zeros(6)], 1)
    x_bad = content_only + np.array([[0, 0.0], [0, 0.1], [0, 0.1], [0, 0.0], [0, 0.0], [0, 0.1]])
    acc = E.retrieval_accuracy(x_bad, styles, contents)
    # brute force
    hits = []
    for i in range(6):
        cand = [j for j in range(6) if contents[j] != contents[i]]
        j = min(cand, key=lambda j: np.linalg.norm(x_bad[i] - x_bad[j]))
        hits.append(styles[j] == styles[i])
    assert acc == pytest.approx(np.mean(hits))
    assert acc < 1.0
    held = styles == 1
    assert E.retrieval_accuracy(x, styles, contents, queries=held) == 1.0
    with pytest.raises(ValueError, match="different content"):
        E.retrieval_accuracy(x, styles, np.zeros(6))


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(6)
    pos = rng.integers(0, 10, size=25).astype(float)
    neg = rng.integers(0, 8, size=17).astype(float)
    brute = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert E.roc_auc(pos, neg) == pytest.approx(brute, abs=1e-12)
    assert E.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert E.roc_auc([0.0], [1.0]) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        E.roc_auc([], [1.0])


def test_content_invariance_auc():
    contents = np.repeat(np.arange(4), 3)
    styles = np.tile(np.arange(3), 4)
    style_driven = np.stack([styles * 5.0, contents * 0.1], 1)
    content_driven = np.stack([styles * 0.1, contents * 5.0], 1)
    assert E.content_invariance_auc(style_driven, styles, contents) == 1.0
    assert E.content_invariance_auc(content_driven, styles, contents) == 0.0
    same_style, same_content = E.style_content_pairs(styles, contents)
    assert len(same_style) == 3 * 6 and len(same_content) == 4 * 3


def test_paired_distances_and_pca_init():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    full = E.pairwise_distances(a, b, metric="cosine")
    np.testing.assert_allclose(E.paired_distances(a, b, "cosine"), np.diag(full), atol=1e-12)
    np.testing.assert_allclose(E.paired_distances(a, b), np.linalg.norm(a - b, axis=1))
    # PCA initialisation spans the same axis whichever Gram matrix is decomposed.
    x = rng.normal(size=(8, 3)) * np.array([5.0, 1.0, 0.2])
    wide = np.concatenate([x, np.zeros((8, 20))], 1)  # N < D route
    for y in (E._pca_init(x, 1), E._pca_init(wide, 1)):
        _, _, vt = np.linalg.svd(x - x.mean(0))
        ref = (x - x.mean(0)) @ vt[0]
        assert abs(np.corrcoef(y[:, 0], ref)[0, 1]) == pytest.approx(1.0, abs=1e-9)
        assert y[:, 0].std() == pytest.approx(1e-4)
