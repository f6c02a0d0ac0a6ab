"""How to drive the Gatys NST iterations: a jitted step from Python vs loops inside jit.

Run:  python experiments/benchmarks/nst_loop.py [--size 128] [--steps 4] [--repeats 2]

Same step (VGG19 to relu5_2, Gram style loss, Adam) driven four ways:
``python`` (``stylejax.methods.engine.make_step`` called ``steps`` times), ``fori``
(``lax.fori_loop`` over the step inside one jit), ``scan`` (``lax.scan``, rolled) and
``scan_unroll`` (``lax.scan(unroll=True)``, the library's ``driver="scan"``). Each driver
is compiled and run once, then timed ``repeats`` times (median); the drivers are
interleaved per repeat so a busy shared CPU affects them alike. Prints seconds per
iteration and the compile time; writes ``results/nst_loop.json``. The outcome decides
:func:`stylejax.methods.engine.default_driver` on this backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

from nst_speed import CONTENT_TAPS, STYLE_TAPS, make_images  # noqa: E402

from stylejax.methods import engine, gatys  # noqa: E402
from stylejax.models import features  # noqa: E402


def build(size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = features.vgg19_features("random")
    content, style = make_images(size)
    config = gatys.GatysConfig(content_taps=CONTENT_TAPS, style_taps=STYLE_TAPS)
    loss_fn, aux = gatys.prepare(content, style, extractor=net, config=config)
    return loss_fn, aux, content


def drivers(loss_fn, steps):
    """``{name: run(image, opt_state, aux) -> (image, opt_state)}`` doing ``steps`` steps."""
    raw, init = engine.raw_step(loss_fn)
    step, _ = engine.make_step(loss_fn)

    def python(image, state, aux):
        for _ in range(steps):
            image, state, value = step(image, state, aux)
        value.block_until_ready()
        return image, state

    @jax.jit
    def fori(image, state, aux):
        return jax.lax.fori_loop(0, steps, lambda i, c: raw(c[0], c[1], aux)[:2], (image, state))

    @jax.jit
    def scan(image, state, aux):
        body = lambda c, _: (raw(c[0], c[1], aux)[:2], None)
        return jax.lax.scan(body, (image, state), None, length=steps)[0]

    chunk = engine.make_chunk(loss_fn, chunk=steps)

    def scan_unroll(image, state, aux):
        image, state, values = chunk(image, state, aux)
        values.block_until_ready()
        return image, state

    return {"python": python, "fori": fori, "scan": scan, "scan_unroll": scan_unroll}, init


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    loss_fn, aux, content = build(args.size)
    runs, init = drivers(loss_fn, args.steps)

    def fresh():
        image = jnp.array(content)
        return image, engine.fresh_state(init, image)

    def run_once(fn):
        image, state = fresh()
        start = time.perf_counter()
        out = fn(image, state, aux)
        jax.block_until_ready(out)
        return time.perf_counter() - start

    first = {name: run_once(fn) for name, fn in runs.items()}  # compile + run
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(run_once(fn) / args.steps)
    per_step = {name: statistics.median(v) for name, v in times.items()}
    base = per_step["python"]
    print(f"NST step drivers, {args.size}x{args.size}, {args.steps} steps, "
          f"{jax.default_backend()} (load {os.getloadavg()[0]:.1f})")
    print(f"{'driver':12s} {'s/step':>8s} {'vs python':>10s} {'compile+run s':>14s}")
    for name in runs:
        print(f"{name:12s} {per_step[name]:8.3f} {per_step[name] / base:9.2f}x "
              f"{first[name]:14.1f}")
    result = {"benchmark": "nst_loop_drivers", "size": args.size, "steps": args.steps,
              "repeats": args.repeats, "backend": jax.default_backend(),
              "jax_version": jax.__version__, "cpu_count": os.cpu_count(),
              "loadavg_1min": os.getloadavg()[0], "seconds_per_step": per_step,
              "slowdown_vs_python": {k: v / base for k, v in per_step.items()},
              "first_call_seconds": first, "all_seconds_per_step": times}
    out = Path(__file__).parents[1] / "results" / "nst_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
