"""MUNIT generators (AdaConv / AdaIN, with / without ConvLSTM) and multi-scale discriminators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax._xla import cpu_convolution_options
from stylejax.models.discriminator import MultiScaleDiscriminator, avg_pool_3x3_s2
from stylejax.models.munit import (MUNIT, Generator, conv_one_in, conv_one_out, conv_stride2,
                                   upsample_conv)

TINY = dict(dim=4, n_down=2, n_res=1, style_dim=4, n_style_down=2, mlp_dim=8)


def _tiny(factory, seed):
    """Build without running the initialisers (their compilation dominates tiny tests):
    abstract module, then every parameter drawn in numpy with 1/sqrt(fan-in) scale."""
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    rng = np.random.default_rng(seed)

    def fill(x):
        scale = 1 / np.sqrt(np.prod(x.shape[:-1])) if len(x.shape) > 1 else 0.1
        return jnp.asarray(rng.normal(size=x.shape).astype(np.float32) * scale)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


@pytest.fixture(scope="module")
def munit():
    return _tiny(lambda: MUNIT(rngs=nnx.Rngs(0), **TINY), 0)


@pytest.fixture(scope="module")
def ablation():
    return _tiny(lambda: Generator(modulation="adain", temporal=False, rngs=nnx.Rngs(1), **TINY), 1)


@pytest.fixture(scope="module")
def series():
    return jax.random.uniform(jax.random.key(2), (2, 3, 16, 16))


def test_shapes_range_and_translation(munit, ablation, series):
    g = munit.ce
    other = jax.random.uniform(jax.random.key(3), series.shape)
    code = jax.random.normal(jax.random.key(4), (2, 3, 3, 4))

    @jax.jit
    def run(x, s, code):
        content, style = g.encode(x)
        return dict(
            content=content, style=style, out=g(x), ablation_codes=ablation.encode(x),
            ablation_out=ablation(x), one=g.decode(content, style[:, 0]),
            repeated=g.decode(content, jnp.repeat(style[:, :1], 3, 1)),
            to_ce=munit.translate(x, to="ce", style_series=s),
            to_ce_parts=g.decode(munit.non_ce.encode_content(x), g.encode_style(s)),
            to_non_ce=munit.translate(x, to="non_ce", style_code=code))

    r = run(series, other, code)
    assert r["content"].shape == (2, 3, 4, 4, 16) and r["style"].shape == (2, 3, 3, 3, 4)
    assert r["out"].shape == r["ablation_out"].shape == (2, 3, 16, 16)
    assert float(r["out"].min()) > 0 and float(r["out"].max()) < 1
    c2, s2 = r["ablation_codes"]
    assert c2.shape == (2, 3, 4, 4, 16) and s2.shape == (2, 3, 1, 1, 4)
    np.testing.assert_allclose(r["one"], r["repeated"], atol=1e-6)   # one style for all frames
    # Translation = source domain's content, target domain's style and decoder.
    np.testing.assert_allclose(r["to_ce"], r["to_ce_parts"], atol=1e-6)
    assert r["to_non_ce"].shape == series.shape
    with pytest.raises(ValueError, match="exactly one"):
        munit.translate(series, to="ce")
    with pytest.raises(ValueError, match="domain"):
        munit.translate(series, to="t1", style_code=code)


def test_cpu_convolution_options_keep_the_outputs(munit, series):
    """Inference jitted with the CPU convolution options (as ``stylejax dce``) gives the
    default compilation's outputs (that they move convolutions off YNNPACK: test_xla)."""
    def fwd(x, s):     # both encoders and the ConvLSTM (a quicker compile than translate)
        return munit.non_ce.encode_content(x), munit.ce.encode_style(s)

    other = series[:, ::-1]
    tuned = jax.jit(fwd, compiler_options=cpu_convolution_options("cpu") or None)
    for a, b in zip(tuned(series, other), jax.jit(fwd)(series, other)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_convlstm_couples_frames_only_when_temporal(munit, ablation, series):
    # A structured change (instance norm would remove a constant offset).
    moved = series.at[:, 2].add(0.5 * jax.random.uniform(jax.random.key(7), series.shape[2:]))
    both = jnp.concatenate([series, moved])
    a, b = jnp.split(jax.jit(lambda x: munit.ce.encode_content(x))(both), 2)
    assert float(jnp.abs(a[:, 0] - b[:, 0]).max()) > 1e-4     # backward direction carries t=2
    a, b = jnp.split(jax.jit(lambda x: ablation.encode_content(x))(both), 2)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])           # frames independent
    assert float(jnp.abs(a[:, 2] - b[:, 2]).max()) > 1e-4


