"""AdaIN layer, reflect-padded decoder and the encoder-AdaIN-decoder network.

References are numpy/scipy: the AdaIN formula, ``np.pad(mode="reflect")`` + explicit
correlation, ``np.repeat`` for nearest upsampling.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from flax import nnx

from stylejax.models import adain as am
from stylejax.models.weights import layer_plan


def numpy_adain(c, s, eps=1e-5):
    mu_c, mu_s = c.mean(axis=(1, 2), keepdims=True), s.mean(axis=(1, 2), keepdims=True)
    sd_c = np.sqrt(c.var(axis=(1, 2), keepdims=True) + eps)
    sd_s = np.sqrt(s.var(axis=(1, 2), keepdims=True) + eps)
    return sd_s * (c - mu_c) / sd_c + mu_s


def test_adain_matches_formula_with_broadcast_style():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((3, 5, 6, 4)).astype(np.float32) * 2 + 1
    s = rng.standard_normal((1, 7, 3, 4)).astype(np.float32) * 0.5 - 3
    out = np.asarray(am.adain(c, s))
    np.testing.assert_allclose(out, numpy_adain(c.astype(np.float64), s.astype(np.float64)),
                               rtol=1e-5, atol=1e-5)
    s3 = rng.standard_normal((3, 7, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(am.adain(c, s3), numpy_adain(c, s3), rtol=1e-5, atol=1e-5)
    # The eps sits inside the square root: a constant content channel maps to the style mean.
    flat = np.ones((1, 4, 4, 1), np.float32)
    np.testing.assert_allclose(am.adain(flat, s[..., :1]), s[..., :1].mean(), rtol=1e-5)


def test_reflect_conv_matches_reflect_padded_correlation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    conv = jax.jit(am.reflect_conv3x3)
    got = np.asarray(conv(jnp.asarray(x), k, b))
    ref = np.zeros((2, 6, 7, 5))
    for n in range(2):
        for o in range(5):
            for i in range(3):
                # scipy "mirror" = reflect about the edge pixel, like torch ReflectionPad2d.
                ref[n, :, :, o] += ndi.correlate(x[n, :, :, i].astype(np.float64), k[:, :, i, o],
                                                 mode="mirror")
            ref[n, :, :, o] += b[o]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    manual = sum(padded[:, i:i + 6, j:j + 7, :] @ k[i, j] for i in range(3) for j in range(3)) + b
    np.testing.assert_allclose(got, manual, rtol=1e-4, atol=1e-4)
    for h, w in ((2, 2), (2, 3), (3, 2)):                 # smallest maps: borders overlap
        small = x[:, :h, :w]
        padded = np.pad(small, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        manual = sum(padded[:, i:i + h, j:j + w] @ k[i, j] for i in range(3) for j in range(3))
        np.testing.assert_allclose(conv(jnp.asarray(small), k, b), manual + b,
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="at least 2x2"):
        am.reflect_conv3x3(jnp.asarray(x[:, :1]), k, b)


def test_nearest_upsampling():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(am.upsample_nearest(x), x.repeat(2, axis=1).repeat(2, axis=2))


def test_decoder_mirrors_vgg19_to_relu4_1():
    plan = [(kind, name) for kind, name, _ in layer_plan("vgg19")]
    stages = am.stages_from_plan(plan, "relu4_1")
    assert stages == am.VGG19_RELU4_1
    dec = am.Decoder(stages, out_channels=3)
    shapes = [tuple(c.kernel[...].shape[2:]) for c in dec.convs]
    assert shapes == [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128),
                      (128, 128), (128, 64), (64, 64), (64, 3)]
    out = jax.eval_shape(dec, jax.ShapeDtypeStruct((2, 4, 5, 512), jnp.float32))
    assert out.shape == (2, 32, 40, 3)


# A tiny two-stage extractor with fixed weights: relu(conv) -> pool -> relu(conv).
_RNG = np.random.default_rng(2)
_K1 = jnp.asarray(_RNG.standard_normal((3, 3, 1, 4)) * 0.5, jnp.float32)
_K2 = jnp.asarray(_RNG.standard_normal((3, 3, 4, 8)) * 0.3, jnp.float32)


def tiny_extractor(images, taps):
    x = jnp.asarray(images, jnp.float32)
    x = x[..., None] if x.ndim == 3 else x
    conv = lambda a, k: jax.lax.conv_general_dilated(a, k, (1, 1), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    f1 = jax.nn.relu(conv(x, _K1))
    n, h, w, c = f1.shape
    f2 = jax.nn.relu(conv(f1.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)), _K2))
    return {t: {"t1": f1, "t2": f2}[t] for t in taps}


@pytest.fixture(scope="module")
def net():
    return am.AdaINNet(tiny_extractor, content_tap="t2", style_taps=("t1", "t2"),
                       stages=((4, 1), (8, 1)), out_channels=1, seed=0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return (rng.random((2, 8, 8)).astype(np.float32), rng.random((1, 12, 8)).astype(np.float32))


def test_network_shapes_alpha_and_style_broadcast(net, images):
    content, style = images
    run = nnx.jit(lambda m, a: m(content, style, alpha=a))
    out = run(net, 1.0)
    assert out.shape == (2, 8, 8, 1)
    fc = tiny_extractor(content, ("t2",))["t2"]
    np.testing.assert_allclose(run(net, 0.0), nnx.jit(lambda d: d(fc))(net.decoder),
                               rtol=1e-5, atol=1e-6)
    t, _, fs = net.target(content, style, alpha=0.3)
    expect = 0.3 * numpy_adain(np.asarray(fc), np.asarray(fs["t2"])) + 0.7 * np.asarray(fc)
    np.testing.assert_allclose(t, expect, rtol=1e-4, atol=1e-5)


def test_style_loss_matches_numpy(net, images):
    content, style = images
    fa, fb = tiny_extractor(content, ("t1", "t2")), tiny_extractor(style, ("t1", "t2"))
    got = float(jax.jit(am.style_mean_std_loss, static_argnums=2)(fa, fb, ("t1", "t2")))
    ref = 0.0
    for tap in ("t1", "t2"):
        a, b = np.asarray(fa[tap], np.float64), np.asarray(fb[tap], np.float64)
        ref += np.mean((a.mean(axis=(1, 2)) - b.mean(axis=(1, 2))) ** 2)
        ref += np.mean((np.sqrt(a.var(axis=(1, 2)) + 1e-5) - np.sqrt(b.var(axis=(1, 2)) + 1e-5)) ** 2)
    assert abs(got - ref) < 1e-4 * ref


@pytest.mark.parametrize("variant", am.VARIANTS)
def test_variant_losses_train_the_decoder_only(net, images, variant):
    content, style = images

    def loss_fn(decoder):
        model = am.AdaINNet(tiny_extractor, content_tap="t2", style_taps=("t1", "t2"),
                            decoder=decoder)
        return am.variant_loss(model, content, style, variant=variant)[0]

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(net.decoder)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert np.isfinite(float(loss)) and len(leaves) == 2 * len(net.decoder.convs)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
    if variant == "adain":
        terms = nnx.jit(lambda m: am.variant_loss(m, content, style, variant=variant)[1])(net)
        t, _, _ = net.target(content, style)
        fg = tiny_extractor(terms["output"], ("t2",))
        manual = np.mean((np.asarray(fg["t2"]) - np.asarray(t)) ** 2)
        np.testing.assert_allclose(terms["content"], manual, rtol=1e-5)


def test_bad_input(net, images):
    content, style = images
    with pytest.raises(ValueError, match=r"content_features must be feature maps"):
        am.adain(np.ones((4, 4, 3)), np.ones((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="channel counts differ"):
        am.adain(np.ones((1, 4, 4, 3)), np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="style batch 2"):
        am.adain(np.ones((3, 4, 4, 3)), np.ones((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        am.adain(np.full((1, 4, 4, 3), np.nan), np.ones((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="decoder expects 8 channels"):
        net.decoder(np.ones((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        net(content, style, alpha=1.5)
    with pytest.raises(ValueError, match="unknown AdaIN variant"):
        am.variant_loss(net, content, style, variant="gatys")
    with pytest.raises(ValueError, match="pass stages"):
        am.AdaINNet(tiny_extractor, content_tap="t2")


def test_margin_output_is_the_interior_of_a_larger_reflected_image(net, images):
    # With margin the border pixels are computed as inside an image: the same as
    # running the plain network on a much larger reflect-padded copy and cropping. The
    # plain network on the image itself differs at the border (the extractor's zero
    # padding), which is the border-line defect the margin removes.
    content, style = images
    style = style[:, :8]
    m = net.border_margin()
    assert m % net.scale == 0 and m >= 12  # tiny net: reach 5 + 5 pixels, scale 2
    big_p = m + 8
    pad = lambda x, p: np.pad(x, ((0, 0), (p, p), (p, p)), mode="reflect")
    run = nnx.jit(lambda model, c, s, a: model(c, s, alpha=a, margin=m))
    dec = nnx.jit(lambda d, f: d(f))
    fc_big = np.asarray(tiny_extractor(pad(content, big_p), ("t2",))["t2"], np.float64)
    ref0 = np.asarray(dec(net.decoder, fc_big.astype(np.float32)))[:, big_p:-big_p,
                                                                    big_p:-big_p]
    np.testing.assert_allclose(run(net, content, style, 0.0), ref0, rtol=1e-5, atol=1e-5)
    plain = np.asarray(nnx.jit(lambda model: model(content, style, alpha=0.0))(net))
    assert np.abs(plain - ref0)[:, :, :2].max() > 1e-2
    # alpha = 1: AdaIN statistics from the unpadded positions only (numpy reference).
    q = big_p // 2
    fs_big = np.asarray(tiny_extractor(pad(style, big_p), ("t2",))["t2"], np.float64)
    core_c, core_s = fc_big[:, q:q + 4, q:q + 4], fs_big[:, q:q + 4, q:q + 4]
    mu_c, mu_s = core_c.mean((1, 2), keepdims=True), core_s.mean((1, 2), keepdims=True)
    sd_c = np.sqrt(core_c.var((1, 2), keepdims=True) + 1e-5)
    sd_s = np.sqrt(core_s.var((1, 2), keepdims=True) + 1e-5)
    t = (fc_big - mu_c) * sd_s / sd_c + mu_s
    ref1 = np.asarray(dec(net.decoder, t.astype(np.float32)))[:, big_p:-big_p, big_p:-big_p]
    np.testing.assert_allclose(run(net, content, style, 1.0), ref1, rtol=1e-4, atol=1e-4)
    # Odd sizes are padded up to the decoder's scale and cropped back.
    assert run(net, content[:, :7, :7], style, 1.0).shape == (2, 7, 7, 1)
    with pytest.raises(ValueError, match="multiple of 2"):
        net(content, style, margin=3)


def test_lowpass_term_matches_scipy_and_enters_the_loss(net, images):
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 16, 13)).astype(np.float32), rng.random((2, 16, 13)).astype(np.float32)
    # radius ceil(3 sigma) = 5; scipy "mirror" is jnp.pad's "reflect".
    ref = ndi.gaussian_filter(a.astype(np.float64) - b, (0, 1.5, 1.5), mode="mirror",
                              truncate=5 / 1.5)
    got = float(jax.jit(am.lowpass_mse, static_argnums=2)(a, b[..., None], 1.5))
    assert abs(got - np.mean(ref ** 2)) < 1e-6 * np.mean(ref ** 2) + 1e-9
    content, style = images
    f = lambda w: nnx.jit(lambda m: am.variant_loss(m, content, style, variant="adain",
                                                    lowpass_weight=w, lowpass_sigma=1.0))(net)
    (l0, t0), (l1, t1) = f(0.0), f(2.0)
    expect = float(am.lowpass_mse(t0["output"], content, 1.0))
    np.testing.assert_allclose(float(t1["lowpass"]), expect, rtol=1e-5)
    np.testing.assert_allclose(float(l1), float(l0) + 2.0 * expect, rtol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        am.lowpass_mse(a, b, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        am.lowpass_mse(a, b[:, :8], 1.0)
