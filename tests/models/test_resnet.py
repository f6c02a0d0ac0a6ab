"""ResNet-18 (NNX): architecture size, shapes, zero-initialised residual branches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax.models.resnet import ResNet18


def _rngs():
    # XLA's RngBitGenerator: threefry initialisers cost ~1 s of XLA CPU compilation per shape.
    return nnx.Rngs(jax.random.key(0, impl="rbg"))


def _count(module):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_parameter_count_matches_torchvision():
    # torchvision.models.resnet18() has 11,689,512 parameters (3 input channels,
    # 1000 classes); the 1-channel stem has 2 * 64 * 7 * 7 fewer.
    rgb = nnx.eval_shape(lambda: ResNet18(1000, 3, rngs=_rngs()))
    gray = nnx.eval_shape(lambda: ResNet18(None, 1, rngs=_rngs()))
    assert _count(rgb) == 11_689_512
    assert _count(gray) == 11_689_512 - 2 * 64 * 49 - (512 * 1000 + 1000)
    assert gray.num_features == 512


def test_shapes_and_validation():
    net = ResNet18(3, 1, width=4, rngs=_rngs())
    fwd = nnx.jit(lambda m, x: m(x))
    x = jax.random.uniform(jax.random.key(1), (2, 40, 36))
    assert fwd(net, x).shape == (2, 3)
    feats = ResNet18(None, 1, width=4, rngs=_rngs())
    assert feats.num_features == 32
    with pytest.raises(ValueError, match="too small"):
        feats(jnp.zeros((1, 16, 40)))
    with pytest.raises(ValueError, match="channels"):
        feats(jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="num_outputs"):
        ResNet18(0, rngs=_rngs())


def _bn_train(y, eps=1e-5):
    mean = y.mean(axis=(0, 1, 2))
    var = y.var(axis=(0, 1, 2))
    return (y - mean) / np.sqrt(var + eps)


def test_zero_init_residual_blocks_are_shortcuts():
    net = ResNet18(None, 1, width=4, rngs=_rngs())
    blocks = list(net.blocks)
    # The last BN of every residual branch starts with scale 0, the others with 1.
    for block in blocks:
        assert np.all(np.asarray(block.bn2.scale[...]) == 0)
        assert np.all(np.asarray(block.bn1.scale[...]) == 1)
    run = nnx.jit(lambda b, x: b(x))
    rng = np.random.default_rng(0)
    identity, projection = blocks[0], blocks[2]  # stage 1 (4 -> 4), stage 2 (4 -> 8, stride 2)
    x = rng.random((2, 8, 8, 4)).astype(np.float32)  # post-ReLU inputs are non-negative
    np.testing.assert_allclose(np.asarray(run(identity, jnp.asarray(x))), x, atol=1e-6)
    # Projection shortcut in numpy: 1x1 conv with stride 2, train-mode BN (scale 1,
    # bias 0), ReLU.
    w = np.asarray(projection.down_conv.kernel[...])[0, 0]  # [cin, cout]
    expected = np.maximum(_bn_train(x[:, ::2, ::2, :] @ w), 0.0)
    np.testing.assert_allclose(np.asarray(run(projection, jnp.asarray(x))), expected,
                               atol=1e-4, rtol=1e-4)


def test_max_pool_matches_reduce_window_including_gradient_ties():
    from stylejax.models.resnet import max_pool_3x3_s2

    def reference(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                     ((0, 0), (1, 1), (1, 1), (0, 0)))

    # Small integers make many ties; the gradient must go to the same (first) maximum.
    x = jnp.asarray(np.random.default_rng(0).integers(0, 4, (2, 7, 10, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(max_pool_3x3_s2(x)), np.asarray(reference(x)))
    g = jax.random.normal(jax.random.key(1), reference(x).shape)
    ours = jax.vjp(max_pool_3x3_s2, x)[1](g)[0]
    ref = jax.vjp(reference, x)[1](g)[0]
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-6)
