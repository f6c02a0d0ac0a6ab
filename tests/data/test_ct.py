"""Synthetic CT: determinism across kernels and doses, HU calibration, kernel noise
spectra, anatomy labels and bad input.

Noise is measured as (noisy - noise-free) reconstructions with numpy FFTs; HU values
against the documented tissue ranges.
"""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from stylejax.data import ct as ctm
from stylejax.data.ct import (AIR, BONE, FAT, KIDNEY, LIVER, LUNG, SOFT_TISSUE, VESSEL, ct,
                              ct_kernels, ct_labels, ct_slices)

SIZE = (128, 128)


@pytest.fixture(scope="module")
def pair():
    """Seeds 0 and 1, every kernel, with and without noise."""
    return ct_slices([0, 1], SIZE), ct_slices([0, 1], SIZE, noise=False)


def test_kernels_and_labels_are_listed():
    kernels = ct_kernels()
    assert len(kernels) >= 4 and kernels[0] == "soft" and "bone" in kernels
    assert ct_labels()[AIR] == "air" and ct_labels()[LUNG] == "lung"
    assert len(set(ct_labels())) == len(ct_labels()) == 9


def test_shapes_types_and_same_anatomy_for_every_kernel_and_dose():
    a = ct(3, size=(96, 112), kernel="soft")
    b = ct(3, size=(96, 112), kernel="bone", dose=0.25)
    assert a.image.shape == a.labels.shape == (96, 112)
    assert a.image.dtype == np.float32 and a.labels.dtype == np.int32
    assert a.kernel == "soft" and b.dose == 0.25 and a.seed == 3
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.phantom, b.phantom)
    assert a.params == b.params and a.params["phase"] in ("none", "arterial", "portal")
    c = ct(4, size=(96, 112), kernel="soft")
    assert np.mean(a.labels != c.labels) > 0.05
    np.testing.assert_array_equal(a.image, ct(3, size=(96, 112), kernel="soft").image)
    assert not np.array_equal(a.image, b.image)


def test_noise_free_reconstruction_is_calibrated_in_hu(pair):
    _, clean = pair
    k = clean.kernels.index("standard")
    for i in range(2):
        img, truth, lab = clean.images[i, k], clean.phantoms[i], clean.labels[i]
        for tissue in (LIVER, FAT):
            core = ndi.binary_erosion(lab == tissue, iterations=3)
            assert core.sum() > 50
            assert abs(img[core].mean() - truth[core].mean()) < 5.0
        outside = ndi.binary_erosion(lab == AIR, iterations=4)
        assert abs(np.median(img[outside]) + 1000) < 10
        assert np.corrcoef(img.ravel(), truth.ravel())[0, 1] > 0.97


def test_tissue_values_are_in_their_hu_ranges():
    s = ct_slices(range(8), (96, 96), kernels=("standard",), noise=False)
    lab, hu = s.labels, s.phantoms
    present = set(np.unique(lab))
    assert present == set(range(len(ct_labels())))       # every class occurs somewhere
    med = {t: np.median(hu[lab == t]) for t in present}
    assert med[AIR] < -900 and -130 < med[FAT] < -60 and -900 < med[LUNG] < -780
    assert 20 < med[SOFT_TISSUE] < 70 and 40 < med[LIVER] < 140 and med[BONE] > 250
    assert med[KIDNEY] > 25 and med[VESSEL] > 0


def _noise_power(noise):
    """Per kernel: total noise variance and power above 0.25 cycles/pixel (central ROI)."""
    roi = noise[..., 40:88, 40:88]
    roi = roi - roi.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(roi)) ** 2 / roi.shape[-1] / roi.shape[-2]
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(48), np.fft.fftfreq(48), indexing="ij"))
    return power.mean(axis=(0, -2, -1)), power[..., f > 0.25].mean(axis=(0, -1))


