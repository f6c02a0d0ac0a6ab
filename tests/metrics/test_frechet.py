"""Frechet distance: scipy sqrtm reference, closed forms, properties, any extractor."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from stylejax.metrics import frechet


def _scipy_reference(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(sa @ sb)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa + sb - 2 * np.real(root)))


def _with_exact_moments(rng, n, mean, cov):
    """Samples whose sample mean and (unbiased) covariance are exactly ``mean`` / ``cov``."""
    d = len(mean)
    x = rng.standard_normal((n, d))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T   # sample cov = I
    return x @ np.linalg.cholesky(cov).T + mean


def test_matches_scipy_sqrtm_on_random_gaussians():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        a = rng.standard_normal((200, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)
        b = rng.standard_normal((150, d)) @ rng.standard_normal((d, d)) * 0.5 + 1.0
        assert frechet.frechet_distance(a, b) == pytest.approx(_scipy_reference(a, b),
                                                               rel=1e-8, abs=1e-10)


def test_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    a = _with_exact_moments(rng, 60, mu1, np.diag(s1))
    b = _with_exact_moments(rng, 90, mu2, np.diag(s2))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # Same covariance (any, not diagonal): only the means remain.
    cov = np.array([[2.0, 0.7, 0.1], [0.7, 1.0, -0.3], [0.1, -0.3, 0.5]])
    a = _with_exact_moments(rng, 40, np.zeros(3), cov)
    b = _with_exact_moments(rng, 50, np.array([1.0, -1.0, 2.0]), cov)
    assert frechet.frechet_distance(a, b) == pytest.approx(6.0, rel=1e-9)


def test_symmetric_zero_for_identical_and_singular_ok():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((40, 5)) * 2
    assert frechet.frechet_distance(a, b) == pytest.approx(frechet.frechet_distance(b, a),
                                                           rel=1e-10)
    assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)
    # Fewer samples than dimensions: singular covariances, still finite and >= 0,
    # and equal to the scipy reference.
    a, b = rng.standard_normal((6, 20)), rng.standard_normal((8, 20)) + 0.3
    d = frechet.frechet_distance(a, b)
    assert np.isfinite(d) and d >= 0
    assert d == pytest.approx(_scipy_reference(a, b), rel=1e-5)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2"),
    (np.zeros((5, 3)), np.zeros((5, 4)), "dimensions differ"),
    (np.full((5, 3), np.nan), np.zeros((5, 3)), "non-finite"),
    (np.zeros(5), np.zeros((5, 1)), r"\[N, D\]"),
    (np.zeros((5, 3), bool), np.zeros((5, 3)), "real"),
])
def test_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet.frechet_distance(a, b)


class _Tiny(nnx.Module):
    """A fixed extractor: 'low' = [x, x^2] maps, 'high' = 2x2-pooled |gradient| maps."""

    content_taps = ("low", "high")

    def __call__(self, images, taps):
        x = jnp.asarray(images)[..., None]
        low = jnp.concatenate([x, x ** 2], -1)
        gy = jnp.abs(jnp.diff(x, axis=1))[:, :, :-1]
        gx = jnp.abs(jnp.diff(x, axis=2))[:, :-1]
        g = jnp.concatenate([gy, gx], -1)
        h, w = g.shape[1] // 2 * 2, g.shape[2] // 2 * 2
        high = g[:, :h:2, :w:2]
        feats = {"low": low, "high": high}
        return {t: feats[t] for t in taps}


def test_frechet_on_an_extractor_pools_then_measures():
    rng = np.random.default_rng(3)
    a = rng.random((7, 12, 10)).astype(np.float32)
    b = (rng.random((5, 14, 12)) ** 2).astype(np.float32)
    net = _Tiny()

    def pooled(x, tap):
        return np.asarray(net(x, (tap,))[tap]).mean(axis=(1, 2))

    # Default tap: the deepest content tap ("high").
    expected = frechet.frechet_distance(pooled(a, "high"), pooled(b, "high"))
    assert frechet.frechet_distance_on(net, a, b, batch=3) == pytest.approx(expected, rel=1e-6)
    # Several taps: pooled features concatenated; a plain function extractor works too.
    both = frechet.frechet_distance(np.hstack([pooled(a, "low"), pooled(a, "high")]),
                                    np.hstack([pooled(b, "low"), pooled(b, "high")]))
    fn = lambda x, taps: net(x, taps)  # noqa: E731
    assert frechet.frechet_distance_on(fn, a, b, tap=("low", "high"), batch=4) == \
        pytest.approx(both, rel=1e-6)
    # An extractor returning [N, C] embeddings is used as is.
    embed = lambda x, taps: {"e": jnp.stack([x.mean((1, 2)), x.std((1, 2))], -1)}  # noqa: E731
    expected = frechet.frechet_distance(np.stack([a.mean((1, 2)), a.std((1, 2))], -1),
                                        np.stack([b.mean((1, 2)), b.std((1, 2))], -1))
    assert frechet.frechet_distance_on(embed, a, b, tap="e") == pytest.approx(expected, rel=1e-5)
    assert frechet.frechet_distance_on(net, a, a, tap="low") == pytest.approx(0.0, abs=1e-9)


def test_frechet_on_bad_input():
    net = _Tiny()
    good = np.zeros((3, 12, 12), np.float32)
    with pytest.raises(ValueError, match="at least 2"):
        frechet.frechet_distance_on(net, good[:1], good)
    with pytest.raises(ValueError, match="non-finite"):
        frechet.frechet_distance_on(net, np.full((3, 12, 12), np.nan), good)
    with pytest.raises(ValueError, match="images"):
        frechet.frechet_distance_on(net, np.zeros((12, 12)), good)
    with pytest.raises(ValueError, match="content_taps"):
        frechet.frechet_distance_on(lambda x, t: {}, good, good)
    with pytest.raises(ValueError, match="no 'mid' features"):
        frechet.frechet_distance_on(lambda x, t: {"low": x[..., None]}, good, good, tap="mid")
    with pytest.raises(ValueError, match="batch"):
        frechet.frechet_distance_on(net, good, good, batch=0)
