"""Synthetic CT slices with reconstruction-kernel and dose "styles" and tissue labels.

A stand-in for multi-vendor CT data: the same anatomy is scanned once per seed and
reconstructed with any kernel, so kernel-to-kernel style transfer has ground truth.

1. **Anatomy** (Hounsfield units, HU) of an axial slice between the lung bases and the
   kidneys, supine patient, anterior up, patient's right on the image left. A
   super-elliptic body outline with subcutaneous fat, an abdominal muscle wall and
   visceral fat; liver (with portal/hepatic vessels), spleen, stomach with an
   air-fluid level, lung bases with vessel dots, kidneys (cortex, medulla, sinus fat),
   bowel loops, aorta and IVC, a vertebra (cortical shell, cancellous body, canal,
   arch, processes), paraspinal and psoas muscles and ribs. A per-seed slice level moves
   the anatomy from thorax (large lungs) to abdomen (kidneys, bowel); a per-seed
   contrast phase (none, arterial, portal venous) sets organ and vessel enhancement.
   Every tissue carries texture (two power-law fields, fine and coarse); edges are
   partial-volume blended. ``labels`` are the tissue classes of :data:`LABEL_NAMES`.
2. **Scan**: attenuation ``mu = mu_water (1 + HU / 1000)``; parallel-beam line integrals
   over ``max(H, W)`` views (:mod:`stylejax.data.tomography`); expected counts
   ``I0 exp(-p)`` with ``I0 = dose * I0_REF * max(H, W) / 512`` (so a kernel's noise
   level in HU barely depends on the grid size); Poisson counts; ``-log``.
3. **Reconstruction**: filtered back-projection with the kernel's window and cutoff,
   then its post-filter (Gaussian smoothing for soft kernels, unsharp-mask edge
   enhancement for bone/lung kernels), back to HU. Pixels outside the reconstruction
   circle are air (-1000).

Randomness: the anatomy comes from ``default_rng([seed, 1])`` and texture from
``[seed, 3]``, so every kernel and dose sees the same anatomy and labels. The noise
comes from one standard normal ``z`` per detector bin from ``[seed, 2]``, turned into
Poisson counts by the quantile map ``F^-1_Poisson(Phi(z); lambda)`` (exact below 50
expected counts, a Cornish-Fisher expansion above). So all kernels of a seed share the
same sinogram noise, and a change of dose rescales that same noise realisation.

Kernels are defined relative to the pixel Nyquist frequency (as if the field of view
followed the grid), so they look different at any image size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import scipy.special

from stylejax.data.phantom import powerlaw_noise
from stylejax.data.tomography import parallel_beam

__all__ = ["CT", "CTSlices", "CTKernel", "KERNELS", "LABEL_NAMES", "AIR", "FAT", "SOFT_TISSUE",
           "LIVER", "SPLEEN", "KIDNEY", "VESSEL", "BONE", "LUNG", "MU_WATER", "I0_REF",
           "FOV_MM", "ct", "ct_slices", "ct_kernels", "ct_labels", "window"]

AIR, FAT, SOFT_TISSUE, LIVER, SPLEEN, KIDNEY, VESSEL, BONE, LUNG = range(9)
LABEL_NAMES = ("air", "fat", "soft_tissue", "liver", "spleen", "kidney", "vessel", "bone",
               "lung")

MU_WATER = 0.0193      # 1/mm, water at ~70 keV effective energy
I0_REF = 6.0e5         # incident counts per detector bin and view at dose 1, 512 px
FOV_MM = 400.0         # the longer image side spans this many mm
_MIN_SIZE = 64
_EXACT_POISSON_BELOW = 50.0


@dataclass(frozen=True)
class CTKernel:
    """A reconstruction kernel: FBP window and cutoff, then a post-filter.

    Attributes:
      name: the kernel's name.
      window: FBP window (:data:`stylejax.data.tomography.FILTERS`).
      cutoff: window cutoff as a fraction of Nyquist.
      smooth: Gaussian post-smoothing sigma in pixels (0: none).
      sharpen: unsharp-mask amount (0: none): ``x + sharpen * (x - G_sigma x)``.
      sharpen_sigma: its Gaussian sigma in pixels.
    """

    name: str
    window: str
    cutoff: float
    smooth: float = 0.0
    sharpen: float = 0.0
    sharpen_sigma: float = 1.0


# Smooth to sharp: each one passes more high-frequency signal and noise than the last.
KERNELS = {k.name: k for k in (
    CTKernel("soft", "hann", 0.65, smooth=0.7),
    CTKernel("standard", "hamming", 0.85),
    CTKernel("detail", "shepp-logan", 1.0),
    CTKernel("sharp", "ramp", 1.0),
    CTKernel("bone", "ramp", 1.0, sharpen=0.6, sharpen_sigma=1.0),
    CTKernel("lung", "ramp", 1.0, sharpen=1.2, sharpen_sigma=0.8),
)}


def ct_kernels() -> tuple[str, ...]:
    """Kernel names, ordered from smooth to sharp."""
    return tuple(KERNELS)


def ct_labels() -> tuple[str, ...]:
    """Label names; ``labels == i`` is tissue ``ct_labels()[i]``."""
    return LABEL_NAMES


@dataclass(frozen=True, eq=False)
class CT:
    """One reconstructed synthetic CT slice and its ground truth.

    Attributes:
      image: float32 [H, W], Hounsfield units.
      labels: int32 [H, W], tissue class per pixel (:data:`LABEL_NAMES`).
      kernel: reconstruction kernel name.
      dose: relative dose (1 = reference).
      seed: the seed it was made from.
      phantom: float32 [H, W], the true HU map that was scanned (no blur, no noise).
      pixel_mm: pixel size in mm.
      params: per-seed anatomy parameters (level, phase, ...).
    """

    image: np.ndarray
    labels: np.ndarray
    kernel: str
    dose: float
    seed: int
    phantom: np.ndarray
    pixel_mm: float
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class CTSlices:
    """Slices of several seeds, each reconstructed with several kernels.

    Attributes:
      images: float32 [N, K, H, W] HU; ``images[i, k]`` is seed ``seeds[i]`` with kernel
        ``kernels[k]`` (identical anatomy and sinogram noise across k).
      labels: int32 [N, H, W].
      phantoms: float32 [N, H, W] true HU maps.
      seeds: int64 [N]; kernels: tuple of K names; dose: float; pixel_mm: float.
    """

    images: np.ndarray
    labels: np.ndarray
    phantoms: np.ndarray
    seeds: np.ndarray
    kernels: tuple[str, ...]
    dose: float
    pixel_mm: float

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------- validation

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)) \
            or len(size) != 2:
        raise ValueError(f"size must be two integers (H, W) (got {size!r})")
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in size):
        raise ValueError(f"size must be two integers (H, W) (got {size!r})")
    h, w = int(size[0]), int(size[1])
    if min(h, w) < _MIN_SIZE:
        raise ValueError(f"size {(h, w)} is too small: CT slices need at least "
                         f"{_MIN_SIZE}x{_MIN_SIZE} pixels")
    if max(h, w) > 2 * min(h, w):
        raise ValueError(f"size {(h, w)}: the aspect ratio must be at most 2:1")
    return h, w


def _check_kernel(kernel) -> CTKernel:
    if kernel not in KERNELS:
        raise ValueError(f"unknown CT kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return KERNELS[kernel]


def _check_dose(dose) -> float:
    if isinstance(dose, bool) or not isinstance(dose, numbers.Real) or not math.isfinite(dose) \
            or dose <= 0:
        raise ValueError(f"dose must be a finite number > 0 (got {dose!r})")
    return float(dose)


# ----------------------------------------------------------------------------- anatomy

_PHASES = ("none", "arterial", "portal")
# HU per contrast phase: aorta, ivc, portal vessels, liver, spleen, kidney cortex, medulla.
_ENHANCEMENT = {
    "none":     (40, 40, 40, 58, 48, 35, 30),
    "arterial": (300, 90, 150, 75, 105, 190, 80),
    "portal":   (170, 150, 180, 115, 120, 170, 150),
}


class _Canvas:
    """HU and label maps painted back to front with partial-volume edges."""

    def __init__(self, h, w, fine, coarse):
        self.hu = np.full((h, w), -1000.0, np.float32)
        self.labels = np.zeros((h, w), np.int32)
        self.h, self.w = h, w
        self.fine, self.coarse = fine, coarse

    def tissue(self, sl, hu, fine=0.0, coarse=0.0):
        v = np.float32(hu)
        if fine:
            v = v + np.float32(fine) * self.fine[sl]
        if coarse:
            v = v + np.float32(coarse) * self.coarse[sl]
        return v

    def paint(self, sl, cov, value, label):
        """Blend ``value`` in with coverage ``cov`` (0..1) over the window ``sl``."""
        hu = self.hu[sl]
        hu += cov * (value - hu)
        self.labels[sl][cov > 0.5] = label

    def window(self, cx, cy, r):
        """Row/column slices of the box of half-size ``r`` around image point (cx, cy)."""
        c0, c1 = int(max(0, math.floor(cx - r - 1))), int(min(self.w, math.ceil(cx + r + 2)))
        r0, r1 = int(max(0, math.floor(cy - r - 1))), int(min(self.h, math.ceil(cy + r + 2)))
        if c0 >= c1 or r0 >= r1:
            return None
        return np.s_[r0:r1, c0:c1]

    def ellipse(self, cx, cy, a, b, angle, value, label, *, tissue=None, within=None):
        """Paint a rotated ellipse (centre in image pixels, semi-axes a along ``angle``).

        ``value`` is HU or None with ``tissue=(hu, fine, coarse)``; ``within`` restricts
        painting to pixels whose current label is in it.
        """
        sl = self.window(cx, cy, max(a, b))
        if sl is None:
            return None
        cov = _ellipse_coverage(sl, cx, cy, a, b, angle)
        if within is not None:
            cov = cov * np.isin(self.labels[sl], within)
        v = self.tissue(sl, *tissue) if tissue is not None else np.float32(value)
        self.paint(sl, cov, v, label)
        return sl, cov


def _ellipse_coverage(sl, cx, cy, a, b, angle):
    """Pixel coverage of an ellipse from a first-order signed distance ``(r - 1) / |grad r|``."""
    rows, cols = sl
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] - np.float32(cy)
    x = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = math.cos(angle), math.sin(angle)
    u = (x * c + y * s) / a
    v = (-x * s + y * c) / b
    r = np.sqrt(u * u + v * v)
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.maximum(r, 1e-6)
    d = (r - 1.0) / np.maximum(grad, 1e-6)
    return np.clip(0.5 - d, 0.0, 1.0).astype(np.float32)


def _anatomy(seed: int, h: int, w: int):
    """True HU map, labels and per-seed parameters."""
    rng = np.random.default_rng([seed, 1])
    trng = np.random.default_rng([seed, 3])
    fine = powerlaw_noise((h, w), 2.0, trng)
    coarse = powerlaw_noise((h, w), 3.2, trng)
    cv = _Canvas(h, w, fine, coarse)
    level = float(rng.uniform(0.0, 1.0))          # 0 lung bases .. 1 mid-kidney
    phase = _PHASES[int(rng.choice(3, p=(0.2, 0.3, 0.5)))]
    jit = rng.uniform(0.9, 1.1, 7)
    aorta, ivc, portal, liver, spleen, cortex, medulla = np.array(_ENHANCEMENT[phase]) * jit

    # Body: super-ellipse, flatter posterior, low-order wobble. y is up (anterior).
    a = rng.uniform(0.40, 0.46) * w
    b_ant = min(a * rng.uniform(0.66, 0.80), 0.44 * h)
    b_post = b_ant * rng.uniform(0.80, 0.92)
    p = rng.uniform(2.1, 2.6)
    cx0 = w / 2 + rng.uniform(-0.02, 0.02) * w
    cy0 = h / 2 + rng.uniform(-0.02, 0.04) * h   # image row of the body centre
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xx - np.float32(cx0), np.float32(cy0) - yy
    phi = np.arctan2(y, x)
    wob = 1.0 + sum(rng.uniform(-0.015, 0.015) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
                    for k in (2, 3, 4))
    b = np.where(y > 0, np.float32(b_ant), np.float32(b_post))
    big_f = ((np.abs(x) / a) ** p + (np.abs(y) / b) ** p) ** (1.0 / p) / wob
    gy, gx = np.gradient(big_f)
    grad = np.maximum(np.hypot(gx, gy), 1e-6)
    full = np.s_[0:h, 0:w]

    def shell(scale):  # coverage of the outline scaled by ``scale``
        return np.clip(0.5 - (big_f - scale) / grad, 0.0, 1.0).astype(np.float32)

    def on_outline(angle, scale):  # image point on the scaled outline at polar angle
        c, s = math.cos(angle), math.sin(angle)
        bb = b_ant if s > 0 else b_post
        r = scale / ((abs(c) / a) ** p + (abs(s) / bb) ** p) ** (1.0 / p)
        return cx0 + r * c, cy0 - r * s

    fat_t = rng.uniform(0.05, 0.13)
    wall_t = rng.uniform(0.035, 0.06)
    cv.paint(full, shell(1.0), cv.tissue(full, rng.uniform(-115, -90), 8, 6), FAT)
    cv.paint(full, shell(1.0 - fat_t), cv.tissue(full, rng.uniform(40, 60), 6, 4), SOFT_TISSUE)
    cavity = 1.0 - fat_t - wall_t
    cv.paint(full, shell(cavity), cv.tissue(full, rng.uniform(-105, -85), 8, 6), FAT)

    # Spine geometry (needed by several organs).
    rv = rng.uniform(0.075, 0.095) * a
    vx, vy = cx0 + rng.uniform(-0.02, 0.02) * a, cy0 + b_post * rng.uniform(0.38, 0.48)
    canal_r = 0.45 * rv
    canal_y = vy + rv + 1.05 * canal_r
    muscle = (rng.uniform(45, 60), 6, 5)
    for side in (-1, 1):  # paraspinal muscles
        cv.ellipse(vx + side * 1.5 * rv, canal_y + 0.5 * rv, 1.3 * rv, 1.2 * rv,
                   side * 0.2, None, SOFT_TISSUE, tissue=muscle)
        if level > 0.55:  # psoas
            k = (level - 0.55) / 0.45
            cv.ellipse(vx + side * 1.45 * rv, vy - 0.1 * rv, (0.5 + 0.4 * k) * rv,
                       (0.6 + 0.4 * k) * rv, side * 0.3, None, SOFT_TISSUE, tissue=muscle)

    inside = (FAT,)  # organs only replace visceral fat (not the wall)
    # Liver (patient right = image left), with a left lobe and vessels.
    k_liv = 1.0 - 0.35 * abs(level - 0.35)
    liv = (liver, 5, 4)
    lx, ly = cx0 - a * rng.uniform(0.30, 0.40), cy0 - b_ant * rng.uniform(-0.05, 0.15)
    la, lb = a * rng.uniform(0.40, 0.50) * k_liv, b_ant * rng.uniform(0.55, 0.70) * k_liv
    cv.ellipse(lx, ly, la, lb, rng.uniform(-0.3, 0.1), None, LIVER, tissue=liv,
               within=inside)
    if level < 0.7:
        cv.ellipse(cx0 + a * rng.uniform(-0.05, 0.10), cy0 - b_ant * rng.uniform(0.25, 0.40),
                   a * rng.uniform(0.25, 0.38) * k_liv, b_ant * rng.uniform(0.16, 0.24),
                   rng.uniform(-0.3, 0.3), None, LIVER, tissue=liv, within=inside)
    for _ in range(int(rng.integers(4, 12))):
        t, r = rng.uniform(0, 2 * np.pi), math.sqrt(rng.uniform(0, 0.6))
        px, py = lx + r * la * math.cos(t), ly - r * lb * math.sin(t)
        rr = max(0.7, rng.uniform(0.01, 0.035) * a)
        cv.ellipse(px, py, rr * rng.uniform(1, 2), rr, rng.uniform(0, np.pi), None, VESSEL,
                   tissue=(portal, 4, 0), within=(LIVER,))

    # Spleen (image right, posterior-lateral).
    if level < 0.85:
        cv.ellipse(cx0 + a * rng.uniform(0.50, 0.62), cy0 + b_post * rng.uniform(0.15, 0.35),
                   a * rng.uniform(0.10, 0.16), b_post * rng.uniform(0.25, 0.40),
                   rng.uniform(-0.9, -0.4), None, SPLEEN, tissue=(spleen, 5, 5),
                   within=inside)

    # Stomach with an air-fluid level (anterior, image right).
    if level < 0.75:
        sx, sy = cx0 + a * rng.uniform(0.15, 0.35), cy0 - b_ant * rng.uniform(0.25, 0.45)
        sa, sb = a * rng.uniform(0.14, 0.24), b_ant * rng.uniform(0.14, 0.22)
        ang = rng.uniform(-0.4, 0.4)
        cv.ellipse(sx, sy, sa, sb, ang, None, SOFT_TISSUE, tissue=(45, 5, 3), within=inside)
        wall = max(1.0, 0.02 * a)
        out = cv.ellipse(sx, sy, sa - wall, sb - wall, ang, None, SOFT_TISSUE,
                         tissue=(rng.uniform(5, 25), 3, 2), within=(SOFT_TISSUE,))
        if out is not None and rng.random() < 0.8:
            sl, cov = out
            level_row = sy - (sb - wall) * rng.uniform(0.0, 0.6)   # gas above this row
            rows = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None]
            gas = cov * np.clip(level_row - rows + 0.5, 0.0, 1.0)
            cv.paint(sl, gas, cv.tissue(sl, -990, 4, 0), AIR)

    if level < 0.6:  # lung bases, posterior-lateral, shrinking with the level
        k = (0.6 - level) / 0.6
        for side in (-1, 1):
            lx = cx0 + side * a * rng.uniform(0.42, 0.52)
            ly = cy0 + b_post * rng.uniform(0.05, 0.25)
            la, lb = a * (0.22 + 0.16 * k), b_post * (0.35 + 0.35 * k)
            out = cv.ellipse(lx, ly, la, lb, side * rng.uniform(0.1, 0.4), None, LUNG,
                             tissue=(rng.uniform(-880, -840), 20, 30), within=inside)
            if out is not None:
                _lung_vessels(cv, rng, out[0], int(40 + 120 * k * (h * w) / 512 ** 2), a)

    # Kidneys (beside the spine, posterior) with cortex, medulla and sinus fat.
    if level > 0.45:
        kk = min(1.0, (level - 0.45) / 0.3) ** 0.5
        for side in (-1, 1):
            rk = a * rng.uniform(0.11, 0.14) * max(kk, 0.3)
            kx = vx + side * (2.2 * rv + rk * rng.uniform(0.6, 0.9))
            ky = vy + rng.uniform(-0.6, 0.4) * rv
            ang = side * rng.uniform(0.3, 0.7)
            cv.ellipse(kx, ky, 0.65 * rk, rk, ang, None, KIDNEY, tissue=(cortex, 5, 3),
                       within=inside + (SOFT_TISSUE,))
            cv.ellipse(kx, ky, 0.40 * rk, 0.70 * rk, ang, None, KIDNEY,
                       tissue=(medulla, 5, 3), within=(KIDNEY,))
            cv.ellipse(kx - side * 0.35 * rk, ky, 0.2 * rk, 0.35 * rk, ang, None, FAT,
                       tissue=(-90, 6, 0), within=(KIDNEY,))

    # Bowel loops (abdominal levels, anterior cavity).
    if level > 0.5:
        for _ in range(int(rng.integers(3, 9))):
            t = rng.uniform(0.15 * np.pi, 0.85 * np.pi)
            bx, by = on_outline(t, cavity * rng.uniform(0.3, 0.8))
            br = a * rng.uniform(0.04, 0.08)
            cv.ellipse(bx, by, br, br * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), None,
                       SOFT_TISSUE, tissue=(40, 5, 3), within=inside)
            gas = rng.random() < 0.4
            cv.ellipse(bx, by, 0.7 * br, 0.6 * br, 0.0, None, AIR if gas else SOFT_TISSUE,
                       tissue=(-980, 5, 0) if gas else (rng.uniform(5, 30), 4, 2),
                       within=(SOFT_TISSUE,))

    # Aorta (left of the midline = image right) and IVC, anterior to the spine.
    ra = rv * rng.uniform(0.5, 0.65)
    cv.ellipse(vx + 0.5 * rv, vy - rv - ra - 1.0, ra, ra, 0.0, None, VESSEL,
               tissue=(aorta, 4, 0))
    cv.ellipse(vx - 1.4 * rv, vy - rv - 1.1 * ra, 0.8 * rv, 0.55 * rv, rng.uniform(-0.3, 0.3),
               None, VESSEL, tissue=(ivc, 4, 0), within=(FAT, LIVER, SOFT_TISSUE))

    # Vertebra: arch and processes, body (cortical shell, cancellous core), canal.
    cortical, cancellous = (rng.uniform(900, 1300), 60, 40), (rng.uniform(180, 320), 50, 40)
    cv.ellipse(vx, canal_y, 1.7 * canal_r, 1.7 * canal_r, 0.0, None, BONE, tissue=cortical)
    cv.ellipse(vx, canal_y + 2.3 * canal_r, 0.22 * rv, 0.9 * rv, 0.0, None, BONE,
               tissue=cortical)
    for side in (-1, 1):
        cv.ellipse(vx + side * 1.25 * rv, canal_y - 0.1 * rv, 0.95 * rv, 0.2 * rv,
                   side * 0.25, None, BONE, tissue=cortical)
    cv.ellipse(vx, canal_y, canal_r, canal_r, 0.0, None, SOFT_TISSUE, tissue=(12, 3, 0))
    shell_px = max(1.0, 0.13 * rv)
    cv.ellipse(vx, vy, 1.05 * rv, rv, 0.0, None, BONE, tissue=cortical)
    cv.ellipse(vx, vy, 1.05 * rv - shell_px, rv - shell_px, 0.0, None, BONE, tissue=cancellous)

    # Ribs: cross-sections in the muscle wall, all around in the thorax, lateral and
    # posterior lower down.
    n_ribs = int(rng.integers(8, 15))
    lo = -0.95 * np.pi
    hi = 0.85 * np.pi if level < 0.4 else 0.15 * np.pi
    for t in np.sort(rng.uniform(lo, hi, n_ribs)):
        if abs(t + np.pi / 2) < 0.35 or (t > 0 and abs(t - np.pi / 2) < 0.3):
            continue  # not over the spine nor the sternum
        rx, ry = on_outline(t, 1.0 - fat_t - 0.5 * wall_t)
        ra_, rb_ = a * rng.uniform(0.022, 0.034), a * rng.uniform(0.012, 0.018)
        tang = -(t + np.pi / 2)
        cv.ellipse(rx, ry, ra_, rb_, tang, None, BONE, tissue=cortical)
        shell_px = max(0.7, 0.3 * rb_)
        cv.ellipse(rx, ry, ra_ - shell_px, rb_ - shell_px, tang, None, BONE,
                   tissue=cancellous, within=(BONE,))

    params = {"level": level, "phase": phase, "body_half_width_px": float(a),
              "fat_fraction": float(fat_t), "ribs": n_ribs}
    return cv.hu, cv.labels, params


def _lung_vessels(cv: _Canvas, rng, sl, n: int, a: float):
    """Small bright dots (vessels in cross-section) on lung pixels of window ``sl``."""
    rows, cols = sl
    lung = np.argwhere(cv.labels[sl] == LUNG)
    if len(lung) == 0:
        return
    pick = lung[rng.integers(0, len(lung), n)]
    radii = np.maximum(0.6, a * rng.uniform(0.004, 0.018, n))
    for (r, c), rad in zip(pick, radii):
        cv.ellipse(cols.start + c + rng.uniform(-0.5, 0.5), rows.start + r + rng.uniform(-0.5, 0.5),
                   rad * rng.uniform(1.0, 1.8), rad, rng.uniform(0, np.pi), None, VESSEL,
                   tissue=(rng.uniform(-20, 60), 0, 0), within=(LUNG,))


# ----------------------------------------------------------------------------- scan

def _counts(expected: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Poisson counts with mean ``expected`` coupled to the normal deviates ``z``."""
    lam = expected.astype(np.float64)
    zz = z.astype(np.float64)
    out = lam + np.sqrt(lam) * zz + (zz * zz - 1.0) / 6.0   # Cornish-Fisher quantile
    low = lam < _EXACT_POISSON_BELOW
    if np.any(low):
        out[low] = _poisson_quantile(scipy.special.ndtr(zz[low]), lam[low])
    return out


