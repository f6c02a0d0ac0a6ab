"""Synthetic B-mode ultrasound with a tissue label map (stand-in for the thesis' data).

Every image is made from a seed, in numpy/scipy, with its ground truth (tissue labels,
the linear envelope before log compression). The same seed gives the same anatomy *and*
the same underlying scatterer field for every quality level, so ``quality="lq"`` and
``quality="hq"`` of one seed are a paired low-/high-quality image of one scan, as in the
thesis' LQ -> HQ task.

Geometry: a linear array at the top edge (row 0 = skin surface), depth along rows, one
scan line per column, square pixels; ``depth_mm`` (default 60 mm) spans the rows. The
anatomy of :func:`ultrasound_label_map` is a liver-like abdominal view: subcutaneous fat,
a fascia line, muscle, the liver capsule, liver parenchyma, a kidney (cortex and bright
central sinus), vessels (anechoic, some with echogenic walls), simple cysts (anechoic)
and hyperechoic lesions.

Pipeline (one scan, per quality)::

    labels -> scatterers -> RF (axial pulse) -> analytic signal (Hilbert) -> IQ (demodulate,
    decimate) -> lateral beam profile -> attenuation -> + receiver noise -> |.| (envelope)
    -> time-gain compensation -> log compression to [0, 1]

* **Scatterers** on a simulation grid that is ``os`` times finer than the image along
  depth (``os`` makes the RF band fit under the grid's Nyquist frequency): a zero-mean
  Gaussian amplitude per cell, kept with probability ``p = min(1, density * cell area)``
  and divided by ``sqrt(p)``, times the tissue's echogenicity. The Gaussian and the
  uniform draw that decides ``u < p`` are the same for every quality (the grid depends
  only on the image size and ``depth_mm``), so a sparser quality keeps a subset of the
  denser one's scatterers. Many scatterers per resolution cell give fully developed
  speckle (Rayleigh envelope); few give partially developed, grainier speckle. Some
  tissues (fascia, renal sinus, hyperechoic lesions, fat septa) add sparse strong point
  scatterers (a Poisson process per mm^2 with a scattering cross-section in mm^2 of
  unit tissue, so their brightness relative to speckle is physical, not per pixel).
* **Axial pulse**: a Gaussian-modulated cosine at the centre frequency ``f0`` with a
  fractional -6 dB bandwidth, applied as a product with its spectrum along depth
  (:func:`rf_lines` gives the real RF). Depth frequency of the pulse-echo carrier is
  ``2 f0 / c``.
* **Envelope**: the analytic signal is 2x the positive-frequency half of the RF spectrum
  (exactly ``scipy.signal.hilbert``; :func:`envelope`), demodulated by shifting the
  carrier to 0 and decimated to the image's rows by keeping the band around the carrier
  (a Gaussian taper with sigma a third of the output Nyquist frequency is the display's
  anti-alias filter).
  Linear operations on a circular Gaussian field keep it circular Gaussian, so the
  envelope of fully developed speckle stays Rayleigh at any image size.
* **Lateral beam**: a Gaussian per depth row with ``sigma(z) = sigma_f sqrt(1 + ((z -
  z_f) / z_R)^2)`` (a focused beam that widens away from the focus ``z_f``), unit energy
  so that speckle brightness does not depend on the beam width. It is applied to the
  decimated IQ rows (the beam width hardly changes within one pulse length).
* **Attenuation**: two-way ``2 alpha f0 z`` dB with ``alpha`` (dB/cm/MHz) accumulated
  through the tissues of each scan line (fluid attenuates little, so cysts show
  posterior enhancement); **receiver noise** (complex Gaussian) is added after it, and
  **time-gain compensation** then undoes the attenuation of reference tissue, so noise
  grows with depth as on a scanner.
* **Log compression**: ``1 + (20 log10(envelope) - white_db) / dynamic_range_db``
  clipped to [0, 1]; the gain is fixed (no per-image normalisation), so images of one
  quality are comparable.

Quality levels (:data:`QUALITIES`) differ in centre frequency and bandwidth (axial
speckle size), lateral beam width and depth of field (lateral speckle size), scatterer
density, receiver noise and dynamic range; ``"clinical"`` adds a scanner's
post-processing (speckle-reduction smoothing, a grey map, near-field reverberation haze).

Randomness comes from independent numpy ``Generator`` streams of ``SeedSequence([seed,
k])``: anatomy, scatterers, point scatterers, receiver noise, clutter.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage

__all__ = [
    "Tissue", "TISSUES", "LABEL_NAMES", "UltrasoundQuality", "QUALITIES", "Ultrasound",
    "UltrasoundBatch", "ultrasound", "ultrasounds", "ultrasound_label_map", "ultrasound_labels",
    "ultrasound_qualities",
    "pulse", "rf_lines", "analytic_signal", "envelope", "SPEED_OF_SOUND_MM_PER_US",
]

SPEED_OF_SOUND_MM_PER_US = 1.54   # soft tissue, mm/us (1540 m/s)


@dataclass(frozen=True)
class Tissue:
    """Acoustic properties of one label.

    Attributes:
      name: label name.
      echo_db: echogenicity, rms backscatter amplitude in dB relative to liver (0 dB);
        ``-inf``-like values (e.g. -60) make a region anechoic.
      density: multiplier of the quality's scatterer density.
      attenuation: dB/cm/MHz (one way).
      bright_rate: strong point scatterers per mm^2.
      bright_area: each point's scattering cross-section in mm^2 of 0 dB tissue.
    """

    name: str
    echo_db: float
    density: float = 1.0
    attenuation: float = 0.5
    bright_rate: float = 0.0
    bright_area: float = 0.0


#: Tissue table; the label value is the index.
TISSUES = (
    Tissue("tissue", -6.0, 1.0, 1.0),                 # muscle / generic soft tissue
    Tissue("fat", -11.0, 0.6, 0.6, 0.4, 0.3),         # subcutaneous fat with septa
    Tissue("fascia", 12.0, 1.0, 1.2, 3.0, 0.4),       # fascia, capsules, vessel walls
    Tissue("liver", 0.0, 1.0, 0.5),                   # parenchyma (the 0 dB reference)
    Tissue("kidney", -5.0, 1.0, 0.8),                 # renal cortex
    Tissue("renal_sinus", 8.0, 1.0, 0.9, 2.0, 0.5),   # central echo complex
    Tissue("vessel", -50.0, 1.0, 0.18),               # blood: anechoic
    Tissue("cyst", -60.0, 1.0, 0.005),                # fluid: anechoic, posterior enhancement
    Tissue("lesion", 7.0, 1.0, 0.8, 2.5, 0.6),        # hyperechoic lesion
)
LABEL_NAMES = tuple(t.name for t in TISSUES)
(TISSUE, FAT, FASCIA, LIVER, KIDNEY, RENAL_SINUS, VESSEL, CYST, LESION) = range(len(TISSUES))


@dataclass(frozen=True)
class UltrasoundQuality:
    """One acquisition/display quality level.

    Attributes:
      name: the level's name.
      f0_mhz: centre frequency in MHz.
      bandwidth: fractional -6 dB bandwidth of the pulse (FWHM of its spectrum / f0).
      lateral_fwhm_mm: lateral FWHM of the beam at the focus.
      depth_of_field_mm: Rayleigh range ``z_R`` of the beam (its width grows by sqrt(2)
        that far from the focus).
      focus: focal depth as a fraction of the image depth.
      density: scatterers per mm^2 (capped at one per simulation cell).
      noise_db: receiver noise power relative to 0 dB tissue at the skin.
      dynamic_range_db: displayed dynamic range of the log compression.
      white_db: envelope level (dB re 0 dB tissue) that maps to white.
      tgc_attenuation: dB/cm/MHz the time-gain compensation undoes.
      speckle_reduction_mm: Gaussian smoothing (sigma, mm) of the log image; 0 = none.
      gamma: grey map exponent applied after compression (1 = linear).
      haze_db: near-field reverberation clutter level; ``None`` = none.
      haze_depth_mm: 1/e depth of that clutter.
    """

    name: str
    f0_mhz: float
    bandwidth: float
    lateral_fwhm_mm: float
    depth_of_field_mm: float
    focus: float
    density: float
    noise_db: float
    dynamic_range_db: float
    white_db: float = 20.0
    tgc_attenuation: float = 0.5
    speckle_reduction_mm: float = 0.0
    gamma: float = 1.0
    haze_db: float | None = None
    haze_depth_mm: float = 6.0

    def __post_init__(self):
        positive = ("f0_mhz", "bandwidth", "lateral_fwhm_mm", "depth_of_field_mm", "density",
                    "dynamic_range_db", "gamma")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"quality {self.name!r}: {name} must be a positive finite "
                                 f"number (got {value!r})")
        if not 0.0 <= self.focus <= 1.0:
            raise ValueError(f"quality {self.name!r}: focus must lie in [0, 1] (got {self.focus})")
        if self.bandwidth > 1.5:
            raise ValueError(f"quality {self.name!r}: bandwidth must be <= 1.5 (got "
                             f"{self.bandwidth})")
        for name in ("noise_db", "white_db", "tgc_attenuation", "speckle_reduction_mm",
                     "haze_depth_mm"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"quality {self.name!r}: {name} must be finite")
        if self.speckle_reduction_mm < 0 or self.haze_depth_mm <= 0:
            raise ValueError(f"quality {self.name!r}: speckle_reduction_mm must be >= 0 and "
                             "haze_depth_mm > 0")

    @property
    def carrier(self) -> float:
        """Pulse-echo carrier along depth, cycles per mm (``2 f0 / c``)."""
        return 2.0 * self.f0_mhz / SPEED_OF_SOUND_MM_PER_US

    @property
    def sigma_k(self) -> float:
        """Standard deviation of the pulse's Gaussian spectrum, cycles per mm of depth."""
        return self.bandwidth * self.carrier / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def lateral_sigma_mm(self, z_mm, depth_mm: float):
        """Lateral Gaussian sigma (mm) of the beam at depth ``z_mm``."""
        sigma_f = self.lateral_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        z_f = self.focus * depth_mm
        return sigma_f * np.sqrt(1.0 + ((np.asarray(z_mm) - z_f) / self.depth_of_field_mm) ** 2)


