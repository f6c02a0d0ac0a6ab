"""Synthetic raw ("for processing") mammograms with a tissue label map.

A stand-in for access-controlled raw mammograms such as MBTST: every image is made
from a seed, in numpy, in a few tens of milliseconds at 512x512, with its ground
truth (tissue labels, compressed thickness, glandular fraction, noise-free signal).

The model is a projection through a compressed breast::

    expected = I0(x) * exp(-sum_k mu_k * t_k(x)) + scatter(x)
    raw      = Poisson(expected) + Normal(0, sigma_e),   clipped at a small floor

* **Outline**: a half-ellipse against the chest wall (left or right image edge),
  randomly sized, tilted and wobbled per seed. MLO views are taller and tilted, with
  the **pectoral muscle** as a curved triangle in the upper chest-wall corner.
* **Thickness**: flat compressed thickness ``T`` inside; toward the skin line the
  uncompressed edge is a half cylinder of radius ``T/2``, so the path length rolls off
  as ``2 sqrt(2 R d - d^2)`` with ``d`` the distance to the skin. A **skin** layer of
  ~1.5 mm wraps it (tangential paths make the bright skin line).
* **Fibroglandular tissue**: a Gaussian random field with isotropic power spectrum
  ``1/f^beta`` (beta ~ N(3.17, 0.23) for CC, N(3.30, 0.24) for MLO; Chen et al., Med
  Phys 2012), biased toward the centre between nipple and chest wall and away from a
  subcutaneous fat layer, and softly thresholded to a per-seed dense-area fraction.
  Each pixel's path mixes fat and glandular attenuation by that fraction.
  Cooper's ligaments are thin level lines of a second power-law field, in fat.
* **Vessels**: tapered random-walk curves from the chest wall toward the nipple,
  rendered as cylinders (blood attenuation); labelled ``FIBROGLANDULAR`` (dense soft
  tissue) and also given as their own mask, ``Mammogram.vessels``.
* **Microcalcifications**: clusters of 4-15 specks of hydroxyapatite, each 1-3 px.
* **Acquisition**: heel effect (exposure falls off toward the nipple), scatter
  (a broad blur of the primary behind the breast, scatter-to-primary ratio per seed),
  quantum noise on counts (exact Poisson below 64 expected counts, its normal
  approximation with variance = mean above) and Gaussian electronic noise.

Attenuation coefficients are effective values (1/mm) for a hardened ~28 kVp
mammography spectrum; ratios, not absolute values, are what matter for style work.

Randomness comes from independent numpy ``Generator`` streams derived from the seed,
one per component, so that overriding one option (say ``density=0.5``) leaves every
other component of that seed's image unchanged. CC and MLO views of the same seed
share the "patient" (chest-wall side, breast density, compressed thickness).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage

__all__ = [
    "BACKGROUND", "FAT", "FIBROGLANDULAR", "SKIN", "PECTORAL", "CALCIFICATION",
    "LABEL_NAMES", "LABEL_COLORS", "VIEWS", "BETA_PRIOR", "MU",
    "Mammogram", "MammogramBatch", "mammogram", "mammograms",
    "powerlaw_noise", "log_display", "label_rgb",
]

# Tissue labels (the masks for masked style losses).
BACKGROUND, FAT, FIBROGLANDULAR, SKIN, PECTORAL, CALCIFICATION = range(6)
LABEL_NAMES = ("background", "fat", "fibroglandular", "skin", "pectoral", "calcification")
# RGB in [0, 1] per label, for previews.
LABEL_COLORS = np.array([
    [0.00, 0.00, 0.00],   # background
    [0.95, 0.80, 0.35],   # fat
    [0.85, 0.25, 0.30],   # fibroglandular
    [0.55, 0.85, 0.95],   # skin
    [0.30, 0.45, 0.85],   # pectoral
    [1.00, 1.00, 1.00],   # calcification
], dtype=np.float32)

VIEWS = ("cc", "mlo")
# Power-law exponent of the fibroglandular texture per view: (mean, std), Chen et al. 2012.
BETA_PRIOR = {"cc": (3.17, 0.23), "mlo": (3.30, 0.24)}
# Effective linear attenuation coefficients, 1/mm.
MU = {"fat": 0.040, "glandular": 0.065, "skin": 0.070, "muscle": 0.072,
      "blood": 0.068, "calcification": 1.20}

_SKIN_MM = 1.5            # skin thickness
_FIELD_MM = 240.0         # default: the longer image side spans this many mm
_FLOOR = 0.5              # raw values are clipped below at this many counts
_EXACT_POISSON_BELOW = 64.0  # expected counts under which noise is drawn exactly
_CALC_MASK_MM = 0.08      # calcification thickness that makes a pixel CALCIFICATION


@dataclass(frozen=True, eq=False)
class Mammogram:
    """One synthetic raw mammogram and its ground truth.

    Attributes:
      raw: float32 [H, W], linear raw detector signal in counts (strictly positive).
      labels: int32 [H, W], tissue label per pixel (``BACKGROUND`` .. ``CALCIFICATION``).
      view: ``"cc"`` or ``"mlo"``.
      seed: the seed it was made from.
      expected: float32 [H, W], the noise-free mean signal (counts) that ``raw`` samples.
      thickness: float32 [H, W], breast thickness along the beam in mm (0 in background).
      glandular: float32 [H, W], glandular fraction of the tissue path (0..1).
      vessels: bool [H, W], pixels on a vessel (labelled ``FIBROGLANDULAR`` in ``labels``).
      params: the per-seed parameters actually used (beta, density, thickness_mm, ...).
    """

    raw: np.ndarray
    labels: np.ndarray
    view: str
    seed: int
    expected: np.ndarray
    thickness: np.ndarray
    glandular: np.ndarray
    vessels: np.ndarray
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.raw.shape)

    @property
    def breast(self) -> np.ndarray:
        """bool [H, W]: pixels inside the skin line (any label but background)."""
        return self.labels != BACKGROUND


@dataclass(frozen=True, eq=False)
class MammogramBatch:
    """Stacked mammograms: ``raw`` float32 [N, H, W], ``labels`` int32 [N, H, W],
    ``seeds`` int64 [N] and ``views`` (tuple of N strings)."""

    raw: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    views: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.raw.shape[0])


# ----------------------------------------------------------------------------- validation

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) and not (
            isinstance(size, np.ndarray) and size.ndim == 1):
        raise ValueError(f"size must be two integers (H, W) (got {size!r})")
    if len(size) != 2:
        raise ValueError(f"size must be two integers (H, W) (got {len(size)} values: {size!r})")
    out = []
    for s in size:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ValueError(f"size must be two integers (H, W) (got {size!r})")
        if int(s) < 16:
            raise ValueError(f"size must be at least 16x16 pixels (got {tuple(size)!r})")
        out.append(int(s))
    return out[0], out[1]


def _check_view(view) -> str:
    v = view.lower() if isinstance(view, str) else view
    if v not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS} (got {view!r})")
    return v


def _check_number(value, name, *, low=None, high=None, low_open=False, integer=False):
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} (got {value!r})")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low} (got {value!r})")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high} (got {value!r})")
    return int(value) if integer else float(value)


# ----------------------------------------------------------------------------- texture

@functools.lru_cache(maxsize=8)
def _log_frequency(shape: tuple[int, int]) -> np.ndarray:
    """log |f| (cycles/pixel) on the ``rfft2`` grid of ``shape``; 0 at f = 0."""
    fy = np.fft.fftfreq(shape[0])
    fx = np.fft.rfftfreq(shape[1])
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    f2[0, 0] = 1.0
    out = (0.5 * np.log(f2)).astype(np.float32)
    out.flags.writeable = False
    return out


def powerlaw_noise(shape, beta: float, rng: np.random.Generator | int | None = None, *,
                   anisotropy: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Gaussian random field with power spectrum ``P(f) ~ 1/f^beta``.

    White noise is filtered by ``f^(-beta/2)`` in the Fourier domain with the zero
    frequency removed, so the field is periodic, zero-mean and scaled to unit variance.
    With ``anisotropy`` k > 1 the frequency is measured as
    ``sqrt((k f_par)^2 + (f_perp / k)^2)``, which stretches structures by k^2 along
    ``angle``; the spectrum is still ``1/f^beta`` along every direction.

    Args:
      shape: (H, W), each >= 2 (odd sizes too).
      beta: spectral exponent in (0, 8]; ~3 for breast tissue.
      rng: a numpy ``Generator`` or an int seed.
      anisotropy: stretch factor k >= 1 (1: isotropic).
      angle: direction of the stretch in radians (0: along x / columns, pi/2: along y).
    Returns:
      float32 [H, W], mean 0, standard deviation 1.
    """
    shape = (int(shape[0]), int(shape[1]))
    if shape[0] < 2 or shape[1] < 2:
        raise ValueError(f"shape must be at least 2x2 (got {shape})")
    beta = _check_number(beta, "beta", low=0.0, low_open=True, high=8.0)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # Uniform white noise has the same flat spectrum as Gaussian and is ~6x cheaper to
    # draw; after filtering, each pixel is a weighted sum of all of it, hence Gaussian.
    white = rng.random(shape, dtype=np.float32)
    white -= np.float32(0.5)
    spectrum = scipy.fft.rfft2(white)
    anisotropy = _check_number(anisotropy, "anisotropy", low=1.0)
    if anisotropy == 1.0:
        log_f = _log_frequency(shape)
    else:
        fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
        fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
        c, s, k = np.float32(math.cos(angle)), np.float32(math.sin(angle)), np.float32(anisotropy)
        f2 = (k * (fx * c + fy * s)) ** 2
        f2 += ((fy * c - fx * s) / k) ** 2
        f2[0, 0] = 1.0
        log_f = 0.5 * np.log(f2)
    filt = np.exp(np.float32(-beta / 2) * log_f)
    filt[0, 0] = 0.0
    spectrum *= filt
    out = scipy.fft.irfft2(spectrum, s=shape)
    out -= out.mean(dtype=np.float64)
    out *= np.float32(1.0 / max(float(out.std(dtype=np.float64)), 1e-30))
    return out.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- parameters

