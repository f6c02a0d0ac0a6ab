"""Synthetic ultrasound speed: images per second of ``stylejax.data.ultrasound`` at 256 and
1000 px per quality, next to a textbook pipeline on the same scatterer grid.

Run:  python experiments/benchmarks/ultrasound_phantom_speed.py [--sizes 256 1000]
          [--repeats 3] [--tag NAME]

The textbook column does what the simulator's docstring describes step by step, with the
usual scipy calls: a 2-D PSF (Gaussian-modulated cosine axially, Gaussian laterally at
the focus, i.e. without the depth dependence) convolved with ``scipy.signal.fftconvolve``
on the oversampled grid, ``scipy.signal.hilbert`` along depth, decimation by picking
every ``os``-th row, then the same log compression. The simulator instead works in the
Fourier domain along depth (pulse, Hilbert step, demodulation and decimation in one
product, one inverse FFT at the image's rows) and applies the depth-dependent lateral
beam per row on the decimated IQ. Both share the scatterer draw (timed separately:
label map + scatterers). Medians over ``--repeats`` seeds; one process, single-threaded
scipy FFTs. Writes ``results/ultrasound_phantom_speed[_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.signal

from stylejax.data import ultrasound as us


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tag", default="")
    return p.parse_args()


def textbook(seed, size, quality):
    """Scatterers as the simulator draws them, then fftconvolve + hilbert + decimation."""
    q = us.QUALITIES[quality]
    H, W = size, size
    labels = us.ultrasound_label_map(seed, (H, W))
    g = us._grid(H, W, 60.0, q)
    os_, dz, pixel = g["oversampling"], g["dz_mm"], g["pixel_mm"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    echo = 10.0 ** (np.array([t.echo_db for t in us.TISSUES]) / 20.0)
    amp = np.repeat(echo[labels].astype(np.float32), os_, axis=0)
    scat = rng.standard_normal((H * os_, W), dtype=np.float32) * amp
    z = np.arange(-int(4 / (2 * np.pi * q.sigma_k) / dz), int(4 / (2 * np.pi * q.sigma_k) / dz)
                  + 1) * dz
    sx = q.lateral_fwhm_mm / 2.3548 / pixel
    x = np.arange(-int(4 * sx) - 1, int(4 * sx) + 2)
    psf = np.outer(us.pulse(z, q), np.exp(-0.5 * (x / sx) ** 2)).astype(np.float32)
    rf = scipy.signal.fftconvolve(scat, psf, mode="same")
    env = np.abs(scipy.signal.hilbert(rf, axis=0))[os_ // 2::os_]
    db = 20 * np.log10(np.maximum(env, 1e-12))
    return np.clip(1 + (db - db.max()) / q.dynamic_range_db, 0, 1)


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main():
    args = parse_args()
    rows, out = [], {"benchmark": "ultrasound_phantom",
                     "machine": {"processor": platform.processor() or platform.machine(),
                                 "cpu_count": os.cpu_count(),
                                 "loadavg_1min": os.getloadavg()[0]},
                     "results": []}
    for size in args.sizes:
        us.ultrasound(0, (size, size), "hq")   # warm-up (FFT plans, imports)
        for quality in us.ultrasound_qualities():
            sim = [timed(us.ultrasound, s, (size, size), quality) for s in range(args.repeats)]
            labels = [timed(us.ultrasound_label_map, s, (size, size))
                      for s in range(args.repeats)]
            ref = ([timed(textbook, s, size, quality) for s in range(args.repeats)]
                   if quality in ("lq", "hq") else None)
            row = {"size": size, "quality": quality,
                   "simulator_ms": 1000 * statistics.median(sim),
                   "images_per_s": 1.0 / statistics.median(sim),
                   "label_map_ms": 1000 * statistics.median(labels)}
            if ref:
                row["textbook_ms"] = 1000 * statistics.median(ref)
                row["speedup_vs_textbook"] = statistics.median(ref) / statistics.median(sim)
            rows.append(row)
            out["results"].append(row)
    print(f"\nSynthetic B-mode ultrasound ({os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f})")
    print(f"{'size':>6s} {'quality':>9s} {'ms':>8s} {'img/s':>7s} {'labels ms':>10s} "
          f"{'textbook ms':>12s} {'speed-up':>9s}")
    for r in rows:
        tb = (f"{r['textbook_ms']:12.1f} {r['speedup_vs_textbook']:9.2f}"
              if "textbook_ms" in r else f"{'-':>12s} {'-':>9s}")
        print(f"{r['size']:6d} {r['quality']:>9s} {r['simulator_ms']:8.1f} "
              f"{r['images_per_s']:7.1f} {r['label_map_ms']:10.1f} {tb}")
    path = (Path(__file__).parents[1] / "results"
            / f"ultrasound_phantom_speed{'_' + args.tag if args.tag else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
