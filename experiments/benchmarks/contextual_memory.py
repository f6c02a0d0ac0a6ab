"""Contextual loss: time and peak memory, dense against tiled, at 64x64 and 128x128 positions.

Run:  python experiments/benchmarks/contextual_memory.py [--positions 64 128] [--channels 256]
          [--tile 256] [--max-run-gib 6]

For each map size (``P x P`` positions, ``C`` channels, batch 1) two jitted functions are
compiled for the dense form (one ``[N, N]`` block) and the tiled form (``--tile`` source
rows per block, streamed by ``lax.scan`` with a running max and remat): the loss alone and
the loss with its gradient in both inputs. XLA's buffer assignment gives the exact
temporaries (``compiled.memory_analysis().temp_size_in_bytes``); peak = arguments +
outputs + temporaries. A configuration is only *run* (timed, median of ``--repeats``)
when its peak fits in ``--max-run-gib``; the dense gradient at 128x128 positions needs
several GiB. The tiled value is checked against the dense one whenever both ran.
Writes results/contextual_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stylejax.losses.contextual import contextual_loss

GIB = 1024 ** 3


def measure(fn, args, repeats, max_run_gib):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    m = compiled.memory_analysis()
    peak = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    row = {"temp_bytes": int(m.temp_size_in_bytes), "peak_bytes": int(peak),
           "peak_mib": peak / 2 ** 20, "compile_s": compile_s, "seconds": None, "value": None}
    if peak / GIB <= max_run_gib:
        out = jax.block_until_ready(compiled(*args))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - t)
        row["seconds"] = statistics.median(times)
        row["value"] = float(jax.tree.leaves(out)[0].ravel()[0])
    return row


def bench(p, channels, tile, repeats, max_run_gib):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, p, p, channels)), jnp.float32)
    y = jnp.asarray(0.5 * np.asarray(x) + rng.standard_normal((1, p, p, channels)), jnp.float32)
    n = p * p
    rows = []
    for form, t in (("dense", n), ("tiled", tile)):
        loss = lambda a, b, t=t: contextual_loss(a, b, tile=t)
        grad = lambda a, b, t=t: jax.value_and_grad(lambda u, v: loss(u, v).sum(),
                                                    argnums=(0, 1))(a, b)
        for what, fn in (("loss", loss), ("loss+grad", grad)):
            r = measure(fn, (x, y), repeats, max_run_gib)
            r.update(positions=f"{p}x{p}", n=n, channels=channels, form=form, tile=t, what=what)
            rows.append(r)
            shown = f"{r['seconds']:.3f}s" if r["seconds"] is not None else "not run"
            print(f"  {p}x{p} {form:5s} {what:9s} peak {r['peak_mib']:9.1f} MiB  {shown}",
                  flush=True)
    for what in ("loss", "loss+grad"):
        d, t = (next(r for r in rows if r["form"] == f and r["what"] == what)
                for f in ("dense", "tiled"))
        if d["value"] is not None and t["value"] is not None:
            t["abs_diff_vs_dense"] = abs(d["value"] - t["value"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-run-gib", type=float, default=6.0)
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "results" /
                                             "contextual_memory.json"))
    args = parser.parse_args()
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
               "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
               "load_average_at_start": os.getloadavg()}
    rows = []
    for p in args.positions:
        rows += bench(p, args.channels, args.tile, args.repeats, args.max_run_gib)
    print(f"\ncontextual loss, batch 1, C={args.channels}, tile={args.tile}, "
          f"{machine['backend']} ({machine['cpus']} CPUs); peak from XLA buffer assignment")
    print(f"{'positions':>9} {'what':>9} {'dense MiB':>10} {'tiled MiB':>10} {'mem ratio':>9} "
          f"{'dense s':>8} {'tiled s':>8} {'time ratio':>10} {'|diff|':>8}")
    for p in args.positions:
        for what in ("loss", "loss+grad"):
            d, t = (next(r for r in rows if r["positions"] == f"{p}x{p}" and r["form"] == f
                         and r["what"] == what) for f in ("dense", "tiled"))
            ds = f"{d['seconds']:.3f}" if d["seconds"] is not None else "-"
            ts = f"{t['seconds']:.3f}" if t["seconds"] is not None else "-"
            tr = (f"{t['seconds'] / d['seconds']:.2f}x"
                  if d["seconds"] is not None and t["seconds"] is not None else "-")
            diff = f"{t['abs_diff_vs_dense']:.1e}" if "abs_diff_vs_dense" in t else "-"
            print(f"{p}x{p:<5} {what:>9} {d['peak_mib']:>10.1f} {t['peak_mib']:>10.1f} "
                  f"{d['peak_mib'] / t['peak_mib']:>8.1f}x {ds:>8} {ts:>8} {tr:>10} {diff:>8}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "channels": args.channels,
                                          "tile": args.tile, "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