def _patient(seed: int) -> dict:
    """Properties shared by the CC and MLO views of one seed."""
    rng = np.random.default_rng([seed, 0])
    return {
        "chest_wall": "left" if rng.random() < 0.5 else "right",
        "density": float(np.clip(rng.beta(1.6, 3.2), 0.03, 0.85)),
        "thickness_mm": float(rng.uniform(35.0, 70.0)),
        "breast_scale": float(rng.uniform(0.0, 1.0)),
        "glandular_max": float(rng.uniform(0.45, 0.8)),
    }


def _geometry(rng: np.random.Generator, view: str, H: int, W: int, scale: float) -> dict:
    """Outline, pectoral, tissue-distribution and acquisition parameters of one view."""
    g = {}
    if view == "cc":
        g["a"] = W * (0.55 + 0.33 * scale + rng.uniform(-0.04, 0.04))
        b = H * rng.uniform(0.36, 0.47)
        g["b_up"], g["b_down"] = b * rng.uniform(0.92, 1.08), b * rng.uniform(0.92, 1.08)
        g["cy"] = H * (0.5 + rng.uniform(-0.04, 0.04))
        g["angle"] = math.radians(rng.uniform(-7.0, 7.0))
    else:  # MLO: axilla above the frame at the chest wall, nipple pointing down.
        g["a"] = W * (0.6 + 0.3 * scale + rng.uniform(-0.04, 0.04))
        g["b_up"] = H * rng.uniform(0.6, 0.8)
        g["b_down"] = H * rng.uniform(0.42, 0.55)
        g["cy"] = H * rng.uniform(0.32, 0.42)
        g["angle"] = math.radians(rng.uniform(10.0, 25.0))
    g["x0"] = -g["a"] * rng.uniform(0.0, 0.15)      # ellipse centre behind the chest wall
    g["a"] -= 0.5 * g["x0"]
    # Smooth outline wobble: 1 + sum_k c_k sin(w_k y + p_k) sin(n_k x + q_k).
    g["wobble"] = [(rng.uniform(0.0, 0.012), rng.uniform(0.3, 1.5), rng.uniform(0, 2 * math.pi),
                    rng.uniform(0.3, 1.5), rng.uniform(0, 2 * math.pi)) for _ in range(3)]
    # Pectoral muscle (MLO): x < pw * (1 - y/ph)^gamma in the top chest-wall corner.
    g["pec_h"] = H * rng.uniform(0.35, 0.7)
    g["pec_w"] = W * rng.uniform(0.2, 0.4)
    g["pec_gamma"] = rng.uniform(0.6, 1.2)
    g["pec_wave"] = (rng.uniform(0.0, 0.04), rng.uniform(0, 2 * math.pi))
    # Where glandular tissue concentrates (normalised ellipse coordinates) and how sharp
    # its boundaries are.
    g["dense_u"] = rng.uniform(0.3, 0.55)
    g["dense_su"] = rng.uniform(0.25, 0.4)
    g["dense_sv"] = rng.uniform(0.35, 0.6)
    g["dense_bias"] = rng.uniform(0.8, 2.0)
    g["softness"] = rng.uniform(0.4, 0.9)
    g["anisotropy"] = rng.uniform(1.0, 1.6)
    g["fat_layer_mm"] = rng.uniform(4.0, 12.0)
    g["ligament_width"] = rng.uniform(0.04, 0.09)
    g["ligament_mm"] = rng.uniform(2.0, 6.0)
    g["heel"] = rng.uniform(0.05, 0.15)
    g["scatter"] = rng.uniform(0.1, 0.3)
    g["n_vessels"] = int(rng.integers(2, 7))
    g["n_clusters"] = int(rng.choice(4, p=[0.3, 0.4, 0.2, 0.1]))
    return g


