"""Synthetic DCE-MRI: determinism, tracer kinetics against an independent quadrature of the
extended Tofts model, the SPGR signal, Rician noise statistics and breathing motion."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage

from stylejax.data import dce as D
from stylejax.metrics.image import enhancement_mask


def _parker_blood(t_s):
    """Parker et al. 2006, written out from the paper's Eq. 1 and Table 1 (minutes, mM)."""
    m = t_s / 60.0
    if m < 0:
        return 0.0
    g1 = 0.809 / (0.0563 * math.sqrt(2 * math.pi)) * math.exp(-(m - 0.17046) ** 2 / (2 * 0.0563 ** 2))
    g2 = 0.330 / (0.132 * math.sqrt(2 * math.pi)) * math.exp(-(m - 0.365) ** 2 / (2 * 0.132 ** 2))
    return g1 + g2 + 1.050 * math.exp(-0.1685 * m) / (1 + math.exp(-38.078 * (m - 0.483)))


def _tofts_quad(t, p, injection, hct=0.42):
    """vp Cp(t - d) + Ktrans int_0^t Cp(s - d) exp(-kep (t - s)) ds by adaptive quadrature."""
    def cp(s):
        return _parker_blood(s - injection - p["delay"]) / (1 - hct)
    kt, kep = p["ktrans"] / 60.0, p["ktrans"] / p["ve"] / 60.0
    start = injection + p["delay"]
    conv = 0.0
    if kt > 0 and t > start:
        conv, _ = scipy.integrate.quad(lambda s: cp(s) * math.exp(-kep * (t - s)), start, t,
                                       limit=200, points=[start + 10.2, start + 21.9])
    return p["vp"] * cp(t) + kt * conv


def _spgr(r1, tr=0.003, flip=15.0):
    e1 = math.exp(-tr * r1)
    return (1 - e1) / (1 - math.cos(math.radians(flip)) * e1)


@pytest.fixture(scope="module")
def clean():
    """256 px, no noise, no motion, no bias: the signal model alone."""
    return D.dce(3, (256, 256), 6, noise=0.0, motion=False, bias=False)


def test_deterministic_shapes_and_labels():
    a = D.dce(5, (64, 80), 4)
    b = D.dce(5, (64, 80), 4)
    c = D.dce(6, (64, 80), 4)
    for name in ("ce", "non_ce", "labels", "times", "concentration", "displacement"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.ce, c.ce)
    assert a.ce.shape == a.non_ce.shape == (4, 64, 80) and a.ce.dtype == np.float32
    assert a.labels.shape == (64, 80) and a.labels.dtype == np.int32
    assert a.times.shape == (4,) and a.times[0] == 0 and np.all(np.diff(a.times) > 0)
    assert a.concentration.shape == (9, 4)
    assert np.all(np.isfinite(a.ce)) and a.ce.min() >= 0 and a.ce.max() < 1.5
    assert set(np.unique(a.labels)) == set(range(9)), "every tissue is present"
    assert D.dce_labels()[D.CORTEX] == "cortex" and len(D.dce_labels()) == 9
    batch = D.dce_series([5, 6], (64, 80), 4)
    np.testing.assert_array_equal(batch.ce[1], c.ce)
    assert batch.ce.shape == (2, 4, 64, 80) and len(batch) == 2


def test_pre_contrast_frame_and_paired_noise():
    s = D.dce(1, (64, 64), 5)
    assert np.all(s.concentration[:, 0] == 0) and s.times[0] < s.params["injection_s"]
    np.testing.assert_array_equal(s.ce[0], s.non_ce[0])     # same acquisition, no agent yet
    assert np.abs(s.ce[1:] - s.non_ce[1:]).max() > 0.1        # contrast agent afterwards
    u = D.dce(1, (64, 64), 5, paired_noise=False)
    np.testing.assert_array_equal(u.ce, s.ce)                 # CE draw unchanged
    assert not np.array_equal(u.ce[0], u.non_ce[0])           # own noise draw
    z = D.dce(1, (64, 64), 5, paired_noise=False, noise=0.0)
    np.testing.assert_array_equal(z.ce[0], z.non_ce[0])