#: Named quality levels, low to high, then the clinical look.
QUALITIES = {
    "lq": UltrasoundQuality("lq", f0_mhz=3.5, bandwidth=0.5, lateral_fwhm_mm=1.6,
                            depth_of_field_mm=12.0, focus=0.45, density=6.0, noise_db=-38.0,
                            dynamic_range_db=45.0),
    "hq": UltrasoundQuality("hq", f0_mhz=5.0, bandwidth=0.7, lateral_fwhm_mm=0.75,
                            depth_of_field_mm=20.0, focus=0.45, density=200.0, noise_db=-70.0,
                            dynamic_range_db=60.0),
    "clinical": UltrasoundQuality("clinical", f0_mhz=3.5, bandwidth=0.6,
                                  lateral_fwhm_mm=1.1, depth_of_field_mm=18.0, focus=0.4,
                                  density=200.0, noise_db=-55.0, dynamic_range_db=50.0,
                                  white_db=15.0, speckle_reduction_mm=0.2, gamma=1.6,
                                  haze_db=-6.0),
}


@dataclass(frozen=True, eq=False)
class Ultrasound:
    """One synthetic B-mode image and its ground truth.

    Attributes:
      image: float32 [H, W] in [0, 1], the displayed (log-compressed) B-mode image.
      labels: int32 [H, W], tissue label per pixel (index into :data:`LABEL_NAMES`).
      quality: the quality level's name.
      seed: the seed it was made from.
      envelope: float32 [H, W] >= 0, the detected envelope after time-gain compensation,
        before log compression (linear; 0 dB tissue has rms 1 near the skin).
      depth_mm: depth spanned by the rows.
      params: derived settings (pixel_mm, oversampling, the quality's fields).
    """

    image: np.ndarray
    labels: np.ndarray
    quality: str
    seed: int
    envelope: np.ndarray
    depth_mm: float
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape)