# ----------------------------------------------------------------------------- components

def _half_cylinder_chord(d: np.ndarray, radius: float) -> np.ndarray:
    """Path length through a half-cylinder edge of ``radius`` at depth ``d`` (same
    unit) from its outer edge: 2 sqrt(d (2R - d)) for d < R, else 2R."""
    dd = np.minimum(d, np.float32(radius))
    chord = np.float32(2 * radius) - dd
    chord *= dd
    np.maximum(chord, 0.0, out=chord)
    np.sqrt(chord, out=chord)
    chord *= np.float32(2.0)
    return chord


class _Frame:
    """Maps chest-wall-frame coordinates (x: px from the chest wall, y: row) to the
    normalised ellipse coordinates and to image columns."""

    def __init__(self, g: dict, W: int, right: bool):
        self.g, self.W, self.right = g, W, right
        self.ca, self.sa = math.cos(g["angle"]), math.sin(g["angle"])

    def rho(self, x, y):
        dx, dy = x - self.g["x0"], y - self.g["cy"]
        u = (dx * self.ca + dy * self.sa) / self.g["a"]
        v = dy * self.ca - dx * self.sa
        v = v / np.where(v < 0, self.g["b_up"], self.g["b_down"])
        return np.sqrt(u * u + v * v)

    def point(self, u, v):
        """Chest-frame (x, y) of normalised ellipse coordinates (u, v)."""
        b = self.g["b_up"] if v < 0 else self.g["b_down"]
        x = self.g["x0"] + self.g["a"] * u * self.ca - b * v * self.sa
        y = self.g["cy"] + self.g["a"] * u * self.sa + b * v * self.ca
        return x, y

    def column(self, x):
        """Continuous image column coordinate (pixel j spans [j, j+1))."""
        return self.W - x if self.right else x


