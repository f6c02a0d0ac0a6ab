"""The style projection's math: Fisher LDA against scipy's generalized eigensolver.
(Fitting a model's projection on its training styles: tests/train/test_projection.py.)"""

import numpy as np
import pytest
import scipy.linalg

from stylejax.metrics import style_projection as P


def _styled_cloud(seed=0, styles=6, per_style=40, dim=8):
    """Style means in a random subspace plus anisotropic content noise."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(styles, dim)) * 2.0
    mix = rng.normal(size=(dim, dim)) * np.linspace(0.2, 3.0, dim)
    z = np.concatenate([m + rng.normal(size=(per_style, dim)) @ mix for m in means])
    return z, np.repeat(np.arange(styles), per_style)


def test_fit_lda_matches_generalized_eigenproblem():
    z, labels = _styled_cloud()
    shrinkage = 1e-3
    mean, matrix = P.fit_lda(z, labels, dims=3, shrinkage=shrinkage)
    assert mean.shape == (8,) and matrix.shape == (8, 3)
    np.testing.assert_allclose(mean, z.mean(0), rtol=1e-5)
    # Reference: Sb v = lambda Sw v with scipy (per-style means counted once).
    classes = np.unique(labels)
    mu = np.stack([z[labels == c].mean(0) for c in classes])
    sw = sum((z[labels == c] - mu[i]).T @ (z[labels == c] - mu[i])
             for i, c in enumerate(classes)) / len(z)
    sw = sw + shrinkage * np.trace(sw) / 8 * np.eye(8)
    sb = np.cov((mu - z.mean(0)).T, bias=True) + np.outer(mu.mean(0) - z.mean(0),
                                                          mu.mean(0) - z.mean(0))
    values, vectors = scipy.linalg.eigh(sb, sw)
    ref = vectors[:, ::-1][:, :3]
    # Same directions (up to sign; eigenvalues are distinct here) and scaling: both
    # are Sw-orthonormal.
    np.testing.assert_allclose(matrix.T @ sw @ matrix, np.eye(3), atol=1e-4)
    cos = np.abs(np.sum(matrix * ref, 0)) / np.linalg.norm(matrix, axis=0) / np.linalg.norm(
        ref, axis=0)
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    # Ordered by decreasing between-style variance.
    between = np.diag(matrix.T @ sb @ matrix)
    np.testing.assert_allclose(between, values[::-1][:3], rtol=1e-4)


def test_fit_lda_separates_styles_across_content():
    z, labels = _styled_cloud(seed=1, styles=5, per_style=30, dim=10)
    mean, matrix = P.fit_lda(z, labels, dims=4)
    test, test_labels = _styled_cloud(seed=1, styles=5, per_style=30, dim=10)

    def nn_accuracy(x):  # leave-one-out nearest neighbour by cosine
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.mean(test_labels[np.argmax(s, 1)] == test_labels)

    assert nn_accuracy((test - mean) @ matrix) > nn_accuracy(test - mean) + 0.1
    # dims beyond styles - 1 are cut.
    assert P.fit_lda(z, labels, dims=50)[1].shape == (10, 4)


def test_fit_lda_errors():
    z, labels = _styled_cloud()
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        P.fit_lda(z[0], labels)
    with pytest.raises(ValueError, match="NaN"):
        P.fit_lda(np.where(z > 3, np.nan, z), labels)
    with pytest.raises(ValueError, match="at least 2 styles"):
        P.fit_lda(z, np.zeros(len(z)))
    with pytest.raises(ValueError, match="shrinkage"):
        P.fit_lda(z, labels, shrinkage=0.0)
