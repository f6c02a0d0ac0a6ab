"""ConvLSTM cell against the gate equations in numpy; bidirectional time order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax.models.convlstm import BiConvLSTM, ConvLSTMCell


def _rngs(seed):
    # rbg keys: initialisers compile much faster than with threefry keys.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _np_conv_same(x, k, b):
    """Zero-padded 'SAME' 2-D convolution (cross-correlation), NHWC / HWIO, odd kernels."""
    kh, kw = k.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (k.shape[3],))
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nhwi,io->nhwo", xp[:, dy:dy + h, dx:dx + w], k[dy, dx])
    return out + b


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np_cell(cell, c, h, x):
    p = lambda conv: (np.asarray(conv.kernel[...], np.float64), np.asarray(conv.bias[...], np.float64))
    z = _np_conv_same(x, *p(cell.ih)) + _np_conv_same(h, *p(cell.hh))
    i, g, f, o = np.split(z, 4, axis=-1)
    c = _sig(f + 1.0) * c + _sig(i) * np.tanh(g)
    return c, _sig(o) * np.tanh(c)


def test_cell_matches_gate_equations():
    cell = ConvLSTMCell(2, 3, 3, rngs=_rngs(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 5, 2))
    c0, h0 = rng.normal(size=(2, 2, 4, 5, 3))
    (c1, h1), out = cell((jnp.asarray(c0, jnp.float32), jnp.asarray(h0, jnp.float32)),
                         jnp.asarray(x, jnp.float32))
    wc, wh = _np_cell(cell, c0, h0, x)
    np.testing.assert_allclose(c1, wc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1, wh, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out, h1)
    zc, zh = cell.initialize_carry((2, 4, 5, 2))
    assert zc.shape == zh.shape == (2, 4, 5, 3) and not zc.any()


def test_bidirectional_matches_reference_loops_and_order():
    lstm = BiConvLSTM(2, hidden=3, rngs=_rngs(1))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 3, 3, 2))
    fwd, bwd = jax.jit(lambda x: lstm.directions(x))(jnp.asarray(x, jnp.float32))
    # Reference: forward over t = 0..T-1, backward over t = T-1..0, both from zero carries.
    c = h = np.zeros((1, 3, 3, 3))
    want_f = []
    for t in range(4):
        c, h = _np_cell(lstm.forward_cell, c, h, x[:, t])
        want_f.append(h)
    c = h = np.zeros((1, 3, 3, 3))
    want_b = [None] * 4
    for t in reversed(range(4)):
        c, h = _np_cell(lstm.backward_cell, c, h, x[:, t])
        want_b[t] = h
    np.testing.assert_allclose(fwd, np.stack(want_f, 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bwd, np.stack(want_b, 1), rtol=1e-4, atol=1e-5)
    # Swapping the two cells and reversing time reverses and swaps the two directions.
    swapped = BiConvLSTM(2, hidden=3, rngs=_rngs(1))
    swapped.forward_cell, swapped.backward_cell = lstm.backward_cell, lstm.forward_cell
    f2, b2 = jax.jit(lambda x: swapped.directions(x))(jnp.asarray(x[:, ::-1], jnp.float32))
    np.testing.assert_allclose(f2, bwd[:, ::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b2, fwd[:, ::-1], rtol=1e-5, atol=1e-6)
    # Merge: residual 1x1 conv over [h_fwd, h_bwd].
    k, b = np.asarray(lstm.merge.kernel[...])[0, 0], np.asarray(lstm.merge.bias[...])
    want = x + np.concatenate([np.stack(want_f, 1), np.stack(want_b, 1)], -1) @ k + b
    np.testing.assert_allclose(jax.jit(lambda x: lstm(x))(jnp.asarray(x, jnp.float32)), want,
                               rtol=1e-4, atol=1e-5)
    # A rolled scan gives the same result as the unrolled default.
    lstm.unroll = 1
    np.testing.assert_allclose(lstm.directions(jnp.asarray(x, jnp.float32))[1], bwd,
                               rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="kernel_size"):
        ConvLSTMCell(2, 3, 2, rngs=_rngs(0))
    with pytest.raises(ValueError, match="x must be"):
        BiConvLSTM(2, rngs=_rngs(0))(jnp.zeros((1, 3, 4, 4, 3)))