def test_sharper_kernels_carry_more_high_frequency_noise(pair):
    noisy, clean = pair
    total, high = _noise_power(noisy.images - clean.images)
    assert np.all(np.diff(high) > 0), dict(zip(noisy.kernels, high))
    assert np.all(np.diff(total) > 0), dict(zip(noisy.kernels, total))
    # A soft kernel keeps little of its noise at high frequency, a sharp one much more.
    share = high / total
    assert share[0] < 0.2 < share[-1]


def test_kernels_share_the_noise_realisation_and_dose_rescales_it(pair):
    noisy, clean = pair
    noise = noisy.images - clean.images
    k1, k2 = noisy.kernels.index("detail"), noisy.kernels.index("sharp")
    same_seed = np.corrcoef(noise[0, k1].ravel(), noise[0, k2].ravel())[0, 1]
    other_seed = np.corrcoef(noise[0, k1].ravel(), noise[1, k2].ravel())[0, 1]
    assert same_seed > 0.8 and abs(other_seed) < 0.1
    high = ct_slices([0], SIZE, kernels=("standard",), dose=4.0).images[0, 0]
    k = noisy.kernels.index("standard")
    ratio = np.std(high - clean.images[0, k]) / np.std(noise[0, k])
    assert 0.45 < ratio < 0.55                             # sigma ~ 1 / sqrt(dose)
    assert np.corrcoef((high - clean.images[0, k]).ravel(), noise[0, k].ravel())[0, 1] > 0.9
    # noise_seed: an independent realisation of the same scan, at the same noise level.
    other = ct_slices([0], SIZE, kernels=("detail",), noise_seed=5).images[0, 0]
    other_noise = other - clean.images[0, k1]
    assert abs(np.corrcoef(other_noise.ravel(), noise[0, k1].ravel())[0, 1]) < 0.1
    assert 0.9 < np.std(other_noise) / np.std(noise[0, k1]) < 1.1


def test_standard_kernel_noise_is_clinical(pair):
    noisy, clean = pair
    k = noisy.kernels.index("standard")
    core = ndi.binary_erosion(noisy.labels[0] == LIVER, iterations=3)
    sd = np.std((noisy.images[0, k] - clean.images[0, k])[core])
    assert 5 < sd < 25


def test_poisson_quantile_matches_the_cdf_definition():
    rng = np.random.default_rng(0)
    q, lam = rng.uniform(0.001, 0.999, 500), rng.uniform(0.1, 40, 500)
    k = ctm._poisson_quantile(q, lam)
    # Poisson CDF by direct summation of the pmf.
    def cdf(n, m):
        return sum(math.exp(j * math.log(m) - m - math.lgamma(j + 1)) for j in range(int(n) + 1))

    for qi, li, ki in zip(q[:60], lam[:60], k[:60]):
        assert cdf(ki, li) >= qi - 1e-9
        assert ki == 0 or cdf(ki - 1, li) < qi + 1e-9


@pytest.mark.parametrize("kwargs, match", [
    ({"kernel": "B30f"}, r"unknown CT kernel 'B30f'; choose one of soft, standard"),
    ({"dose": 0.0}, "dose must be a finite number > 0"),
    ({"dose": -1.0}, "dose must be"),
    ({"dose": float("nan")}, "dose must be"),
    ({"size": (32, 32)}, "too small"),
    ({"size": (64, 200)}, "aspect ratio"),
    ({"size": (64.0, 64)}, "two integers"),
    ({"size": 64}, "two integers"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct(0, **kwargs)


def test_bad_seed_and_empty_lists():
    with pytest.raises(ValueError, match="seed"):
        ct(-1)
    with pytest.raises(ValueError, match="seeds is empty"):
        ct_slices([], SIZE)
    with pytest.raises(ValueError, match="kernels is empty"):
        ct_slices([0], SIZE, kernels=())
    with pytest.raises(ValueError, match="window width"):
        ctm.window(np.zeros((4, 4)), width=0)
