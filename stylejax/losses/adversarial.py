"""Least-squares GAN losses (Mao et al. 2017), for one or several discriminator scales.

With targets ``a`` (fake) and ``b`` (real) for the discriminator and ``c`` for the
generator, per discriminator output map ``D``::

    L_D = mean((D(x) - b)^2) + mean((D(G(z)) - a)^2)
    L_G = mean((D(G(z)) - c)^2)

summed over the scales of a multi-scale discriminator. Defaults ``a = 0, b = c = 1``
(the paper's 0-1 coding). Mao et al. write each term with a factor 1/2; MUNIT's
implementation (and this module) leaves it out, which only rescales the loss weight.

Every function takes a single output array (any shape, e.g. PatchGAN maps ``[N, h, w, 1]``)
or a sequence of them (one per scale); ``jit``/``grad`` safe.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["lsgan_discriminator_loss", "lsgan_generator_loss"]


def _as_scales(outputs, name: str) -> list[jax.Array]:
    if isinstance(outputs, Sequence) and not hasattr(outputs, "shape"):
        scales = list(outputs)
    else:
        scales = [outputs]
    if not scales:
        raise ValueError(f"{name} is empty: give one discriminator output per scale")
    for i, s in enumerate(scales):
        if not hasattr(s, "shape") or np.size(s) == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty array (got {type(s).__name__} "
                             f"of shape {tuple(np.shape(s))})")
    return scales


def lsgan_discriminator_loss(real, fake, *, real_label: float = 1.0,
                             fake_label: float = 0.0) -> jax.Array:
    """Discriminator loss ``sum_s mean((D_s(x) - b)^2) + mean((D_s(G(z)) - a)^2)``.

    Args:
      real: discriminator outputs on real images: an array or a sequence (one per scale).
      fake: outputs on generated images, the same number of scales (shapes may differ
        from ``real``'s, e.g. other batch sizes).
      real_label: ``b``; fake_label: ``a``.
    Returns:
      scalar float32.
    """
    r = _as_scales(real, "real")
    f = _as_scales(fake, "fake")
    if len(r) != len(f):
        raise ValueError(f"real has {len(r)} scale(s) but fake has {len(f)}")
    total = jnp.float32(0.0)
    for dr, df in zip(r, f):
        total += jnp.mean(jnp.square(jnp.asarray(dr, jnp.float32) - real_label))
        total += jnp.mean(jnp.square(jnp.asarray(df, jnp.float32) - fake_label))
    return total


def lsgan_generator_loss(fake, *, target: float = 1.0) -> jax.Array:
    """Generator loss ``sum_s mean((D_s(G(z)) - c)^2)``.

    Args:
      fake: discriminator outputs on generated images: an array or a sequence of scales.
      target: ``c``, the value the generator wants the discriminator to output.
    Returns:
      scalar float32.
    """
    total = jnp.float32(0.0)
    for df in _as_scales(fake, "fake"):
        total += jnp.mean(jnp.square(jnp.asarray(df, jnp.float32) - target))
    return total
