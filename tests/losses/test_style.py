"""Style/content losses against numpy formulas (thesis Eq. 2.2-2.5, mr2NST Eq. 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, stats

from stylejax.losses import style as sl
from stylejax.models.weights import layer_plan

rng = np.random.default_rng(0)


def np_gram(f):
    h, w, c = f.shape[-3:]
    flat = f.reshape(f.shape[:-3] + (h * w, c)).astype(np.float64)
    return np.swapaxes(flat, -1, -2) @ flat / (h * w)


def test_gram_eq_2_3():
    f = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(sl.gram(f)), np_gram(f), rtol=1e-5, atol=1e-6)
    # explicit double sum for one entry: G(c, d) = sum_ij F(i,j,c) F(i,j,d) / (M N)
    g = np.asarray(sl.gram(f[0]))
    assert np.isclose(g[0, 2], sum(f[0, i, j, 0] * f[0, i, j, 2]
                                   for i in range(5) for j in range(4)) / 20, rtol=1e-5)


def test_masked_gram_normalised_by_mask_mean():
    f = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    masks = (rng.random((3, 6, 5)) > 0.5).astype(np.float32)
    masks[2] = 0.0  # an empty label gives a zero Gram
    got = np.asarray(sl.gram(f[:, None], masks))
    assert got.shape == (1, 3, 4, 4)
    for d in range(2):
        fm = f[0] * masks[d][..., None]
        want = np_gram(fm) / masks[d].mean()
        np.testing.assert_allclose(got[0, d], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[0, 2], 0.0)
    with pytest.raises(ValueError, match="mask spatial size"):
        sl.gram(f, masks[:, :5])


def test_content_loss_eq_2_2():
    a = rng.standard_normal((1, 4, 3, 5))
    b = rng.standard_normal((1, 4, 3, 5))
    want = ((a - b) ** 2).sum() / (2 * 4 * 3 * 5)
    assert np.isclose(float(sl.content_loss(a, b)), want, rtol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        sl.content_loss(a, b[..., :4])


def test_style_layer_loss_eq_2_4_and_weighted_sum():
    g1, g2 = rng.standard_normal((2, 6, 6))
    want = ((g1 - g2) ** 2).sum() / (2 * 36)
    assert np.isclose(float(sl.style_layer_loss(g1, g2)), want, rtol=1e-5)
    assert np.isclose(float(sl.style_layer_loss(g1, g2, norm=4.0)), want / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="channel counts"):
        sl.style_layer_loss(g1, g2[:5, :5])

    feats = {"a": rng.standard_normal((1, 4, 4, 3)), "b": rng.standard_normal((1, 2, 2, 5))}
    targets = {"a": rng.standard_normal((3, 3)), "b": rng.standard_normal((5, 5))}
    total = float(sl.style_loss(feats, targets, {"a": 2.0, "b": 0.5}))
    want = sum(w * ((np_gram(feats[k][0]) - targets[k]) ** 2).sum() / (2 * targets[k].shape[0] ** 2)
               for k, w in (("a", 2.0), ("b", 0.5)))
    assert np.isclose(total, want, rtol=1e-5)


def test_augmented_style_loss_eq_3_1():
    f = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    fs = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    masks = np.zeros((2, 6, 6), np.float32)
    masks[0, :3], masks[1, 3:] = 1.0, 1.0
    targets = sl.gram(fs[:, None], masks)[0]
    got = float(sl.style_loss({"t": f}, {"t": targets}, 1.0, {"t": masks}))
    want = 0.0
    for d in range(2):
        go = np_gram(f[0] * masks[d][..., None]) / masks[d].mean()
        gs = np_gram(fs[0] * masks[d][..., None]) / masks[d].mean()
        want += ((go - gs) ** 2).sum() / (2 * 9)
    assert np.isclose(got, want, rtol=1e-5)


def test_fake_conv_and_fake_pool_by_hand():
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = 1.0
    got = np.asarray(sl.fake_conv(m))
    want = np.zeros((4, 4))
    want[0, 0], want[0, 1], want[1, 0], want[1, 1] = 1 / 4, 1 / 6, 1 / 6, 1 / 9
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sl.fake_conv(np.ones((3, 5)))), 1.0, rtol=1e-6)
    x = np.arange(25.0).reshape(5, 5)
    np.testing.assert_array_equal(np.asarray(sl.fake_pool(x)), [[0, 2], [10, 12]])


def test_propagate_masks_along_vgg_plan():
    masks = (rng.random((2, 12, 10)) > 0.6).astype(np.float64)

    def avg3(m):  # 3x3 mean over the in-image neighbours
        ones = np.ones_like(m)
        return (ndimage.uniform_filter(m, 3, mode="constant") /
                ndimage.uniform_filter(ones, 3, mode="constant"))

    plan = tuple((k, n) for k, n, _ in layer_plan("vgg19"))
    got = sl.propagate_masks(masks, plan, ("relu1_1", "relu2_1"))
    want = []
    for m in masks:
        r11 = avg3(m)                       # conv1_1
        r21 = avg3(avg3(r11)[::2, ::2])     # conv1_2, pool1 (12x10 -> 6x5), conv2_1
        want.append((r11, r21))
    np.testing.assert_allclose(np.asarray(got["relu1_1"]), [w[0] for w in want], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(got["relu2_1"]), [w[1] for w in want], rtol=1e-5, atol=1e-7)
    assert got["relu2_1"].shape == (2, 6, 5)
    with pytest.raises(ValueError, match="not layers"):
        sl.propagate_masks(masks, plan, ("block1_conv1",))


def test_average_style_in_gram_and_feature_space():
    f = rng.standard_normal((3, 4, 5, 2))
    np.testing.assert_allclose(np.asarray(sl.average_style_grams(f, "gram")),
                               np_gram(f).mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(sl.average_style_grams(f, "features")),
                               np_gram(f.mean(axis=0)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        sl.average_style_grams(f, "median")


def test_mean_std_loss():
    a = rng.standard_normal((1, 5, 4, 3))
    b = 2.0 * rng.standard_normal((1, 7, 3, 3)) + 1.0
    mu_a, mu_b = a.mean(axis=(1, 2)), b.mean(axis=(1, 2))
    sd_a = np.sqrt(a.var(axis=(1, 2)) + 1e-5)
    sd_b = np.sqrt(b.var(axis=(1, 2)) + 1e-5)
    want = ((mu_a - mu_b) ** 2).mean() + ((sd_a - sd_b) ** 2).mean()
    assert np.isclose(float(sl.mean_std_loss(a, b)), want, rtol=1e-5)
    with pytest.raises(ValueError, match="channel counts"):
        sl.mean_std_loss(a, b[..., :2])


def np_histogram_specification(values, reference):
    flat = values.ravel()
    q = (stats.rankdata(flat, method="average") - 1) / (flat.size - 1)
    ref = np.sort(reference.ravel())
    return np.interp(q * (ref.size - 1), np.arange(ref.size), ref).reshape(values.shape)


def test_max_gram_and_histogram_specification_eq_5():
    feats = rng.standard_normal((3, 6, 6, 4)).astype(np.float32)
    grams = np_gram(feats)  # [3, 4, 4]
    m = np.asarray(sl.max_gram(grams))
    np.testing.assert_allclose(m, np.maximum(np.maximum(grams[0], grams[1]), grams[2]))
    got = np.asarray(sl.multi_reference_gram(grams))
    want = np_histogram_specification(m, grams)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, got.T, rtol=0, atol=0)  # ties keep the symmetry
    # same-size reference: the result is a rearrangement of the reference values
    v, r = rng.standard_normal(50), rng.standard_normal(50) * 3 + 1
    np.testing.assert_allclose(np.sort(np.asarray(sl.histogram_specification(v, r))),
                               np.sort(r), rtol=1e-5)
    assert np.array_equal(np.argsort(np.asarray(sl.histogram_specification(v, r))), np.argsort(v))


def test_gram_gradient_matches_autodiff_of_the_formula():
    f = jnp.asarray(rng.standard_normal((2, 5, 4, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((2, 3, 3)), jnp.float32)  # not symmetric
    m = jnp.asarray(rng.random((5, 4)), jnp.float32)

    def plain(f, mask=None):
        fm = f if mask is None else f * mask[..., None]
        flat = fm.reshape(2, 20, 3)
        g = jnp.einsum("npc,npd->ncd", flat, flat)
        return g / 20 if mask is None else g / mask.sum()

    for mask in (None, m):
        got = jax.grad(lambda f: jnp.sum(w * sl.gram(f, mask)))(f)
        want = jax.grad(lambda f: jnp.sum(w * plain(f, mask)))(f)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_losses_are_differentiable_under_jit():
    f = jnp.asarray(rng.standard_normal((1, 4, 4, 3)), jnp.float32)
    target = jnp.asarray(rng.standard_normal((3, 3)), jnp.float32)
    masks = jnp.ones((2, 4, 4))

    @jax.jit
    def loss(x):
        return (sl.style_loss({"t": x}, {"t": target}, 1.0) + sl.content_loss(x, 0 * x)
                + sl.style_loss({"t": x}, {"t": jnp.stack([target] * 2)}, 1.0, {"t": masks}))

    g = jax.grad(loss)(f)
    assert g.shape == f.shape and bool(jnp.all(jnp.isfinite(g)))
