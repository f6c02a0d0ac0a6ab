"""Where the CPU SimSiam step's time goes: every ResNet-18 convolution shape, forward,
input gradient and weight gradient, XLA (jax.lax) against PyTorch (oneDNN), in one run.

``simsiam_speed.py`` times the whole step; this breaks the convolutions down. Shapes
are those of one view batch of the benchmark's default geometry (``--width`` 32,
``--size`` 128 px, ``--batch`` 32): the 7x7/2 stem, then per stage its first 3x3
convolution (stride 2 from stage 2 on) and the stage's other 3x3 convolutions at
stride 1 (3 of them per stage, 4 in stage 1, counted in the weighted total). 1x1
shortcut convolutions are left out (under 2 % of the FLOPs). The stem's input
gradient is not needed in training (the input is data) and is left out of the total.

Times are medians of ``--repeats`` calls after one warm-up, in milliseconds; both
frameworks use ``--threads`` threads (XLA: its default intra-op pool on all cores).

Command (2-core CPU, about 1 minute):
    python experiments/benchmarks/conv_profile.py
Writes experiments/results/conv_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ("forward", "input_grad", "weight_grad")


def layer_shapes(width: int, size: int):
    """``(name, c_in, c_out, kernel, stride, input side, count per forward pass)``."""
    shapes = [("stem 7x7/2", 1, width, 7, 2, size, 1)]
    side, c = size // 4, width
    for stage in range(4):
        c_out = width * 2 ** stage
        stride = 1 if stage == 0 else 2
        shapes.append((f"stage {stage + 1} first", c, c_out, 3, stride, side, 1))
        side //= stride
        shapes.append((f"stage {stage + 1} rest", c_out, c_out, 3, 1, side, 3))
        c = c_out
    return shapes


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def jax_times(shape, batch: int, repeats: int) -> dict:
    import jax
    _, c_in, c_out, k, s, side, _ = shape
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.standard_normal((batch, side, side, c_in), np.float32))
    w = jax.numpy.asarray(rng.standard_normal((k, k, c_in, c_out), np.float32) * 0.1)
    pad = [(k // 2, k // 2)] * 2

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (s, s), pad,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    g = jax.numpy.ones_like(conv(x, w))
    fns = {"forward": jax.jit(conv),
           "input_grad": jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]),
           "weight_grad": jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])}
    args = {"forward": (x, w), "input_grad": (x, w, g), "weight_grad": (x, w, g)}
    return {p: median_ms(lambda p=p: jax.block_until_ready(fns[p](*args[p])), repeats)
            for p in PARTS}


def torch_times(shape, batch: int, repeats: int) -> dict:
    import torch
    _, c_in, c_out, k, s, side, _ = shape
    x = torch.randn(batch, c_in, side, side)
    w = torch.randn(c_out, c_in, k, k) * 0.1
    p = k // 2
    g = torch.ones_like(torch.nn.functional.conv2d(x, w, stride=s, padding=p))
    fns = {"forward": lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p),
           "input_grad": lambda: torch.nn.grad.conv2d_input(x.shape, w, g, stride=s, padding=p),
           "weight_grad": lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, stride=s,
                                                              padding=p)}
    with torch.no_grad():
        return {part: median_ms(fns[part], repeats) for part in PARTS}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "results", "conv_profile.json"))
    args = ap.parse_args(argv)
    import jax
    import torch
    torch.set_num_threads(args.threads)

    rows, totals = [], {f: {p: 0.0 for p in PARTS} for f in ("jax", "torch")}
    print(f"ResNet-18 width {args.width}, {args.size} px, batch {args.batch}, "
          f"{args.threads} threads; ms per call (JAX / PyTorch)")
    print(f"{'layer':16s} {'count':>5s}  " + "  ".join(f"{p:>17s}" for p in PARTS))
    for shape in layer_shapes(args.width, args.size):
        t = {"jax": jax_times(shape, args.batch, args.repeats),
             "torch": torch_times(shape, args.batch, args.repeats)}
        count = shape[-1]
        for f in t:
            for p in PARTS:
                if not (p == "input_grad" and shape[0].startswith("stem")):
                    totals[f][p] += count * t[f][p]
        rows.append(dict(layer=shape[0], c_in=shape[1], c_out=shape[2], kernel=shape[3],
                         stride=shape[4], input_side=shape[5], count=count, **t))
        print(f"{shape[0]:16s} {count:5d}  " + "  ".join(
            f"{t['jax'][p]:7.2f} / {t['torch'][p]:7.2f}" for p in PARTS), flush=True)
    print(f"{'weighted total':16s} {'':5s}  " + "  ".join(
        f"{totals['jax'][p]:7.1f} / {totals['torch'][p]:7.1f}" for p in PARTS))
    ratio = {p: totals["torch"][p] / totals["jax"][p] for p in PARTS}
    print("PyTorch time / JAX time: " + ", ".join(f"{p} {r:.2f}x" for p, r in ratio.items()))
    out = dict(benchmark="conv_profile", width=args.width, size=args.size, batch=args.batch,
               threads=args.threads, repeats=args.repeats, jax=jax.__version__,
               torch=torch.__version__,
               machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                            loadavg_at_end=os.getloadavg()),
               layers=rows, totals_ms=totals, torch_over_jax=ratio)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