def test_gradients_reach_adaconv_and_convlstm(series):
    # A shallower generator than the fixture's: the backward pass compiles much faster.
    small = _tiny(lambda: Generator(rngs=nnx.Rngs(0), **(TINY | dict(n_down=1, n_style_down=1))), 3)
    graphdef, params, rest = nnx.split(small, nnx.Param, ...)
    x = series[:1, :2]

    def loss(params):
        g = nnx.merge(graphdef, params, rest)
        return jnp.mean(jnp.abs(g(x) - x))

    grads = jax.jit(jax.grad(loss))(params)
    flat = {"/".join(map(str, k)): v for k, v in nnx.to_flat_state(grads)}
    assert all(np.all(np.isfinite(np.asarray(v))) for v in flat.values())
    for part in ("spatial_pred", "pointwise_pred", "bias_pred", "forward_cell", "backward_cell",
                 "style_encoder", "content_encoder"):
        norms = [float(jnp.abs(v).max()) for k, v in flat.items() if part in k]
        assert norms and max(norms) > 0, part


@pytest.mark.parametrize("k, size", [(5, (5, 6)), (3, (4, 4)), (7, (6, 5))])
def test_upsample_conv_equals_upsampling_then_reflect_padded_conv(k, size):
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.normal(size=(2,) + size + (3,)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, 3, 2)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=(2, 2 * size[0], 2 * size[1], 2)).astype(np.float32))

    def direct(x, w):
        up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        up = jnp.pad(up, ((0, 0), (k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode="reflect")
        return jax.lax.conv_general_dilated(up, w, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.jit
    def both(x, w):
        grads = [jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1))(x, w)
                 for f in (upsample_conv, direct)]
        return upsample_conv(x, w), direct(x, w), grads

    ours, want, (g_ours, g_want) = both(x, w)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_ours, g_want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _lax_conv(x, k, stride=1):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _assert_same_values_and_gradients(cases):
    """``cases``: ``(fn, reference, x, k)``; both outputs and both gradients (for one fixed
    output cotangent) agree, in one jitted program."""

    @jax.jit
    def run(inputs):
        out = []
        for (fn, ref, _, _), (x, k) in zip(cases, inputs):
            (y1, vjp1), (y2, vjp2) = jax.vjp(fn, x, k), jax.vjp(ref, x, k)
            g = jnp.cos(jnp.arange(y2.size, dtype=jnp.float32)).reshape(y2.shape)
            out.append((y1, y2, vjp1(g), vjp2(g)))
        return out

    for y1, y2, d1, d2 in run([(x, k) for _, _, x, k in cases]):
        assert y1.shape == y2.shape
        np.testing.assert_allclose(y1, y2, atol=1e-4)
        for a, b in zip(d1, d2):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-4)


def _normal(rng, *shape):
    return jnp.asarray(rng.normal(size=shape).astype(np.float32))


def test_one_channel_conv_forms_equal_lax_with_gradients():
    """conv_one_in (odd and even output sizes, rectangular) and conv_one_out: values and
    both gradients against XLA's direct convolution."""
    rng = np.random.default_rng(5)
    _assert_same_values_and_gradients([
        (conv_one_in, _lax_conv, _normal(rng, 2, 13, 10, 1), _normal(rng, 7, 7, 1, 6)),
        (conv_one_in, _lax_conv, _normal(rng, 1, 9, 12, 1), _normal(rng, 3, 3, 1, 4)),
        (conv_one_out, _lax_conv, _normal(rng, 2, 12, 11, 5), _normal(rng, 7, 7, 5, 1))])


