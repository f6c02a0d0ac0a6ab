"""Synthetic raw mammograms: determinism, labels, physics and bad input.

The physics checks use independent measurements (numpy FFT spectra, sample
variances, label statistics) rather than the generator's own intermediate values.
"""

import numpy as np
import pytest

from stylejax import phantom
from stylejax.phantom import (BACKGROUND, CALCIFICATION, FAT, FIBROGLANDULAR, PECTORAL,
                              SKIN, mammogram, mammograms, powerlaw_noise)


def radial_slope(img, f_lo, f_hi, bins=16):
    """Slope of log(power) against log(frequency), radially averaged (numpy only)."""
    H, W = img.shape
    power = np.abs(np.fft.fft2(img - img.mean())) ** 2
    f = np.hypot(np.fft.fftfreq(H)[:, None], np.fft.fftfreq(W)[None, :])
    edges = np.geomspace(f_lo, f_hi, bins + 1)
    which = np.digitize(f, edges)
    fb = [f[which == i].mean() for i in range(1, bins + 1)]
    pb = [power[which == i].mean() for i in range(1, bins + 1)]
    return np.polyfit(np.log(fb), np.log(pb), 1)[0]


# ----------------------------------------------------------------------------- basics

def test_same_seed_same_image_and_different_seeds_differ():
    a = mammogram(3, size=(96, 80), view="mlo")
    b = mammogram(3, size=(96, 80), view="mlo")
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params == b.params
    c = mammogram(4, size=(96, 80), view="mlo")
    assert np.mean(np.abs(a.raw - c.raw)) > 0.05 * np.mean(a.raw)
    assert np.mean(a.labels != c.labels) > 0.05


def test_noise_is_seeded_too():
    a = mammogram(0, size=(64, 64), noise=True)
    b = mammogram(0, size=(64, 64), noise=False)
    np.testing.assert_array_equal(a.expected, b.expected)      # noise leaves the rest alone
    assert not np.array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.raw, mammogram(0, size=(64, 64), noise=True).raw)


@pytest.mark.parametrize("size", [(16, 16), (17, 31), (65, 48), (128, 97)])
@pytest.mark.parametrize("view", ["cc", "mlo"])
def test_shapes_dtypes_and_positivity(size, view):
    m = mammogram(1, size=size, view=view)
    assert m.raw.shape == size and m.raw.dtype == np.float32
    assert m.labels.shape == size and m.labels.dtype == np.int32
    assert m.thickness.shape == size and m.expected.shape == size
    assert np.all(np.isfinite(m.raw)) and m.raw.min() > 0
    assert set(np.unique(m.labels)) <= set(range(len(phantom.LABEL_NAMES)))
    assert m.view == view and m.seed == 1 and m.size == size
    assert np.all(m.thickness[m.labels == BACKGROUND] == 0)
    assert np.all(m.thickness[m.labels != BACKGROUND] > 0)


def test_public_module_and_label_names():
    assert phantom.LABEL_NAMES == ("background", "fat", "fibroglandular", "skin",
                                   "pectoral", "calcification")
    assert [BACKGROUND, FAT, FIBROGLANDULAR, SKIN, PECTORAL, CALCIFICATION] == list(range(6))
    for name in phantom.__all__:
        assert hasattr(phantom, name)


def test_batch_matches_single_images():
    batch = mammograms([5, 2], size=(48, 40), view="both")
    assert batch.raw.shape == (4, 48, 40) and batch.raw.dtype == np.float32
    assert batch.labels.shape == (4, 48, 40) and batch.labels.dtype == np.int32
    assert batch.views == ("cc", "mlo", "cc", "mlo") and list(batch.seeds) == [5, 5, 2, 2]
    np.testing.assert_array_equal(batch.raw[3], mammogram(2, (48, 40), "mlo").raw)
    mixed = mammograms(np.array([7, 8]), size=(32, 32), view=["mlo", "cc"])
    np.testing.assert_array_equal(mixed.labels[1], mammogram(8, (32, 32), "cc").labels)
    assert len(mixed) == 2


# ----------------------------------------------------------------------------- anatomy

