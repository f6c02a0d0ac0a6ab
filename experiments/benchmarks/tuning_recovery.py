"""Parameter recovery by gradient tuning, against black-box optimisers on the same objective.

Task: a hidden LAP style (w, l, h drawn uniformly in [0.5, 9.5] with one decimal:
odd and fractional values that the StyleX training grid of even values never had)
is applied to reference phantoms; the tuner sees only those references and a raw
phantom of other content, and minimises the StyleX distance ``1 - cos`` between
the mean embeddings. Success: every recovered parameter within 0.5 of the truth.

Methods on the same objective (same encoder, raw image, references):
  * adam      - stylejax.tune.fit: vmapped multi-start Adam through LAP and the encoder
  * nelder-mead (scipy, bounded, restarts from random points while budget is left)
  * cma-es    (the ``cma`` package, bounded, population evaluated as one batch)
  * random    (uniform random search) and grid (spacing 2: the 216 training styles;
    spacing 1: 1331 points), both batched.
One evaluation = the pipeline and the encoder on the raw image(s) for one parameter
vector; for adam it includes the backward pass (its wall time shows the cost).

For each method and target the incumbent (lowest distance so far) is tracked
against evaluations and wall time; "evaluations to reach success level L" is the
smallest budget at which a fraction L of the targets is (and stays) solved.

Second part: the extended LAP (w + one gain per pyramid band, 7 parameters on
256 px images) with random per-band targets. Band gains are not all separately
identifiable from style, so success there is "reached a distance no larger than
the true parameters' own distance" (the match is as good as the truth).

Speed-ups that change no result: the raw image is shared by all targets (only the
references change), so random search and grid evaluate their fixed point sets once
and reuse the embeddings (their wall time is counted as evaluations x the measured
per-evaluation time of a batched forward pass). The encoder sees 128 px crops of
the 256 px styled phantoms: exactly the views the shipped StyleX model was trained
on (``train.configs.default``: 128 px exact crops of 256 px phantoms), at a quarter
of the cost of its 256 px whole-image default.

Command (about 15 minutes on 2 CPU cores with the shipped model):
    python experiments/benchmarks/tuning_recovery.py
    python experiments/benchmarks/tuning_recovery.py --quick   # smoke run, ~1 minute
Writes experiments/benchmarks/results/tuning_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SUCCESS_TOL = 0.5


# ----------------------------------------------------------------------------
# Set-up
# ----------------------------------------------------------------------------

def model_at(model, crop: int):
    """The encoder, showing it ``crop`` px images without resampling when it is a
    StyleX model (its ``embed_size`` set to the crop)."""
    if hasattr(model, "flat_weights") and getattr(model, "embed_size", crop) != crop:
        from stylejax import stylex
        return stylex.StyleX.from_weights(model.flat_weights(), width=model.width,
                                          dim=model.dim, embed_size=crop, info=model.info)
    return model


def cropped(pipeline, size: int, crop: int):
    """``pipeline`` on the full image, then the central ``crop`` x ``crop`` window
    (the window sits inside the breast of the chest-wall-left phantoms used here)."""
    from stylejax import tune
    r0 = (size - crop) // 2
    c0 = size // 8

    def apply(x, params):
        return pipeline.apply(x, params)[..., r0:r0 + crop, c0:c0 + crop]

    return tune.Pipeline(name=f"{pipeline.name}_crop{crop}", apply=apply, init=pipeline.init,
                         low=pipeline.low, high=pipeline.high)


def phantom_raw(seed: int, size: int, view: str = "cc"):
    from stylejax import phantom
    return phantom.mammogram(seed, size=(size, size), view=view, chest_wall="left").raw


# ----------------------------------------------------------------------------
# Incumbent traces
# ----------------------------------------------------------------------------

class Trace:
    """Incumbent (best so far) against evaluations and seconds."""

    def __init__(self):
        self.evals, self.seconds, self.params, self.dist = [], [], [], []
        self.best = math.inf
        self.count = 0

    def add(self, points, dists, seconds):
        """Record a batch of evaluated points that finished at ``seconds``."""
        for p, d in zip(np.atleast_2d(points), np.atleast_1d(dists)):
            self.count += 1
            if d < self.best:
                self.best = float(d)
                self.evals.append(self.count)
                self.seconds.append(float(seconds))
                self.params.append(np.asarray(p, np.float64))
                self.dist.append(float(d))

    def final(self):
        return self.params[-1], self.dist[-1]

    def first_solved(self, solved):
        """(evals, seconds) from which the incumbent stays solved; None if never."""
        flags = [solved(p, d) for p, d in zip(self.params, self.dist)]
        if not flags or not flags[-1]:
            return None
        k = len(flags) - 1
        while k > 0 and flags[k - 1]:
            k -= 1
        return self.evals[k], self.seconds[k]


# ----------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------

def run_adam(objective, steps, starts, seed):
    from stylejax import tune
    res = tune.fit(None, None, objective=objective, steps=steps, starts=starts, seed=seed)
    trace = Trace()
    for t in range(res.steps):
        trace.add(res.trajectory[t], res.history[t], res.elapsed[t])
    return trace


def run_nelder_mead(objective, budget, seed, low, high):
    from scipy.optimize import minimize
    rng = np.random.default_rng(seed)
    trace, t0 = Trace(), time.perf_counter()
    n = objective.size

    def f(x):
        x = np.clip(x, low, high)
        d = objective(x, chunk=1)
        trace.add(x[None], [d], time.perf_counter() - t0)
        return d

    x0 = np.full(n, 5.0)
    while trace.count < budget:
        simplex = np.vstack([x0] + [np.clip(x0 + 2.5 * np.eye(n)[i], low, high) for i in range(n)])
        minimize(f, x0, method="Nelder-Mead", bounds=list(zip(low, high)),
                 options=dict(maxfev=budget - trace.count, xatol=0.02, fatol=1e-6,
                              initial_simplex=simplex))
        x0 = rng.uniform(low + 1, high - 1)
    return trace


def run_cma(objective, budget, seed, low, high):
    import cma
    trace, t0 = Trace(), time.perf_counter()
    n = objective.size
    es = cma.CMAEvolutionStrategy(np.full(n, 5.0), 2.5, {
        "bounds": [list(low), list(high)], "seed": seed + 1, "verbose": -9,
        "maxfevals": budget})
    pop = es.popsize
    while trace.count < budget:
        if es.stop():
            es = cma.CMAEvolutionStrategy(np.random.default_rng(seed + trace.count).uniform(
                low + 1, high - 1), 2.5, {"bounds": [list(low), list(high)], "verbose": -9,
                                          "seed": seed + trace.count + 2})
        xs = np.clip(np.asarray(es.ask()), low, high)
        d = objective(xs, chunk=pop)
        trace.add(xs, d, time.perf_counter() - t0)
        es.tell(list(xs), list(d))
    return trace


def run_cached(points, embeddings, target, seconds_per_eval):
    """Evaluate fixed points in order from cached mean embeddings."""
    from stylejax import tune
    d = np.asarray(tune.cosine_distance(embeddings, target), np.float64)
    trace = Trace()
    for i in range(len(points)):
        trace.add(points[i:i + 1], d[i:i + 1], (i + 1) * seconds_per_eval)
    return trace


# ----------------------------------------------------------------------------
# One experiment (a pipeline, its targets, all methods)
# ----------------------------------------------------------------------------

def experiment(name, pipeline, model, size, truths, cfg, solved_kind, log):
    from stylejax import tune
    low, high = (np.asarray(b, np.float64) for b in pipeline.bounds())
    n = len(low)
    raw = phantom_raw(cfg["raw_seed"], size)
    rng = np.random.default_rng(cfg["seed"] + 17)

    def refs_for(i, truth):
        params = pipeline.unflatten(truth)
        return [tune.apply(phantom_raw(100 + 10 * i + j, size, ("cc", "mlo")[j % 2]), params,
                           pipeline)
                for j in range(cfg["references"])]

    # Warm-up: compile every program once, then time a batched forward evaluation.
    warm = tune.Objective(raw, refs_for(0, truths[0]), model=model, pipeline=pipeline)
    tune.fit(None, None, objective=warm, steps=2, starts=cfg["starts"])
    for chunk in {1, cfg["batch"]}:
        warm(np.full((chunk, n), 5.0), chunk=chunk)
    t0 = time.perf_counter()
    warm(np.full((cfg["batch"], n), 4.0), chunk=cfg["batch"])
    fwd = (time.perf_counter() - t0) / cfg["batch"]

    cached = {"random": rng.uniform(low, high, (cfg["random"], n)).astype(np.float32)}
    for spacing in cfg["grids"]:
        values = np.arange(0.0, 10.0 + 1e-6, spacing)
        cached[f"grid{spacing:g}"] = np.stack(np.meshgrid(*[values] * n, indexing="ij"),
                                              -1).reshape(-1, n).astype(np.float32)
    embeddings = {k: warm.mean_embeddings(v, chunk=cfg["batch"]) for k, v in cached.items()}
    log(f"[{name}] forward evaluation {fwd * 1e3:.1f} ms (batched); cached "
        f"{sum(len(v) for v in cached.values())} points")

    rows = []
    for i, truth in enumerate(truths):
        objective = tune.Objective(raw, refs_for(i, truth), model=model, pipeline=pipeline)
        d_truth = float(objective(np.stack([truth] * cfg["batch"]), chunk=cfg["batch"])[0])
        traces = {"adam": run_adam(objective, cfg["steps"], cfg["starts"], seed=i),
                  "nelder-mead": run_nelder_mead(objective, cfg["budget"], i, low, high),
                  "cma-es": run_cma(objective, cfg["budget"], i, low, high)}
        for key, points in cached.items():
            traces[key] = run_cached(points, embeddings[key], objective.target, fwd)

        def solved(p, d):
            if solved_kind == "params":
                return bool(np.max(np.abs(p - truth)) <= SUCCESS_TOL)
            return d <= d_truth + 1e-6

        row = {"truth": truth.tolist(), "distance_at_truth": d_truth}
        for key, tr in traces.items():
            p, d = tr.final()
            hit = tr.first_solved(solved)
            row[key] = {"params": p.round(3).tolist(), "distance": d,
                        "abs_error": np.abs(p - truth).round(3).tolist(),
                        "solved": hit is not None, "evaluations": tr.count,
                        "evals_to_solve": hit[0] if hit else None,
                        "seconds_to_solve": hit[1] if hit else None}
        rows.append(row)
        log(f"[{name}] target {i + 1}/{len(truths)} truth {np.round(truth, 1).tolist()} "
            + " ".join(f"{k}:{'ok' if row[k]['solved'] else '--'}" for k in traces))
    return summarise(rows, list(traces), n, fwd)


def summarise(rows, methods, n, fwd):
    out = {"per_target": rows, "forward_seconds_per_evaluation": fwd, "methods": {}}
    total = len(rows)
    adam_rate = np.mean([r["adam"]["solved"] for r in rows])
    for m in methods:
        errors = np.array([r[m]["abs_error"] for r in rows])
        evals = sorted(r[m]["evals_to_solve"] for r in rows if r[m]["solved"])
        secs = sorted(r[m]["seconds_to_solve"] for r in rows if r[m]["solved"])
        rate = len(evals) / total

        def at_level(values, level):
            k = math.ceil(level * total)
            return values[k - 1] if 0 < k <= len(values) else None

        out["methods"][m] = {
            "success_rate": rate, "mae_per_parameter": errors.mean(0).round(3).tolist(),
            "mae": float(errors.mean()), "budget_evaluations": int(np.max([r[m]["evaluations"]
                                                                         for r in rows])),
            "evals_to_reach_adam_success": at_level(evals, adam_rate),
            "seconds_to_reach_adam_success": at_level(secs, adam_rate),
            "evals_to_reach_50pct": at_level(evals, 0.5),
            "seconds_to_reach_50pct": at_level(secs, 0.5)}
    ref = out["methods"]["adam"]
    for m, s in out["methods"].items():
        for key in ("evals", "seconds"):
            mine, base = s[f"{key}_to_reach_adam_success"], ref[f"{key}_to_reach_adam_success"]
            s[f"{key}_ratio_vs_adam"] = (mine / base) if mine and base else None
    return out


def print_table(title, summary, names):
    print(f"\n{title}")
    print(f"{'method':>12} {'success':>8} {'MAE ' + '/'.join(names):>22} "
          f"{'evals@adam':>10} {'s@adam':>8} {'x evals':>8} {'x time':>7}")
    for m, s in summary["methods"].items():
        mae = "/".join(f"{v:.2f}" for v in s["mae_per_parameter"])[:22]
        e, t = s["evals_to_reach_adam_success"], s["seconds_to_reach_adam_success"]
        re, rt = s["evals_ratio_vs_adam"], s["seconds_ratio_vs_adam"]
        print(f"{m:>12} {s['success_rate']:8.0%} {mae:>22} "
              f"{e if e is not None else '>' + str(s['budget_evaluations']):>10} "
              f"{(f'{t:.1f}' if t is not None else 'n/a'):>8} "
              f"{(f'{re:.1f}' if re else 'n/a'):>8} {(f'{rt:.1f}' if rt else 'n/a'):>7}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--extended-targets", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--model", default=None, help="StyleX model directory (default shipped)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tuning_recovery.json"))
    args = parser.parse_args(argv)

    from stylejax import tune
    from stylejax.pipeline import pyramid

    cfg = dict(raw_seed=7, seed=0, references=2, starts=4, steps=80, budget=240, batch=16,
               random=1000, grids=(2.0, 1.0))
    ext_cfg = dict(cfg, steps=100, budget=600, random=1000, grids=(4.5,))
    if args.quick:
        args.targets, args.extended_targets, args.size, args.crop = 3, 2, 64, 32
        cfg.update(steps=6, budget=12, random=16, grids=(5.0,), starts=2, batch=4)
        ext_cfg.update(steps=6, budget=12, random=16, grids=(10.0,), starts=2, batch=4)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    base = tune.resolve_model(args.model)
    model = model_at(base, args.crop)
    t_start = time.perf_counter()
    rng = np.random.default_rng(2024)
    truths = np.round(rng.uniform(0.5, 9.5, (args.targets, 3)), 1).astype(np.float32)
    lap_pipe = cropped(tune.LAP, args.size, args.crop)
    lap_summary = experiment("lap", lap_pipe, model, args.size, truths, cfg, "params", log)
    print_table(f"LAP (3 parameters), {args.targets} targets, success = |error| <= 0.5 on "
                f"every parameter", lap_summary, ["w", "l", "h"])

    levels = pyramid.default_levels((args.size, args.size))
    ext = cropped(tune.extended_lap(levels), args.size, args.crop)
    ext_truths = np.round(rng.uniform(1.0, 9.0, (args.extended_targets, 1 + levels)),
                          1).astype(np.float32)
    ext_summary = experiment("extended", ext, model, args.size, ext_truths, ext_cfg,
                             "distance", log)
    print_table(f"Extended LAP ({1 + levels} parameters), {args.extended_targets} targets, "
                f"success = distance <= distance at the truth", ext_summary,
                ext.names())

    info = getattr(base, "info", {})
    out = {"description": __doc__.split("\n\n")[0], "quick": args.quick,
           "model": info if isinstance(info, dict) else str(info),
           "encoder": type(base).__name__, "size": args.size, "crop": args.crop,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores "
                      f"({platform.processor() or 'cpu'})",
           "config": {"lap": cfg, "extended": ext_cfg}, "lap": lap_summary,
           "extended": ext_summary, "seconds": time.perf_counter() - t_start}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    log(f"wrote {args.out} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
