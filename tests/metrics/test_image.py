"""SSIM / MS-SSIM / PSNR / CW-SSIM against scikit-image and the published formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stylejax import metrics

rng = np.random.default_rng(0)


def noisy_pair(shape, noise=0.1):
    a = ndimage.gaussian_filter(rng.random(shape), 1.0)
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    return a.astype(np.float32), b.astype(np.float32)


def sk_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)


@pytest.mark.parametrize("shape", [(11, 11), (32, 45), (64, 64)])
def test_ssim_matches_skimage(shape):
    a, b = noisy_pair(shape)
    assert np.isclose(float(metrics.ssim(a, b)), sk_ssim(a, b), atol=2e-5)


def test_ssim_batch_and_identity():
    pairs = [noisy_pair((24, 30), noise) for noise in (0.02, 0.2, 0.5)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    got = np.asarray(metrics.ssim(a, b))
    want = [sk_ssim(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert got[0] > got[1] > got[2]
    assert np.isclose(float(metrics.ssim(a[0], a[0])), 1.0, atol=1e-6)


def test_psnr_matches_skimage_and_formula():
    a, b = noisy_pair((20, 17))
    want = peak_signal_noise_ratio(a, b, data_range=1.0)
    assert np.isclose(float(metrics.psnr(a, b)), want, rtol=1e-5)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert np.isclose(float(metrics.psnr(a, b, data_range=2.0)), 10 * np.log10(4 / mse), rtol=1e-5)
    assert np.isinf(float(metrics.psnr(a, a)))


def np_ms_ssim(a, b, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    """Wang et al. 2003 in numpy: skimage-style Gaussian SSIM terms per scale."""
    c1, c2, pad = 0.01 ** 2, 0.03 ** 2, 5
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for scale in range(len(weights)):
        filt = lambda x: ndimage.gaussian_filter(x, 1.5, truncate=3.5)[pad:-pad, pad:-pad]
        ma, mb = filt(a), filt(b)
        va, vb, cov = filt(a * a) - ma ** 2, filt(b * b) - mb ** 2, filt(a * b) - ma * mb
        cs = (2 * cov + c2) / (va + vb + c2)
        if scale == len(weights) - 1:
            values.append(np.mean((2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1) * cs))
        else:
            values.append(np.mean(cs))
            h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
            a = a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            b = b[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return np.prod(np.maximum(values, 0) ** np.asarray(weights))


def test_ms_ssim_matches_published_formula():
    a, b = noisy_pair((180, 190), 0.15)
    assert np.isclose(float(metrics.ms_ssim(a, b)), np_ms_ssim(a, b), atol=1e-5)
    assert np.isclose(float(metrics.ms_ssim(a, a)), 1.0, atol=1e-6)
    # one scale with weight 1 is plain SSIM
    assert np.isclose(float(metrics.ms_ssim(a, b, weights=(1.0,))), sk_ssim(a, b), atol=2e-5)
    with pytest.raises(ValueError, match="too small"):
        metrics.ms_ssim(a[:100], b[:100])


def test_cw_ssim_definition_and_weight_map():
    a, b = noisy_pair((32, 32))
    enhanced = np.zeros((32, 32), bool)
    enhanced[10:14, 20:24] = True
    content_map = metrics.contrast_weight_map(enhanced)
    style_map = metrics.contrast_weight_map(enhanced, invert=True)
    dist = ndimage.distance_transform_edt(~enhanced)
    np.testing.assert_allclose(content_map, 0.1 + 0.9 * dist / dist.max(), rtol=1e-6)
    np.testing.assert_allclose(style_map, 1.0 - 0.9 * dist / dist.max(), rtol=1e-6)
    assert content_map[enhanced].max() == pytest.approx(0.1)
    assert style_map[enhanced].min() == pytest.approx(1.0)
    got = float(metrics.cw_ssim(a, b, content_map))
    assert np.isclose(got, sk_ssim(a * content_map, b * content_map), atol=2e-5)
    with pytest.raises(ValueError, match="does not match"):
        metrics.cw_ssim(a, b, content_map[:20])


def test_enhancement_mask_threshold():
    series = np.full((4, 8, 8), 100.0)
    series[1:, 2:4, 2:4] += np.array([15.0, 25.0, 35.0])[:, None, None]  # mean 25 > 20
    series[1:, 6, 6] += 10.0
    mask = metrics.enhancement_mask(series, threshold=20)
    assert mask.sum() == 4 and mask[2:4, 2:4].all()
    with pytest.raises(ValueError, match="pre-contrast"):
        metrics.enhancement_mask(series[:1])


def test_metrics_are_differentiable_and_jittable():
    a, b = noisy_pair((24, 24))
    for fn in (metrics.ssim, metrics.psnr):
        g = jax.jit(jax.grad(lambda x, fn=fn: fn(x, jnp.asarray(b))))(jnp.asarray(a))
        assert g.shape == a.shape and bool(jnp.all(jnp.isfinite(g)))


def test_bad_inputs():
    a, b = noisy_pair((16, 16))
    with pytest.raises(ValueError, match="same shape"):
        metrics.ssim(a, b[:15])
    with pytest.raises(ValueError, match="too small"):
        metrics.ssim(a[:8, :8], b[:8, :8])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.psnr(np.full_like(a, np.nan), b)
    with pytest.raises(ValueError, match="rank"):
        metrics.ssim(a[None, None], b[None, None])