def _render_vessels(rng, n, frame: _Frame, H, W, pix) -> np.ndarray:
    """Vessel path length (mm) [H, W]: tapered random walks splatted as Gaussian tubes
    whose cross-section integrates to the cylinder's (pi r^2)."""
    g = frame.g
    b = 0.5 * (g["b_up"] + g["b_down"])
    pts = []
    for _ in range(n):
        # Start near the chest wall, inside the breast, heading toward the nipple.
        y = g["cy"] + b * rng.uniform(-0.6, 0.6)
        x = rng.uniform(0.0, 0.08) * g["a"]
        heading = g["angle"] + rng.normal(0.0, 0.35)
        radius = rng.uniform(0.5, 1.2)                       # mm at the start
        length = g["a"] * rng.uniform(0.4, 0.9)              # px
        # Samples one tube-profile std apart (the std at the thin tip): the summed
        # Gaussians then ripple by ~1e-8, i.e. the tube is smooth.
        step = float(min(max(0.45 * radius / pix / 2.0, 0.5), 3.0))
        nsteps = max(int(length / step), 2)
        turns = np.cumsum(rng.normal(0.0, 0.03 * math.sqrt(step), nsteps))
        turns += rng.normal(0.0, 0.002) * step * np.arange(nsteps)  # gentle overall bend
        ang = heading + turns
        px = x + step * np.cumsum(np.cos(ang))
        py = y + step * np.cumsum(np.sin(ang))
        r_mm = radius * np.linspace(1.0, 0.45, nsteps)
        inside = frame.rho(px, py) < 0.93
        stop = nsteps if inside.all() else int(np.argmin(inside))
        pts.append((px[:stop], py[:stop], r_mm[:stop], np.full(stop, step)))
    path = np.zeros(H * W, dtype=np.float64)
    if not pts or sum(len(p[0]) for p in pts) == 0:
        return path.astype(np.float32).reshape(H, W)
    px, py, r_mm, step = (np.concatenate(c) for c in zip(*pts))
    col = frame.column(px)
    sigma = np.maximum(r_mm / pix / 2.0, 0.5)                # px; the tube profile's std
    amp = np.pi * r_mm ** 2 / pix * step / (2 * np.pi * sigma ** 2)
    k = int(np.ceil(2.5 * sigma.max()))
    offs = np.arange(-k, k + 1)
    ix = np.floor(col).astype(np.int64)[:, None, None] + offs[None, None, :]
    iy = np.floor(py).astype(np.int64)[:, None, None] + offs[None, :, None]
    d2 = (ix + 0.5 - col[:, None, None]) ** 2 + (iy + 0.5 - py[:, None, None]) ** 2
    w = amp[:, None, None] * np.exp(-d2 / (2 * sigma[:, None, None] ** 2))
    ok = np.broadcast_to((ix >= 0) & (ix < W) & (iy >= 0) & (iy < H), w.shape)
    idx = np.broadcast_to(iy * W + ix, w.shape)[ok]
    path += np.bincount(idx, weights=w[ok], minlength=H * W)
    return path.astype(np.float32).reshape(H, W)


