"""Parallel-beam Radon transform and FBP against scikit-image and the textbook filters."""

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon as sk_radon, resize

from stylejax.data import tomography as tg

N = 96


@pytest.fixture(scope="module")
def phantom():
    return resize(shepp_logan_phantom(), (N, N), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def theta():
    return np.arange(N) * 180.0 / N


def test_projection_matches_skimage(phantom, theta):
    ours = tg.radon(phantom)                                      # [A, S]
    ref = sk_radon(phantom, theta, circle=True).T
    assert ours.shape == ref.shape == (N, N)
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.9999
    assert np.max(np.abs(ours - ref)) < 0.05 * ref.max()


@pytest.mark.parametrize("window", tg.FILTERS)
def test_fbp_matches_skimage_iradon(phantom, theta, window):
    ref = iradon(sk_radon(phantom, theta, circle=True), theta, circle=True,
                 filter_name=window)
    ours = tg.fbp(tg.radon(phantom), (N, N), window)
    disk = np.hypot(*(np.mgrid[:N, :N] - N // 2)) < N // 2 - 2
    assert np.corrcoef(ours[disk], ref[disk])[0, 1] > 0.997
    gain = np.polyfit(ref[disk], ours[disk], 1)[0]
    assert abs(gain - 1) < 0.03
    assert np.sqrt(np.mean((ours - ref)[disk] ** 2)) < 0.02 * np.ptp(phantom)


def test_backprojection_is_the_adjoint_and_batches_agree():
    rng = np.random.default_rng(0)
    beam = tg.parallel_beam((40, 56), 30)
    x = rng.standard_normal((3, 40, 56)).astype(np.float32)
    y = rng.standard_normal((3, 30, 56)).astype(np.float32)
    lhs = np.sum(beam.project(x).astype(np.float64) * y)
    rhs = np.sum(x.astype(np.float64) * beam.backproject(y))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    np.testing.assert_allclose(beam.project(x)[1], beam.project(x[1]), rtol=1e-5, atol=1e-5)


def test_rectangular_grid_equals_padded_square():
    rng = np.random.default_rng(1)
    img = np.zeros((48, 64), np.float32)
    yy, xx = np.mgrid[:48, :64]
    img[np.hypot(yy - 24, xx - 32) < 20] = 1.0
    img *= 1 + 0.1 * rng.standard_normal(img.shape).astype(np.float32)
    square = np.zeros((64, 64), np.float32)
    square[8:56] = img                       # centres (24, 32) and (32, 32) coincide
    np.testing.assert_allclose(tg.radon(img), tg.radon(square), atol=1e-4)


def test_uncached_operator_gives_the_same_result(monkeypatch, phantom):
    cached = tg.ParallelBeam((N, N), 40)
    monkeypatch.setattr(tg, "CACHE_BYTES", 0)
    streamed = tg.ParallelBeam((N, N), 40)
    assert cached.cached and not streamed.cached and streamed.nbytes == 0
    np.testing.assert_array_equal(cached.project(phantom), streamed.project(phantom))
    p = cached.project(phantom)
    np.testing.assert_array_equal(cached.fbp(p, "hann"), streamed.fbp(p, "hann"))


def test_filter_responses_follow_their_formulas():
    n = 256
    f = np.fft.rfftfreq(n)
    ramp = tg.fbp_filter(n, "ramp")
    # DC of the band-limited spatial ramp: 1/4 - 2 sum_{odd k < n/2} 1/(pi k)^2, small > 0.
    k = np.arange(1, n // 2, 2)
    assert abs(ramp[0] - (0.25 - 2 * np.sum(1 / (np.pi * k) ** 2))) < 1e-9
    assert 0 < ramp[0] < 1.0 / n
    np.testing.assert_allclose(ramp[n // 8:], f[n // 8:], rtol=0.02)   # |f| away from DC
    u = f / 0.5
    np.testing.assert_allclose(tg.fbp_filter(n, "hann"), ramp * 0.5 * (1 + np.cos(np.pi * u)),
                               atol=1e-12)
    np.testing.assert_allclose(tg.fbp_filter(n, "hamming"),
                               ramp * (0.54 + 0.46 * np.cos(np.pi * u)), atol=1e-12)
    half = tg.fbp_filter(n, "cosine", cutoff=0.5)
    assert np.all(half[f > 0.25 + 1e-9] == 0) and np.all(half[1:n // 8] > 0)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown FBP filter 'ram'.*shepp-logan"):
        tg.fbp_filter(64, "ram")
    with pytest.raises(ValueError, match="cutoff"):
        tg.fbp_filter(64, "ramp", cutoff=0.0)
    with pytest.raises(ValueError, match="n_angles"):
        tg.parallel_beam((32, 32), 0)
    with pytest.raises(ValueError, match="images must be"):
        tg.parallel_beam((32, 32)).project(np.zeros((31, 32)))
    with pytest.raises(ValueError, match="sinograms must be"):
        tg.parallel_beam((32, 32)).backproject(np.zeros((31, 32)))
