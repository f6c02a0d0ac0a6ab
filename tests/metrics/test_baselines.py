"""Tests for the baseline style descriptors against independent numpy references."""

import numpy as np
import pytest
from scipy import ndimage

from stylejax.metrics import baselines as B

_K = np.array([1, 4, 6, 4, 1]) / 16.0


def _blur(x, gain=1.0):
    for axis in (0, 1):
        x = ndimage.convolve1d(x, _K * gain, axis=axis, mode="mirror")
    return x


def _laplacian_bands(img, levels):
    """Textbook Burt-Adelson pyramid for even sizes (scipy 'mirror' == numpy 'reflect')."""
    bands, g = [], img.astype(np.float64)
    for _ in range(levels):
        small = _blur(g)[::2, ::2]
        up = np.zeros_like(g)
        up[::2, ::2] = small
        bands.append(g - _blur(up, gain=2.0))
        g = small
    return bands


def _images(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.uniform(size=(n, size, size)), (0, 3, 3))
    base = (base - base.min()) / (base.max() - base.min())
    return (0.8 * base + 0.2 * rng.uniform(size=base.shape)).astype(np.float32)


def test_handcrafted_histogram_matches_numpy():
    x = _images()
    h = B.HandcraftedStyle(bins=16)
    for img, row in zip(x, h.histogram(x)):
        ref, _ = np.histogram(img, bins=16, range=(0.0, 1.0))
        np.testing.assert_allclose(row, ref / ref.sum(), atol=1e-12)


# Tests use the default descriptors on 64 px images, the shapes of the quick
# evaluation, so one jit compilation serves them all.

def test_handcrafted_band_energies_match_textbook_pyramid():
    x = _images(n=2, size=64)
    h = B.HandcraftedStyle()
    got = h.band_energies(x)
    for img, row in zip(x, got):
        bands = _laplacian_bands(img, h.levels)
        rms = [np.log(np.sqrt(np.mean(b ** 2)) + 1e-6) for b in bands]
        mad = [np.log(np.mean(np.abs(b)) + 1e-6) for b in bands]
        np.testing.assert_allclose(row, rms + mad, rtol=2e-4, atol=2e-4)


def test_handcrafted_embed_layout_and_validation():
    x = _images(n=5)
    h = B.HandcraftedStyle(bins=8, band_weight=0.25)
    e = h.embed(x)
    assert e.shape == (5, h.dim) == (5, 16)
    np.testing.assert_allclose(e[:, :8] ** 2, h.histogram(x), atol=1e-6)
    np.testing.assert_allclose(e[:, 8:], 0.25 * h.band_energies(x), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        h.embed(x * 2.0)
    with pytest.raises(ValueError, match="rank"):
        h.embed(x[0])
    with pytest.raises(ValueError, match="too small"):
        B.HandcraftedStyle(levels=4).embed(np.zeros((1, 20, 20), np.float32) + 0.5)


def test_handcrafted_sees_a_band_gain():
    # Doubling the fine detail of an image raises band-0 log RMS by about log 2.
    rng = np.random.default_rng(1)
    smooth = ndimage.gaussian_filter(rng.uniform(size=(64, 64)), 4)
    detail = rng.normal(0, 0.02, size=(64, 64))
    a = np.clip(0.5 + 0.3 * (smooth - smooth.mean()) + detail, 0, 1)
    b = np.clip(0.5 + 0.3 * (smooth - smooth.mean()) + 2 * detail, 0, 1)
    e = B.HandcraftedStyle().band_energies(np.stack([a, b]).astype(np.float32))
    assert e[1, 0] - e[0, 0] == pytest.approx(np.log(2.0), abs=0.1)


def _numpy_gram_descriptor(kernels, img):
    h = (2.0 * img.astype(np.float64) - 1.0)[..., None]
    parts = []
    for k, kernel in enumerate(np.asarray(kk, np.float64) for kk in kernels):
        if k > 0:
            hh, ww, c = h.shape
            h = h[:hh // 2 * 2, :ww // 2 * 2].reshape(hh // 2, 2, ww // 2, 2, c).mean((1, 3))
        pad = np.pad(h, ((1, 1), (1, 1), (0, 0)))
        out = np.zeros(h.shape[:2] + (kernel.shape[-1],))
        for dy in range(3):
            for dx in range(3):
                out += pad[dy:dy + h.shape[0], dx:dx + h.shape[1]] @ kernel[dy, dx]
        h = np.maximum(out, 0.0)
        f = h.reshape(-1, h.shape[-1])
        gram = f.T @ f / f.shape[0]
        iu = np.triu_indices(gram.shape[0])
        parts.append(np.log(gram[iu] + 1e-4) / gram.shape[0])
    return np.concatenate(parts)


def test_random_gram_matches_numpy_forward():
    x = _images(n=3, size=64)
    g = B.RandomGramStyle()
    e = g.embed(x)
    assert e.shape == (3, g.dim) == (3, 136 + 528 + 2080)
    for img, row in zip(x, e):
        np.testing.assert_allclose(row, _numpy_gram_descriptor(g.kernels, img),
                                   rtol=1e-4, atol=1e-4)


def test_random_gram_is_fixed_by_its_seed():
    a, b = B.RandomGramStyle(seed=0), B.RandomGramStyle(seed=0)
    for ka, kb in zip(a.kernels, b.kernels):
        np.testing.assert_array_equal(ka, kb)
    assert not np.allclose(a.kernels[0], B.RandomGramStyle(seed=1).kernels[0])
    # Padding to the fixed chunk does not leak between images.
    x = _images(n=3, size=64)
    np.testing.assert_allclose(a.embed(x[:1]), a.embed(x)[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        B.RandomGramStyle(channels=())
    with pytest.raises(ValueError, match="too small"):
        B.RandomGramStyle(channels=(2, 2, 2, 2, 2)).embed(np.full((1, 16, 16), 0.5, np.float32))


def test_baselines_registry():
    found = B.baselines()
    assert set(found) == {"handcrafted", "gram"}
    for name, enc in found.items():
        assert enc.name == name and enc.metric in ("euclidean", "cosine")
