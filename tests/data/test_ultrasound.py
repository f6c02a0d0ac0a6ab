"""Synthetic B-mode ultrasound: determinism, pairing, speckle physics, bad input."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from stylejax.data import ultrasound as us

RAYLEIGH_SNR = 1.0 / math.sqrt(4.0 / math.pi - 1.0)   # mean / std of a Rayleigh variable


def _liver(size):
    return np.full(size, us.LIVER, np.int32)


def _half_width(e, axis):
    """Lag (px, interpolated) where the speckle autocovariance along ``axis`` falls to 0.5."""
    x = e - e.mean()
    spec = np.abs(np.fft.fft(x, axis=axis)) ** 2
    ac = np.fft.ifft(spec, axis=axis).real.mean(axis=1 - axis)
    ac = ac / ac[0]
    i = int(np.argmax(ac < 0.5))
    return i - 1 + (ac[i - 1] - 0.5) / (ac[i - 1] - ac[i])


def test_names_and_label_map():
    assert us.ultrasound_labels()[us.VESSEL] == "vessel"
    assert us.ultrasound_qualities() == ("lq", "hq", "clinical")
    for seed in range(4):
        lab = us.ultrasound_label_map(seed, (96, 160))
        assert lab.shape == (96, 160) and lab.dtype == np.int32
        assert lab.min() >= 0 and lab.max() < len(us.LABEL_NAMES)
        assert np.any(lab == us.VESSEL) and np.any(lab == us.LIVER)
        assert np.all(lab[0] == us.FAT)            # the skin side starts with fat
    assert not np.array_equal(us.ultrasound_label_map(0, (64, 64)),
                              us.ultrasound_label_map(1, (64, 64)))


def test_deterministic_and_in_range():
    for quality in us.ultrasound_qualities():
        a = us.ultrasound(5, (64, 80), quality)
        b = us.ultrasound(5, (64, 80), quality)
        np.testing.assert_array_equal(a.image, b.image)
        assert a.image.dtype == np.float32 and a.image.shape == (64, 80)
        assert 0.0 <= a.image.min() and a.image.max() <= 1.0
        assert a.quality == quality and a.labels.shape == (64, 80)
    assert not np.array_equal(us.ultrasound(5, (64, 64)).image, us.ultrasound(6, (64, 64)).image)


def test_lq_hq_pairing_shares_anatomy_and_scatterers():
    lq, hq = us.ultrasound(3, (96, 96), "lq"), us.ultrasound(3, (96, 96), "hq")
    np.testing.assert_array_equal(lq.labels, hq.labels)
    # On a uniform label map only the scatterers can correlate two images. A sparser level
    # keeps the subset u < p of the same scatterers (kept fraction f = p_sparse / p_dense),
    # so the complex echoes correlate with sqrt(f) and, for circular Gaussian speckle,
    # the intensities with f.
    lab = _liver((96, 128))
    hq = us.QUALITIES["hq"]
    sparse = dataclasses.replace(hq, name="sparse", density=hq.density / 4)
    dense = us.ultrasound(1, quality=hq, labels=lab, depth_mm=20)
    same = us.ultrasound(1, quality=sparse, labels=lab, depth_mm=20).envelope ** 2
    other = us.ultrasound(2, quality=sparse, labels=lab, depth_mm=20).envelope ** 2
    cell = dense.params["dz_mm"] * dense.params["pixel_mm"]
    kept = min(1.0, sparse.density * cell) / min(1.0, hq.density * cell)
    corr = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert corr(dense.envelope ** 2, same) == pytest.approx(kept, abs=0.08)
    assert abs(corr(dense.envelope ** 2, other)) < 0.05


def test_fully_developed_speckle_is_rayleigh():
    # Dense scatterers (hq) in homogeneous tissue: envelope before log compression.
    env = np.concatenate([us.ultrasound(s, quality="hq", labels=_liver((128, 256)),
                                        depth_mm=30).envelope[16:] for s in range(4)])
    e = env.astype(np.float64)
    assert e.mean() / e.std() == pytest.approx(RAYLEIGH_SNR, rel=0.03)
    assert np.mean(e ** 2) / e.mean() ** 2 == pytest.approx(4.0 / math.pi, rel=0.02)
    # Calibration: 0 dB tissue has E|IQ|^2 = 1 and TGC undoes its attenuation.
    assert np.mean(e ** 2) == pytest.approx(1.0, rel=0.06)
    top, bottom = np.mean(e[:, :][: e.shape[0] // 2] ** 2), np.mean(e[e.shape[0] // 2:] ** 2)
    assert top == pytest.approx(bottom, rel=0.1)
    # Sparse scatterers (lq) give partially developed speckle: below the Rayleigh SNR.
    lq = us.ultrasound(0, quality="lq", labels=_liver((128, 256)), depth_mm=30).envelope[16:]
    assert lq.mean() / lq.std() < 0.95 * RAYLEIGH_SNR


def test_hq_speckle_is_finer_than_lq():
    lab = _liver((128, 128))
    w = {q: us.ultrasound(0, quality=q, labels=lab, depth_mm=16).envelope[16:112]
         for q in ("lq", "hq")}
    assert _half_width(w["hq"], 0) < 0.85 * _half_width(w["lq"], 0)      # axial
    assert _half_width(w["hq"], 1) < 0.6 * _half_width(w["lq"], 1)       # lateral


def test_lateral_beam_widens_away_from_focus():
    q = us.QUALITIES["hq"]
    e = us.ultrasound(0, quality=q, labels=_liver((256, 256)), depth_mm=60).envelope
    focus_row = int(q.focus * 256)
    at_focus = _half_width(e[focus_row - 24:focus_row + 24], 1)
    deep = _half_width(e[-48:], 1)
    # Gaussian beam: sigma(z) / sigma_f = sqrt(1 + ((z - z_f) / z_R)^2).
    z_deep, z_f = 60.0 * (256 - 24) / 256, q.focus * 60.0
    expected = math.sqrt(1 + ((z_deep - z_f) / q.depth_of_field_mm) ** 2)
    assert deep / at_focus == pytest.approx(expected, rel=0.25)


def test_anechoic_vessels_and_cysts_are_dark():
    for seed in (0, 1, 3):
        for quality in us.ultrasound_qualities():
            u = us.ultrasound(seed, (128, 128), quality)
            # Interiors only: the beam blurs a few pixels of tissue echo across edges.
            vessel = scipy.ndimage.binary_erosion(u.labels == us.VESSEL, iterations=2)
            liver = u.image[u.labels == us.LIVER].mean()
            assert u.image[vessel].mean() < liver - 0.25, (seed, quality)
    lab = _liver((96, 96))
    lab[30:70, 30:70] = us.CYST
    u = us.ultrasound(0, labels=lab, quality="lq")
    assert u.image[35:65, 35:65].mean() < u.image[lab == us.LIVER].mean() - 0.25


def test_attenuation_and_posterior_enhancement_follow_the_formula():
    H, W = 128, 128
    lab = _liver((H, W))
    lab[20:60, 40:88] = us.CYST              # 40 rows of fluid above columns 40..87
    q = us.QUALITIES["hq"]
    env = np.mean([us.ultrasound(s, quality=q, labels=lab, depth_mm=30).envelope
                   for s in range(3)], axis=0)
    below = np.mean(env[70:120, 48:80] ** 2)
    beside = np.mean(env[70:120, 100:] ** 2)
    thickness_cm = 40 * (30.0 / H) / 10.0
    alpha_liver = us.TISSUES[us.LIVER].attenuation
    alpha_cyst = us.TISSUES[us.CYST].attenuation
    gain_db = 2.0 * q.f0_mhz * (alpha_liver - alpha_cyst) * thickness_cm
    assert 10 * np.log10(below / beside) == pytest.approx(gain_db, abs=0.8)


def test_pulse_and_hilbert_envelope_match_references():
    q = us.QUALITIES["hq"]
    dz, n = 0.01, 512
    # The RF of one scatterer is the Gaussian-modulated cosine (the pulse formula).
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    rf = us.rf_lines(impulse, dz, q)
    expected = us.pulse((np.arange(n) - n // 2) * dz, q)
    np.testing.assert_allclose(rf / rf.max(), expected, atol=1e-6)
    # Envelope vs scipy.signal.hilbert on a random line.
    s = np.random.default_rng(0).standard_normal(n)
    rf = us.rf_lines(s, dz, q)
    reference = np.abs(scipy.signal.hilbert(rf))
    np.testing.assert_allclose(us.envelope(rf), reference, rtol=1e-9, atol=1e-12)
    # The simulator's fused path (analytic spectrum, demodulation, no decimation) gives
    # the same envelope up to its energy normalisation.
    iq = us._baseband(np.fft.rfft(s)[:, None], n, dz, q, n, taper=False)[:, 0]
    ratio = np.abs(iq) / reference
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="real"):
        us.analytic_signal(rf + 1j)


def test_batches_are_paired_stacks():
    lq = us.ultrasounds([4, 5], (32, 48), "lq")
    hq = us.ultrasounds(np.array([4, 5]), (32, 48), "hq")
    assert lq.images.shape == (2, 32, 48) and len(hq) == 2 and hq.quality == "hq"
    np.testing.assert_array_equal(lq.labels, hq.labels)
    np.testing.assert_array_equal(hq.images[1], us.ultrasound(5, (32, 48), "hq").image)
    with pytest.raises(ValueError, match="empty"):
        us.ultrasounds([], (32, 32))


def test_custom_label_map_and_size():
    lab = us.ultrasound_label_map(0, (48, 64))
    a = us.ultrasound(9, labels=lab, quality="lq")
    assert a.image.shape == (48, 64)
    np.testing.assert_array_equal(a.labels, lab)
    assert us.ultrasound(9, (48, 64), "lq", labels=lab.astype(np.int64)).image.shape == (48, 64)


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": np.full((32, 32), 99)}, "unknown label"),
    ({"labels": np.full((32, 32), -1)}, "unknown label"),
    ({"labels": np.full((32, 32), 3.0)}, "integer dtype"),
    ({"labels": np.full((32, 32), np.nan)}, "NaN"),
    ({"labels": np.full((32, 32), True)}, "integer dtype"),
    ({"labels": np.zeros((2, 32, 32), np.int32)}, "2-D"),
    ({"labels": np.zeros((32, 32), np.int32), "size": (32, 48)}, "does not match"),
    ({"labels": np.zeros((8, 32), np.int32)}, "16x16"),
    ({"quality": "best"}, "quality"),
    ({"size": (8, 64)}, "16x16"),
    ({"size": (64,)}, "two integers"),
    ({"size": (64.0, 64)}, "two integers"),
    ({"depth_mm": float("nan")}, "depth_mm"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        us.ultrasound(0, **kwargs)


def test_bad_seed_and_quality_fields():
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            us.ultrasound(seed, (32, 32))
    with pytest.raises(ValueError, match="bandwidth"):
        us.UltrasoundQuality("x", 5.0, -0.1, 1.0, 10.0, 0.5, 10.0, -60.0, 50.0)
    with pytest.raises(ValueError, match="focus"):
        us.UltrasoundQuality("x", 5.0, 0.5, 1.0, 10.0, 1.5, 10.0, -60.0, 50.0)