def _render_calcifications(rng, n, frame: _Frame, allowed, H, W, pix):
    """Calcification path length (mm) [H, W] and mask: clusters of 1-3 px specks.

    Each speck is one to three overlapping Gaussian blobs (sub-pixel positions, widths
    0.35-0.8 px) of hydroxyapatite, so specks are irregular and partial-volumed; the
    mask keeps the pixels crossing more than ``_CALC_MASK_MM`` of it.
    """
    path = np.zeros((H, W), dtype=np.float32)
    k = 3
    offs = np.arange(-k, k + 1)
    for _ in range(n):
        # A cluster centre inside the breast interior, not in the pectoral muscle.
        for _try in range(50):
            x, y = frame.point(rng.uniform(0.1, 0.7), rng.uniform(-0.6, 0.6))
            col = frame.column(x)
            if 0 <= col < W and 0 <= y < H and allowed[int(y), int(col)]:
                break
        else:
            continue
        spread = max(rng.uniform(2.0, 6.0) / pix, 3.0)        # cluster radius, px
        count = int(rng.integers(4, 16))
        centres = np.array([y, col]) + rng.normal(0.0, spread / 2, size=(count, 2))
        subs = rng.integers(1, 4, size=count)
        blobs = np.repeat(centres, subs, axis=0) + rng.normal(0.0, 0.5, (subs.sum(), 2))
        sigma = rng.uniform(0.35, 0.8, subs.sum())
        peak = rng.uniform(0.15, 0.5, subs.sum())               # mm of hydroxyapatite
        for (by, bx), s, t in zip(blobs, sigma, peak):
            iy, ix = int(math.floor(by)), int(math.floor(bx))
            ys, xs = iy + offs, ix + offs
            keep_y, keep_x = (ys >= 0) & (ys < H), (xs >= 0) & (xs < W)
            if not keep_y.any() or not keep_x.any():
                continue
            gy = np.exp(-((ys[keep_y] + 0.5 - by) ** 2) / (2 * s * s))
            gx = np.exp(-((xs[keep_x] + 0.5 - bx) ** 2) / (2 * s * s))
            path[np.ix_(ys[keep_y], xs[keep_x])] += (t * np.outer(gy, gx)).astype(np.float32)
    mask = (path > _CALC_MASK_MM) & allowed
    path[~allowed] = 0.0
    return path, mask


