"""AdaConv / AdaIN against direct numpy (and lax) implementations on tiny shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax.models.adaconv import (AdaConv, AdaIN, adaptive_avg_pool, grouped_conv_per_sample,
                                     instance_norm, pointwise_per_sample)


def _rngs(seed):
    # rbg keys: initialisers compile much faster than with threefry keys.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _np_grouped_conv(x, k, mode):
    """Direct loops: out[b, y, x, c] = sum_{dy, dx, i} xp[b, y+dy, x+dx, (c//p) p + i] k[b, dy, dx, i, c]."""
    b, h, w, c = x.shape
    kh, kw, p = k.shape[1:4]
    xp = np.pad(x, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)),
                mode="reflect" if mode == "reflect" else "constant")
    out = np.zeros((b, h, w, c))
    for n in range(b):
        for co in range(c):
            g = co // p
            for dy in range(kh):
                for dx in range(kw):
                    for i in range(p):
                        out[n, :, :, co] += xp[n, dy:dy + h, dx:dx + w, g * p + i] * k[n, dy, dx, i, co]
    return out


def _lax_grouped_conv(x, k):
    """The same with lax: one conv per sample with feature_group_count (zero padding)."""
    c, p = x.shape[-1], k.shape[3]
    def one(xi, ki):
        return jax.lax.conv_general_dilated(xi[None], ki, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=c // p)[0]
    return jax.vmap(one)(x, k)


@pytest.mark.parametrize("p, mode", [(1, "reflect"), (2, "reflect"), (2, "zeros")])
def test_grouped_conv_matches_numpy(p, mode):
    rng = np.random.default_rng(p)
    x = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    k = rng.normal(size=(2, 3, 3, p, 4)).astype(np.float32)
    got = grouped_conv_per_sample(jnp.asarray(x), jnp.asarray(k), padding=mode)
    np.testing.assert_allclose(got, _np_grouped_conv(x, k, mode), rtol=1e-5, atol=1e-5)


def test_grouped_conv_gradient_matches_lax_autodiff():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 5, 4, 4)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(2, 3, 3, 2, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(2, 5, 4, 4)).astype(np.float32))
    ours = jax.jit(jax.grad(lambda x, k: jnp.sum(w * grouped_conv_per_sample(x, k, padding="zeros")),
                            argnums=(0, 1)))(x, k)
    ref = jax.grad(lambda x, k: jnp.sum(w * _lax_grouped_conv(x, k)), argnums=(0, 1))(x, k)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Reflect padding: input gradient by central finite differences at a few entries.
    loss = jax.jit(lambda x: jnp.sum(w * grouped_conv_per_sample(x, k)))
    f = lambda x: float(loss(x))
    gx = jax.jit(jax.grad(loss))(x)
    for idx in [(0, 0, 0, 1), (1, 4, 3, 2), (0, 2, 1, 3)]:
        e = jnp.zeros_like(x).at[idx].set(1e-2)
        np.testing.assert_allclose((f(x + e) - f(x - e)) / 2e-2, gx[idx], rtol=2e-2, atol=2e-3)


def test_pointwise_and_instance_norm_and_pool_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
    k = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)     # 3 groups of 2 channels
    want = np.zeros_like(x)
    for g in range(3):
        want[..., 2 * g:2 * g + 2] = np.einsum("bhwi,bio->bhwo", x[..., 2 * g:2 * g + 2], k[:, g])
    np.testing.assert_allclose(pointwise_per_sample(jnp.asarray(x), jnp.asarray(k)), want,
                               rtol=1e-5, atol=1e-5)
    m, v = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(instance_norm(jnp.asarray(x)), (x - m) / np.sqrt(v + 1e-5),
                               rtol=1e-4, atol=1e-5)
    y = rng.normal(size=(1, 8, 7, 2)).astype(np.float32)
    rb, cb = [(0, 3), (2, 6), (5, 8)], [(0, 3), (2, 5), (4, 7)]   # torch AdaptiveAvgPool2d bins
    want = np.array([[[y[0, a:b, c:d].mean(axis=(0, 1)) for c, d in cb] for a, b in rb]])
    np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(y), 3), want, rtol=1e-5, atol=1e-6)


def test_adaconv_block_matches_numpy():
    c, s = 4, 3
    block = AdaConv(c, s, spatial_groups=2, pointwise_groups=2, rngs=_rngs(0))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 5, c)).astype(np.float32)
    style = rng.normal(size=(2, 3, 3, s)).astype(np.float32)
    # Kernel predictors written out: 'SAME' (zero-padded) 3x3 conv and linear layers.
    kw, kb = np.asarray(block.spatial_pred.kernel[...]), np.asarray(block.spatial_pred.bias[...])
    sp = np.pad(style, ((0, 0), (1, 1), (1, 1), (0, 0)))
    pred = np.stack([np.stack([np.einsum("bhws,hwso->bo", sp[:, i:i + 3, j:j + 3], kw)
                               for j in range(3)], 1) for i in range(3)], 1) + kb
    spatial = pred.reshape(2, 3, 3, 2, c) / np.sqrt(3 * 3 * 2)
    pooled = style.mean(axis=(1, 2))
    pw = (pooled @ np.asarray(block.pointwise_pred.kernel[...])
          + np.asarray(block.pointwise_pred.bias[...])).reshape(2, 2, 2, 2) / np.sqrt(2)
    bias = pooled @ np.asarray(block.bias_pred.kernel[...]) + np.asarray(block.bias_pred.bias[...])
    xn = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    y = _np_grouped_conv(xn, spatial, "reflect")
    out = np.zeros_like(y)
    for g in range(2):
        out[..., 2 * g:2 * g + 2] = np.einsum("bhwi,bio->bhwo", y[..., 2 * g:2 * g + 2], pw[:, g])
    out += bias[:, None, None, :]
    apply = jax.jit(lambda x, s: block(x, s))
    np.testing.assert_allclose(apply(jnp.asarray(x), jnp.asarray(style)), out, rtol=1e-4, atol=1e-4)
    # Different styles give different outputs for the same content (per-sample kernels).
    y2 = apply(jnp.asarray(x[:1].repeat(2, 0)), jnp.asarray(style))
    assert float(jnp.abs(y2[0] - y2[1]).max()) > 1e-2


def test_adain_matches_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    g, b = rng.normal(size=(2, 2, 3)).astype(np.float32)
    xn = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(AdaIN(3)(jnp.asarray(x), g, b), xn * g[:, None, None] + b[:, None, None],
                               rtol=1e-4, atol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        AdaConv(6, 3, pointwise_groups=4, rngs=_rngs(0))
    with pytest.raises(ValueError, match="style_size"):
        AdaConv(4, 3, style_size=2, rngs=_rngs(0))
    block = AdaConv(4, 3, rngs=_rngs(0))
    with pytest.raises(ValueError, match="style must be"):
        block(jnp.zeros((1, 4, 4, 4)), jnp.zeros((1, 1, 1, 3)))
    with pytest.raises(ValueError, match="x must be"):
        block(jnp.zeros((1, 4, 4, 5)), jnp.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="kernel must be"):
        grouped_conv_per_sample(jnp.zeros((1, 4, 4, 4)), jnp.zeros((2, 3, 3, 1, 4)))
    with pytest.raises(ValueError, match="gamma"):
        AdaIN(3)(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 2)), jnp.zeros((1, 2)))
