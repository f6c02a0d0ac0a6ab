"""U-Net: shapes, bad input, cross-entropy against numpy, and a toy segmentation it learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from stylejax.models.unet import UNet, cross_entropy


@pytest.fixture(scope="module")
def toy():
    """Bright disks (class 1) and dark squares (class 2) on a noisy background (class 0)."""
    rng = np.random.default_rng(0)
    n, size = 8, 32
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0.5, 0.08, (n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 7)
        disk = np.hypot(yy - cy, xx - cx) < r
        y0, x0 = rng.integers(0, size - 6, 2)
        square = np.zeros_like(disk)
        square[y0:y0 + 6, x0:x0 + 6] = True
        square &= ~disk
        images[i][disk] += 0.4
        images[i][square] -= 0.4
        labels[i][disk], labels[i][square] = 1, 2
    return images, labels


def test_logit_shapes_and_levels():
    net = UNet(5, channels=(4, 8, 16), seed=0)
    out = jax.eval_shape(net, jax.ShapeDtypeStruct((2, 16, 24), jnp.float32))
    assert out.shape == (2, 16, 24, 5) and net.multiple == 4
    rgb = UNet(3, in_channels=3, channels=(4, 8), seed=0)
    assert jax.eval_shape(rgb, jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)).shape == (1, 8, 8, 3)


def test_bad_input():
    net = UNet(3, channels=(4, 8, 16), seed=0)
    with pytest.raises(ValueError, match="not divisible by 4"):
        net(np.zeros((1, 18, 16), np.float32))
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 1\]"):
        net(np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        net(np.full((1, 16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="num_classes"):
        UNet(1, seed=0)
    with pytest.raises(ValueError, match="do not match"):
        cross_entropy(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 5), np.int32))


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3, 4))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(cross_entropy(logits, labels), nll.mean(), rtol=1e-5)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(cross_entropy(logits, labels, w),
                               (nll * w[labels]).sum() / w[labels].sum(), rtol=1e-5)


def test_training_steps_reduce_the_loss_and_segment(toy):
    images, labels = toy
    net = UNet(3, channels=(8, 16), seed=0)
    opt = nnx.Optimizer(net, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(net, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(net)
        opt.update(net, grads)
        return loss

    losses = [float(step(net, opt, images, labels)) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0], losses
    pred = np.asarray(nnx.jit(lambda m, x: m(x).argmax(-1))(net, images))
    assert np.mean(pred == labels) > 0.9
    assert np.mean(pred[labels == 1] == 1) > 0.6


def test_layers_match_flax_group_norm_and_the_transposed_convolution_definition():
    from stylejax.models import unet as um
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 6, 8)).astype(np.float32)
    ours = um._GroupNorm(8, 4)(jnp.asarray(x))
    ref = nnx.GroupNorm(8, num_groups=4, epsilon=1e-5, rngs=nnx.Rngs(0))(jnp.asarray(x))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    up = um._UpConv(8, 3, rng)
    k, b = np.asarray(up.kernel[...]), np.asarray(up.bias[...])
    expect = np.zeros((2, 8, 12, 3), np.float32)
    for i in range(4):
        for j in range(6):
            for a in range(2):
                for c in range(2):
                    expect[:, 2 * i + a, 2 * j + c] = x[:, i, j] @ k[a, c] + b
    np.testing.assert_allclose(up(jnp.asarray(x)), expect, rtol=1e-4, atol=1e-5)
