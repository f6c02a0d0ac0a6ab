"""Synthetic DCE-MRI: a coronal slice through both kidneys, with and without contrast agent.

A stand-in for the DCE-MRI paper's kidney data (2D, continuously acquired T1-weighted
frames). Every series is made from a seed, in numpy, with its ground truth: the tissue
label map, the contrast-agent concentration of every tissue, the breathing displacement
and the same series without contrast agent (``non_ce``), which is the paired target of
style transfer between the two.

The model, per frame ``t`` and pixel ``x``::

    C_k(t)  = vp Cp(t - d) + Ktrans int_0^t Cp(s - d) exp(-kep (t - s)) ds     (extended Tofts)
    R1(x,t) = 1 / T10(x) + r1 C_label(x)(t)
    S(x,t)  = G M0(x) (1 - E1) / (1 - cos(a) E1),  E1 = exp(-TR R1(x,t))  (SPGR / sin a)
    image   = | PSF * S (warped by breathing) * bias(x) + n_re + i n_im |      (Rician)

* **Anatomy** (coronal, radiological convention: the patient's right kidney and the liver
  on the image's left): body with subcutaneous fat and an abdominal-wall muscle layer,
  visceral fat/bowel texture, liver, spleen, psoas muscles, aorta and inferior vena cava,
  renal arteries, and two bean-shaped kidneys, each with a cortex rim and columns, 6-9
  medullary pyramids, and a collecting system (pelvis and calyces) that leaves through the
  hilum. Sizes, positions, tilts and pyramid counts vary per seed.
* **Tracer kinetics**: the population arterial input function of Parker et al. (MRM 2006;
  blood concentration in mM, time in minutes)::

      Cb(t) = sum_n A_n / (s_n sqrt(2 pi)) exp(-(t - T_n)^2 / (2 s_n^2))
              + alpha exp(-beta t) / (1 + exp(-s (t - tau)))

  with A = (0.809, 0.330) mM min, T = (0.17046, 0.365) min, s = (0.0563, 0.132) min,
  alpha = 1.050 mM, beta = 0.1685 / min, s = 38.078 / min, tau = 0.483 min; zero before the
  injection; plasma ``Cp = Cb / (1 - Hct)`` with ``Hct = 0.42``. Every tissue follows the
  extended Tofts model with its own ``vp, Ktrans, ve`` and an arrival delay ``d`` (``kep =
  Ktrans / ve``): the cortex (large plasma volume, no delay) enhances early and strongly,
  the medulla later and slower, the collecting system last (filtered tracer arrives after
  ~45 s and accumulates); the aorta/IVC voxel holds blood, ``C = (1 - Hct) Cp = Cb``.
  Parameters vary per seed (log-normal, ~15 %); ``DCESeries.params`` has the values used.
  The convolution is exact for a piecewise-linear ``Cp`` on a 0.2 s grid (a recursive IIR
  filter), then linearly interpolated to the frame times.
* **Signal**: spoiled gradient echo (TR 3 ms, flip angle 15 degrees, TE and T2* effects
  neglected), relaxivity r1 = 4.1 / (mM s) (Gd-DTPA in plasma at 1.5 T), T10 at 1.5 T
  (de Bazelaire et al. 2004 for kidney, muscle, liver, spleen, blood; ~290 ms fat,
  ~2500 ms urine); visceral "body" voxels mix fat and bowel-like soft tissue through a
  smooth random fat fraction. Organs have a few percent of proton-density texture.
* **Scaling**: intensities are ``SIGNAL_GAIN = 1.5`` times the SPGR signal divided by
  ``sin(flip)``; the unscaled quantity is in units of the largest signal a voxel of proton
  density 1 can give (``T1 -> 0``), so noise-free values are below 1.5 and in practice in
  [0, 1]: pre-contrast fat/body ~0.25 (up to ~0.35), liver ~0.14, kidney and muscle
  ~0.1, blood ~0.08, background 0; after contrast the aorta reaches ~0.45 at 40 s and
  ~0.9 in a frame on the first-pass peak. Bias and noise add a few percent. Read [0, 1]
  as the paper's 0..255 scale: its enhancement threshold of 20 is
  ``ENHANCEMENT_THRESHOLD = 20 / 255`` here (pass it to
  :func:`stylejax.metrics.image.enhancement_mask`); with it the vessels, kidneys, spleen
  and liver count as enhanced, fat, muscle and background do not.
* **Acquisition**: a Gaussian point-spread function (sigma 0.5 px) for the finite k-space
  extent; breathing as a superior-inferior displacement ``D(t) = b cos^4(pi t / P - phi)``
  (Lujan et al. 1999, n = 2: long end-expiration rests, short inspirations) that is full
  inside the abdominal cavity and fades to zero across the body wall (organs slide, the
  wall stays); a smooth multiplicative coil bias field fixed in the scanner frame; Rician
  noise (the magnitude of the signal plus complex Gaussian noise of standard deviation
  ``noise`` per channel), so the background is Rayleigh with mean ``noise sqrt(pi / 2)``.
* **Frames**: ``times[0] = 0`` precedes the injection (5-15 s, per seed), so frame 0 is
  pre-contrast and ``ce[0] == non_ce[0]`` exactly when ``paired_noise`` (default): the two
  series share anatomy, motion, bias and the noise draw and differ only by the contrast
  agent. With ``paired_noise=False`` the non-CE series gets its own noise draw.

Randomness comes from independent numpy streams per component (anatomy, texture,
kinetics, motion, bias, noise), so switching one component off leaves the others of that
seed unchanged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import scipy.signal

from stylejax.data.phantom import _check_number, _check_seed, powerlaw_noise

__all__ = [
    "BACKGROUND", "BODY", "MUSCLE", "LIVER", "SPLEEN", "CORTEX", "MEDULLA", "PELVIS", "VESSEL",
    "DCE_LABEL_NAMES", "DCE_LABEL_COLORS", "ENHANCEMENT_THRESHOLD", "HEMATOCRIT", "RELAXIVITY",
    "SIGNAL_GAIN",
    "DCESeries", "DCEBatch", "dce", "dce_series", "dce_labels", "dce_times", "parker_aif",
    "extended_tofts", "spgr_signal",
]

BACKGROUND, BODY, MUSCLE, LIVER, SPLEEN, CORTEX, MEDULLA, PELVIS, VESSEL = range(9)
DCE_LABEL_NAMES = ("background", "body", "muscle", "liver", "spleen", "cortex", "medulla",
                   "pelvis", "vessel")
#: RGB in [0, 1] per label, for previews.
DCE_LABEL_COLORS = np.array([
    [0.00, 0.00, 0.00],   # background
    [0.95, 0.85, 0.45],   # body (fat, bowel)
    [0.70, 0.30, 0.30],   # muscle
    [0.55, 0.35, 0.20],   # liver
    [0.60, 0.30, 0.60],   # spleen
    [0.95, 0.45, 0.30],   # cortex
    [0.40, 0.55, 0.90],   # medulla
    [0.90, 0.95, 0.40],   # pelvis / collecting system
    [0.95, 0.10, 0.10],   # vessel (aorta, IVC, renal arteries)
], dtype=np.float32)

#: The paper's enhancement threshold (20 on a 0..255 scale) in this phantom's units.
ENHANCEMENT_THRESHOLD = 20.0 / 255.0
HEMATOCRIT = 0.42
#: Longitudinal relaxivity r1 of the contrast agent, 1 / (mM s).
RELAXIVITY = 4.1
_TR_S = 0.003
_FLIP_DEG = 15.0
_FOV_MM = 380.0
_PSF_SIGMA_PX = 0.5
_GRID_DT_S = 0.2
#: Image intensity = SIGNAL_GAIN * M0 (1 - E1) / (1 - cos(flip) E1) (see the module docstring).
SIGNAL_GAIN = 1.5

# Parker et al. 2006 population AIF (blood, mM; minutes).
_PARKER = dict(A=(0.809, 0.330), T=(0.17046, 0.365), sigma=(0.0563, 0.132),
               alpha=1.050, beta=0.1685, s=38.078, tau=0.483)

# Per tissue: vp, Ktrans (1/min), ve, delay (s), T10 (ms), M0 (proton density).
_TISSUES = {
    BACKGROUND: (0.0, 0.0, 0.5, 0.0, 1000.0, 0.0),
    BODY: (0.01, 0.02, 0.15, 3.0, 290.0, 0.90),     # T10/M0 mixed with soft tissue per voxel
    MUSCLE: (0.02, 0.06, 0.12, 3.0, 1008.0, 0.75),
    LIVER: (0.10, 0.30, 0.30, 6.0, 586.0, 0.72),
    SPLEEN: (0.25, 0.60, 0.20, 2.0, 1057.0, 0.80),
    CORTEX: (0.35, 0.60, 0.25, 1.0, 966.0, 0.82),
    MEDULLA: (0.08, 0.25, 0.30, 8.0, 1412.0, 0.88),
    PELVIS: (0.0, 0.25, 0.50, 45.0, 2500.0, 0.95),
    VESSEL: (1.0 - HEMATOCRIT, 0.0, 0.5, 0.0, 1441.0, 0.90),
}
_SOFT_T10_MS, _SOFT_M0 = 850.0, 0.75   # bowel-like soft tissue mixed into BODY voxels


@dataclass(frozen=True, eq=False)
class DCESeries:
    """One synthetic DCE-MRI series and its ground truth.

    Attributes:
      ce: float32 [T, H, W], the series with contrast agent (magnitude images, ~[0, 1]).
      non_ce: float32 [T, H, W], the same anatomy, motion, bias (and noise draw when
        ``paired_noise``) without contrast agent.
      labels: int32 [H, W], tissue label per pixel at the rest (end-expiration) position.
      times: float32 [T], acquisition time of each frame in seconds (``times[0] = 0``).
      concentration: float32 [9, T], contrast-agent concentration (mM) of each tissue
        (indexed by label) at each frame, whole-voxel, without partial volume.
      aif: float32 [T], plasma concentration of the arterial input (mM).
      displacement: float32 [T, H, W], breathing displacement in pixels along the rows
        (positive = inferior): frame t at pixel (y, x) shows the anatomy of the rest
        position (y - displacement[t, y, x], x).
      seed: the seed it was made from.
      params: the per-seed parameters actually used (tissue kinetics, injection time,
        breathing, noise, sequence).
    """

    ce: np.ndarray
    non_ce: np.ndarray
    labels: np.ndarray
    times: np.ndarray
    concentration: np.ndarray
    aif: np.ndarray
    displacement: np.ndarray
    seed: int
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.labels.shape)

    @property
    def frames(self) -> int:
        return int(self.times.shape[0])

    def frame_labels(self) -> np.ndarray:
        """int32 [T, H, W]: the label map moved with the breathing of each frame (nearest)."""
        T, H, W = self.displacement.shape
        rows = np.rint(np.arange(H, dtype=np.float32)[None, :, None] - self.displacement)
        rows = np.clip(rows, 0, H - 1).astype(np.intp)
        return self.labels[rows, np.arange(W)[None, None, :]]


@dataclass(frozen=True, eq=False)
class DCEBatch:
    """Several series of one size and frame count stacked along a leading axis."""

    ce: np.ndarray              # float32 [N, T, H, W]
    non_ce: np.ndarray          # float32 [N, T, H, W]
    labels: np.ndarray          # int32 [N, H, W]
    times: np.ndarray           # float32 [N, T]
    concentration: np.ndarray   # float32 [N, 9, T]
    seeds: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.seeds)


def dce_labels() -> tuple[str, ...]:
    """Names of the tissue labels, indexed by label value (``BACKGROUND`` = 0 .. ``VESSEL``)."""
    return DCE_LABEL_NAMES


# ----------------------------------------------------------------------------- kinetics

def parker_aif(t) -> np.ndarray:
    """Parker et al. (2006) population AIF: whole-blood concentration in mM.

    Args:
      t: seconds after the injection (array-like); 0 for ``t < 0``.
    Returns:
      float64 array of the shape of ``t``.
    """
    t = np.asarray(t, np.float64)
    m = t / 60.0
    p = _PARKER
    out = np.zeros_like(m)
    for a, mu, s in zip(p["A"], p["T"], p["sigma"]):
        out += a / (s * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((m - mu) / s) ** 2)
    out += p["alpha"] * np.exp(-p["beta"] * m) / (1.0 + np.exp(-p["s"] * (m - p["tau"])))
    return np.where(t >= 0, out, 0.0)


def _tofts_grid(t_grid: np.ndarray, cp: np.ndarray, ktrans_s: np.ndarray, kep_s: np.ndarray,
                vp: np.ndarray) -> np.ndarray:
    """Extended Tofts on a uniform grid, exact for piecewise-linear ``cp``.

    ``cp``: [K, G] plasma curves (already delayed per tissue); rates per second.
    Returns [K, G] tissue concentrations.
    """
    h = float(t_grid[1] - t_grid[0])
    out = vp[:, None] * cp
    for k in range(cp.shape[0]):
        kt, kep = float(ktrans_s[k]), float(kep_s[k])
        if kt == 0.0:
            continue
        if kep * h < 1e-8:
            b = a = 0.5 * h            # trapezoid: no washout within a step
            e = 1.0
        else:
            e = math.exp(-kep * h)
            b = (1 - e) / kep - (1 - e - kep * h * e) / (kep * kep * h)
            a = (1 - e) / kep - b
        # I_n = e I_{n-1} + b cp_n + a cp_{n-1}: int_0^t cp(s) exp(-kep (t - s)) ds.
        conv = scipy.signal.lfilter([b, a], [1.0, -e], cp[k])
        out[k] += kt * conv
    return out


def extended_tofts(times, *, ktrans: float, ve: float, vp: float, delay: float = 0.0,
                   injection: float = 0.0, hematocrit: float = HEMATOCRIT) -> np.ndarray:
    """Tissue concentration (mM) of the extended Tofts model with the Parker AIF.

    Args:
      times: [T] seconds (non-negative, increasing).
      ktrans: transfer constant in 1/min; ve: extravascular extracellular fraction (> 0);
      vp: plasma fraction; delay: arrival delay of the tissue in seconds.
      injection: time of the injection in seconds (the AIF is zero before it).
      hematocrit: plasma concentration is blood concentration / (1 - hematocrit).
    Returns:
      float64 [T].
    """
    times = np.asarray(times, np.float64)
    grid = np.arange(0.0, float(times.max()) + 2 * _GRID_DT_S, _GRID_DT_S)
    cp = parker_aif(grid - injection - delay)[None] / (1.0 - hematocrit)
    c = _tofts_grid(grid, cp, np.array([ktrans / 60.0]), np.array([ktrans / ve / 60.0]),
                    np.array([vp]))[0]
    return np.interp(times, grid, c)


def spgr_signal(r1, m0=1.0, *, tr: float = _TR_S, flip_deg: float = _FLIP_DEG):
    """Spoiled gradient-echo signal divided by ``sin(flip)``: ``M0 (1 - E1) / (1 - cos a E1)``.

    Args:
      r1: longitudinal relaxation rate 1/T1 in 1/s (array-like).
      m0: proton density (array-like, broadcast).
      tr: repetition time in s; flip_deg: flip angle in degrees.
    Returns:
      array in [0, m0].
    """
    e1 = np.exp(-tr * np.asarray(r1))
    return m0 * (1.0 - e1) / (1.0 - math.cos(math.radians(flip_deg)) * e1)


def dce_times(frames: int, duration: float = 300.0) -> np.ndarray:
    """Default frame times: ``duration * (k / (T - 1))^1.5``, denser early (seconds, float32).

    The enhancement changes fastest after the bolus, so with 5 frames the series samples
    pre-contrast (0 s), the cortico-medullary (~38 s), nephrographic (~106 s) and two
    excretory phases (~195 s, 300 s).
    """
    k = np.arange(frames, dtype=np.float64) / (frames - 1)
    return (duration * k ** 1.5).astype(np.float32)


# ----------------------------------------------------------------------------- anatomy

def _rot(x, y, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    return dx * c + dy * s, -dx * s + dy * c


def _segment_distance(x, y, p0, p1):
    (x0, y0), (x1, y1) = p0, p1
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * vx + (y - y0) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    return np.hypot(x - x0 - t * vx, y - y0 - t * vy)


def _anatomy(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Label map on the mm grid ``x`` [1, W], ``y`` [Hp, 1] (0 at the image centre)."""
    g = {}
    f32 = np.float32
    labels = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.int32)
    # Body: flanks at +-halfwidth(y), a slight waist; the slice runs past the top and bottom.
    half = rng.uniform(145.0, 172.0)
    waist = rng.uniform(0.0, 0.06)
    halfwidth = half * (1.0 - waist * np.cos(y / 160.0))
    body_rho = np.abs(x) / halfwidth            # 0 centre .. 1 skin
    depth = halfwidth - np.abs(x)               # mm inside the skin
    labels[depth > 0] = BODY
    fat_sc = rng.uniform(8.0, 24.0)
    wall = rng.uniform(8.0, 14.0)
    labels[(depth > fat_sc) & (depth <= fat_sc + wall)] = MUSCLE
    cavity = depth > fat_sc + wall
    g.update(half_width_mm=half, subcutaneous_fat_mm=fat_sc, wall_mm=wall)

    # Kidneys: (image-left = patient right, lower), image-right = patient left.
    k_len = rng.uniform(48.0, 60.0)             # half length
    k_wid = k_len * rng.uniform(0.45, 0.55)     # half width
    kx = rng.uniform(62.0, 78.0)
    ky = rng.uniform(-10.0, 10.0)
    drop = rng.uniform(5.0, 20.0)
    kidneys = []
    for side in (-1.0, 1.0):
        cx = side * kx * rng.uniform(0.95, 1.05)
        cy = ky + (drop if side < 0 else 0.0)
        # Long axis tilted: the upper pole leans toward the midline.
        tilt = -side * math.radians(rng.uniform(8.0, 20.0))
        kidneys.append(dict(cx=cx, cy=cy, tilt=tilt, side=side, a=k_wid, b=k_len,
                            pyramids=int(rng.integers(6, 10)),
                            jitter=rng.uniform(-0.15, 0.15, size=9)))
    g["kidneys"] = [{k: v for k, v in kd.items() if k != "jitter"} for kd in kidneys]

    # Liver (image left, top) and spleen (image right, top), inside the cavity.
    lx, ly = rng.uniform(-85.0, -55.0), rng.uniform(-175.0, -140.0)
    lu, lv = _rot(x, y, lx, ly, math.radians(rng.uniform(-15.0, 5.0)))
    liver = ((lu / rng.uniform(115.0, 135.0)) ** 2 + (lv / rng.uniform(95.0, 120.0)) ** 2 < 1)
    labels[liver & cavity] = LIVER
    sx, sy = rng.uniform(95.0, 115.0), rng.uniform(-135.0, -105.0)
    su, sv = _rot(x, y, sx, sy, math.radians(rng.uniform(20.0, 45.0)))
    spleen = (su / rng.uniform(28.0, 38.0)) ** 2 + (sv / rng.uniform(50.0, 65.0)) ** 2 < 1
    labels[spleen & cavity] = SPLEEN

    # Psoas muscles: strips diverging downward from beside the spine.
    top = rng.uniform(-40.0, -10.0)
    below = np.maximum(y - top, 0.0)
    centre = 32.0 + 0.32 * below
    width = np.minimum(6.0 + 0.16 * below, 32.0)
    psoas = (y > top) & (np.abs(np.abs(x) - centre) < width) & cavity
    labels[psoas] = MUSCLE

    # Perirenal fat, then the kidneys (each computed on its own window only).
    for kd in kidneys:
        kd["hilum"] = (kd["cx"] - kd["side"] * 1.3 * kd["a"] * math.cos(kd["tilt"]),
                       kd["cy"] - kd["side"] * 1.3 * kd["a"] * math.sin(kd["tilt"]))
        reach = 1.4 * kd["b"]
        rows = np.flatnonzero(np.abs(y[:, 0] - kd["cy"]) < reach)
        cols = np.flatnonzero(np.abs(x[0] - kd["cx"]) < reach)
        if rows.size == 0 or cols.size == 0:
            continue
        win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        lab_w, cav_w = labels[win], cavity[win]          # views: writes go to labels
        u, v = _rot(x[:, win[1]], y[win[0]], kd["cx"], kd["cy"], kd["tilt"])
        u = u * kd["side"]                       # u > 0 lateral, u < 0 toward the hilum
        rho = np.sqrt((u / kd["a"]) ** 2 + (v / kd["b"]) ** 2)
        lab_w[(rho < 1.25) & cav_w] = BODY
        phi = np.arctan2(v / kd["b"], u / kd["a"])    # 0 lateral, +-pi hilum
        hilum_dir = np.abs(np.abs(phi) - math.pi) < 0.42
        kidney = (rho < 1.0) & ~(hilum_dir & (rho > 0.40))
        sinus = kidney & (rho < 0.42)
        lab_w[kidney] = CORTEX
        n = kd["pyramids"]
        centres = np.linspace(-0.78 * math.pi, 0.78 * math.pi, n) + kd["jitter"][:n] * 0.3
        spacing = 1.56 * math.pi / (n - 1)
        # Pyramids: wedges with the base toward the capsule, the apex toward the sinus.
        frac = np.clip((rho - 0.40) / (0.82 - 0.40), 0.0, 1.0)
        medulla = np.zeros(rho.shape, bool)
        calyces = np.zeros(rho.shape, bool)
        pu, pv = -0.25 * kd["a"], 0.0           # centre of the pelvis in the sinus
        for c in centres:
            dphi = np.abs((phi - c + math.pi) % (2 * math.pi) - math.pi)
            half_w = spacing * (0.10 + 0.34 * frac)
            medulla |= (dphi < half_w) & (rho >= 0.40) & (rho < 0.82 - 0.08 * (dphi / half_w) ** 2)
            apex = (0.42 * kd["a"] * math.cos(c), 0.42 * kd["b"] * math.sin(c))
            calyces |= _segment_distance(u, v, (pu, pv), apex) < 0.07 * kd["a"]
        lab_w[kidney & medulla] = MEDULLA
        # Collecting system: the pelvis in the sinus, calyces to each pyramid apex, and the
        # pelvis leaving through the hilum; the rest of the sinus is fat.
        pelvis = ((u - pu) / (0.30 * kd["a"])) ** 2 + (v / (0.20 * kd["b"])) ** 2 < 1
        pelvis |= calyces & (rho < 0.44)
        pelvis |= hilum_dir & (rho < 1.35) & (np.abs(v) < 0.10 * kd["b"]) & (u < 0)
        lab_w[sinus] = BODY
        lab_w[pelvis & cav_w] = PELVIS

    # Great vessels (over the full height) and renal arteries.
    ax = rng.uniform(6.0, 16.0)
    ar = rng.uniform(9.0, 12.5)
    vx = -rng.uniform(16.0, 24.0)
    vr = rng.uniform(9.0, 13.0)
    vessel = ((np.abs(x - ax) < ar) | (np.abs(x - vx) < vr)) & (y > -np.inf)
    for kd in kidneys:
        hx, hy = kd["hilum"]
        vessel |= _segment_distance(x, y, (hx, hy), (ax, hy - 12.0)) < 3.5
    labels[vessel & cavity] = VESSEL
    g.update(aorta_x_mm=ax, aorta_r_mm=ar, ivc_x_mm=vx, ivc_r_mm=vr)
    # Organs slide with breathing: full displacement inside the cavity, fading across
    # the body wall to none at the skin.
    inner = fat_sc + wall
    motion_weight = np.clip((depth - 0.4 * inner) / (0.6 * inner + 10.0), 0.0, 1.0)
    motion_weight = motion_weight * motion_weight * (3 - 2 * motion_weight)
    g["_motion_weight"] = motion_weight.astype(f32)
    g["_body_rho"] = body_rho
    return labels, g


