"""Parallel-beam tomography: Radon transform, FBP filters and filtered back-projection.

The projector is Joseph's method (ray-driven, linear interpolation between the two
pixels a ray crosses in each row, or each column for rays closer to horizontal),
stored as sparse matrices in blocks of angles. Building the blocks is done once per
geometry and cached; every later projection or back-projection of a batch of slices is
a sparse-times-dense product, which is 10-20x faster on a CPU than rotating the image
once per angle. The back-projector is the exact adjoint (transpose) of the projector.

Geometry (the convention of ``skimage.transform.radon(..., circle=True)``, so the two
agree to interpolation error on square images):

* pixel centres at integer positions; the rotation centre is pixel ``(H // 2, W // 2)``;
  x runs along columns to the right, y along rows upward (row index decreasing);
* angle ``theta`` (degrees): the detector axis is ``(cos theta, sin theta)``; detector
  bin ``k`` measures the line integral along the line ``x cos theta + y sin theta =
  k - S // 2`` with ``S = max(H, W)`` bins of one pixel;
* the object must lie inside the circle of diameter ``max(H, W)`` around the centre
  (rays outside it are not measured);
* sinograms are ``[..., A, S]`` (angles first; skimage returns ``[S, A]``).

FBP (Kak & Slaney, ch. 3): ``image = (pi / A) * backproject(p * h)`` with the ramp ``h``
built from its band-limited spatial kernel (``h[0] = 1/4``, ``h[n] = -1 / (pi n)^2``
for odd n, 0 for even n; its response near zero frequency is small but not 0, which
avoids the DC offset of a sampled ``|f|``), times a
window of the normalised frequency ``u = f / (cutoff * 0.5)`` (1 at the cutoff, zero
beyond): ramp 1, Shepp-Logan ``sin(pi u / 2) / (pi u / 2)``, cosine ``cos(pi u / 2)``,
Hamming ``0.54 + 0.46 cos(pi u)``, Hann ``0.5 + 0.5 cos(pi u)``.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import scipy.fft
import scipy.sparse

__all__ = ["FILTERS", "ParallelBeam", "parallel_beam", "fbp_filter", "radon", "fbp"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")

# Operators larger than this are rebuilt block by block on every call instead of cached.
CACHE_BYTES = 768 * 2 ** 20
_ANGLES_PER_BLOCK = 32


def _check_shape(shape) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be two integers (H, W) (got {shape!r})") from None
    if min(h, w) < 2:
        raise ValueError(f"shape must be at least 2x2 (got {(h, w)})")
    return h, w


def _check_angles(n_angles, shape) -> int:
    if n_angles is None:
        return max(shape)
    if isinstance(n_angles, bool) or not isinstance(n_angles, numbers.Integral) or n_angles < 1:
        raise ValueError(f"n_angles must be a positive integer (got {n_angles!r})")
    return int(n_angles)


def fbp_filter(n: int, window: str = "ramp", cutoff: float = 1.0) -> np.ndarray:
    """Frequency response of the FBP filter on the ``rfft`` grid of length ``n``.

    Args:
      n: padded detector length (even, >= 2).
      window: one of :data:`FILTERS`.
      cutoff: fraction of the Nyquist frequency in (0, 1] where the window reaches zero
        (the plain ramp is cut there too).
    Returns:
      float64 ``[n // 2 + 1]``: ramp ``|f|`` (cycles/sample, 0.5 at Nyquist) times window.
    """
    if window not in FILTERS:
        raise ValueError(f"unknown FBP filter {window!r}; choose one of {', '.join(FILTERS)}")
    if not (isinstance(cutoff, numbers.Real) and math.isfinite(cutoff) and 0 < cutoff <= 1):
        raise ValueError(f"cutoff must be in (0, 1] (a fraction of Nyquist; got {cutoff!r})")
    if n < 2 or n % 2:
        raise ValueError(f"filter length must be even and >= 2 (got {n})")
    k = np.arange(n)
    k = np.minimum(k, n - k)  # distance to lag 0 on the circle
    h = np.zeros(n)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    ramp = np.real(np.fft.rfft(h))
    u = np.fft.rfftfreq(n) / (0.5 * cutoff)
    inside = u <= 1.0 + 1e-12
    if window == "ramp":
        win = np.ones_like(u)
    elif window == "shepp-logan":
        win = np.sinc(u / 2)  # np.sinc(x) = sin(pi x) / (pi x)
    elif window == "cosine":
        win = np.cos(np.pi * u / 2)
    elif window == "hamming":
        win = 0.54 + 0.46 * np.cos(np.pi * u)
    else:
        win = 0.5 + 0.5 * np.cos(np.pi * u)
    return np.where(inside, ramp * win, 0.0)


class ParallelBeam:
    """Parallel-beam geometry over an ``H x W`` grid with a sparse Joseph projector.

    Args:
      shape: ``(H, W)``.
      n_angles: number of views over [0, 180) degrees (default ``max(H, W)``).
    Attributes:
      shape, angles (degrees, float64 ``[A]``), n_detectors (``S = max(H, W)``),
      cached (True when the operator blocks are kept in memory), nbytes (their size).
    """

    def __init__(self, shape, n_angles: int | None = None):
        self.shape = _check_shape(shape)
        n = _check_angles(n_angles, self.shape)
        self.angles = np.arange(n) * (180.0 / n)
        self.n_detectors = max(self.shape)
        self._blocks = self._plan()
        h, w = self.shape
        # ~2 entries per crossed row/column per ray (8 bytes each) plus the row pointers.
        est = sum(2 * len(idx) * self.n_detectors * (h if rows else w) * 8
                  for idx, rows in self._blocks)
        self.cached = est <= CACHE_BYTES
        self._matrices = [self._build(*b) for b in self._blocks] if self.cached else None
        self.nbytes = (sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
                           for m in self._matrices) if self.cached else 0)

    # -------------------------------------------------------------------- operator
    def _plan(self):
        """Blocks of angle indices, each marching over rows or over columns only."""
        t = np.deg2rad(self.angles)
        rows = np.abs(np.cos(t)) >= np.abs(np.sin(t))
        blocks, start = [], 0
        for i in range(1, len(t) + 1):
            if i == len(t) or rows[i] != rows[start] or i - start == _ANGLES_PER_BLOCK:
                blocks.append((np.arange(start, i), bool(rows[start])))
                start = i
        return blocks

    def _build(self, idx, march_rows):
        h, w = self.shape
        s_n = self.n_detectors
        t = np.deg2rad(self.angles[idx])[:, None, None]
        c, s = np.cos(t), np.sin(t)
        det = (np.arange(s_n) - s_n // 2)[None, :, None].astype(np.float64)
        if march_rows:  # one crossing per row: x = (d - y sin) / cos
            y = (h // 2 - np.arange(h))[None, None, :].astype(np.float64)
            pos = (det - y * s) / c + w // 2
            step, n_other, limit = 1.0 / np.abs(c), h, w
        else:           # one crossing per column: y = (d - x cos) / sin
            x = (np.arange(w) - w // 2)[None, None, :].astype(np.float64)
            pos = h // 2 - (det - x * c) / s
            step, n_other, limit = 1.0 / np.abs(s), w, h
        lo = np.floor(pos)
        frac = pos - lo
        lo = lo.astype(np.int64)
        other = np.arange(n_other)[None, None, :]
        cols, vals, valid = [], [], []
        for off, wgt in ((0, 1.0 - frac), (1, frac)):
            p = lo + off
            ok = (p >= 0) & (p < limit) & (wgt > 0)
            flat = other * w + p if march_rows else p * w + other
            cols.append(flat)
            vals.append(wgt * step)
            valid.append(ok)
        cols = np.stack(cols, -1)
        vals = np.stack(vals, -1)
        valid = np.stack(valid, -1)
        counts = valid.reshape(len(idx) * s_n, -1).sum(axis=1)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return scipy.sparse.csr_matrix(
            (vals[valid].astype(np.float32), cols[valid].astype(np.int32), indptr),
            shape=(len(idx) * s_n, h * w))

    def _matrices_iter(self):
        if self.cached:
            yield from zip(self._blocks, self._matrices)
        else:
            for b in self._blocks:
                yield b, self._build(*b)

    # -------------------------------------------------------------------- transforms
    def project(self, images) -> np.ndarray:
        """Line integrals (pixel units) of ``[..., H, W]`` images -> ``[..., A, S]`` float32."""
        x = np.asarray(images, np.float32)
        if x.ndim < 2 or x.shape[-2:] != self.shape:
            raise ValueError(f"images must be [..., {self.shape[0]}, {self.shape[1]}] for "
                             f"this geometry (got shape {x.shape})")
        lead = x.shape[:-2]
        cols = x.reshape(-1, self.shape[0] * self.shape[1]).T
        out = np.empty((len(self.angles), self.n_detectors, cols.shape[1]), np.float32)
        for (idx, _), m in self._matrices_iter():
            out[idx] = (m @ cols).reshape(len(idx), self.n_detectors, -1)
        return np.moveaxis(out, -1, 0).reshape(lead + out.shape[:2])

    def backproject(self, sinograms) -> np.ndarray:
        """Adjoint of :meth:`project`: ``[..., A, S] -> [..., H, W]`` float32 (unscaled sum)."""
        p = np.asarray(sinograms, np.float32)
        a, s_n = len(self.angles), self.n_detectors
        if p.ndim < 2 or p.shape[-2:] != (a, s_n):
            raise ValueError(f"sinograms must be [..., {a}, {s_n}] for this geometry (got "
                             f"shape {p.shape})")
        lead = p.shape[:-2]
        flat = np.moveaxis(p.reshape(-1, a, s_n), 0, -1)  # [A, S, B]
        out = np.zeros((self.shape[0] * self.shape[1], flat.shape[-1]), np.float32)
        for (idx, _), m in self._matrices_iter():
            out += m.T @ np.ascontiguousarray(flat[idx].reshape(len(idx) * s_n, -1))
        return out.T.reshape(lead + self.shape)

    def filter(self, sinograms, window: str = "ramp", cutoff: float = 1.0) -> np.ndarray:
        """Convolve each projection with the FBP filter (zero-padded, no wrap-around)."""
        p = np.asarray(sinograms, np.float32)
        s_n = p.shape[-1]
        n = max(64, 2 ** int(math.ceil(math.log2(2 * s_n))))
        resp = fbp_filter(n, window, cutoff).astype(np.float32)
        spec = scipy.fft.rfft(p, n=n, axis=-1)
        spec *= resp
        return scipy.fft.irfft(spec, n=n, axis=-1)[..., :s_n].astype(np.float32, copy=False)

    def fbp(self, sinograms, window: str = "ramp", cutoff: float = 1.0) -> np.ndarray:
        """Filtered back-projection ``[..., A, S] -> [..., H, W]`` float32.

        Args:
          sinograms: line integrals in pixel units (as :meth:`project` returns).
          window, cutoff: see :func:`fbp_filter`.
        Returns:
          the reconstructed attenuation per pixel.
        """
        q = self.filter(sinograms, window, cutoff)
        return self.backproject(q) * np.float32(np.pi / len(self.angles))


@functools.lru_cache(maxsize=2)
def _cached_beam(shape, n_angles):
    return ParallelBeam(shape, n_angles)


def parallel_beam(shape, n_angles: int | None = None) -> ParallelBeam:
    """The (cached) :class:`ParallelBeam` for ``shape`` and ``n_angles``."""
    shape = _check_shape(shape)
    return _cached_beam(shape, _check_angles(n_angles, shape))


def radon(images, n_angles: int | None = None) -> np.ndarray:
    """Sinograms ``[..., A, S]`` of ``[..., H, W]`` images (see :class:`ParallelBeam`)."""
    x = np.asarray(images)
    if x.ndim < 2:
        raise ValueError(f"images must be [..., H, W] (got shape {x.shape})")
    return parallel_beam(x.shape[-2:], n_angles).project(x)


def fbp(sinograms, shape, window: str = "ramp", cutoff: float = 1.0) -> np.ndarray:
    """Filtered back-projection of ``[..., A, S]`` sinograms onto an ``(H, W)`` grid."""
    p = np.asarray(sinograms)
    if p.ndim < 2:
        raise ValueError(f"sinograms must be [..., A, S] (got shape {p.shape})")
    return parallel_beam(shape, p.shape[-2]).fbp(p, window, cutoff)