def test_labels_present_and_pectoral_only_in_mlo():
    for seed in range(3):
        cc = mammogram(seed, size=(192, 160), view="cc", calcifications=2)
        mlo = mammogram(seed, size=(192, 160), view="mlo", calcifications=2)
        assert {BACKGROUND, FAT, FIBROGLANDULAR, SKIN, CALCIFICATION} <= set(np.unique(cc.labels))
        assert PECTORAL not in cc.labels
        assert PECTORAL in mlo.labels
        # The pectoral muscle sits in the upper chest-wall corner.
        rows, cols = np.nonzero(mlo.labels == PECTORAL)
        H, W = mlo.size
        assert rows.mean() < 0.5 * H
        wall_col = 0 if mlo.params["chest_wall"] == "left" else W - 1
        assert abs(cols.mean() - wall_col) < 0.3 * W
        assert mlo.labels[0, wall_col] == PECTORAL


def test_chest_wall_side():
    left = mammogram(2, size=(96, 80), chest_wall="left")
    right = mammogram(2, size=(96, 80), chest_wall="right")
    # The breast touches the chest-wall edge along most of it and not the other edge.
    assert np.mean(left.labels[:, 0] != BACKGROUND) > 0.5
    assert np.mean(left.labels[:, -1] != BACKGROUND) < 0.2
    # The outline (not the texture) is mirrored exactly.
    np.testing.assert_array_equal(left.labels == BACKGROUND,
                                  (right.labels == BACKGROUND)[:, ::-1])


def test_thickness_rolls_off_toward_the_skin():
    m = mammogram(6, size=(256, 208), view="cc", thickness_mm=50.0)
    t = m.thickness
    assert t.max() == pytest.approx(50.0, rel=1e-4)
    assert np.median(t[m.labels == SKIN]) < 0.3 * 50.0
    # Moving inward from the skin line along the nipple row, thickness never decreases.
    row = m.labels.shape[0] // 2
    line = t[row] if m.params["chest_wall"] == "right" else t[row, ::-1]
    inside = line[line > 0]
    assert np.all(np.diff(inside) >= -1e-3 * 50.0)


def test_density_option_sets_the_fibroglandular_fraction():
    for density in (0.15, 0.5):
        for seed, view in [(0, "cc"), (1, "mlo")]:
            m = mammogram(seed, size=(160, 128), view=view, density=density, vessels=0)
            interior = np.isin(m.labels, [FAT, FIBROGLANDULAR])
            frac = np.mean(m.labels[interior] == FIBROGLANDULAR)
            assert abs(frac - density) < 0.05, (density, seed, frac)


def test_views_of_one_seed_share_the_patient():
    cc, mlo = mammogram(9, (64, 64), "cc"), mammogram(9, (64, 64), "mlo")
    for key in ("chest_wall", "density", "thickness_mm"):
        assert cc.params[key] == mlo.params[key]


# ----------------------------------------------------------------------------- physics

def test_background_is_where_raw_is_highest():
    for seed, view in [(0, "cc"), (1, "mlo"), (2, "cc")]:
        clean = mammogram(seed, size=(128, 112), view=view, noise=False)
        top = clean.raw >= np.quantile(clean.raw, 0.99)
        assert np.all(clean.labels[top] == BACKGROUND)
        assert clean.labels.flat[np.argmax(clean.raw)] == BACKGROUND
        noisy = mammogram(seed, size=(128, 112), view=view)
        top = noisy.raw >= np.quantile(noisy.raw, 0.995)
        assert np.all(noisy.labels[top] == BACKGROUND)
        # Unattenuated: within the heel effect of i0 (scatter only adds).
        bg = clean.raw[clean.labels == BACKGROUND]
        assert 0.8e4 < np.median(bg) < 1.1e4


def test_attenuation_ordering():
    for seed, view in [(0, "cc"), (1, "mlo"), (4, "cc")]:
        m = mammogram(seed, size=(192, 160), view=view, calcifications=2)
        att = -np.log(m.raw)
        flat = m.thickness >= 0.999 * m.params["thickness_mm"]   # same path length
        fat = att[flat & (m.labels == FAT)].mean()
        gland = att[flat & (m.labels == FIBROGLANDULAR)].mean()
        background = att[m.labels == BACKGROUND].mean()
        assert gland > fat > background
        assert att[m.labels == FAT].mean() > background + 1.0        # ~exp(-1) or darker
        if view == "mlo":
            assert att[flat & (m.labels == PECTORAL)].mean() > fat


def test_calcifications_attenuate_more_than_their_surroundings():
    m = mammogram(3, size=(160, 160), view="cc", calcifications=3, noise=False)
    att = -np.log(m.raw)
    rows, cols = np.nonzero(m.labels == CALCIFICATION)
    assert 0 < rows.size < 0.01 * m.raw.size
    for r, c in zip(rows, cols):
        win = (slice(max(r - 4, 0), r + 5), slice(max(c - 4, 0), c + 5))
        around = att[win][m.labels[win] != CALCIFICATION]
        assert att[r, c] > np.median(around) + 0.05