@dataclass(frozen=True, eq=False)
class UltrasoundBatch:
    """A stack of synthetic B-mode images.

    Attributes:
      images: float32 [N, H, W] in [0, 1].
      labels: int32 [N, H, W].
      seeds: int64 [N].
      quality: the quality level's name.
    """

    images: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    quality: str

    def __len__(self) -> int:
        return len(self.images)


def ultrasound_labels() -> tuple[str, ...]:
    """Label names; label value ``i`` is ``ultrasound_labels()[i]``."""
    return LABEL_NAMES


def ultrasound_qualities() -> tuple[str, ...]:
    """Names of the quality levels, lowest first (``"lq"``, ``"hq"``, ``"clinical"``)."""
    return tuple(QUALITIES)


# ----------------------------------------------------------------------------- checks

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def _check_size(size) -> tuple[int, int]:
    ok = (isinstance(size, (Sequence, np.ndarray)) and not isinstance(size, (str, bytes))
          and len(size) == 2 and all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                     for s in size))
    if not ok:
        raise ValueError(f"size must be two integers (H, W) (got {size!r})")
    if min(size) < 16:
        raise ValueError(f"size must be at least 16x16 pixels (got {tuple(size)!r})")
    return int(size[0]), int(size[1])


def _check_quality(quality) -> UltrasoundQuality:
    if isinstance(quality, UltrasoundQuality):
        return quality
    key = quality.lower() if isinstance(quality, str) else quality
    if key not in QUALITIES:
        raise ValueError(f"quality must be one of {tuple(QUALITIES)} or an UltrasoundQuality "
                         f"(got {quality!r})")
    return QUALITIES[key]


def _check_depth(depth_mm) -> float:
    if (isinstance(depth_mm, bool) or not isinstance(depth_mm, numbers.Real)
            or not math.isfinite(depth_mm) or not 5.0 <= depth_mm <= 400.0):
        raise ValueError(f"depth_mm must be a number in [5, 400] mm (got {depth_mm!r})")
    return float(depth_mm)