def _upsample_linear(small: np.ndarray, axis: int, n_out: int, factor: int) -> np.ndarray:
    """Linear interpolation of block means (blocks of ``factor``) back to ``n_out``
    samples along ``axis`` (edge values held)."""
    n_in = small.shape[axis]
    pos = np.clip((np.arange(n_out) + 0.5) / factor - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    shape = [1, 1]
    shape[axis] = n_out
    t = (pos - lo).astype(np.float32).reshape(shape)
    a = np.take(small, lo, axis=axis)
    return a + t * (np.take(small, hi, axis=axis) - a)


def _scatter(source: np.ndarray, sigma_px: float) -> np.ndarray:
    """Broad Gaussian blur (zero outside the image), computed at low resolution."""
    H, W = source.shape
    f = max(1, int(sigma_px // 4))
    h, w = -(-H // f), -(-W // f)
    padded = np.zeros((h * f, w * f), np.float32)
    padded[:H, :W] = source
    small = padded.reshape(h, f, w, f).mean(axis=(1, 3), dtype=np.float32)
    small = scipy.ndimage.gaussian_filter(small, sigma_px / f, mode="constant")
    return _upsample_linear(_upsample_linear(small, 0, H, f), 1, W, f)


def _add_noise(expected: np.ndarray, rng: np.random.Generator, sigma_e: float) -> np.ndarray:
    """Quantum (Poisson) plus electronic (Gaussian, ``sigma_e``) noise on counts.

    Pixels with at least ``_EXACT_POISSON_BELOW`` expected counts use the normal
    approximation N(lam, lam + sigma_e^2) (skewness <= 1/8 there, and ~6x faster than
    numpy's Poisson sampler); darker pixels draw exact Poisson counts.
    """
    z = rng.standard_normal(expected.shape, dtype=np.float32)
    raw = expected + np.sqrt(expected + np.float32(sigma_e ** 2)) * z
    dark = expected < _EXACT_POISSON_BELOW
    if dark.any():
        raw[dark] = rng.poisson(expected[dark]) + np.float32(sigma_e) * z[dark]
    np.maximum(raw, np.float32(_FLOOR), out=raw)
    return raw


# ----------------------------------------------------------------------------- main entry

def mammogram(seed: int, size=(512, 512), view: str = "cc", *,
              i0: float = 1e4, noise: bool = True, electronic_noise: float = 3.0,
              beta: float | None = None, density: float | None = None,
              thickness_mm: float | None = None, chest_wall: str | None = None,
              calcifications: int | None = None, vessels: int | None = None,
              scatter: float | None = None, pixel_mm: float | None = None) -> Mammogram:
    """Make one synthetic raw mammogram.

    Args:
      seed: non-negative int; the same seed, size, view and options give the same image.
      size: (H, W), each >= 16.
      view: ``"cc"`` (cranio-caudal) or ``"mlo"`` (medio-lateral oblique, with pectoral).
      i0: unattenuated counts per pixel at the chest wall (the background level).
      noise: add quantum (Poisson) and electronic (Gaussian) noise; False gives
        ``raw == expected`` (clipped at the floor).
      electronic_noise: standard deviation of the electronic noise, in counts.
      beta: power-law exponent of the fibroglandular texture; default drawn per seed
        from ``BETA_PRIOR[view]``.
      density: fibroglandular area fraction of the breast interior (0..1); default drawn.
      thickness_mm: compressed breast thickness; default drawn in 35..70 mm.
      chest_wall: ``"left"`` or ``"right"`` image edge; default drawn.
      calcifications: number of microcalcification clusters; default drawn (0..3).
      vessels: number of vessels; default drawn (2..6).
      scatter: scatter-to-primary ratio behind the breast; default drawn in 0.1..0.3.
      pixel_mm: pixel size in mm; default makes the longer side span 240 mm.
    Returns:
      A ``Mammogram``: ``.raw`` float32 [H, W] > 0, ``.labels`` int32 [H, W], ...
    Raises:
      ValueError naming a bad argument.
    """
    seed = _check_seed(seed)
    H, W = _check_size(size)
    view = _check_view(view)
    i0 = _check_number(i0, "i0", low=0.0, low_open=True)
    electronic_noise = _check_number(electronic_noise, "electronic_noise", low=0.0)
    beta = _check_number(beta, "beta", low=0.0, low_open=True, high=8.0)
    density = _check_number(density, "density", low=0.0, high=1.0)
    thickness_mm = _check_number(thickness_mm, "thickness_mm", low=0.0, low_open=True)
    calcifications = _check_number(calcifications, "calcifications", low=0, integer=True)
    vessels = _check_number(vessels, "vessels", low=0, integer=True)
    scatter = _check_number(scatter, "scatter", low=0.0)
    pixel_mm = _check_number(pixel_mm, "pixel_mm", low=0.0, low_open=True)
    if chest_wall is not None and chest_wall not in ("left", "right"):
        raise ValueError(f"chest_wall must be 'left', 'right' or None (got {chest_wall!r})")

    # Independent streams: patient (shared by both views), then per view geometry,
    # texture, vessels, calcifications and noise.
    patient = _patient(seed)
    vi = VIEWS.index(view) + 1
    rng_geo, rng_tex, rng_ves, rng_cal, rng_noise = (
        np.random.default_rng([seed, vi, k]) for k in range(5))
    g = _geometry(rng_geo, view, H, W, patient["breast_scale"])
    mean_b, std_b = BETA_PRIOR[view]
    drawn_beta = float(np.clip(rng_geo.normal(mean_b, std_b), 2.0, 4.5))

    beta = drawn_beta if beta is None else beta
    density = patient["density"] if density is None else density
    T = patient["thickness_mm"] if thickness_mm is None else thickness_mm
    side = patient["chest_wall"] if chest_wall is None else chest_wall
    n_clusters = g["n_clusters"] if calcifications is None else calcifications
    n_vessels = g["n_vessels"] if vessels is None else vessels
    spr = g["scatter"] if scatter is None else scatter
    pix = _FIELD_MM / max(H, W) if pixel_mm is None else pixel_mm
    f32 = np.float32
    frame = _Frame(g, W, right=(side == "right"))

    # --- outline. x: px from the chest wall (so the image needs no flipping), y: row.
    x = np.arange(W, dtype=f32) + f32(0.5)
    if side == "right":
        x = x[::-1].copy()
    y = np.arange(H, dtype=f32)[:, None] + f32(0.5)
    dx, dy = x - f32(g["x0"]), y - f32(g["cy"])
    u = dx * f32(frame.ca / g["a"]) + dy * f32(frame.sa / g["a"])
    v = dy * f32(frame.ca) - dx * f32(frame.sa)
    inv_b = np.where(v < 0, f32(1 / g["b_up"]), f32(1 / g["b_down"]))
    v *= inv_b
    rho0 = np.sqrt(u * u + v * v)
    wobble = np.ones((H, W), f32)
    for c, wy, py, wx, px in g["wobble"]:
        wobble += (f32(c) * np.sin(f32(wy * 2 * np.pi / H) * y + f32(py))) * np.sin(
            f32(wx * 2 * np.pi / W) * x + f32(px))
    rho = rho0 * wobble
    breast = rho < 1.0
    # Distance to the skin line (px), to first order (1 - rho) / |grad rho|.
    grad = (u * f32(1 / g["a"])) ** 2 + (v * inv_b) ** 2
    np.sqrt(grad, out=grad)
    grad *= wobble
    grad /= np.maximum(rho0, f32(1e-6))
    np.maximum(grad, f32(1e-6), out=grad)
    dist = np.maximum(f32(1.0) - rho, f32(0.0))
    dist /= grad
    del grad, inv_b, wobble, rho0, dx

    # --- thickness: flat, rolling off over a half cylinder of radius T/2 at the edge;
    # the skin wraps it, so tangential paths near the edge cross a lot of skin.
    R = T / 2.0 / pix                                        # px
    s_px = max(_SKIN_MM / pix, 1.0)
    total = _half_cylinder_chord(dist, R)
    total *= f32(pix)                                        # mm
    inner = _half_cylinder_chord(np.maximum(dist - f32(s_px), f32(0.0)), max(R - s_px, 0.5))
    inner *= f32(pix)
    skin = breast & (dist <= s_px)
    skin_path = total - inner

    # --- pectoral muscle (MLO): curved triangle in the top chest-wall corner.
    if view == "mlo":
        yy = np.clip(1.0 - y / f32(g["pec_h"]), 0.0, 1.0)
        amp, ph = g["pec_wave"]
        edge = f32(g["pec_w"]) * yy ** f32(g["pec_gamma"]) * (
            1.0 + f32(amp) * np.sin(f32(3 * math.pi) * yy + f32(ph)))      # [H, 1]
        inside = edge - x                                             # px past the edge
        depth = np.clip(inside / np.maximum(edge, f32(1.0)), 0.0, 1.0)
        pectoral = breast & (inside > 0) & ~skin
        # Muscle fraction of the path: 0.3 at the edge (ramped over ~1.5 px so the edge
        # is not a staircase), rising to 0.85 in the corner.
        muscle = (f32(0.3) + f32(0.55) * depth) * np.clip(inside * f32(1 / 1.5) + f32(0.5),
                                                         0.0, 1.0)
        muscle[~breast] = 0.0
        del depth, inside
    else:
        pectoral = np.zeros((H, W), bool)
        muscle = None

    # --- fibroglandular tissue: power-law field biased toward the dense centre and
    # away from a subcutaneous fat layer, softly thresholded to the target density.
    axis = g["angle"] if side == "left" else -g["angle"]     # breast axis in the image
    z = powerlaw_noise((H, W), beta, rng_tex, anisotropy=g["anisotropy"], angle=axis)
    z += f32(g["dense_bias"]) * np.exp(-((u - f32(g["dense_u"])) * f32(1 / g["dense_su"])) ** 2
                                       - (v * f32(1 / g["dense_sv"])) ** 2)
    z -= f32(2.5) * np.exp(dist * f32(-pix / g["fat_layer_mm"]))
    interior = breast & ~skin & ~pectoral
    sample = z[::4, ::4][interior[::4, ::4]]
    if sample.size < 64:
        sample = z[interior]
    if density >= 1.0 or sample.size == 0:
        thr = -np.inf if density >= 1.0 else np.inf
    elif density <= 0.0:
        thr = np.inf
    else:
        thr = float(np.quantile(sample, 1.0 - density))
    if np.isfinite(thr):
        z -= f32(thr)
        z *= f32(-1.0 / g["softness"])
        np.clip(z, -60, 60, out=z)
        gland = f32(1.0) / (f32(1.0) + np.exp(z))
    else:
        gland = np.full((H, W), 1.0 if thr < 0 else 0.0, f32)
    gland[~breast] = 0.0
    del z, u, v
    # Cooper's ligaments: thin curvilinear strands (level lines of a second field) in fat.
    lig = powerlaw_noise((H, W), beta + 0.3, rng_tex, anisotropy=g["anisotropy"], angle=axis)
    lig *= f32(1 / g["ligament_width"])
    lig = np.exp(-lig * lig)
    lig *= f32(1.0) - gland

    # --- attenuation line integral (dimensionless).
    gmax = f32(patient["glandular_max"])
    gland_frac = gland * gmax
    mu_mix = f32(MU["fat"]) + gland_frac * f32(MU["glandular"] - MU["fat"])
    atten = mu_mix * inner
    atten += f32(MU["skin"]) * skin_path
    atten += lig * f32(g["ligament_mm"] * (MU["glandular"] - MU["fat"])) * np.minimum(
        inner, f32(1.0))  # strands end where the tissue does
    if muscle is not None:
        atten += (f32(MU["muscle"]) - mu_mix) * muscle * inner
    del mu_mix, lig, skin_path
    vessel_path = np.minimum(_render_vessels(rng_ves, n_vessels, frame, H, W, pix), inner)
    atten += f32(MU["blood"] - MU["fat"]) * vessel_path
    vessel_mask = (vessel_path > 0.35) & breast & ~skin
    allowed = interior & (dist > 2 * s_px)
    calc_path, calc_mask = _render_calcifications(rng_cal, n_clusters, frame, allowed,
                                                  H, W, pix)
    atten += f32(MU["calcification"]) * calc_path

    # --- acquisition: heel effect, primary, scatter, noise.
    heel = f32(i0) * (f32(1.0) - f32(g["heel"]) * (x / f32(W)))     # [W]
    expected = np.exp(-atten)
    expected *= heel
    if spr > 0:
        behind = np.where(breast, expected, f32(0.0))
        expected += f32(spr) * _scatter(behind, max(15.0 / pix, 1.0))
    if noise:
        raw = _add_noise(expected, rng_noise, electronic_noise)
    else:
        raw = np.maximum(expected, f32(_FLOOR))

    # --- labels (later rules win).
    labels = np.where(breast, np.int32(FAT), np.int32(BACKGROUND))
    labels[breast & ((gland >= 0.5) | vessel_mask)] = FIBROGLANDULAR
    labels[pectoral] = PECTORAL
    labels[skin] = SKIN
    labels[calc_mask] = CALCIFICATION

    params = {
        "beta": beta, "density": density, "thickness_mm": T, "chest_wall": side,
        "calcification_clusters": n_clusters, "vessels": n_vessels, "scatter": spr,
        "pixel_mm": pix, "i0": i0, "electronic_noise": electronic_noise if noise else 0.0,
        "heel": g["heel"], "noise": bool(noise),
    }
    return Mammogram(raw=raw, labels=labels, view=view, seed=seed, expected=expected,
                     thickness=total, glandular=gland_frac, vessels=vessel_mask,
                     params=params)


def mammograms(seeds, size=(512, 512), view="cc", **options) -> MammogramBatch:
    """Make a stack of mammograms, one per seed (two per seed for ``view="both"``).

    Args:
      seeds: iterable of non-negative ints.
      size: (H, W) shared by all images.
      view: ``"cc"``, ``"mlo"``, ``"both"`` (CC then MLO of each seed) or a sequence of
        views, one per seed.
      **options: passed to ``mammogram``.
    Returns:
      ``MammogramBatch`` with ``raw`` float32 [N, H, W] and ``labels`` int32 [N, H, W].
    """
    seeds = [_check_seed(s) for s in (np.asarray(seeds).ravel().tolist()
                                      if isinstance(seeds, np.ndarray) else list(seeds))]
    H, W = _check_size(size)
    if isinstance(view, str) and view.lower() == "both":
        jobs = [(s, v) for s in seeds for v in VIEWS]
    elif isinstance(view, str):
        jobs = [(s, _check_view(view)) for s in seeds]
    else:
        views = list(view)
        if len(views) != len(seeds):
            raise ValueError(f"view has {len(views)} entries for {len(seeds)} seeds")
        jobs = [(s, _check_view(v)) for s, v in zip(seeds, views)]
    raw = np.empty((len(jobs), H, W), np.float32)
    labels = np.empty((len(jobs), H, W), np.int32)
    for i, (s, v) in enumerate(jobs):
        m = mammogram(s, (H, W), v, **options)
        raw[i], labels[i] = m.raw, m.labels
    return MammogramBatch(raw=raw, labels=labels,
                          seeds=np.array([s for s, _ in jobs], np.int64),
                          views=tuple(v for _, v in jobs))


# ----------------------------------------------------------------------------- display

def log_display(raw: np.ndarray, labels: np.ndarray | None = None,
                percentiles=(0.5, 99.5)) -> np.ndarray:
    """Simple log display for previews: dense tissue bright, background black.

    ``-log(raw)`` is windowed to the given percentiles of the breast pixels (all pixels
    when ``labels`` is None) and mapped to [0, 1]. Not a processing pipeline: use
    ``stylejax.lap`` for styled images.
    """
    raw = np.asarray(raw, dtype=np.float32)
    att = -np.log(np.maximum(raw, _FLOOR))
    inside = att if labels is None else att[np.asarray(labels) != BACKGROUND]
    if inside.size == 0:
        inside = att
    lo, hi = np.percentile(inside, percentiles)
    out = np.clip((att - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    if labels is not None:
        out[np.asarray(labels) == BACKGROUND] = 0.0
    return out.astype(np.float32)


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """Label map [..., H, W] -> RGB float32 [..., H, W, 3] using ``LABEL_COLORS``."""
    return LABEL_COLORS[np.clip(np.asarray(labels), 0, len(LABEL_COLORS) - 1)]
