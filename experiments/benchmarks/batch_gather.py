"""Host-side cost of a StyleX training batch: ``PhantomSource.local_batch`` for the
``default`` config (256 pairs of 256 px images, 168 MB per batch) at 25 % and 50 %
vendor pairs, against the gather it replaced (fancy-index all rows from the normalised
pool, then overwrite the vendor rows), and against what the trainer now does: the host
draws only the rows' indices (``local_indices``) and the jitted ``gather_batch`` builds
the images from pools kept on the accelerator (here the CPU device, so its time is
what the gather costs there, not what it costs a GPU), in one run.

On the H100 the ``default`` step takes ~100 ms; a vendor-heavy run slowed from 10 to
7 steps/s, so this is the part of the step the host must keep below that.

Command (2-core CPU, ~1 minute once the pool is cached; building it takes ~1 minute):
    python experiments/benchmarks/batch_gather.py --cache-dir /tmp/default_pool_cache
Writes experiments/results/batch_gather.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from stylejax.train import simsiam_configs as configs
from stylejax.train.simsiam_data import PhantomSource, gather_batch

HERE = os.path.dirname(os.path.abspath(__file__))


def gather_then_overwrite(source, idx, which):
    """The previous images gather: every row from the normalised pool, then vendor rows."""
    out = source.normalized[idx[which]]
    sel = np.nonzero(idx["vendor"])[0]
    out[sel] = source.vendor[idx[which][sel], idx["style"][sel]].astype(np.float32)
    return out


def median_ms(fn, steps):
    times = []
    for step in steps:
        t0 = time.perf_counter()
        fn(step)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", default=None, help="phantom pool cache directory")
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "..", "results", "batch_gather.json"))
    args = p.parse_args(argv)
    cfg = configs.default()
    source = PhantomSource(cfg, cache_dir=args.cache_dir)
    steps = range(args.batches)
    rows = {}
    for fraction in (0.25, 0.5):
        source.cfg = dataclasses.replace(cfg, vendor_fraction=fraction)
        idx = {s: source.indices(s) for s in steps}
        for s in steps:  # same images either way
            b = source.local_batch(s)
            assert np.array_equal(b["a"], gather_then_overwrite(source, idx[s], "a"))

        def now(s):
            return source.local_batch(s)

        def before(s):
            return (gather_then_overwrite(source, idx[s], "a"),
                    gather_then_overwrite(source, idx[s], "b"),
                    source.tissue[idx[s]["a"]], source.tissue[idx[s]["b"]])

        pools = {k: jax.device_put(v) for k, v in source.pools().items()}
        gather = jax.jit(gather_batch)
        for s in steps:
            got = gather(pools, source.local_indices(s))["a"]
            assert np.array_equal(np.asarray(got), source.local_batch(s)["a"])

        def on_device(s):
            jax.block_until_ready(gather(pools, source.local_indices(s)))

        rows[fraction] = {"local_batch_ms": median_ms(now, steps),
                          "gather_then_overwrite_ms": median_ms(before, steps),
                          "host_indices_ms": median_ms(source.local_indices, steps),
                          "device_gather_cpu_ms": median_ms(on_device, steps)}
        r = rows[fraction]
        print(f"vendor pairs {fraction:.0%}: local_batch {r['local_batch_ms']:.1f} ms,"
              f" gather-then-overwrite {r['gather_then_overwrite_ms']:.1f} ms; trainer now: "
              f"host indices {r['host_indices_ms']:.2f} ms + jitted gather on the CPU device "
              f"{r['device_gather_cpu_ms']:.1f} ms "
              f"(median of {args.batches} batches of {cfg.batch_size} pairs)")
    out = {"config": cfg.name, "batch": cfg.batch_size, "raw_size": cfg.raw_size,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "command": "python experiments/benchmarks/batch_gather.py", "results": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