@pytest.mark.parametrize("beta", [2.5, 3.17, 3.8])
def test_powerlaw_noise_has_the_requested_exponent(beta):
    slopes = [radial_slope(powerlaw_noise((256, 256), beta, rng), 0.02, 0.3)
              for rng in range(4)]
    assert abs(-np.mean(slopes) - beta) < 0.08
    stretched = [radial_slope(powerlaw_noise((256, 192), beta, rng, anisotropy=1.5,
                                             angle=0.4), 0.02, 0.3) for rng in range(4)]
    assert abs(-np.mean(stretched) - beta) < 0.12


def test_powerlaw_noise_is_normalised_and_anisotropic():
    z = powerlaw_noise((127, 96), 3.0, 0)
    assert z.dtype == np.float32 and z.shape == (127, 96)
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    # Stretched along x (angle 0): neighbours along x are more alike than along y.
    s = powerlaw_noise((256, 256), 3.0, 1, anisotropy=1.6, angle=0.0)
    dx, dy = np.diff(s, axis=1).var(), np.diff(s, axis=0).var()
    assert dx < 0.5 * dy


def test_image_texture_follows_beta():
    """The spectrum of -log(raw) inside the breast has the requested exponent."""
    slopes = {}
    for beta in (2.6, 3.8):
        slopes[beta] = []
        for seed in range(6):
            m = mammogram(seed, size=(512, 512), view=("cc", "mlo")[seed % 2], beta=beta,
                          noise=False, vessels=0, calcifications=0)
            assert m.params["beta"] == beta
            rows, cols = np.nonzero(m.thickness >= 0.999 * m.params["thickness_mm"])
            r, c = int(np.median(rows)), int(np.median(cols))
            patch = -np.log(m.raw[r - 64:r + 64, c - 64:c + 64]).astype(np.float64)
            window = np.outer(np.hanning(128), np.hanning(128))
            slopes[beta].append(-radial_slope((patch - patch.mean()) * window, 0.03, 0.25,
                                              bins=10))
        assert abs(np.mean(slopes[beta]) - beta) < 0.3, (beta, slopes[beta])
    # Same seeds, same white noise: only beta changed, and every slope follows it.
    assert np.all(np.subtract(slopes[3.8], slopes[2.6]) > 0.7), slopes


def test_default_beta_is_drawn_per_view():
    betas = {v: [mammogram(s, (16, 16), v).params["beta"] for s in range(40)]
             for v in ("cc", "mlo")}
    for v, (mean, std) in phantom.BETA_PRIOR.items():
        assert abs(np.mean(betas[v]) - mean) < 3 * std / np.sqrt(40) + 0.02
        assert 0.5 * std < np.std(betas[v]) < 1.6 * std


def _column_variance_ratio(m, sigma_e):
    """Pooled within-column variance over pooled mean, background pixels only.

    With scatter off, the expected background is constant down each column (the heel
    effect varies along x only), so within-column spread is pure noise.
    """
    bg = m.labels == BACKGROUND
    sq, mean, n = 0.0, 0.0, 0
    for j in range(m.raw.shape[1]):
        v = m.raw[bg[:, j], j].astype(np.float64)
        if v.size >= 30:
            sq += ((v - v.mean()) ** 2).sum()
            mean += v.sum()
            n += v.size - 1
    return sq / n, mean / (n + 1e-9)


@pytest.mark.parametrize("i0", [20.0, 5000.0])
def test_quantum_noise_variance_equals_mean(i0):
    m = mammogram(0, size=(256, 256), view="cc", i0=i0, scatter=0.0, electronic_noise=0.0)
    var, mean = _column_variance_ratio(m, 0.0)
    assert mean == pytest.approx(i0, rel=0.16)          # heel effect: up to -15%
    assert var / mean == pytest.approx(1.0, abs=0.06)
    if i0 < 64:   # dark pixels: exact Poisson, so integer counts
        bg = m.raw[m.labels == BACKGROUND]
        np.testing.assert_array_equal(bg[bg > 1], np.round(bg[bg > 1]))


