"""XLA compiler options that stylejax passes to ``jax.jit`` on the CPU.

XLA's CPU backend hands convolutions to YNNPACK fusions by default and runs each
such fusion on one thread. Programs that are chains of mostly dependent
convolutions (network inference at small batch, a training step of one network)
then leave all but one core idle. With the fusion type below, dots stay on YNNPACK
and convolutions go to XLA's Eigen kernels, which split every convolution over the
intra-op thread pool. Results agree with the default compilation to float32
rounding. Which programs gain is measured, not assumed (``docs/benchmarks.md``): MUNIT
inference (``stylejax dce``) and the tuning objective (LAP + StyleX and its gradient)
do; training steps, whose many independent convolutions already keep the cores busy,
are slower with it (SimSiam, MUNIT).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

#: Convolutions on XLA's multi-threaded Eigen path; dots stay on YNNPACK.
EIGEN_CONVOLUTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.lru_cache(maxsize=1)
def _accepted() -> bool:
    """Whether this jaxlib's XLA knows the option (it is experimental)."""
    try:
        jax.jit(lambda x: x + 1, backend="cpu",
                compiler_options=EIGEN_CONVOLUTIONS).lower(jnp.zeros(2)).compile()
        return True
    except Exception:  # an XLA without the option: keep its defaults
        return False


def jit(fn, **kwargs):
    """``jax.jit(fn, **kwargs)`` compiled with :func:`cpu_convolution_options` for the
    default backend, which is looked up at the first call (not at import, so that JAX's
    platform can still be chosen after importing stylejax). Called inside another
    ``jax.jit`` (where JAX refuses compiler options) it is a plain nested ``jax.jit``.

    Returns:
      a callable with ``fn``'s signature.
    """
    plain = jax.jit(fn, **kwargs)

    @functools.lru_cache(maxsize=1)
    def tuned():
        options = cpu_convolution_options()
        return jax.jit(fn, compiler_options=options, **kwargs) if options else plain

    @functools.wraps(fn)
    def call(*args, **kw):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw))):
            return plain(*args, **kw)
        try:
            return tuned()(*args, **kw)
        except ValueError as err:  # traced with only constants: still a nested jit
            if "top-level" not in str(err):
                raise
            return plain(*args, **kw)

    return call


def cpu_convolution_options(backend: str | None = None) -> dict:
    """Compiler options for ``jax.jit(..., compiler_options=...)``: convolutions off
    the single-threaded YNNPACK fusions on the CPU backend.

    Args:
      backend: the platform the program runs on (``"cpu"``, ``"gpu"``, ``"tpu"``;
        default ``jax.default_backend()``).
    Returns:
      a new dict; empty for other backends or an XLA that does not know the option.
    """
    backend = jax.default_backend() if backend is None else backend
    return dict(EIGEN_CONVOLUTIONS) if backend == "cpu" and _accepted() else {}
