"""Tests of the black-box vendor style bank (stylejax.blackbox).

The raw test images are made here with numpy (a breast-shaped object with
thickness roll-off, 1/f^3 tissue texture, Poisson and electronic noise), so the
tests do not depend on the phantom module.
"""

import importlib.util

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy import optimize, special
from skimage import exposure, restoration

from stylejax import blackbox
from stylejax.pipeline import blackbox as bb_impl

SIZE = 128


def _power_noise(rng, shape, beta):
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * f ** (-beta / 2)
    spec[0, 0] = 0.0
    x = np.real(np.fft.ifft2(spec))
    return (x - x.mean()) / x.std()


def make_raw(seed, size=(SIZE, SIZE), i0=2000.0):
    """(raw [H, W] float32 > 0, breast mask [H, W] bool): a mammogram-like raw image."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.sqrt((xx / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2)
    thickness = 5.0 * np.clip(1.0 - r ** 2, 0.0, 1.0) ** 0.3  # cm, rolls off at the skin
    gland = special.expit(1.6 * _power_noise(rng, size, 3.0) - 0.6 - 1.2 * r)
    attenuation = thickness * (0.45 * (1.0 - gland) + 0.8 * gland)
    raw = rng.poisson(i0 * np.exp(-attenuation)) + rng.normal(0.0, 3.0, size)
    return np.maximum(raw, 1.0).astype(np.float32), r < 0.97


@pytest.fixture(scope="module")
def images():
    return [make_raw(seed) for seed in (0, 1)]


@pytest.fixture(scope="module")
def outputs(images):
    """outputs[i][s]: style s applied to test image i."""
    return [np.stack([blackbox.apply(raw, s) for s in range(blackbox.NUM_STYLES)])
            for raw, _ in images]


def _normalized_log_reference(raw):
    a = -np.log(raw.astype(np.float64))
    lo, hi = np.percentile(a, [1, 99])
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


# --- the interface -----------------------------------------------------------------

def test_public_names():
    assert blackbox.NUM_STYLES == 32
    assert set(blackbox.__all__) >= {"apply", "apply_batch", "describe", "HELD_OUT",
                                     "TRAIN_STYLES", "NUM_STYLES"}
    assert blackbox.apply is bb_impl.apply


def test_held_out_and_train_partition_the_styles():
    held, train = blackbox.HELD_OUT, blackbox.TRAIN_STYLES
    assert isinstance(held, tuple) and isinstance(train, tuple)
    assert len(held) == 4 and len(set(held)) == 4
    assert len(train) == 28 and len(set(train)) == 28
    assert set(held).isdisjoint(train)
    assert set(held) | set(train) == set(range(32))
    # held-out styles are spread over four different operator families
    assert len({blackbox.family(s) for s in held}) == 4


def test_families_have_four_styles_each_and_chains_are_unique():
    families = [blackbox.family(s) for s in range(32)]
    assert len(blackbox.FAMILIES) == 8
    assert all(families.count(f) == 4 for f in blackbox.FAMILIES)
    chains = [blackbox.describe(s).split(": ", 1)[1] for s in range(32)]
    assert len(set(chains)) == 32


def test_describe_is_one_line_and_marks_held_out():
    for s in range(32):
        text = blackbox.describe(s)
        assert "\n" not in text and text.startswith(f"style {s} ")
        assert ("[held out]" in text) == (s in blackbox.HELD_OUT)
    assert "CLAHE" in blackbox.describe(8)


# --- outputs -----------------------------------------------------------------------

def test_all_styles_shape_dtype_range(images, outputs):
    for (raw, _), outs in zip(images, outputs):
        assert outs.shape == (32,) + raw.shape
        assert outs.dtype == np.float32
        assert np.all(np.isfinite(outs))
        assert outs.min() >= 0.0 and outs.max() <= 1.0
        # every style shows the image (no blank or saturated output)
        assert np.all(outs.std(axis=(1, 2)) > 0.1)


def test_odd_and_minimum_sizes():
    rng = np.random.default_rng(3)
    for shape in [(16, 16), (17, 23), (40, 16)]:
        raw = (100.0 * np.exp(-rng.random(shape))).astype(np.float32)
        for s in range(32):
            out = blackbox.apply(raw, s)
            assert out.shape == shape and out.dtype == np.float32
            assert 0.0 <= out.min() and out.max() <= 1.0


def test_dense_tissue_stays_bright(images, outputs):
    """Display convention: no style inverts (output rises with attenuation)."""
    for (raw, mask), outs in zip(images, outputs):
        n = _normalized_log_reference(raw)[mask]
        for s in range(32):
            assert np.corrcoef(n, outs[s][mask])[0, 1] > 0.6, s


def test_deterministic(images, outputs):
    raw, _ = images[0]
    again = np.stack([blackbox.apply(raw.copy(), s) for s in range(32)])
    np.testing.assert_array_equal(again, outputs[0])


def test_independent_of_raw_scale(images, outputs):
    """'Any scale': multiplying the raw signal (dose, gain) changes nothing."""
    raw, _ = images[0]
    for s in (0, 8, 17, 22, 29):
        np.testing.assert_allclose(blackbox.apply(raw.astype(np.float64) * 1e4, s),
                                   outputs[0][s], atol=2e-3)


def test_apply_batch_matches_apply(images, outputs):
    raws = np.stack([raw for raw, _ in images])
    got = blackbox.apply_batch(raws, [5, 21])
    assert got.shape == raws.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], outputs[0][5])
    np.testing.assert_array_equal(got[1], outputs[1][21])
    same = blackbox.apply_batch(raws, 12)
    np.testing.assert_array_equal(same[1], outputs[1][12])
    with pytest.raises(ValueError, match="entries"):
        blackbox.apply_batch(raws, [1, 2, 3])
    with pytest.raises(ValueError, match="style"):
        blackbox.apply_batch(raws, [1, 40])


def test_styles_pairwise_distinct(images, outputs):
    """Every pair of styles differs by > 0.015 mean absolute grey level in the breast.

    0.015 is about 4 grey levels of an 8-bit display, four times its quantisation
    step and above a just-noticeable global brightness change; the closest pair
    measured here is 0.027 (styles 7 and 25). A bank of small variations of one operator
    (e.g. gamma 1.0 vs 1.1) stays under it, which the control checks.
    """
    threshold = 0.015
    for (raw, mask), outs in zip(images, outputs):
        inside = outs[:, mask]
        d = np.abs(inside[:, None] - inside[None]).mean(axis=2)
        d[np.diag_indices(32)] = np.inf
        i, j = np.unravel_index(np.argmin(d), d.shape)
        assert d[i, j] > threshold, (i, j, d[i, j])
        n = _normalized_log_reference(raw)[mask]
        assert np.abs(n - n ** 1.04).mean() < threshold  # the control


# --- not expressible by LAP --------------------------------------------------------

def _lap_band_images(raw):
    """LAP's own decomposition of ``raw`` as full-size images ``[H, W, levels + 1]``.

    LAP's pre-window signal is ``residual + g_h * (fine bands) + g_l * (other bands)``
    and reconstruction is linear, so each band (and the residual) is reconstructed
    alone; LAP output = window(linear combination of these images).
    """
    import jax
    import jax.numpy as jnp

    from stylejax import lap
    from stylejax.pipeline import pyramid

    @jax.jit
    def band_images(raw):
        bands, residual = pyramid.laplacian_pyramid(lap.normalize_log(raw))
        zeros = [jnp.zeros_like(b) for b in bands]
        images = [pyramid.reconstruct(zeros, residual)]
        for k, band in enumerate(bands):
            only = list(zeros)
            only[k] = band
            images.append(pyramid.reconstruct(only, jnp.zeros_like(residual)))
        return jnp.stack(images, axis=-1)

    return np.asarray(band_images(jnp.asarray(raw)), np.float64)


@pytest.fixture(scope="module")
def lap_grid_outputs(images):
    """LAP's 216 training styles (even w, l, h) applied to test image 0: [216, H, W]."""
    import jax.numpy as jnp

    from stylejax import lap

    raw, _ = images[0]
    grid = lap.lap_grid()
    params = lap.LAPParams(*(jnp.asarray(grid[:, k]) for k in range(3)))
    out = lap.process(jnp.broadcast_to(jnp.asarray(raw), (len(grid),) + raw.shape), params)
    return grid, np.asarray(out)