def test_dark_pixels_follow_poisson_zero_probability():
    """P(count = 0) = exp(-lambda): tells Poisson apart from a rounded Gaussian."""
    m = mammogram(1, size=(256, 256), view="cc", i0=3.0, scatter=0.0, electronic_noise=0.0)
    bg = m.labels == BACKGROUND
    zeros, expected = 0, 0.0
    for j in range(m.raw.shape[1]):
        v = m.raw[bg[:, j], j]
        if v.size >= 30:
            lam = np.clip(np.round(v), 0, None).mean()
            zeros += np.count_nonzero(v < 1)                   # zero counts sit at the floor
            expected += v.size * np.exp(-lam)
    assert zeros == pytest.approx(expected, rel=0.1)


def test_electronic_noise_adds_variance():
    m = mammogram(0, size=(256, 256), view="cc", i0=400.0, scatter=0.0,
                  electronic_noise=10.0)
    var, mean = _column_variance_ratio(m, 10.0)
    assert var == pytest.approx(mean + 100.0, rel=0.07)


def test_floor_keeps_raw_strictly_positive():
    m = mammogram(0, size=(64, 64), i0=2.0, electronic_noise=5.0)
    assert m.raw.min() > 0 and np.all(np.isfinite(m.raw))
    assert np.mean(m.raw == m.raw.min()) > 0.05             # the floor is hit


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        mammogram(seed, size=(32, 32))


@pytest.mark.parametrize("size", [(15, 64), (64, 8), (64,), (64, 64, 3), (64.0, 64), "64",
                                  64, (True, 64)])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        mammogram(0, size=size)


@pytest.mark.parametrize("view", ["ap", "", 3, None])
def test_bad_view(view):
    with pytest.raises(ValueError, match="view"):
        mammogram(0, size=(32, 32), view=view)


@pytest.mark.parametrize("option, value", [
    ("density", 1.5), ("density", -0.1), ("i0", 0.0), ("i0", float("nan")),
    ("beta", 0.0), ("thickness_mm", -5.0), ("chest_wall", "up"), ("calcifications", 1.5),
    ("vessels", -1), ("electronic_noise", -1.0), ("pixel_mm", 0.0)])
def test_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        mammogram(0, size=(32, 32), **{option: value})


def test_bad_batch_and_noise_arguments():
    with pytest.raises(ValueError, match="seed"):
        mammograms([0, -2], size=(32, 32))
    with pytest.raises(ValueError, match="view"):
        mammograms([0, 1], size=(32, 32), view=["cc"])
    with pytest.raises(ValueError, match="beta"):
        powerlaw_noise((32, 32), -1.0)
    with pytest.raises(ValueError, match="anisotropy"):
        powerlaw_noise((32, 32), 3.0, anisotropy=0.5)


# ----------------------------------------------------------------------------- command line

def test_cli_writes_images_labels_and_preview(tmp_path):
    from PIL import Image
    import tifffile

    from stylejax.cli import main

    assert main(["phantoms", "-n", "2", "--size", "48", "40", "--view", "both",
                 "--seed", "7", "-o", str(tmp_path)]) == 0
    for seed in (7, 8):
        for view in ("cc", "mlo"):
            m = mammogram(seed, size=(48, 40), view=view)
            raw = tifffile.imread(tmp_path / f"phantom_{seed:06d}_{view}.tif")
            assert raw.dtype == np.uint16 and raw.shape == (48, 40)
            np.testing.assert_allclose(raw, m.raw, atol=0.5)
            labels = np.asarray(Image.open(tmp_path / f"phantom_{seed:06d}_{view}_labels.png"))
            np.testing.assert_array_equal(labels, m.labels)
    preview = np.asarray(Image.open(tmp_path / "preview.png"))
    assert preview.ndim == 3 and preview.shape[0] >= 2 * 48
    assert main(["phantoms", "-n", "1", "--size", "32", "32", "--view", "mlo",
                 "--format", "npy", "--no-preview", "-o", str(tmp_path / "npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "phantom_000000_mlo.npy"),
                                  mammogram(0, (32, 32), "mlo").raw)
    assert not (tmp_path / "npy" / "preview.png").exists()


def test_cli_bad_input_exits_nonzero(tmp_path, capsys):
    from stylejax.cli import main

    assert main(["phantoms", "--size", "8", "8", "-o", str(tmp_path)]) == 2
    assert "size" in capsys.readouterr().err
    assert main(["phantoms", "-n", "0", "-o", str(tmp_path)]) == 2
    assert main(["phantoms", "--seed", "-3", "-o", str(tmp_path)]) == 2