def _check_labels(labels, size) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D label map [H, W] (got shape {arr.shape})")
    if size is not None and arr.shape != tuple(size):
        raise ValueError(f"labels shape {arr.shape} does not match size {tuple(size)}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("labels contain NaN or inf; a label map holds integer labels")
        raise ValueError(f"labels must have an integer dtype (got {arr.dtype})")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype (got {arr.dtype})")
    if min(arr.shape) < 16:
        raise ValueError(f"labels must be at least 16x16 pixels (got {arr.shape})")
    bad = np.unique(arr[(arr < 0) | (arr >= len(TISSUES))])
    if bad.size:
        raise ValueError(f"labels contain unknown label(s) {bad[:8].tolist()}; known labels "
                         f"are 0..{len(TISSUES) - 1} {LABEL_NAMES}")
    return arr.astype(np.int32)


# ----------------------------------------------------------------------------- anatomy

def _rngs(seed: int) -> dict[str, np.random.Generator]:
    names = ("anatomy", "scatterers", "points", "noise", "clutter")
    return {n: np.random.default_rng(np.random.SeedSequence([seed, k]))
            for k, n in enumerate(names)}


def _wave(rng, v, amplitude, cycles=(0.5, 3.0), terms=3):
    """A smooth random boundary offset along the lateral coordinate ``v``."""
    out = np.zeros_like(v)
    for _ in range(terms):
        f = rng.uniform(*cycles)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * v + rng.uniform(0, 2 * np.pi))
    return amplitude * out / terms


def _blob_radius(rng, theta, irregularity, terms=4):
    """A star-shaped radius factor ``1 + sum a_k cos(k theta + phi_k)`` (smooth, > 0.5)."""
    r = np.ones_like(theta)
    for k in range(2, 2 + terms):
        r += irregularity / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.maximum(r, 0.5)


def _ellipse(u, v, cu, cv, a, b, angle, reach=1.7):
    """Normalised elliptical radius and polar angle around (cu, cv); ``a`` lateral.

    Only the box within ``reach * max(a, b)`` of the centre is computed (blobs of
    :func:`_blob_radius` stay inside ``reach = 1.7``). Returns ``(box, rho, theta)`` with
    ``box`` a pair of slices into the image.
    """
    H, W = u.shape
    du, dv = float(u[1, 0] - u[0, 0]), float(v[0, 1] - v[0, 0])
    r = reach * max(a, b)
    box = (slice(max(int((cu - r) / du) - 1, 0), min(int((cu + r) / du) + 2, H)),
           slice(max(int((cv - r) / dv) - 1, 0), min(int((cv + r) / dv) + 2, W)))
    dy, dx = u[box] - cu, v[box] - cv
    c, s = math.cos(angle), math.sin(angle)
    x, y = c * dx + s * dy, -s * dx + c * dy
    return box, np.hypot(x / a, y / b), np.arctan2(y / b, x / a)


def _tube(labels, u, v, points, radius, label, wall=None, wall_label=FASCIA):
    """Paint a tube of ``radius`` around a polyline (segment by segment, in bounding boxes)."""
    H, W = labels.shape
    du, dv = u[1, 0] - u[0, 0], v[0, 1] - v[0, 0]
    outer = radius + (wall or 0.0)
    dist = np.full(labels.shape, np.inf, np.float32)
    for (u0, v0), (u1, v1) in zip(points[:-1], points[1:]):
        r0 = max(int((min(u0, u1) - outer) / du) - 1, 0)
        r1 = min(int((max(u0, u1) + outer) / du) + 2, H)
        c0 = max(int((min(v0, v1) - outer) / dv) - 1, 0)
        c1 = min(int((max(v0, v1) + outer) / dv) + 2, W)
        if r0 >= r1 or c0 >= c1:
            continue
        uu, vv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
        eu, ev = u1 - u0, v1 - v0
        t = np.clip(((uu - u0) * eu + (vv - v0) * ev) / max(eu * eu + ev * ev, 1e-12), 0, 1)
        d = np.hypot(uu - (u0 + t * eu), vv - (v0 + t * ev))
        np.minimum(dist[r0:r1, c0:c1], d, out=dist[r0:r1, c0:c1])
    if wall:
        labels[dist < outer] = wall_label
    labels[dist < radius] = label


