"""LAP against an independent numpy implementation, finite differences and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from test_pyramid import ref_laplacian, ref_expand

from stylejax import lap
from stylejax.pipeline import pyramid


def raw_image(shape, seed=0):
    """A smooth positive 'raw' image with structure at several scales."""
    rng = np.random.default_rng(seed)
    field = rng.standard_normal(shape)
    smooth = gaussian_filter(field, sigma=[0] * (len(shape) - 2) + [3, 3]) * 4
    return (1e4 * np.exp(-1.0 - smooth - 0.2 * field)).astype(np.float32)


def ref_process(raw, w, l, h):
    """LAP written from its documentation with numpy/scipy (float64)."""
    x = -np.log(raw.astype(np.float64))
    stride = max(1, min(x.shape[-2:]) // 128)
    sample = x[..., ::stride, ::stride].reshape(*x.shape[:-2], -1)
    lo = np.quantile(sample, 0.01, axis=-1)[..., None, None]
    hi = np.quantile(sample, 0.99, axis=-1)[..., None, None]
    x = (x - lo) / (hi - lo)
    levels = pyramid.default_levels(x.shape)
    bands, residual = ref_laplacian(x, levels)
    n_high = int(np.ceil(levels / 3))
    gh, gl = 2.0 ** ((h - 5) / 2.5), 2.0 ** ((l - 5) / 3.5)
    y = residual
    for k in reversed(range(levels)):
        y = bands[k] * (gh if k < n_high else gl) + ref_expand(y, bands[k].shape[-2:])
    width = 0.6 * 2.0 ** ((5 - w) / 3.5)
    return 0.5 + 0.5 * np.tanh((y - 0.5) / width)


@pytest.mark.parametrize("params", [(5, 5, 5), (0, 10, 3), (10, 0, 10), (7.3, 2.2, 0)])
def test_matches_numpy_reference(params):
    raw = raw_image((48, 61) if params != (5, 5, 5) else (270, 300))
    got = np.asarray(lap.process(raw, lap.LAPParams(*map(float, params))))
    want = ref_process(raw, *params)
    assert got.shape == raw.shape and got.dtype == np.float32
    assert got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_batch_dims_jit_and_vmap_over_images_and_params():
    raws = raw_image((2, 3, 32, 32), seed=1)
    p = lap.LAPParams(3.0, 6.0, 8.0)
    batched = np.asarray(jax.jit(lap.process_normalized)(lap.normalize_log(raws), p))
    single = np.stack([[np.asarray(lap.process(r, p)) for r in row] for row in raws])
    np.testing.assert_allclose(batched, single, atol=1e-6)

    grid = lap.LAPParams.from_array(jnp.asarray(lap.lap_grid((0, 10))))  # 8 styles
    styled = jax.vmap(lambda q: lap.process_normalized(lap.normalize_log(raws[0, 0]), q))(grid)
    assert styled.shape == (8, 32, 32)
    np.testing.assert_allclose(np.asarray(styled[5]),
                               ref_process(raws[0, 0], *lap.lap_grid((0, 10))[5]), atol=2e-5)
    # A per-image parameter array styles each image of a batch separately.
    per_image = lap.process(raws[0], lap.LAPParams(jnp.array([0.0, 5.0, 10.0]), 5.0, 5.0))
    for i, w in enumerate((0.0, 5.0, 10.0)):
        np.testing.assert_allclose(np.asarray(per_image[i]), ref_process(raws[0, i], w, 5, 5),
                                   atol=2e-5)


@jax.jit
def loss(params_array, x, target):
    out = lap.process_normalized(x, lap.LAPParams.from_array(params_array))
    return jnp.mean((out - target) ** 2)


@pytest.mark.parametrize("point", [(0.0, 0.0, 0.0), (10.0, 10.0, 10.0), (0.0, 10.0, 5.0),
                                   (6.5, 3.5, 9.0)])
def test_param_gradient_matches_finite_differences(point):
    raw = raw_image((40, 40), seed=2)
    x = lap.normalize_log(raw)
    target = jnp.asarray(ref_process(raw, 5.0, 5.0, 5.0) * 0.9, jnp.float32)
    p = np.asarray(point, np.float64)
    grad = np.asarray(jax.grad(loss)(jnp.asarray(p, jnp.float32), x, target))
    eps = 1e-3
    fd = []
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps
        hi = ref_loss(raw, p + e, target)
        lo = ref_loss(raw, p - e, target)
        fd.append((hi - lo) / (2 * eps))
    np.testing.assert_allclose(grad, fd, rtol=2e-2, atol=1e-7)
    # Informative everywhere: no parameter's gradient vanishes, even at the corners.
    assert np.all(np.abs(grad) > 1e-6)


def ref_loss(raw, p, target):
    return np.mean((ref_process(raw, *p) - np.asarray(target, np.float64)) ** 2)


def test_raw_gradient_matches_finite_differences():
    raw = raw_image((32, 32), seed=3).astype(np.float64)
    p = lap.LAPParams(4.0, 7.0, 8.0)
    weights = np.random.default_rng(4).standard_normal(raw.shape)

    def f(r):
        return jnp.sum(lap.process_normalized(lap.normalize_log(r), p) * weights)

    grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(raw, jnp.float32)), np.float64)
    direction = np.zeros_like(raw)
    direction[10:20, 12:22] = raw[10:20, 12:22]  # relative perturbation of a patch
    eps = 1e-3
    fd = (np.sum(ref_process(raw + eps * direction, 4, 7, 8) * weights)
          - np.sum(ref_process(raw - eps * direction, 4, 7, 8) * weights)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=2e-2)


def test_parameters_do_what_they_say():
    raw = raw_image((64, 64), seed=5)

    def high_energy(img):
        return np.mean(np.abs(img - ref_expand(img[::2, ::2], img.shape)))

    def out(**kw):
        return np.asarray(lap.process(raw, lap.LAPParams(**{"w": 5.0, "l": 5.0, "h": 5.0, **kw})))

    assert high_energy(out(h=10.0)) > 1.5 * high_energy(out(h=0.0))
    assert np.std(out(w=10.0)) > 1.3 * np.std(out(w=0.0))
    assert np.std(out(l=10.0)) > np.std(out(l=0.0))


@pytest.mark.parametrize("bad,match", [
    (np.full((32, 32), np.nan, np.float32), "non-finite"),
    (-np.ones((32, 32), np.float32), "positive"),
    (np.ones(32, np.float32), "rank"),
    (np.ones((8, 8), np.float32), "too small"),
    (np.ones((0, 32), np.float32), "empty"),
])
def test_bad_raw(bad, match):
    with pytest.raises(ValueError, match=match):
        lap.process(bad, lap.LAPParams())


def test_bad_params():
    raw = raw_image((32, 32))
    with pytest.raises(ValueError, match="LAP parameter h"):
        lap.process(raw, lap.LAPParams(5.0, 5.0, 10.5))
    with pytest.raises(ValueError, match="LAP parameter w"):
        lap.process(raw, lap.LAPParams(float("nan"), 5.0, 5.0))
    with pytest.raises(ValueError, match="LAPParams"):
        lap.process(raw, (5.0, 5.0, 5.0))