def test_stride2_conv_gradients_equal_lax():
    """conv_stride2 (4x4 with 20 output channels: two kernel-gradient chunks; 2x2 on a
    rectangular input; 6x6): values and both gradients against XLA's strided convolution."""
    rng = np.random.default_rng(6)

    def lax_s2(x, k):
        return _lax_conv(x, k, 2)

    _assert_same_values_and_gradients([
        (conv_stride2, lax_s2, _normal(rng, 2, 10, 12, 3), _normal(rng, 4, 4, 3, 20)),
        (conv_stride2, lax_s2, _normal(rng, 1, 8, 6, 1), _normal(rng, 2, 2, 1, 5)),
        (conv_stride2, lax_s2, _normal(rng, 2, 14, 10, 4), _normal(rng, 6, 6, 4, 3))])
    with pytest.raises(ValueError, match="even"):
        conv_stride2(_normal(rng, 1, 9, 8, 1), _normal(rng, 4, 4, 1, 2))
    with pytest.raises(ValueError, match="even"):
        conv_stride2(_normal(rng, 1, 8, 8, 1), _normal(rng, 3, 3, 1, 2))


def test_generator_halves_equal_whole_batch_networks(munit, ablation, series):
    """encode/decode run their networks on two halves of the frames (6 frames here); the
    result equals the networks applied to all frames at once (every layer is per sample)."""
    b, t, h, w = series.shape
    frames = series.reshape(b * t, h, w, 1)
    for g in (munit.ce, ablation):
        style = g.style_encoder(frames)
        np.testing.assert_allclose(g.encode_style(series).reshape(style.shape), style, atol=1e-5)
        content = g.content_encoder(frames)
        whole = g.decoder(content, style)
        halves = g.decode(content.reshape((b, t) + content.shape[1:]),
                          style.reshape((b, t) + style.shape[1:]))
        np.testing.assert_allclose(halves.reshape(whole.shape), whole, atol=1e-5)
    np.testing.assert_allclose(ablation.encode_content(series).reshape(content.shape),
                               ablation.content_encoder(frames), atol=1e-5)


def test_discriminator_scales_and_pooling():
    d = _tiny(lambda: MultiScaleDiscriminator(dim=2, n_layers=2, num_scales=3, rngs=nnx.Rngs(5)), 5)
    x = jax.random.uniform(jax.random.key(6), (2, 16, 16))
    outs = jax.jit(lambda x: d(x))(x)
    assert [o.shape for o in outs] == [(2, 4, 4, 1), (2, 2, 2, 1), (2, 1, 1, 1)]
    y = np.random.default_rng(0).normal(size=(1, 5, 4, 1)).astype(np.float32)
    want = np.zeros((1, 3, 2, 1), np.float32)
    for i in range(3):
        for j in range(2):
            rows = slice(max(2 * i - 1, 0), min(2 * i + 2, 5))
            cols = slice(max(2 * j - 1, 0), min(2 * j + 2, 4))
            want[0, i, j, 0] = y[0, rows, cols, 0].mean()     # padding not counted
    np.testing.assert_allclose(avg_pool_3x3_s2(jnp.asarray(y)), want, rtol=1e-6)
    with pytest.raises(ValueError, match="too small"):
        d(jnp.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="x must be"):
        d(jnp.zeros((1, 16, 16, 2)))


def test_bad_input(munit, series):
    g = munit.ce
    with pytest.raises(ValueError, match="frame"):
        g(series[:, :1])
    with pytest.raises(ValueError, match="divisible"):
        g(jnp.zeros((1, 3, 18, 16)))
    with pytest.raises(ValueError, match="B, T, H, W"):
        g(jnp.zeros((3, 16, 16)))
    with pytest.raises(ValueError, match="non-finite"):
        g(np.full((1, 3, 16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="style must be"):
        g.decode(jnp.zeros((1, 3, 4, 4, 16)), jnp.zeros((1, 2, 3, 3, 4)))
    with pytest.raises(ValueError, match="modulation"):
        Generator(modulation="spade", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dim"):
        Generator(dim=0, rngs=nnx.Rngs(0))