def ultrasound_label_map(seed: int, size=(256, 256)) -> np.ndarray:
    """Make the tissue label map of a seed (the anatomy of :func:`ultrasound`).

    Coordinates are in units of the image depth (rows span 0..1, columns 0..W/H), so the
    anatomy keeps its shape for any aspect ratio and scales with the image.

    Args:
      seed: non-negative int.
      size: (H, W), each >= 16.
    Returns:
      int32 [H, W] labels (index into :data:`LABEL_NAMES`): fat, fascia lines, muscle
      (``tissue``), liver, usually a kidney with its sinus, 1-3 vessels, 0-2 cysts, 0-2
      hyperechoic lesions.
    """
    seed = _check_seed(seed)
    H, W = _check_size(size)
    rng = _rngs(seed)["anatomy"]
    aspect = W / H
    u = ((np.arange(H, dtype=np.float32) + 0.5) / H)[:, None] * np.ones((1, W), np.float32)
    v = ((np.arange(W, dtype=np.float32) + 0.5) / H)[None, :] * np.ones((H, 1), np.float32)
    v1 = v[0]
    labels = np.full((H, W), LIVER, np.int32)

    # Layers from the skin down: fat | fascia | muscle | capsule | liver.
    fat_bottom = rng.uniform(0.05, 0.1) + _wave(rng, v1 / aspect, 0.015)
    muscle_bottom = fat_bottom + rng.uniform(0.08, 0.15) + _wave(rng, v1 / aspect, 0.025)
    fascia = rng.uniform(0.006, 0.01)
    capsule = rng.uniform(0.005, 0.008)
    labels[u < muscle_bottom[None, :] + capsule] = FASCIA
    labels[u < muscle_bottom[None, :]] = TISSUE
    labels[u < fat_bottom[None, :] + fascia] = FASCIA
    labels[u < fat_bottom[None, :]] = FAT
    liver_top = float(muscle_bottom.max() + capsule)

    # Kidney (cortex, capsule, sinus) in the lower part, most of the time.
    if rng.random() < 0.8:
        cu, cv = rng.uniform(0.62, 0.85), aspect * rng.uniform(0.3, 0.7)
        a, b = rng.uniform(0.2, 0.3), rng.uniform(0.1, 0.15)
        angle = rng.uniform(-0.35, 0.35)
        box, rho, theta = _ellipse(u, v, cu, cv, a, b, angle)
        edge = _blob_radius(rng, theta, 0.08)
        labels[box][rho < edge * (1 + rng.uniform(0.005, 0.009) / b)] = FASCIA
        labels[box][rho < edge] = KIDNEY
        box, s_rho, s_theta = _ellipse(u, v, cu + rng.uniform(-0.02, 0.02), cv,
                                       0.55 * a, 0.45 * b, angle)
        labels[box][s_rho < _blob_radius(rng, s_theta, 0.5)] = RENAL_SINUS

    def inside_liver(cu, cv, r):
        i, j = min(int(cu * H), H - 1), min(int(cv * H), W - 1)
        return labels[i, j] == LIVER and cu - r > liver_top

    def spot(low_u, r):
        for _ in range(20):
            cu, cv = rng.uniform(low_u, 0.95), aspect * rng.uniform(0.08, 0.92)
            if inside_liver(cu, cv, r):
                return cu, cv
        return None

    # Hyperechoic lesions (irregular blobs) in the liver.
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.03, 0.07)
        where = spot(liver_top + 0.05, r)
        if where is None:
            continue
        box, rho, theta = _ellipse(u, v, *where, r, r * rng.uniform(0.7, 1.0),
                                   rng.uniform(0, np.pi))
        labels[box][rho < _blob_radius(rng, theta, 0.35)] = LESION

    # Vessels: cross-sections (ellipses) or longitudinal segments (tubes), >= 1.
    for k in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.015, 0.045)
        wall = rng.uniform(0.004, 0.008) if rng.random() < 0.5 else None
        if rng.random() < 0.5:
            where = spot(liver_top + 0.03, r) or (min(liver_top + 2 * r + 0.02, 0.9),
                                                  aspect * rng.uniform(0.2, 0.8))
            box, rho, _ = _ellipse(u, v, *where, r * rng.uniform(1.0, 1.6), r,
                                   rng.uniform(0, np.pi))
            if wall:
                labels[box][rho < 1 + wall / r] = FASCIA
            labels[box][rho < 1] = VESSEL
        else:
            u0 = rng.uniform(liver_top + r + 0.02, 0.9)
            u1 = np.clip(u0 + rng.uniform(-0.25, 0.25), liver_top + r + 0.02, 0.97)
            t = np.linspace(0, 1, 24)
            bend = rng.uniform(-0.08, 0.08) * np.sin(np.pi * t)
            pts = np.stack([u0 + (u1 - u0) * t + bend,
                            aspect * (rng.uniform(-0.1, 0.3) + rng.uniform(0.5, 0.9) * t)], 1)
            _tube(labels, u, v, pts, r, VESSEL, wall)

    # Simple cysts: round, anechoic, in liver or kidney.
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.02, 0.05)
        where = spot(liver_top + 0.04, r)
        if where is None:
            continue
        box, rho, _ = _ellipse(u, v, *where, r, r * rng.uniform(0.85, 1.0), 0.0)
        labels[box][rho < 1] = CYST
    return labels


# ----------------------------------------------------------------------------- acoustics