def _generalised_lap_residual(features, out, mask):
    """RMS residual of the best fit ``out ~ a + b tanh(c + sum_k w_k feature_k)``.

    A superset of LAP: one free gain per pyramid band (LAP ties them in two groups),
    a free window centre and width (LAP: centre 0.5, width set by ``w``) and a free
    output offset and scale (LAP: 0.5, 0.5). Levenberg-Marquardt from two starts
    (a linearised fit and LAP's neutral parameters); the better one is returned.
    """
    a = features[mask]
    y = out.astype(np.float64)[mask]

    def index(p):
        return np.einsum("ij,j->i", a, p[3:]) + p[2]

    def residual(p):
        return p[0] + p[1] * np.tanh(index(p)) - y

    def jacobian(p):
        t = np.tanh(index(p))
        d = p[1] * (1.0 - t * t)
        return np.c_[np.ones_like(y), t, d, d[:, None] * a]

    target = np.arctanh(np.clip(2.0 * y - 1.0, -0.96, 0.96))
    design = np.c_[np.ones(len(y)), a]
    linear = np.linalg.solve(np.einsum("ij,ik->jk", design, design),
                             np.einsum("ij,i->j", design, target))
    starts = [np.r_[0.5, 0.5, linear],
              np.r_[0.5, 0.5, -0.5 / 0.6, np.full(a.shape[1], 1.0 / 0.6)]]
    fits = [optimize.least_squares(residual, p0, jac=jacobian, method="lm", max_nfev=400)
            for p0 in starts]
    return min(float(np.sqrt(np.mean(f.fun ** 2))) for f in fits)


