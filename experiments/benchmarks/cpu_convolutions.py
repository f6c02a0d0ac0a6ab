"""XLA's CPU convolutions on YNNPACK (its default) or Eigen (``stylejax._xla``), side by side.

jax 0.10's CPU backend puts convolutions into YNNPACK fusions that run on one thread
each; ``stylejax._xla.cpu_convolution_options()`` sends them to XLA's Eigen kernels,
which split every convolution over the thread pool. This times, in one process and
interleaved round by round, the same jitted programs compiled both ways:

* the tuning objective's value and gradient (LAP on ``R`` raw phantoms, the shipped
  StyleX model, cosine distance to a reference embedding; ``S`` candidates), what
  ``stylejax tune`` / ``tune.fit`` evaluate at every step;
* the StyleX embedding alone (forward pass).

(MUNIT inference and training and the SimSiam step are timed by ``munit_speed.py``
and ``simsiam_speed.py --variants baseline,eigenconv``.)

Command (2-core CPU, about 2 minutes):
    python experiments/benchmarks/cpu_convolutions.py
Writes experiments/results/cpu_convolutions.json.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def interleaved(fns: dict, args, rounds: int) -> dict:
    """Median seconds per call of each function, timed alternately ``rounds`` times
    (after one compiling call each)."""
    import jax

    for fn in fns.values():
        jax.block_until_ready(fn(*args))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--raws", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--candidates", type=int, default=4,
                        help="S, parameter vectors evaluated together (tune.fit's starts)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results",
                                                      "cpu_convolutions.json"))
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from stylejax import _xla, phantom, stylex, tune
    from stylejax.evaluation.bench import log, machine, write_json
    from stylejax.pipeline.lap import LAPParams
    from stylejax.tune import objective as obj

    options = _xla.cpu_convolution_options()
    if not options:
        raise SystemExit(f"no CPU convolution options on backend {jax.default_backend()!r}")
    model = stylex.load_pretrained()
    size = (args.size, args.size)
    refs = [tune.apply(phantom.mammogram(60_000 + i, size=size).raw, LAPParams(7.0, 3.0, 8.0))
            for i in range(2)]
    rows = []
    for r in args.raws:
        raws = [phantom.mammogram(50_000 + i, size=size).raw for i in range(r)]
        objective = tune.Objective(raws, refs, model=model)
        p = jnp.tile(jnp.asarray([[0.4, 0.6, 0.5]], jnp.float32), (args.candidates, 1))
        fns = {name: jax.jit(obj._values_and_grads, static_argnums=(0, 1), **kw)
               for name, kw in (("ynnpack", {}), ("eigen", dict(compiler_options=options)))}
        t = interleaved({k: (lambda f: lambda *a: f(*objective.arguments, *a))(f)
                         for k, f in fns.items()}, (p,), args.rounds)
        rows.append({"program": "tuning value and gradient", "raws": r,
                     "candidates": args.candidates, "size": args.size,
                     "seconds": t, "speedup": t["ynnpack"] / t["eigen"]})
        log(f"value+grad, {r} raws x {args.candidates} candidates, {args.size} px: "
            f"ynnpack {t['ynnpack']:.3f} s, eigen {t['eigen']:.3f} s "
            f"({rows[-1]['speedup']:.2f}x)")
    images = jnp.asarray(np.random.default_rng(0).uniform(0.1, 0.9, (16,) + size), jnp.float32)
    fns = {name: jax.jit(lambda m, x: m.embed(x), **kw)
           for name, kw in (("ynnpack", {}), ("eigen", dict(compiler_options=options)))}
    t = interleaved(fns, (model, images), args.rounds)
    rows.append({"program": "StyleX embedding", "images": 16, "size": args.size, "seconds": t,
                 "speedup": t["ynnpack"] / t["eigen"]})
    log(f"StyleX embedding, 16 images: ynnpack {t['ynnpack']:.3f} s, eigen {t['eigen']:.3f} s "
        f"({rows[-1]['speedup']:.2f}x)")
    write_json(args.out, {"benchmark": "cpu_convolutions", "options": options,
                          "rounds": args.rounds, "rows": rows, "machine": machine()})
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