def pulse(z_mm, quality="hq") -> np.ndarray:
    """The axial pulse-echo response: a Gaussian-modulated cosine along depth.

    ``exp(-z^2 / (2 sigma_z^2)) cos(2 pi k0 z)`` with ``k0 = 2 f0 / c`` (cycles/mm) and
    ``sigma_z = 1 / (2 pi sigma_k)``, ``sigma_k`` from the fractional bandwidth.

    Args:
      z_mm: depths (mm) relative to the scatterer.
      quality: a quality name or :class:`UltrasoundQuality`.
    Returns:
      float64 array shaped like ``z_mm``, peak 1.
    """
    q = _check_quality(quality)
    z = np.asarray(z_mm, np.float64)
    sigma_z = 1.0 / (2.0 * np.pi * q.sigma_k)
    return np.exp(-0.5 * (z / sigma_z) ** 2) * np.cos(2.0 * np.pi * q.carrier * z)


def _pulse_spectrum(n: int, dz: float, q: UltrasoundQuality) -> np.ndarray:
    """Fourier transform of :func:`pulse` on the ``rfft`` bins of ``n`` samples, ``dz`` mm."""
    k = np.arange(n // 2 + 1) / (n * dz)
    lobe = lambda c: np.exp(-0.5 * ((k - c) / q.sigma_k) ** 2)  # noqa: E731
    return 0.5 * (lobe(q.carrier) + lobe(-q.carrier))


def rf_lines(scatterers, dz_mm: float, quality="hq", axis: int = 0) -> np.ndarray:
    """RF signal: scatterers convolved with :func:`pulse` along ``axis`` (circularly).

    Args:
      scatterers: real array; samples ``dz_mm`` apart along ``axis``.
      dz_mm: sample spacing along depth.
      quality: sets the pulse.
      axis: the depth axis.
    Returns:
      float64 RF, same shape (circular convolution; pad the input to avoid wrap-around).
    """
    q = _check_quality(quality)
    s = np.asarray(scatterers, np.float64)
    n = s.shape[axis]
    shape = [1] * s.ndim
    shape[axis] = n // 2 + 1
    spectrum = _pulse_spectrum(n, dz_mm, q).reshape(shape)
    return scipy.fft.irfft(scipy.fft.rfft(s, axis=axis) * spectrum, n=n, axis=axis)


def _analytic_weights(bins: np.ndarray, n: int) -> np.ndarray:
    """Hilbert step on FFT bin indices: 1 at DC (and Nyquist), 2 for positive, 0 negative."""
    w = np.where((bins > 0) & (2 * bins < n), 2.0, 0.0)
    w[bins == 0] = 1.0
    if n % 2 == 0:
        w[bins == n // 2] = 1.0
    return w


def analytic_signal(rf, axis: int = 0) -> np.ndarray:
    """Analytic signal ``rf + i H[rf]`` by the FFT (as ``scipy.signal.hilbert``).

    Args:
      rf: real array.
      axis: the axis to transform (depth).
    Returns:
      complex128 array of the same shape.
    """
    x = np.asarray(rf)
    if np.iscomplexobj(x):
        raise ValueError("rf must be real")
    n = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = n
    w = _analytic_weights(np.arange(n), n).reshape(shape)
    return scipy.fft.ifft(scipy.fft.fft(x.astype(np.float64), axis=axis) * w, axis=axis)


def envelope(rf, axis: int = 0) -> np.ndarray:
    """Envelope ``|analytic_signal(rf)|`` along ``axis`` (float64, same shape)."""
    return np.abs(analytic_signal(rf, axis))


def _baseband(spectrum: np.ndarray, n: int, dz: float, q: UltrasoundQuality, m: int,
              taper: bool = True) -> np.ndarray:
    """IQ at ``m`` output samples from the ``rfft`` (axis 0) of ``n`` scatterer samples.

    Multiplies by the pulse spectrum and the Hilbert step (the analytic RF signal), keeps
    the ``m`` bins centred on the carrier (demodulation to baseband and decimation by
    ``n / m``), optionally tapers them with a Gaussian of sigma ``m / 6`` bins (the
    display's anti-alias filter), and scales so that white unit-variance scatterers
    give ``E|IQ|^2 = 1``. With ``m == n`` and no taper, ``|IQ|`` equals
    ``|hilbert(rf_lines(s))|`` up to that scale.
    """
    offsets = np.fft.fftfreq(m, 1.0 / m).astype(np.int64)   # 0, 1, .., -1 (ifft order)
    centre = int(round(q.carrier * n * dz))
    bins = centre + offsets
    valid = (bins >= 0) & (bins <= n // 2)
    transfer = np.zeros(m)
    transfer[valid] = (_pulse_spectrum(n, dz, q)[bins[valid]]
                       * _analytic_weights(bins[valid], n))
    if taper:
        transfer *= np.exp(-0.5 * (offsets / (m / 6.0)) ** 2)
    scale = m / math.sqrt(n * float(np.sum(transfer ** 2)))
    kept = np.where(valid, bins, 0)
    picked = spectrum[kept] * (transfer * scale).astype(np.float32)[:, None]
    return scipy.fft.ifft(picked, axis=0)


def _lateral(iq: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Per-row Gaussian blur along axis 1 (unit energy per row), circular."""
    w = iq.shape[1]
    f = np.fft.fftfreq(w)
    transfer = np.exp(-2.0 * (np.pi * sigma_px[:, None] * f[None, :]) ** 2)
    transfer /= np.sqrt(np.mean(transfer ** 2, axis=1, keepdims=True))
    return scipy.fft.ifft(scipy.fft.fft(iq, axis=1) * transfer.astype(np.float32), axis=1)


def _smooth5(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _grid(H: int, W: int, depth_mm: float, q: UltrasoundQuality) -> dict:
    """Simulation grid for an image; depends on the named qualities only (plus ``q`` if
    it needs more), so every named quality of one seed shares one scatterer field."""
    pixel = depth_mm / H
    levels = list(QUALITIES.values()) + [q]
    kmax = max(l.carrier + 3.5 * l.sigma_k for l in levels)
    os_ = _smooth5(max(1, math.ceil(2.0 * kmax * pixel)))
    sigma_z = max(1.0 / (2.0 * np.pi * l.sigma_k) for l in levels)
    pad_rows = max(4, math.ceil(4.0 * sigma_z / pixel) + 2)
    sigma_x = max(float(np.max(l.lateral_sigma_mm([0.0, depth_mm], depth_mm))) for l in levels)
    pad_cols = max(4, math.ceil(4.0 * sigma_x / pixel))
    rows = _smooth5(H + 2 * pad_rows)
    cols = scipy.fft.next_fast_len(W + 2 * pad_cols)
    return {"pixel_mm": pixel, "oversampling": os_, "dz_mm": pixel / os_, "top": pad_rows,
            "left": (cols - W) // 2, "rows": rows, "cols": cols}


def _table(attr: str) -> np.ndarray:
    return np.array([getattr(t, attr) for t in TISSUES], np.float64)


def ultrasound(seed: int, size=None, quality="hq", labels=None, *,
               depth_mm: float = 60.0) -> Ultrasound:
    """Make one synthetic B-mode ultrasound image.

    Args:
      seed: non-negative int; the same seed, size and depth give the same anatomy and the
        same scatterers for every quality (paired images).
      size: (H, W), each >= 16; default (256, 256), or the shape of ``labels``.
      quality: ``"lq"``, ``"hq"``, ``"clinical"`` (:func:`ultrasound_qualities`) or an
        :class:`UltrasoundQuality`.
      labels: optional int [H, W] label map (values index :data:`LABEL_NAMES`) to image
        instead of the seed's anatomy (the seed still sets the scatterers and noise).
      depth_mm: depth spanned by the rows (pixels are square).
    Returns:
      :class:`Ultrasound` with ``.image`` float32 [H, W] in [0, 1], ``.labels`` int32,
      ``.envelope`` float32, ``.quality``.
    Raises:
      ValueError for a bad seed, size, quality, depth or label map (wrong shape, dtype,
      NaN, unknown labels).
    """
    seed = _check_seed(seed)
    q = _check_quality(quality)
    depth_mm = _check_depth(depth_mm)
    if labels is not None:
        size = _check_size(size) if size is not None else None
        lab = _check_labels(labels, size)
        H, W = lab.shape
    else:
        H, W = _check_size((256, 256) if size is None else size)
        lab = ultrasound_label_map(seed, (H, W))
    g = _grid(H, W, depth_mm, q)
    rngs = _rngs(seed)
    os_, rows, cols, top, left = g["oversampling"], g["rows"], g["cols"], g["top"], g["left"]
    pixel, dz = g["pixel_mm"], g["dz_mm"]

    # Label map on the padded grid: nothing above the skin, edge tissue elsewhere.
    padded = np.pad(lab, ((top, rows - H - top), (left, cols - W - left)), mode="edge")
    padded[:top] = -1
    echo = np.append(10.0 ** (_table("echo_db") / 20.0), 0.0)[padded]
    cell = dz * pixel
    p = np.minimum(1.0, q.density * np.append(_table("density"), 1.0)[padded] * cell)
    amp = (echo / np.sqrt(p)).astype(np.float32)

    # Scatterers: one Gaussian and one uniform per simulation cell, shared by all qualities.
    srng = rngs["scatterers"]
    scat = srng.standard_normal((rows * os_, cols), dtype=np.float32)
    keep = srng.random((rows * os_, cols), dtype=np.float32) < np.repeat(
        p.astype(np.float32), os_, axis=0)
    scat *= np.repeat(amp, os_, axis=0)
    scat *= keep
    _add_points(scat, padded, rngs["points"], os_, dz, pixel)

    # RF -> analytic -> baseband IQ at the image's rows.
    spectrum = scipy.fft.rfft(scat, axis=0)
    iq = _baseband(spectrum, rows * os_, dz, q, rows)
    z_pad = (np.arange(rows) - top + 0.5) * pixel
    if q.haze_db is not None:
        crng = rngs["clutter"]
        haze = (crng.standard_normal((rows, cols), dtype=np.float32)
                + 1j * crng.standard_normal((rows, cols), dtype=np.float32))
        level = 10.0 ** (q.haze_db / 20.0) / math.sqrt(2.0)
        iq += haze * (level * np.exp(-np.maximum(z_pad, 0) / q.haze_depth_mm))[:, None]
    iq = _lateral(iq, q.lateral_sigma_mm(np.maximum(z_pad, 0), depth_mm) / pixel)
    iq = iq[top:top + H, left:left + W]

    # Attenuation through each scan line, receiver noise, envelope, TGC.
    alpha = _table("attenuation")[lab]
    z_cm = pixel / 10.0
    att_db = 2.0 * q.f0_mhz * z_cm * (np.cumsum(alpha, axis=0) - 0.5 * alpha)
    iq *= (10.0 ** (-att_db / 20.0)).astype(np.float32)
    nrng = rngs["noise"]
    sigma_n = 10.0 ** (q.noise_db / 20.0) / math.sqrt(2.0)
    iq += sigma_n * (nrng.standard_normal((H, W), dtype=np.float32)
                     + 1j * nrng.standard_normal((H, W), dtype=np.float32))
    z = (np.arange(H) + 0.5) * pixel
    tgc = 10.0 ** (2.0 * q.f0_mhz * q.tgc_attenuation * (z / 10.0) / 20.0)
    env = (np.abs(iq) * tgc[:, None]).astype(np.float32)

    # Log compression (fixed gain), then the scanner's post-processing if any.
    db = 20.0 * np.log10(np.maximum(env, 1e-12))
    image = 1.0 + (db - q.white_db) / q.dynamic_range_db
    if q.speckle_reduction_mm > 0:
        image = scipy.ndimage.gaussian_filter(image, q.speckle_reduction_mm / pixel,
                                              mode="nearest")
    image = np.clip(image, 0.0, 1.0)
    if q.gamma != 1.0:
        image = image ** q.gamma
    params = dict(dataclasses.asdict(q), pixel_mm=pixel, oversampling=os_, dz_mm=dz,
                  grid=(rows * os_, cols))
    return Ultrasound(image=image.astype(np.float32), labels=lab, quality=q.name, seed=seed,
                      envelope=env, depth_mm=depth_mm, params=params)


def ultrasounds(seeds, size=(256, 256), quality="hq", *, depth_mm: float = 60.0
                ) -> UltrasoundBatch:
    """Make one image per seed (same arguments as :func:`ultrasound`).

    Calling it with the same seeds and two qualities gives paired sets (same anatomy and
    scatterers), e.g. ``ultrasounds(range(8), quality="lq")`` and ``quality="hq"``.

    Args:
      seeds: iterable of non-negative ints.
      size: (H, W) shared by all images.
      quality: a quality name or :class:`UltrasoundQuality`.
      depth_mm: depth spanned by the rows.
    Returns:
      :class:`UltrasoundBatch`.
    """
    seeds = [_check_seed(s) for s in (np.asarray(seeds).ravel().tolist()
                                      if isinstance(seeds, np.ndarray) else list(seeds))]
    if not seeds:
        raise ValueError("seeds is empty")
    H, W = _check_size(size)
    q = _check_quality(quality)
    images = np.empty((len(seeds), H, W), np.float32)
    labels = np.empty((len(seeds), H, W), np.int32)
    for i, s in enumerate(seeds):
        u = ultrasound(s, (H, W), q, depth_mm=depth_mm)
        images[i], labels[i] = u.image, u.labels
    return UltrasoundBatch(images=images, labels=labels, seeds=np.array(seeds, np.int64),
                           quality=q.name)


def _add_points(scat, padded, rng, os_, dz, pixel):
    """Add sparse strong point scatterers (per-tissue Poisson process) in place."""
    rates = np.append(_table("bright_rate"), 0.0)
    areas = np.append(_table("bright_area"), 0.0)
    top_rate = float(rates.max())
    if top_rate <= 0:
        return
    n_rows, n_cols = scat.shape
    count = rng.poisson(top_rate * n_rows * dz * n_cols * pixel)
    r = rng.integers(0, n_rows, count)
    c = rng.integers(0, n_cols, count)
    thin = rng.random(count)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), count)
    tissue = padded[r // os_, c]
    keep = thin < rates[tissue] / top_rate
    amp = np.sqrt(areas[tissue] / (dz * pixel)) * sign
    np.add.at(scat, (r[keep], c[keep]), amp[keep].astype(np.float32))