def test_styles_are_not_lap_expressible(images, outputs, lap_grid_outputs):
    """No style is LAP, even with per-band gains and a free window: a real residual.

    Controls: the same fit reproduces real LAP outputs, extreme parameters
    included, to float rounding, so a style that LAP could express would fail here.
    Measured residuals of the styles: 0.009 (style 17, TV + knee) to 0.07 (CLAHE +
    posterisation), median 0.025, i.e. 2 to 18 grey levels RMS on an 8-bit display.
    """
    raw, mask = images[0]
    features = _lap_band_images(raw)
    sample = mask.copy()  # every second row and column keeps the fit fast
    sample[1::2, :] = False
    sample[:, 1::2] = False
    grid, lap_out = lap_grid_outputs
    for wlh in [(4, 6, 4), (10, 0, 10), (0, 10, 0), (8, 8, 2), (10, 10, 10)]:
        control = lap_out[np.flatnonzero((grid == wlh).all(axis=1))[0]]
        assert _generalised_lap_residual(features, control, sample) < 1e-3, wlh
    residuals = np.array([_generalised_lap_residual(features, outputs[0][s], sample)
                          for s in range(32)])
    assert np.sum(residuals > 0.005) >= 30, residuals.round(4)
    assert np.median(residuals) > 0.015, residuals.round(4)


def test_styles_are_not_lap_training_styles(images, outputs, lap_grid_outputs):
    """Each style is > 0.02 mean abs grey level (5 levels of 8 bits) from all 216
    LAP training styles; measured nearest: 0.036 (style 5, Gaussian histogram
    specification)."""
    _, mask = images[0]
    _, lap_out = lap_grid_outputs
    lap_out = lap_out[:, mask]
    nearest = np.array([np.abs(o - lap_out).mean(axis=1).min() for o in outputs[0][:, mask]])
    assert nearest.min() > 0.02, nearest.round(3)


# --- operators against independent references --------------------------------------

def test_normalized_log_matches_percentile_formula(images):
    raw, _ = images[0]
    np.testing.assert_allclose(blackbox.normalized_log(raw), _normalized_log_reference(raw),
                               atol=1e-6)


def test_gamma_style_on_log_ramp():
    """Style 0 (gamma 1.5 then 3x3 median): a ramp in -log(raw) gives the formula."""
    raw = _log_ramp()
    n = _normalized_log_reference(raw)
    np.testing.assert_allclose(blackbox.apply(raw, 0), n ** 1.5, atol=1e-5)


