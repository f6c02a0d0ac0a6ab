"""Synthetic CT speed: stylejax's sparse projector + FBP against scikit-image's radon/iradon.

Run:  python experiments/benchmarks/ct_phantom_speed.py [--sizes 128 256] [--slices 16]

Both sides scan the same anatomical slices (``max(H, W)`` views over 180 degrees,
``circle=True``) and reconstruct them with a Hamming-windowed FBP:

* scikit-image: ``radon`` then ``iradon`` per slice (it rotates the image once per angle
  and back-projects with ``np.interp`` per angle);
* stylejax: ``ParallelBeam.project`` and ``.fbp`` on the whole batch of slices (sparse
  Joseph matrices, built once per geometry and cached; the build time is reported
  separately).

Also timed: the whole generator ``ct_slices`` (anatomy, projection, Poisson noise, FBP,
post-filter) for one kernel and for all kernels, per slice. Prints a table and writes
results/ct_phantom_speed.json (median of ``--repeats`` runs after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import skimage
from skimage.transform import iradon, radon

from stylejax.data import ct as ctm
from stylejax.data import tomography as tg
from stylejax.evaluation import bench as bench_util


def bench(size, n_slices, repeats):
    seeds = list(range(n_slices))
    truth = ctm.ct_slices(seeds, (size, size), kernels=("standard",), noise=False).phantoms
    mu = np.maximum(ctm.MU_WATER * (1 + truth / 1000.0), 0).astype(np.float32)
    theta = np.arange(size) * 180.0 / size

    def skimage_path():
        return np.stack([iradon(radon(m, theta, circle=True), theta, circle=True,
                                filter_name="hamming") for m in mu])

    tg._cached_beam.cache_clear()
    start = time.perf_counter()
    beam = tg.parallel_beam((size, size))
    build_s = time.perf_counter() - start

    def ours():
        return beam.fbp(beam.project(mu), "hamming")

    ref, out = skimage_path(), ours()
    disk = np.hypot(*(np.mgrid[:size, :size] - size // 2)) < size // 2 - 2
    corr = float(np.mean([np.corrcoef(a[disk], b[disk])[0, 1] for a, b in zip(ref, out)]))
    sk_reps = max(1, repeats // 3)
    t_sk = bench_util.median_seconds(skimage_path, sk_reps) / n_slices
    t_ours = bench_util.median_seconds(ours, repeats) / n_slices
    t_one = bench_util.median_seconds(lambda: ctm.ct_slices(seeds, (size, size), kernels=("standard",)),
                           repeats) / n_slices
    t_all = bench_util.median_seconds(lambda: ctm.ct_slices(seeds, (size, size)), repeats) / n_slices
    return {"size": size, "views": size, "slices_per_batch": n_slices,
            "skimage_radon_iradon_s_per_slice": t_sk,
            "stylejax_project_fbp_s_per_slice": t_ours,
            "speedup_vs_skimage": t_sk / t_ours,
            "skimage_slices_per_s": 1 / t_sk, "stylejax_slices_per_s": 1 / t_ours,
            "operator_build_s": build_s, "operator_mb": beam.nbytes / 2 ** 20,
            "ct_slices_one_kernel_s_per_slice": t_one,
            "ct_slices_all_kernels_s_per_slice": t_all, "n_kernels": len(ctm.ct_kernels()),
            "recon_correlation_vs_skimage": corr}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "results" /
                                             "ct_phantom_speed.json"))
    args = parser.parse_args()
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpus": os.cpu_count(), "numpy": np.__version__, "scipy": scipy.__version__,
               "skimage": skimage.__version__, "load_average_at_start": os.getloadavg()}
    rows = [bench(s, args.slices, args.repeats) for s in args.sizes]
    print(f"machine: {machine['cpus']} CPUs; {args.slices} slices per batch; "
          "Hamming FBP, views = size")
    print(f"{'size':>5} {'skimage':>10} {'stylejax':>10} {'ratio':>7} {'build':>7} {'MB':>6} "
          f"{'ct 1 kern':>10} {'ct all':>9} {'corr':>7}")
    for r in rows:
        print(f"{r['size']:>5} {r['skimage_slices_per_s']:>7.1f}/s {r['stylejax_slices_per_s']:>7.1f}/s "
              f"{r['speedup_vs_skimage']:>6.1f}x {r['operator_build_s']:>6.1f}s "
              f"{r['operator_mb']:>6.0f} {1 / r['ct_slices_one_kernel_s_per_slice']:>8.1f}/s "
              f"{1 / r['ct_slices_all_kernels_s_per_slice']:>7.1f}/s "
              f"{r['recon_correlation_vs_skimage']:>7.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
