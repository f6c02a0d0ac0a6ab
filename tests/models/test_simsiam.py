"""SimSiam heads and loss: numpy reference, stop-gradient, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax.models.simsiam import (Predictor, Projector, SimSiam, collapse_std,
                                     cosine_similarity, simsiam_loss)


def _rngs():
    # XLA's RngBitGenerator: threefry initialisers cost ~1 s of XLA CPU compilation per shape.
    return nnx.Rngs(jax.random.key(0, impl="rbg"))


def _np_cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    p1, p2, z1, z2 = (rng.normal(size=(5, 7)).astype(np.float32) for _ in range(4))
    expected = -0.5 * (_np_cos(p1, z2).mean() + _np_cos(p2, z1).mean())
    np.testing.assert_allclose(float(simsiam_loss(p1, p2, z1, z2)), expected, rtol=1e-5)
    # Perfectly aligned predictions give the minimum, -1.
    np.testing.assert_allclose(float(simsiam_loss(z2, z1, z1, z2)), -1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cosine_similarity(p1, z1)), _np_cos(p1, z1), rtol=1e-5)


def test_stop_gradient_on_targets():
    rng = np.random.default_rng(1)
    p1, p2, z1, z2 = (jnp.asarray(rng.normal(size=(4, 6)), jnp.float32) for _ in range(4))
    gz1, gz2 = jax.grad(simsiam_loss, argnums=(2, 3))(p1, p2, z1, z2)
    assert np.all(np.asarray(gz1) == 0) and np.all(np.asarray(gz2) == 0)
    gp1 = jax.grad(simsiam_loss, argnums=0)(p1, p2, z1, z2)
    assert np.abs(np.asarray(gp1)).max() > 1e-3

    # Through the predictor: the gradient w.r.t. z only takes the predictor path,
    # i.e. it equals the gradient with the targets replaced by constants.
    pred = Predictor(6, 3, rngs=_rngs())
    graphdef, state = nnx.split(pred)

    def full(z1, z2):
        h = nnx.merge(graphdef, state, copy=True)
        return simsiam_loss(h(z1), h(z2), z1, z2)

    c1, c2 = np.asarray(z1), np.asarray(z2)

    def predictor_path_only(z1, z2):
        h = nnx.merge(graphdef, state, copy=True)
        p1, p2 = h(z1), h(z2)
        return -0.5 * (jnp.mean(cosine_similarity(p1, jnp.asarray(c2)))
                       + jnp.mean(cosine_similarity(p2, jnp.asarray(c1))))

    g_full = jax.grad(full, argnums=(0, 1))(z1, z2)
    g_ref = jax.grad(predictor_path_only, argnums=(0, 1))(z1, z2)
    for a, b in zip(g_full, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_shapes_and_head_layout():
    model = SimSiam(width=4, dim=16, pred_dim=8, rngs=_rngs())
    x1 = jax.random.uniform(jax.random.key(0), (3, 32, 32))
    x2 = jax.random.uniform(jax.random.key(1), (3, 32, 32))
    p1, p2, z1, z2 = nnx.jit(lambda m, a, b: m(a, b))(model, x1, x2)
    for out in (p1, p2, z1, z2):
        assert out.shape == (3, 16) and out.dtype == jnp.float32
    # ResNet-18 heads (DESIGN.md section 5): 512-512-2048 projector, last BN
    # without affine parameters and the last linear without bias; 2048-512-2048 predictor.
    proj = nnx.eval_shape(lambda: Projector(512, 2048, rngs=_rngs()))
    assert not hasattr(proj.bn3, "scale") or proj.bn3.scale is None
    assert proj.fc3.bias is None and proj.fc1.bias is None
    n_proj = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(proj, nnx.Param)))
    assert n_proj == 512 * 512 * 2 + 512 * 2048 + 2 * 2 * 512
    pred = nnx.eval_shape(lambda: Predictor(2048, 512, rngs=_rngs()))
    n_pred = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(pred, nnx.Param)))
    assert n_pred == 2048 * 512 + 2 * 512 + 512 * 2048 + 2048


def test_collapse_monitor():
    z = jnp.tile(jnp.arange(8.0)[None], (5, 1))
    assert float(collapse_std(z)) < 1e-6
    spread = jax.random.normal(jax.random.key(0), (4096, 64))
    np.testing.assert_allclose(float(collapse_std(spread)), 1 / np.sqrt(64), rtol=0.05)
