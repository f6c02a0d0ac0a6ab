"""Pyramid checked against the textbook definition written with scipy.ndimage."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from stylejax.pipeline import pyramid

KERNEL = np.array([1, 4, 6, 4, 1], np.float64) / 16


def ref_reduce(x):
    for axis in (-1, -2):
        x = ndi.convolve1d(x, KERNEL, axis=axis, mode="mirror")
    return x[..., ::2, ::2]


def ref_expand(x, shape):
    z = np.zeros(x.shape[:-2] + tuple(shape))
    z[..., ::2, ::2] = x
    for axis in (-1, -2):
        z = ndi.convolve1d(z, 2 * KERNEL, axis=axis, mode="mirror")
    return z


def ref_laplacian(x, levels):
    gauss = [x]
    for _ in range(levels):
        gauss.append(ref_reduce(gauss[-1]))
    return [g - ref_expand(n, g.shape[-2:]) for g, n in zip(gauss[:-1], gauss[1:])], gauss[-1]


@pytest.mark.parametrize("shape", [(16, 16), (17, 23), (2, 33, 20), (2, 1, 40, 37)])
def test_reduce_expand_match_textbook(shape):
    x = np.random.default_rng(0).random(shape)
    small = np.asarray(pyramid.pyr_reduce(x.astype(np.float32)))
    np.testing.assert_allclose(small, ref_reduce(x), atol=1e-6)
    big = np.asarray(pyramid.pyr_expand(small, shape[-2:]))
    np.testing.assert_allclose(big, ref_expand(small.astype(np.float64), shape[-2:]), atol=1e-6)


@pytest.mark.parametrize("shape", [(45, 61), (3, 64, 64)])
def test_laplacian_bands_and_exact_reconstruction(shape):
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    levels = pyramid.default_levels(shape)
    bands, residual = pyramid.laplacian_pyramid(x, levels)
    ref_bands, ref_residual = ref_laplacian(x.astype(np.float64), levels)
    assert len(bands) == levels
    for got, want in zip(bands, ref_bands):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(residual), ref_residual, atol=1e-5)
    rebuilt = np.asarray(pyramid.reconstruct(bands, residual))
    # Exact up to float32 rounding of a handful of additions.
    assert np.abs(rebuilt - x).max() < 4 * np.finfo(np.float32).eps * np.abs(x).max() * levels


def test_default_levels():
    assert pyramid.default_levels((512, 512)) == 6
    assert pyramid.default_levels((64, 80)) == 4
    assert pyramid.default_levels((16, 300)) == 2


def test_too_small_for_levels_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        pyramid.laplacian_pyramid(np.zeros((8, 8), np.float32), levels=4)
    with pytest.raises(ValueError, match="rank"):
        pyramid.laplacian_pyramid(np.zeros(8, np.float32), levels=1)