def test_clahe_style_matches_skimage(images, outputs):
    """Style 8 is plain CLAHE: 1/8-image tiles, clip limit 0.01."""
    raw, _ = images[1]
    n = _normalized_log_reference(raw)
    expected = exposure.equalize_adapthist(n, kernel_size=SIZE // 8, clip_limit=0.01)
    np.testing.assert_allclose(outputs[1][8], expected, atol=2e-3)


def test_tv_knee_style_matches_skimage(images, outputs):
    """Style 17: Chambolle TV (weight 0.12, 20 iterations), then a piecewise-linear knee."""
    raw, _ = images[0]
    n = _normalized_log_reference(raw)
    tv = restoration.denoise_tv_chambolle(n, weight=0.12, max_num_iter=20)
    expected = np.interp(tv, [0.0, 0.55, 0.95, 1.0], [0.0, 0.3, 0.92, 1.0])
    np.testing.assert_allclose(outputs[0][17], expected, atol=2e-3)


def _log_ramp(h=20, w=64):
    """Raw image whose -log is a linear ramp along x (no background)."""
    return 500.0 * np.exp(-np.tile(np.linspace(0.2, 3.0, w), (h, 1)))


def test_posterise_style_levels(outputs):
    """Style 28: auto-window p1-p99.9, gamma 0.9, then 8 grey levels."""
    levels = np.unique(outputs[0][28])
    assert len(levels) <= 8
    np.testing.assert_allclose(levels * 7, np.round(levels * 7), atol=1e-5)
    # On a ramp (no background: the window takes every pixel) it is the formula.
    raw = _log_ramp()
    n = _normalized_log_reference(raw)
    lo, hi = np.percentile(n, [1.0, 99.9])
    expected = np.round(np.clip((n - lo) / (hi - lo), 0, 1) ** 0.9 * 7) / 7
    mismatch = np.abs(blackbox.apply(raw, 28) - expected) > 1e-5
    assert mismatch.mean() < 0.02  # only where float rounding meets a level boundary


def test_median_network_matches_scipy():
    x = np.random.default_rng(4).random((31, 45)).astype(np.float32)
    np.testing.assert_array_equal(bb_impl._median3x3(x), ndi.median_filter(x, 3, mode="reflect"))


def test_bilateral_preserves_edges_and_removes_noise():
    rng = np.random.default_rng(5)
    step = np.zeros((40, 40), np.float32)
    step[:, 20:] = 1.0
    noisy = step + 0.03 * rng.standard_normal(step.shape).astype(np.float32)
    out = bb_impl._bilateral_filter(noisy, 2.0, 0.1)
    assert np.std(out[:, 3:17] - step[:, 3:17]) < 0.5 * 0.03  # noise reduced
    assert abs(out[:, 19].mean() - 0.0) < 0.02 and abs(out[:, 20].mean() - 1.0) < 0.02
    blurred = ndi.gaussian_filter(noisy, 2.0)  # a linear smoother loses the edge
    assert abs(blurred[:, 19].mean() - 0.0) > 0.2


def test_peripheral_equalisation_lifts_the_skin_line(images):
    raw, mask = images[0]
    n = bb_impl.normalized_log(raw)
    ctx = bb_impl._Context(mask=bb_impl._tissue_mask(n))
    out = bb_impl._peripheral(n, ctx, scale=1 / 16, strength=1.0)
    h, w = n.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt((xx / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2)
    rim, core = (r > 0.8) & (r < 0.95), r < 0.5
    assert (out - n)[rim].mean() > 0.05
    assert abs((out - n)[core].mean()) < 0.5 * (out - n)[rim].mean()
    np.testing.assert_array_equal(out[r > 1.2], n[r > 1.2])  # background untouched


@pytest.mark.skipif(importlib.util.find_spec("stylejax.data.phantom") is None,
                    reason="phantom module not available")
def test_on_phantom_mammograms():
    from stylejax.data import phantom

    for view in ("cc", "mlo"):
        raw = phantom.mammogram(0, size=(64, 64), view=view).raw
        for s in range(32):
            out = blackbox.apply(raw, s)
            assert out.shape == (64, 64) and out.dtype == np.float32
            assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0.02


# --- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("raw, match", [
    (np.full((32, 32), np.nan), "non-finite"),
    (np.r_[np.ones((31, 32)), np.full((1, 32), np.inf)], "non-finite"),
    (-np.ones((32, 32)), "positive"),
    (np.r_[np.ones((31, 32)), np.zeros((1, 32))], "positive"),
    (np.ones((2, 32, 32)), "rank"),
    (np.ones(32), "rank"),
    (np.ones((8, 32)), "too small"),
    (np.ones((0, 32)), "empty"),
    (np.full((32, 32), 5.0), "constant"),
    (np.full((32, 32), 1 + 2j), "real"),
])
def test_bad_raw_raises(raw, match):
    with pytest.raises(ValueError, match=match):
        blackbox.apply(raw, 0)


@pytest.mark.parametrize("style", [32, -1, 100, 1.0, "3", None, True])
def test_bad_style_raises(style):
    raw, _ = make_raw(0, (32, 32))
    with pytest.raises(ValueError, match="style"):
        blackbox.apply(raw, style)
    with pytest.raises(ValueError, match="style"):
        blackbox.describe(style)