# ----------------------------------------------------------------------------- main entry

def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)) \
            or len(size) != 2:
        raise ValueError(f"size must be two integers (H, W) (got {size!r})")
    out = []
    for s in size:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or int(s) < 32:
            raise ValueError(f"size must be two integers >= 32 (got {tuple(size)!r})")
        out.append(int(s))
    return out[0], out[1]


def _check_times(times, frames) -> np.ndarray:
    if times is None:
        frames = _check_number(frames, "frames", low=2, integer=True)
        return dce_times(frames)
    t = np.asarray(times, np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"times must be a 1-D array of at least 2 frame times in seconds "
                         f"(got shape {t.shape})")
    if not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ValueError("times must be finite, non-negative and strictly increasing (seconds)")
    if frames is not None and int(frames) != t.size:
        raise ValueError(f"frames={frames} does not match len(times)={t.size}")
    return t.astype(np.float32)


def dce(seed: int, size=(128, 128), frames: int | None = 5, *, times=None,
        noise: float | None = None, motion: bool = True, bias: bool = True,
        paired_noise: bool = True, injection: float | None = None,
        fov_mm: float = _FOV_MM) -> DCESeries:
    """Make one synthetic DCE-MRI series with its non-contrast twin.

    Args:
      seed: non-negative int; the same seed and options give the same series.
      size: (H, W), each >= 32.
      frames: number of frames T >= 2 (times from :func:`dce_times`); ignored when
        ``times`` is given (then it must equal ``len(times)`` or be None).
      times: optional [T] frame times in seconds, increasing, ``times[0]`` before the
        injection (the pre-contrast frame).
      noise: Rician noise level (standard deviation per complex channel, image units);
        default drawn per seed in 0.006..0.015; 0 switches noise off.
      motion: breathing displacement (False: every frame at the rest position).
      bias: multiplicative coil bias field (False: uniform sensitivity).
      paired_noise: the non-CE series shares the CE series' noise draw (True) or has its
        own (False).
      injection: time of the contrast injection in seconds; default drawn in 5..15.
      fov_mm: field of view across the longer image side, 250..600 mm (the body is
        ~290-345 mm wide).
    Returns:
      A :class:`DCESeries`.
    Raises:
      ValueError naming a bad argument.
    """
    seed = _check_seed(seed)
    H, W = _check_size(size)
    t = _check_times(times, frames)
    T = t.size
    noise = _check_number(noise, "noise", low=0.0)
    injection = _check_number(injection, "injection", low=0.0)
    fov_mm = _check_number(fov_mm, "fov_mm", low=250.0, high=600.0)
    rng_geo, rng_tex, rng_kin, rng_mot, rng_bias, rng_noise = (
        np.random.default_rng([seed, 7, k]) for k in range(6))
    f32 = np.float32

    # --- kinetics (drawn first so that options below never shift these streams).
    inj = float(rng_kin.uniform(5.0, 15.0))
    inj = inj if injection is None else injection
    if t[0] >= inj:
        raise ValueError(f"times[0] = {t[0]:g} s is not before the injection at {inj:g} s: "
                         "frame 0 must be pre-contrast")
    tissues = {}
    for lab, (vp, kt, ve, delay, t10, m0) in _TISSUES.items():
        jit = np.exp(rng_kin.normal(0.0, 0.15, size=3))
        vp_ = float(min(vp * jit[0], 1.0 - HEMATOCRIT))
        tissues[lab] = dict(vp=vp_, ktrans=float(kt * jit[1]), ve=float(min(ve * jit[2], 0.9)),
                            delay=float(max(delay + rng_kin.normal(0.0, 0.1 * delay + 0.5), 0.0)),
                            t10_ms=t10, m0=m0)
    tissues[VESSEL].update(vp=1.0 - HEMATOCRIT, ktrans=0.0, delay=0.0)
    tissues[BACKGROUND].update(vp=0.0, ktrans=0.0, m0=0.0)
    grid = np.arange(0.0, float(t[-1]) + 2 * _GRID_DT_S, _GRID_DT_S)
    labs = sorted(tissues)
    cp = np.stack([parker_aif(grid - inj - tissues[k]["delay"]) for k in labs]) / (1 - HEMATOCRIT)
    kt = np.array([tissues[k]["ktrans"] for k in labs]) / 60.0
    kep = kt / np.array([tissues[k]["ve"] for k in labs])
    vpv = np.array([tissues[k]["vp"] for k in labs])
    conc_grid = _tofts_grid(grid, cp, kt, kep, vpv)
    conc = np.stack([np.interp(t, grid, c) for c in conc_grid]).astype(f32)   # [9, T]
    aif = (np.interp(t, grid, parker_aif(grid - inj)) / (1 - HEMATOCRIT)).astype(f32)

    # --- breathing (mm -> px) and the padded canvas it samples from.
    pix = fov_mm / max(H, W)
    period = float(rng_mot.uniform(3.5, 5.5))
    amp_mm = float(rng_mot.uniform(8.0, 18.0))
    phase = float(rng_mot.uniform(0.0, math.pi))
    disp_mm = amp_mm * np.cos(math.pi * t / period - phase) ** 4 if motion else np.zeros(T)
    margin = int(math.ceil(amp_mm / pix)) + 2
    Hp = H + 2 * margin
    xs = ((np.arange(W, dtype=f32) + 0.5 - W / 2) * pix)[None, :]
    ys = ((np.arange(Hp, dtype=f32) + 0.5 - Hp / 2) * pix)[:, None]
    labels_p, geo = _anatomy(rng_geo, xs, ys)

    # --- relaxation and proton density maps at rest.
    t10 = np.array([tissues[k]["t10_ms"] for k in labs], f32)[labels_p] * f32(1e-3)
    m0 = np.array([tissues[k]["m0"] for k in labs], f32)[labels_p]
    body = labels_p == BODY
    fat = powerlaw_noise((Hp, W), 3.0, rng_tex)
    fat = 1.0 / (1.0 + np.exp(-2.5 * (fat + 0.3)))
    sc = geo["_body_rho"] > 1.0 - (geo["subcutaneous_fat_mm"] + 0.5) / geo["half_width_mm"]
    fat = np.where(sc, 1.0, fat)
    r10 = 1.0 / t10
    r10 = np.where(body, fat / 0.290 + (1 - fat) / (_SOFT_T10_MS * 1e-3), r10).astype(f32)
    m0 = np.where(body, fat * tissues[BODY]["m0"] + (1 - fat) * _SOFT_M0, m0)
    texture = powerlaw_noise((Hp, W), 2.5, rng_tex)
    m0 = (m0 * (1.0 + 0.04 * texture)).astype(f32)

    # --- signal per frame (CE) and once (non-CE), PSF, warp.
    r1 = r10[None] + f32(RELAXIVITY) * conc.T[:, labels_p]          # [T, Hp, W]
    stack = (SIGNAL_GAIN * spgr_signal(np.concatenate([r1, r10[None]]), m0[None])).astype(f32)
    stack = scipy.ndimage.gaussian_filter(stack, (0, _PSF_SIGMA_PX, _PSF_SIGMA_PX),
                                          mode="nearest")
    weight = geo["_motion_weight"][None, margin:margin + H]
    disp_px = (disp_mm / pix).astype(f32)[:, None, None] * weight
    src = np.arange(H, dtype=f32)[None, :, None] + f32(margin) - disp_px      # [T, H, W]
    i0 = np.floor(src).astype(np.intp)
    frac = src - i0
    cols = np.arange(W)[None, None, :]

    def warp(img, frame_idx):
        a = img[frame_idx, i0, cols]
        b = img[frame_idx, i0 + 1, cols]
        return a + frac * (b - a)

    frames_idx = np.arange(T)[:, None, None]
    ce = warp(stack, frames_idx)
    non_ce = warp(stack, np.full_like(frames_idx, T))
    labels = labels_p[margin:margin + H]

    # --- coil bias (scanner frame), Rician noise.
    bias_params = None
    if bias:
        u = (np.arange(W, dtype=f32) + 0.5) / W * 2 - 1
        v = (np.arange(H, dtype=f32) + 0.5) / H * 2 - 1
        c = rng_bias.normal(0.0, 1.0, size=5) * np.array([0.12, 0.12, 0.08, 0.08, 0.06])
        log_b = (c[0] * u[None] + c[1] * v[:, None] + c[2] * u[None] ** 2
                 + c[3] * v[:, None] ** 2 + c[4] * u[None] * v[:, None])
        field_ = np.exp(log_b)
        field_ = (field_ / field_[labels > 0].mean()).astype(f32)
        ce *= field_
        non_ce *= field_
        bias_params = c.tolist()
    sigma = float(rng_noise.uniform(0.006, 0.015)) if noise is None else noise
    if sigma > 0:
        n = rng_noise.standard_normal((2, T, H, W), dtype=f32) * f32(sigma)
        if not paired_noise:
            m = rng_noise.standard_normal((2, T, H, W), dtype=f32) * f32(sigma)
        else:
            m = n
        ce = np.sqrt((ce + n[0]) ** 2 + n[1] ** 2)
        non_ce = np.sqrt((non_ce + m[0]) ** 2 + m[1] ** 2)

    params = dict(
        injection_s=inj, hematocrit=HEMATOCRIT, r1_per_mM_s=RELAXIVITY, tr_s=_TR_S,
        flip_deg=_FLIP_DEG, pixel_mm=pix, noise=sigma, motion=bool(motion),
        breathing=dict(period_s=period, amplitude_mm=amp_mm, phase=phase),
        bias=bias_params, paired_noise=bool(paired_noise),
        tissues={DCE_LABEL_NAMES[k]: dict(tissues[k]) for k in labs},
        anatomy={k: v for k, v in geo.items() if not k.startswith("_")})
    return DCESeries(ce=ce.astype(f32, copy=False), non_ce=non_ce.astype(f32, copy=False),
                     labels=labels.astype(np.int32), times=t, concentration=conc, aif=aif,
                     displacement=np.ascontiguousarray(disp_px, f32), seed=seed, params=params)


def dce_series(seeds, size=(128, 128), frames: int | None = 5, **options) -> DCEBatch:
    """Several series stacked: ``dce(seed, size, frames, **options)`` for each seed.

    Args:
      seeds: iterable of non-negative ints (at least one).
    Returns:
      A :class:`DCEBatch` with ``.ce``/``.non_ce`` [N, T, H, W], ``.labels`` [N, H, W], ...
    """
    seeds = tuple(int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s
                  for s in seeds)
    if not seeds:
        raise ValueError("seeds is empty")
    series = [dce(s, size, frames, **options) for s in seeds]
    return DCEBatch(ce=np.stack([s.ce for s in series]),
                    non_ce=np.stack([s.non_ce for s in series]),
                    labels=np.stack([s.labels for s in series]),
                    times=np.stack([s.times for s in series]),
                    concentration=np.stack([s.concentration for s in series]),
                    seeds=tuple(s.seed for s in series))
