"""LSGAN losses against the formula written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss


def test_single_scale_matches_formula():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    want_d = np.mean((real.astype(np.float64) - 1) ** 2) + np.mean(fake.astype(np.float64) ** 2)
    np.testing.assert_allclose(lsgan_discriminator_loss(real, fake), want_d, rtol=1e-6)
    want_g = np.mean((fake.astype(np.float64) - 1) ** 2)
    np.testing.assert_allclose(lsgan_generator_loss(fake), want_g, rtol=1e-6)
    # Other label coding (-1 / 1, generator target 0, as in Mao et al.'s second variant).
    want = np.mean((real - 1.0) ** 2) + np.mean((fake + 1.0) ** 2)
    np.testing.assert_allclose(lsgan_discriminator_loss(real, fake, fake_label=-1.0), want,
                               rtol=1e-6)
    np.testing.assert_allclose(lsgan_generator_loss(fake, target=0.0), np.mean(fake ** 2),
                               rtol=1e-6)


def test_multi_scale_sums_scales_and_gradient():
    rng = np.random.default_rng(1)
    real = [rng.normal(size=(2, 8 // 2 ** s, 8 // 2 ** s, 1)).astype(np.float32) for s in range(3)]
    fake = [rng.normal(size=(2, 8 // 2 ** s, 8 // 2 ** s, 1)).astype(np.float32) for s in range(3)]
    want = sum(np.mean((r - 1) ** 2) + np.mean(f ** 2) for r, f in zip(real, fake))
    got = jax.jit(lsgan_discriminator_loss)(real, fake)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # d/dD_fake of mean((D - 1)^2) = 2 (D - 1) / n.
    g = jax.grad(lsgan_generator_loss)(fake)
    for gs, f in zip(g, fake):
        np.testing.assert_allclose(gs, 2 * (f - 1) / f.size, rtol=1e-5, atol=1e-7)
    # A perfect discriminator and a perfect generator each reach zero.
    ones = [jnp.ones_like(r) for r in real]
    zeros = [jnp.zeros_like(f) for f in fake]
    assert float(lsgan_discriminator_loss(ones, zeros)) == 0.0
    assert float(lsgan_generator_loss(ones)) == 0.0


def test_bad_input():
    x = np.zeros((1, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="scale"):
        lsgan_discriminator_loss([x, x], [x])
    with pytest.raises(ValueError, match="empty"):
        lsgan_generator_loss([])
    with pytest.raises(ValueError, match="fake"):
        lsgan_generator_loss([x, 3.0])
