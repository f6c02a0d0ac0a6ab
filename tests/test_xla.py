"""stylejax._xla: the CPU convolution compiler options."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax import _xla


def _ynn_convolutions(compiled_text: str) -> int:
    """Convolutions inside YNNPACK fusions of a compiled CPU program."""
    called = re.findall(r"calls=%([\w.\-]+).*__ynn_fusion", compiled_text)
    bodies = {m.group(1): m.group(2)
              for m in re.finditer(r"^%(\S+) \((.*?)^\}", compiled_text, re.M | re.S)}
    return sum(" convolution(" in bodies.get(c, "") for c in called)


def test_options_move_convolutions_off_ynnpack_and_keep_results():
    assert _xla.cpu_convolution_options("gpu") == {} == _xla.cpu_convolution_options("tpu")
    if not _xla._accepted():
        pytest.skip("this XLA does not know the YNNPACK fusion option")
    options = _xla.cpu_convolution_options("cpu")
    assert options == _xla.EIGEN_CONVOLUTIONS and options is not _xla.EIGEN_CONVOLUTIONS

    def net(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(y).sum()

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 32)), jnp.float32)  # enough channels for YNNPACK
    w = jnp.asarray(rng.normal(size=(3, 3, 32, 32)) / 17.0, jnp.float32)
    grad = jax.grad(net, argnums=(0, 1))
    default, tuned = jax.jit(grad), jax.jit(grad, compiler_options=options)
    assert _ynn_convolutions(default.lower(x, w).compile().as_text()) > 0
    assert _ynn_convolutions(tuned.lower(x, w).compile().as_text()) == 0
    for a, b in zip(tuned(x, w), default(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_jit_works_at_top_level_nested_and_under_grad():
    def f(x):
        return jnp.sin(x) * 2.0

    tuned = _xla.jit(f)
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(tuned(x), 2 * np.sin(np.asarray(x)), rtol=1e-6)
    # inside another jit (JAX refuses compiler options there), with a tracer or a constant
    np.testing.assert_allclose(jax.jit(lambda y: tuned(y) + 1.0)(x), 2 * np.sin(x) + 1, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda: tuned(x))(), 2 * np.sin(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda y: tuned(y).sum())(x), 2 * np.cos(x), rtol=1e-6)