def _poisson_quantile(q: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Smallest integer k with ``P(K <= k) >= q`` for ``K ~ Poisson(lam)``."""
    k = np.ceil(scipy.special.pdtrik(q, lam))   # continuous inverse of the Poisson CDF
    k = np.maximum(np.nan_to_num(k, nan=0.0), 0.0)
    below = np.maximum(k - 1.0, 0.0)
    return np.where(scipy.special.pdtr(below, lam) >= q, below, k)


def _reconstruct(sino, beam, kernel: CTKernel, pixel_mm: float):
    """FBP + post-filter: line integrals [..., A, S] -> HU [..., H, W]."""
    mu = beam.fbp(sino, kernel.window, kernel.cutoff) / np.float32(pixel_mm)
    hu = (mu / np.float32(MU_WATER) - 1.0) * 1000.0
    sig = (0,) * (hu.ndim - 2)
    if kernel.smooth > 0:
        hu = scipy.ndimage.gaussian_filter(hu, sig + (kernel.smooth,) * 2, mode="nearest")
    if kernel.sharpen > 0:
        blur = scipy.ndimage.gaussian_filter(hu, sig + (kernel.sharpen_sigma,) * 2,
                                             mode="nearest")
        hu = hu + np.float32(kernel.sharpen) * (hu - blur)
    h, w = beam.shape
    yy, xx = np.mgrid[0:h, 0:w]
    outside = np.hypot(yy - h // 2, xx - w // 2) > max(h, w) / 2 - 0.5
    hu[..., outside] = -1000.0
    return hu.astype(np.float32, copy=False)


def ct_slices(seeds, size=(256, 256), kernels=None, dose: float = 1.0, *,
              noise: bool = True, noise_seed: int | None = None) -> CTSlices:
    """Scan several seeds once each and reconstruct every requested kernel.

    Args:
      seeds: iterable of non-negative ints.
      size: (H, W), each >= 64, aspect ratio at most 2:1.
      kernels: kernel names (default: all of :func:`ct_kernels`).
      dose: relative dose > 0; noise standard deviation scales as ``1 / sqrt(dose)``.
      noise: False reconstructs the noise-free sinogram (``dose`` is then irrelevant).
      noise_seed: None (default) draws each slice's noise from its own seed; an int
        draws an independent realisation of the same scans (same anatomy and dose,
        other quanta), the same for every kernel.
    Returns:
      :class:`CTSlices` with ``images`` [N, K, H, W].
    Raises:
      ValueError naming a bad argument (unknown kernel, dose <= 0, size too small, ...).
    """
    if noise_seed is not None:
        noise_seed = _check_seed(noise_seed)
    return _scan(seeds, size, kernels, dose, noise, noise_seed)[0]


def _scan(seeds, size, kernels, dose, noise, noise_seed=None):
    seed_list = [_check_seed(s) for s in (np.asarray(seeds).ravel().tolist()
                                          if isinstance(seeds, np.ndarray) else list(seeds))]
    if not seed_list:
        raise ValueError("seeds is empty")
    h, w = _check_size(size)
    names = ct_kernels() if kernels is None else (
        (kernels,) if isinstance(kernels, str) else tuple(kernels))
    if not names:
        raise ValueError("kernels is empty; choose from " + ", ".join(KERNELS))
    kerns = [_check_kernel(k) for k in names]
    dose = _check_dose(dose)
    pixel_mm = FOV_MM / max(h, w)
    beam = parallel_beam((h, w))
    anat = [_anatomy(s, h, w) for s in seed_list]
    phantoms = np.stack([hu for hu, _, _ in anat])
    labels = np.stack([lab for _, lab, _ in anat])
    mu = np.maximum(MU_WATER * (1.0 + phantoms / 1000.0), 0.0) * pixel_mm  # per pixel
    sino = beam.project(mu)
    if noise:
        i0 = dose * I0_REF * max(h, w) / 512.0
        for i, s in enumerate(seed_list):
            stream = [s, 2] if noise_seed is None else [s, 3, noise_seed]
            z = np.random.default_rng(stream).standard_normal(sino.shape[1:], np.float32)
            counts = np.maximum(_counts(i0 * np.exp(-sino[i].astype(np.float64)), z), 0.5)
            sino[i] = -np.log(counts / i0)
    images = np.stack([_reconstruct(sino, beam, k, pixel_mm) for k in kerns], axis=1)
    out = CTSlices(images=images, labels=labels, phantoms=phantoms.astype(np.float32),
                   seeds=np.array(seed_list, np.int64), kernels=names, dose=dose,
                   pixel_mm=pixel_mm)
    return out, [p for _, _, p in anat]


def ct(seed: int, size=(256, 256), kernel: str = "standard", dose: float = 1.0, *,
       noise: bool = True) -> CT:
    """One synthetic CT slice.

    Args:
      seed: non-negative int; the same seed and size give the same anatomy, labels and
        noise realisation for every kernel (and the same noise pattern at every dose).
      size: (H, W), each >= 64, aspect ratio at most 2:1.
      kernel: one of :func:`ct_kernels` (smooth to sharp).
      dose: relative dose > 0 (1 = reference).
      noise: False gives the noise-free reconstruction (blur and artefacts only).
    Returns:
      :class:`CT` with ``.image`` float32 [H, W] in HU and ``.labels`` int32 [H, W].
    Raises:
      ValueError naming a bad argument.
    """
    seed = _check_seed(seed)
    _check_kernel(kernel)
    out, params = _scan([seed], size, (kernel,), dose, noise)
    return CT(image=out.images[0, 0], labels=out.labels[0], kernel=kernel, dose=out.dose,
              seed=seed, phantom=out.phantoms[0], pixel_mm=out.pixel_mm, params=params[0])


def window(image, center: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Display window: HU -> [0, 1] (``center``/``width`` in HU; default soft tissue)."""
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"window width must be > 0 HU (got {width!r})")
    x = (np.asarray(image, np.float32) - (center - width / 2)) / width
    return np.clip(x, 0.0, 1.0)