def test_concentration_matches_quadrature_of_extended_tofts(clean):
    inj = clean.params["injection_s"]
    for k in (D.BODY, D.MUSCLE, D.LIVER, D.CORTEX, D.MEDULLA, D.PELVIS, D.VESSEL):
        p = clean.params["tissues"][D.DCE_LABEL_NAMES[k]]
        want = np.array([_tofts_quad(float(t), p, inj) for t in clean.times])
        np.testing.assert_allclose(clean.concentration[k], want, rtol=5e-3, atol=2e-3,
                                   err_msg=D.DCE_LABEL_NAMES[k])
    # The blood pool holds whole blood: C = (1 - Hct) Cp = Cb.
    blood = [_parker_blood(float(t) - inj) for t in clean.times]
    np.testing.assert_allclose(clean.concentration[D.VESSEL], blood, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(clean.aif * (1 - D.HEMATOCRIT), blood, rtol=1e-3, atol=1e-3)


def test_enhancement_order_cortex_medulla_pelvis(clean):
    t = np.linspace(0.0, 300.0, 601)
    peak = {}
    for k in (D.CORTEX, D.MEDULLA, D.PELVIS):
        p = clean.params["tissues"][D.DCE_LABEL_NAMES[k]]
        c = D.extended_tofts(t, ktrans=p["ktrans"], ve=p["ve"], vp=p["vp"], delay=p["delay"],
                             injection=clean.params["injection_s"])
        peak[k] = (t[np.argmax(c)], c.max())
    assert peak[D.CORTEX][0] < peak[D.MEDULLA][0] < peak[D.PELVIS][0]
    assert peak[D.CORTEX][1] > peak[D.MEDULLA][1] > peak[D.PELVIS][1]


def test_signal_follows_spgr_with_relaxivity(clean):
    """At voxels whose PSF footprint is one tissue, S_t / S_0 = f(R10 + r1 C_t) / f(R10)."""
    checked = 0
    for k in (D.MUSCLE, D.LIVER, D.SPLEEN, D.CORTEX, D.MEDULLA, D.VESSEL):
        core = scipy.ndimage.binary_erosion(clean.labels == k, iterations=3)
        if not core.any():
            continue
        p = clean.params["tissues"][D.DCE_LABEL_NAMES[k]]
        r10 = 1000.0 / p["t10_ms"]
        want = [_spgr(r10 + 4.1 * c) / _spgr(r10) for c in clean.concentration[k]]
        got = clean.ce[:, core] / clean.ce[0, core]
        np.testing.assert_allclose(got, np.broadcast_to(np.array(want)[:, None], got.shape),
                                   rtol=2e-4, err_msg=D.DCE_LABEL_NAMES[k])
        np.testing.assert_allclose(clean.non_ce[:, core], clean.ce[:1, core].repeat(6, 0),
                                   rtol=1e-6)
        checked += 1
    assert checked >= 5


def test_rician_background_statistics():
    sigma = 0.02
    s = D.dce(2, (128, 128), 6, noise=sigma, motion=False)
    far = scipy.ndimage.binary_erosion(s.labels == D.BACKGROUND, iterations=3)
    vals = s.ce[:, far].ravel().astype(np.float64)
    assert vals.size > 4000
    np.testing.assert_allclose(vals.mean(), sigma * math.sqrt(math.pi / 2), rtol=0.03)
    np.testing.assert_allclose(vals.var(), (2 - math.pi / 2) * sigma ** 2, rtol=0.06)


def test_breathing_shifts_organs_not_the_body_wall():
    moving = D.dce(4, (128, 128), 8, noise=0.0, bias=False)
    still = D.dce(4, (128, 128), 8, noise=0.0, bias=False, motion=False)
    b = moving.params["breathing"]
    pix = moving.params["pixel_mm"]
    want = b["amplitude_mm"] * np.cos(math.pi * moving.times / b["period_s"] - b["phase"]) ** 4 / pix
    np.testing.assert_array_equal(still.labels, moving.labels)
    assert np.all(still.displacement == 0)
    # Kidneys: shifted as a whole by d(t) (independent resampling with np.interp).
    kid = np.isin(moving.labels, (D.CORTEX, D.MEDULLA, D.PELVIS))
    rows, cols = np.nonzero(kid)
    t = int(np.argmax(want))
    assert want[t] > 2.0
    np.testing.assert_allclose(moving.displacement[:, rows, cols],
                               np.broadcast_to(want[:, None], (8, rows.size)), rtol=1e-5)
    y = np.arange(128.0)
    for c in range(cols.min(), cols.max() + 1, 3):
        r = slice(rows.min() - 5, rows.max() + 5)
        shifted = np.interp(y - want[t], y, still.non_ce[t, :, c])
        np.testing.assert_allclose(moving.non_ce[t, r, c], shifted[r], atol=1e-5)
    # Moved label maps put the kidney centroid d(t) lower.
    moved = np.isin(moving.frame_labels()[t], (D.CORTEX, D.MEDULLA, D.PELVIS))
    assert abs(np.nonzero(moved)[0].mean() - rows.mean() - want[t]) < 0.5
    # The skin does not move: outermost body columns are identical.
    edge = (moving.labels > 0) & ~scipy.ndimage.binary_erosion(moving.labels > 0, iterations=2,
                                                                border_value=1)
    np.testing.assert_allclose(moving.non_ce[t][edge], still.non_ce[t][edge], atol=1e-6)


def test_enhancement_mask_with_paper_threshold():
    s = D.dce(0, (128, 128), 5)
    m = enhancement_mask(s.ce, threshold=D.ENHANCEMENT_THRESHOLD)
    frac = {k: m[s.labels == k].mean() for k in range(9)}
    assert frac[D.VESSEL] > 0.9 and frac[D.CORTEX] > 0.6 and frac[D.MEDULLA] > 0.6
    assert frac[D.BACKGROUND] == 0 and frac[D.MUSCLE] < 0.2 and frac[D.BODY] < 0.3
    # Without contrast agent only breathing at tissue edges crosses the threshold.
    body = s.labels > 0
    assert enhancement_mask(s.non_ce, threshold=D.ENHANCEMENT_THRESHOLD)[body].mean() < 0.05
    still = D.dce(0, (128, 128), 5, motion=False)
    assert not enhancement_mask(still.non_ce, threshold=D.ENHANCEMENT_THRESHOLD).any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=-1), "seed"),
    (dict(size=(16, 64)), "size"),
    (dict(size="big"), "size"),
    (dict(frames=1), "frames"),
    (dict(times=[0.0, 10.0, 5.0], frames=None), "increasing"),
    (dict(times=[20.0, 60.0], frames=None, injection=10.0), "pre-contrast"),
    (dict(times=[0.0, 60.0], frames=3), "frames"),
    (dict(noise=-0.1), "noise"),
    (dict(noise=float("nan")), "noise"),
    (dict(fov_mm=50.0), "fov_mm"),
])
def test_bad_input(kwargs, match):
    args = dict(seed=0, size=(64, 64), frames=3) | kwargs
    with pytest.raises(ValueError, match=match):
        D.dce(args.pop("seed"), args.pop("size"), args.pop("frames"), **args)
