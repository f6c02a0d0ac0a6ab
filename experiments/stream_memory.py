"""Host memory of the StyleX ``paper`` config's data side: in-memory pool vs streamed pool.

What is measured: the peak resident set size (``ru_maxrss`` of a fresh child process)
of (1) building the phantom pools at the ``paper`` geometry (1600 px phantoms, 28
vendor styles) into an empty cache folder, and (2) a fresh process loading them from
that cache and making ``--steps`` host batches (``local_batch``, what the trainer
shards onto the mesh when the pools are not gathered on the accelerators), for
:class:`~stylejax.train.simsiam_data.PhantomSource` (in memory, the pool as it was)
and :class:`~stylejax.train.simsiam_stream.StreamSource` (``stream_pool``). No model is
built or trained. ``num_raw``, ``num_vendor_raw`` and ``batch_size`` are reduced from
the paper's 512 / 32 / 200 (building the full pool takes ~16 CPU-minutes); the
in-memory figure for the full config is extrapolated from the measured growth per
phantom and per vendor phantom, the streamed one does not grow with them. A baseline
child (imports and the normalisation's compilation only) is measured too.

Usage::

    python experiments/stream_memory.py --points 4:2 32:2 4:4 --batch 8 --steps 3

Prints a table and writes ``experiments/results/stream_memory.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def _config(num_raw, num_vendor_raw, batch):
    from stylejax.train import simsiam_configs
    return dataclasses.replace(simsiam_configs.paper(), num_raw=num_raw,
                               num_vendor_raw=num_vendor_raw, batch_size=batch).validate()


def child(args):
    """One measurement in this (fresh) process; prints a JSON line."""
    import numpy as np

    from stylejax.train import pairs
    from stylejax.train.simsiam_data import PhantomSource
    from stylejax.train.simsiam_stream import StreamSource
    cfg = _config(args.num_raw, args.num_vendor_raw, args.batch)
    # Compile the one-image normalisation first, so every child (baseline included)
    # holds the same compiler state; the in-memory pool's own whole-pool
    # normalisation is part of what it costs.
    pairs.normalize(np.ones((1, cfg.raw_size, cfg.raw_size), np.float32))
    t = time.perf_counter()
    kind = dict(memory=PhantomSource, stream=StreamSource).get(args.mode)
    if kind is not None:
        source = kind(cfg, cache_dir=args.cache)
        if args.phase == "feed":
            total = 0
            for step in range(args.steps):
                total += sum(v.nbytes for v in source.local_batch(step).values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps(dict(mode=args.mode, phase=args.phase, num_raw=cfg.num_raw,
                          num_vendor_raw=cfg.num_vendor_raw, batch=cfg.batch_size,
                          peak_rss=rss, seconds=time.perf_counter() - t)))


def pool_bytes(cfg) -> dict:
    """Array sizes of the pools and of one host batch (bytes)."""
    side = cfg.raw_size ** 2
    vendor = cfg.num_vendor_raw * 28 * side * 2
    return dict(normalized=cfg.num_raw * side * 4, tissue=cfg.num_raw * side, vendor=vendor,
                batch=cfg.batch_size * 2 * side * 5)


def run_child(argv) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *argv], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", nargs="+", default=["4:2", "32:2", "4:4"],
                   help="num_raw:num_vendor_raw pairs to measure")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--cache", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "stream_memory.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="none")
    p.add_argument("--phase", default="build")
    p.add_argument("--num-raw", type=int, default=8)
    p.add_argument("--num-vendor-raw", type=int, default=2)
    args = p.parse_args()
    if args.child:
        return child(args)

    rows = []
    common = ["--batch", str(args.batch), "--steps", str(args.steps)]
    rows.append(run_child(["--mode", "none", *common]))
    for point in args.points:
        n, v = (int(x) for x in point.split(":"))
        for mode in ("memory", "stream"):
            cache = tempfile.mkdtemp(prefix="stream_memory_", dir=args.cache)
            try:
                for phase in ("build", "feed"):
                    rows.append(run_child(["--mode", mode, "--phase", phase, "--cache", cache,
                                           "--num-raw", str(n), "--num-vendor-raw", str(v),
                                           *common]))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                shutil.rmtree(cache)
    base = rows[0]["peak_rss"]
    print(f"\nbaseline (imports + compiled normalisation): {base / MiB:.0f} MiB")
    print(f"{'mode':7s} {'phase':6s} {'num_raw':>7s} {'vendor':>6s} {'batch':>5s} "
          f"{'peak RSS MiB':>12s} {'over base':>9s} {'pools MiB':>9s} {'s':>6s}")
    for r in rows[1:]:
        sizes = pool_bytes(_config(r["num_raw"], r["num_vendor_raw"], r["batch"]))
        pools = sizes["normalized"] + sizes["tissue"] + sizes["vendor"]
        print(f"{r['mode']:7s} {r['phase']:6s} {r['num_raw']:7d} {r['num_vendor_raw']:6d} "
              f"{r['batch']:5d} {r['peak_rss'] / MiB:12.0f} {(r['peak_rss'] - base) / MiB:9.0f} "
              f"{pools / MiB:9.0f} {r['seconds']:6.1f}")
    paper = pool_bytes(_config(512, 32, 200))
    result = dict(rows=rows, baseline_rss=base, paper_pool_bytes=paper,
                  command=" ".join([os.path.basename(sys.executable), *sys.argv]))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"paper (512 phantoms, 32 vendor, batch 200): pools {sum(v for k, v in paper.items() if k != 'batch') / MiB:.0f} MiB, "
          f"one host batch {paper['batch'] / MiB:.0f} MiB; wrote {args.out}")


if __name__ == "__main__":
    main()
