"""Contextual loss against a float64 numpy transcription of the published formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.losses.contextual import contextual_loss, contextual_similarity


def numpy_contextual(x, y, h=0.5):
    """Mechrez / CT paper Eq. 5-10 for one sample: x [N, C] sources, y [M, C] targets."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu = y.mean(axis=0)
    xs, ys = x - mu, y - mu
    xs /= np.linalg.norm(xs, axis=1, keepdims=True)
    ys /= np.linalg.norm(ys, axis=1, keepdims=True)
    out = np.empty((len(xs), len(ys)))
    for i in range(len(xs)):
        d = np.array([1.0 - xs[i] @ ys[j] for j in range(len(ys))])
        d_rel = d / (d.min() + 1e-5)
        w = np.exp((1.0 - d_rel) / h)
        out[i] = w / w.sum()
    cx = out.max(axis=0).mean()
    return -np.log(cx)


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 8)).astype(np.float32)
    y = (0.6 * x + 0.8 * rng.standard_normal((2, 5, 6, 8))).astype(np.float32)
    return x, y


def test_matches_numpy_transcription(feats):
    x, y = feats
    got = np.asarray(contextual_loss(jnp.asarray(x), jnp.asarray(y), band_width=0.5))
    ref = [numpy_contextual(x[b].reshape(-1, 8), y[b].reshape(-1, 8)) for b in range(2)]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert got.shape == (2,) and np.all(got > 0)


def test_other_band_width_and_unequal_position_counts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 5, 3)).astype(np.float32)
    y = rng.standard_normal((1, 7, 3, 3)).astype(np.float32)
    got = float(contextual_loss(x, y, band_width=0.2)[0])
    ref = numpy_contextual(x[0].reshape(-1, 3), y[0].reshape(-1, 3), h=0.2)
    assert abs(got - ref) < 1e-4 * max(1, ref)
    cx = float(contextual_similarity(x, y, band_width=0.2)[0])
    assert 1 / 21 <= cx <= 1 and abs(-np.log(cx) - got) < 1e-6


@pytest.mark.parametrize("tile", [1, 7, 30])
def test_tiled_equals_dense(feats, tile):
    x, y = feats
    dense = contextual_loss(x, y, tile=10_000)
    tiled = contextual_loss(x, y, tile=tile)
    np.testing.assert_allclose(tiled, dense, rtol=2e-6, atol=1e-7)


def test_tiled_gradient_equals_dense_gradient_and_finite_differences(feats):
    x, y = (jnp.asarray(a[:1]) for a in feats)
    f_dense = lambda a, b: contextual_loss(a, b, tile=10_000).sum()
    f_tiled = lambda a, b: contextual_loss(a, b, tile=8).sum()
    gd = jax.grad(f_dense, argnums=(0, 1))(x, y)
    gt = jax.grad(f_tiled, argnums=(0, 1))(x, y)
    for a, b in zip(gd, gt):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Directional derivative against a central difference of the float64 reference.
    v = np.random.default_rng(2).standard_normal(x.shape)
    eps = 1e-4
    xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
    fd = (numpy_contextual((xn + eps * v)[0].reshape(-1, 8), yn[0].reshape(-1, 8))
          - numpy_contextual((xn - eps * v)[0].reshape(-1, 8), yn[0].reshape(-1, 8))) / (2 * eps)
    assert abs(float(np.sum(np.asarray(gd[0]) * v)) - fd) < 0.02 * abs(fd) + 1e-4


def test_identical_inputs_give_zero_and_broadcast_target(feats):
    x, _ = feats
    same = contextual_loss(x, x)
    np.testing.assert_allclose(same, 0.0, atol=1e-4)
    one = contextual_loss(x, x[:1])          # y batch 1 broadcasts
    assert float(one[0]) < 1e-4 and float(one[1]) > 0.1


def test_subsampling_uses_a_key_and_matches_the_subset():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    y = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    key = jax.random.key(0)
    got = contextual_loss(x, y, max_positions=20, key=key)
    idx = np.asarray(jax.random.choice(jax.random.split(key)[0], 64, (20,), replace=False))
    ref = numpy_contextual(x[0].reshape(-1, 4)[idx], y[0].reshape(-1, 4)[idx])
    assert abs(float(got[0]) - ref) < 1e-4
    np.testing.assert_allclose(contextual_loss(x, x, max_positions=20, key=key), 0, atol=1e-4)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        contextual_loss(x, y, max_positions=20)
    full = contextual_loss(x, y, max_positions=64)           # nothing to drop: no key needed
    np.testing.assert_allclose(full, contextual_loss(x, y), rtol=1e-6)


def test_works_under_jit(feats):
    x, y = feats
    jitted = jax.jit(lambda a, b: contextual_loss(a, b, tile=9))
    np.testing.assert_allclose(jitted(x, y), contextual_loss(x, y), rtol=1e-5)


@pytest.mark.parametrize("x_shape, y_shape, kwargs, match", [
    ((2, 4, 4), (2, 4, 4, 3), {}, r"x must be feature maps \[B, H, W, C\]"),
    ((2, 4, 4, 3), (2, 4, 4, 5), {}, "channel counts differ"),
    ((2, 4, 4, 3), (3, 4, 4, 3), {}, "batch"),
    ((2, 4, 4, 3), (2, 4, 4, 3), {"band_width": 0.0}, "band_width"),
    ((2, 4, 4, 3), (2, 4, 4, 3), {"tile": 0}, "tile"),
    ((2, 4, 4, 3), (2, 4, 4, 3), {"max_positions": -1}, "max_positions"),
    ((2, 0, 4, 3), (2, 4, 4, 3), {}, "empty"),
])
def test_bad_input(x_shape, y_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        contextual_loss(np.ones(x_shape, np.float32), np.ones(y_shape, np.float32), **kwargs)


def test_non_finite_input():
    x = np.ones((1, 3, 3, 2), np.float32)
    x[0, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="x contains non-finite"):
        contextual_loss(x, np.ones((1, 3, 3, 2), np.float32))
