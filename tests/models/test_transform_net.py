"""Johnson transform network: layers against numpy/scipy, noise injection, average style."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from flax import nnx

from stylejax.models import transform_net as tn

# Equal widths keep the number of distinct parameter shapes (one compilation each) small.
SMALL = dict(widths=(4, 4, 4), num_residual=1)


def _net(noise=True, seed=0):
    return tn.TransformNet(**SMALL, noise=noise, rngs=nnx.Rngs(seed))


@nnx.jit
def _run(net, x, key):
    return net(x, key=key)


@nnx.jit
def _run_plain(net, x):
    return net(x)


@nnx.jit
def _apply_layer(layer, x):
    return layer(x)


@nnx.jit(static_argnums=2)
def _apply_upsampled(layer, x, size):
    return layer.upsampled(x, size)


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).random((n, h, w)).astype(np.float32)


# One odd shape shared by the tests below, so the jitted programs compile once each.
ODD = (1, 37, 21)


def test_any_size_comes_back_at_its_size():
    y = _run_plain(_net(), _images(*ODD))
    assert y.shape == ODD and y.dtype == jnp.float32
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0      # sigmoid output
    # A network without noise layers: 100x100 -> 100x100, and the key is ignored.
    plain, x = _net(noise=False), _images(1, 100, 100)
    a, b = _run(plain, x, jax.random.key(0)), _run(plain, x, jax.random.key(1))
    assert a.shape == (1, 100, 100)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gemm_and_xla_convolutions_give_the_same_network():
    net, x = _net(), _images(*ODD)
    expected = np.asarray(_run_plain(net, x))
    for _, layer in nnx.iter_graph(net):
        if isinstance(layer, tn.ConvLayer):
            layer.method = "gemm"
    assert net.up2.uses_gemm and net.residual[0].conv1.uses_gemm
    np.testing.assert_allclose(np.asarray(_run_plain(net, x)), expected, rtol=0, atol=2e-5)


def test_parameter_count_matches_the_architecture():
    net = nnx.eval_shape(lambda: tn.TransformNet(rngs=nnx.Rngs(0)))
    w1, w2, w3 = tn.DEFAULT_WIDTHS
    convs = (81 * 1 * w1 + 9 * w1 * w2 + 9 * w2 * w3 + 5 * 2 * 9 * w3 * w3
             + 9 * w3 * w2 + 9 * w2 * w1 + 81 * w1 * 1 + 1)
    norms = 2 * (w1 + w2 + w3 + 5 * 2 * w3 + w2 + w1)
    noise = w2 + w1 + 1
    assert tn.parameter_count(net) == convs + norms + noise
    plain = nnx.eval_shape(lambda: tn.TransformNet(noise=False, rngs=nnx.Rngs(0)))
    assert tn.parameter_count(plain) == convs + norms


def _reference_conv(x, kernel, stride):
    """numpy.pad(reflect) + scipy correlate2d per channel pair, then striding."""
    k = kernel.shape[0]
    xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="reflect")
    n, cin, cout = x.shape[0], kernel.shape[2], kernel.shape[3]
    out = np.stack([np.stack([
        sum(scipy.signal.correlate2d(xp[b, :, :, i], kernel[:, :, i, o], mode="valid")
            for i in range(cin)) for o in range(cout)], -1) for b in range(n)])
    return out[:, ::stride, ::stride]


def _layer(cin, cout, k, *, stride=1, use_bias=False, method="auto", seed=0):
    """A ConvLayer with a numpy-drawn kernel (abstract init: no compilation)."""
    layer = nnx.eval_shape(lambda: tn.ConvLayer(cin, cout, k, stride=stride, use_bias=use_bias,
                                                method=method, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    layer.kernel = nnx.Param(jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.3,
                                         jnp.float32))
    if use_bias:
        layer.bias = nnx.Param(jnp.asarray(rng.standard_normal(cout), jnp.float32))
    return layer


@pytest.mark.parametrize("kernel, stride, size, cin, cout", [
    (9, 1, (13, 10), 2, 3), (9, 1, (12, 9), 3, 1), (3, 2, (11, 8), 3, 2)])
def test_reflect_padded_conv_matches_numpy(kernel, stride, size, cin, cout):
    x = np.random.default_rng(2).standard_normal((2, *size, cin)).astype(np.float32)
    for method in ("xla", "gemm"):
        layer = _layer(cin, cout, kernel, stride=stride, method=method)
        expected = _reference_conv(x.astype(np.float64),
                                   np.asarray(layer.kernel[...], np.float64), stride)
        got = _apply_layer(layer, jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=method)
    auto = _layer(16, cout, 3, stride=stride)
    assert auto.uses_gemm == (stride == 1)          # the CPU rule (tests run on CPU)
    np.testing.assert_array_equal(np.asarray(tn.reflect_pad(jnp.asarray(x), 2)),
                                  np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect"))


@pytest.mark.parametrize("low, size", [((5, 4), (10, 8)), ((5, 4), (9, 7))])
def test_upsample_conv_matches_upsample_then_conv(low, size):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *low, 3))
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    for method in ("xla", "gemm"):
        layer = _layer(3, 2, 3, use_bias=True, method=method)
        expected = _reference_conv(up, np.asarray(layer.kernel[...], np.float64), 1)
        expected = expected[:, : size[0], : size[1]] + np.asarray(layer.bias[...])
        got = _apply_upsampled(layer, jnp.asarray(x, jnp.float32), size)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=method)


def test_gemm_layers_have_the_xla_gradients():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((1, 9, 8, 3)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((1, 18, 16, 2)), jnp.float32)
    grads = {}
    for method in ("xla", "gemm"):
        graphdef, params = nnx.split(_layer(3, 2, 3, method=method))

        @jax.jit
        def loss(params, x, graphdef=graphdef):
            layer = nnx.merge(graphdef, params)
            return jnp.sum(layer(x) * probe[:, :9, :8]) + jnp.sum(
                layer.upsampled(x, (17, 16)) * probe[:, :17])

        g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
        grads[method] = (g_params["kernel"][...], g_x)
    for a, b in zip(grads["xla"], grads["gemm"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_instance_norm_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 7, 3)) * 4 + 2
    scale, bias = rng.standard_normal(3), rng.standard_normal(3)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    got = tn.instance_norm(jnp.asarray(x, jnp.float32), jnp.asarray(scale, jnp.float32),
                           jnp.asarray(bias, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_upsample_is_nearest_and_cropped():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    full = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(np.asarray(tn.upsample2(jnp.asarray(x), (5, 7))),
                                  full[:, :5, :7])


def test_noise_scale_zero_init_then_active():
    net = _net()
    x = _images(*ODD)
    key = jax.random.key(0)
    for layer in (net.noise1, net.noise2, net.noise3):
        np.testing.assert_array_equal(np.asarray(layer.scale[...]), 0.0)
    plain_out = np.asarray(_run_plain(net, x))
    # Zero scales: the same program with different noise gives identical outputs, and
    # (up to float reassociation in another compiled program) the noise-free output.
    np.testing.assert_array_equal(np.asarray(_run(net, x, key)),
                                  np.asarray(_run(net, x, jax.random.key(7))))
    np.testing.assert_allclose(np.asarray(_run(net, x, key)), plain_out, rtol=0, atol=1e-6)
    for layer in (net.noise1, net.noise2, net.noise3):
        layer.scale[...] = jnp.full(layer.scale.shape, 0.5)
    a, b = _run(net, x, key), _run(net, x, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(_run_plain(net, x)), plain_out)  # key=None
    assert float(jnp.abs(a - plain_out).max()) > 1e-3        # noise now changes the output
    assert float(jnp.abs(a - b).max()) > 1e-3                # and depends on the key
    np.testing.assert_array_equal(np.asarray(a), np.asarray(_run(net, x, key)))  # reproducible


def test_gradient_reaches_the_noise_scales():
    net = _net()
    x = jnp.asarray(_images(*ODD))
    graphdef, params = nnx.split(net, nnx.Param)

    def loss(p, key):
        return jnp.mean(jnp.square(nnx.merge(graphdef, p)(x, key=key) - 0.3))

    value_and_grad = jax.jit(jax.value_and_grad(loss))   # one compilation for all below
    key = jax.random.key(0)
    _, grads = value_and_grad(params, key)
    for name in ("noise1", "noise2", "noise3"):
        assert float(jnp.abs(grads[name]["scale"][...]).max()) > 0.0, name
    # Central finite difference on one noise scale entry.
    g = float(grads["noise2"]["scale"][...][1])
    eps = 1e-2

    def shifted(delta):
        p = jax.tree.map(lambda a: a, params)
        p["noise2"]["scale"][...] = p["noise2"]["scale"][...].at[1].add(delta)
        return float(value_and_grad(p, key)[0])

    assert g == pytest.approx((shifted(eps) - shifted(-eps)) / (2 * eps), rel=0.05, abs=1e-7)


def test_stylize_matches_the_module_in_batches():
    net = _net()
    x = np.concatenate([_images(*ODD), _images(*ODD, seed=1)])
    expected = np.concatenate([np.asarray(_run_plain(net, x[i:i + 1])) for i in range(2)])
    np.testing.assert_allclose(tn.stylize(net, x, batch=1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.stylize(net, x[0]), expected[0], rtol=1e-5, atol=1e-6)


@jax.jit(static_argnums=1)
def _extractor(images, taps):
    """A tiny fixed feature extractor: two 'layers' of nonlinear pointwise/shift features."""
    x = jnp.asarray(images)[..., None]
    f1 = jnp.concatenate([x, x ** 2, jnp.roll(x, 1, axis=1)], -1)
    f2 = jnp.tanh(f1[:, ::2, ::2] * 2.0 - 1.0)
    feats = {"a": f1, "b": f2}
    return {t: feats[t] for t in taps}


def _np_gram(f):
    h, w, c = f.shape
    flat = np.asarray(f, np.float64).reshape(h * w, c)
    return flat.T @ flat / (h * w)


def test_average_style_targets_match_numpy():
    styles = _images(5, 12, 10, seed=4)
    feats = {t: np.asarray(v) for t, v in _extractor(styles, ("a", "b")).items()}
    for batch in (2, 5):
        gram = tn.average_style_target(_extractor, styles, ("a", "b"), mode="gram", batch=batch)
        feat = tn.average_style_target(_extractor, styles, ("a", "b"), mode="features",
                                       batch=batch)
        for t in ("a", "b"):
            np.testing.assert_allclose(np.asarray(gram[t]),
                                       np.mean([_np_gram(f) for f in feats[t]], axis=0),
                                       rtol=1e-5)
            np.testing.assert_allclose(np.asarray(feat[t]), _np_gram(feats[t].mean(axis=0)),
                                       rtol=1e-5)
    mean = tn.average_style_features(_extractor, styles, ("a",), batch=5)
    np.testing.assert_allclose(np.asarray(mean["a"]), feats["a"].mean(axis=0), rtol=1e-6)
    single = tn.style_target(_extractor, styles[0], ("a",))
    np.testing.assert_allclose(np.asarray(single["a"]), _np_gram(feats["a"][0]), rtol=1e-5)
    # The two averages differ (Gram of the mean loses the per-image texture energy).
    assert not np.allclose(np.asarray(gram["a"]), np.asarray(feat["a"]))


def test_average_gram_over_images_of_different_sizes():
    styles = [_images(1, 12, 10, seed=5)[0], _images(1, 16, 8, seed=6)[0]]
    got = tn.average_style_target(_extractor, styles, ("a",), mode="gram")
    expected = np.mean([_np_gram(np.asarray(_extractor(s[None], ("a",))["a"][0]))
                        for s in styles], axis=0)
    np.testing.assert_allclose(np.asarray(got["a"]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="one size"):
        tn.average_style_target(_extractor, styles, ("a",), mode="features")


@pytest.mark.parametrize("call, match", [
    (lambda net: net(np.zeros((16, 16), np.float32)), "rank"),
    (lambda net: net(np.full((1, 16, 16), np.nan, np.float32)), "non-finite"),
    (lambda net: net(np.zeros((1, 6, 16), np.float32)), "at least 8x8"),
    (lambda net: net(np.zeros((0, 16, 16), np.float32)), "empty"),
    (lambda net: tn.stylize(net, np.zeros((1, 16, 16)), batch=0), "batch"),
    (lambda net: tn.average_style_target(_extractor, _images(2, 12, 12), ("a",), mode="x"),
     "mode"),
    (lambda net: tn.average_style_target(_extractor, _images(2, 12, 12), ()), "empty"),
    (lambda net: tn.TransformNet(widths=(4, 8), rngs=nnx.Rngs(0)), "widths"),
    (lambda net: tn.TransformNet(conv_method="fft", rngs=nnx.Rngs(0)), "conv_method"),
])
def test_bad_input(call, match, small_net):
    with pytest.raises(ValueError, match=match):
        call(small_net)


@pytest.fixture(scope="module")
def small_net():
    return _net()
