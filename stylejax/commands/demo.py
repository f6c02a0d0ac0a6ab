"""``stylejax demo``: the main job on built-in data.

A hidden LAP style is drawn at random; reference images are made in that style
from phantoms whose content differs from the raw image being tuned; StyleX is the
loss that gradient descent through LAP minimises; the recovered parameters are
compared with the hidden ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXAMPLE = """example:
  stylejax demo                    # ~256 px phantoms, a few minutes on 2 CPU cores
  stylejax demo --quick --out /tmp/demo   # tiny settings (seconds), to check the install
  stylejax demo --seed 7 --json    # another hidden style; JSON summary on stdout

Writes OUT/comparison.png (before / after / hidden target / references),
OUT/trajectory.png (distance and parameters per step, truth dashed) and
OUT/result.json."""

#: (image side, references, starts, max steps, screened start points) for the full run
#: and for --quick (which only checks that everything runs: no screening, one start).
FULL = dict(size=256, references=3, starts=3, steps=120, screen=64)
QUICK = dict(size=64, references=1, starts=1, steps=3, screen=0)


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="tune LAP toward a hidden reference style on built-in phantoms",
        description="Draw a hidden LAP style, render reference images in it from other "
                    "phantoms (content never matches), tune LAP on a new raw phantom with "
                    "the StyleX distance as the loss, and compare recovered with true "
                    "parameters.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", metavar="DIR",
                        help="output directory (default demo_out)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny images, 3 steps, no start-point screening: checks that "
                             "everything runs (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hidden style and phantoms")
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="StyleX model or training run directory (default: shipped model)")
    parser.add_argument("--steps", type=int, default=None, help="override the maximum steps")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def hidden_style(seed: int):
    """The hidden target: each parameter uniform in [1, 9], one decimal (odd and
    fractional values, unlike the even training grid of StyleX)."""
    import numpy as np

    from stylejax.pipeline import lap

    values = np.round(np.random.default_rng(seed).uniform(1.0, 9.0, 3), 1)
    return lap.LAPParams(*map(float, values))


def make_task(seed: int, size: int, references: int):
    """Raw phantom to tune and reference images in the hidden style.

    Returns:
      ``(raw [H, W], references list of [H, W] in [0, 1], truth LAPParams)``;
      the references come from phantoms with other seeds (and alternate views).
    """
    import numpy as np

    from stylejax.data import phantom
    from stylejax.pipeline import lap

    truth = hidden_style(seed)
    base = 10_000 + 100 * seed
    raw = phantom.mammogram(base, size=(size, size), view="cc").raw
    refs = [np.asarray(lap.process(phantom.mammogram(base + 1 + i, size=(size, size),
                                                     view=("mlo", "cc")[i % 2]).raw, truth))
            for i in range(references)]
    return raw, refs, truth


def run(args) -> int:
    import numpy as np

    from stylejax import tune
    from stylejax.commands.tune import (check_options, check_output_folder, distances,
                                        save_figures, write_json)
    from stylejax.pipeline import lap

    check_options(args)
    check_output_folder(args.out)
    settings = dict(QUICK if args.quick else FULL)
    if args.steps is not None:
        settings["steps"] = args.steps
    model = tune.resolve_model(args.model)
    raw, refs, truth = make_task(args.seed, settings["size"], settings["references"])
    print(f"demo: hidden style drawn; {len(refs)} reference image(s) from other phantoms, "
          f"{settings['size']} px; tuning {settings['starts']} start(s) for up to "
          f"{settings['steps']} steps ...", file=sys.stderr)
    objective = tune.Objective(raw, refs, model=model)
    result = tune.fit(None, None, objective=objective, steps=settings["steps"],
                      starts=settings["starts"], screen=settings["screen"], seed=args.seed,
                      progress=True)
    true_flat = np.array([truth.w, truth.l, truth.h], np.float32)
    got = result.pipeline.to_dict(result.params)
    d_truth = float(distances(objective, true_flat, result.starts)[0])

    print(f"{'param':>6} {'true':>6} {'found':>6} {'error':>6}", file=sys.stderr)
    for name, t in zip(lap.PARAM_NAMES, true_flat):
        print(f"{name:>6} {t:6.2f} {got[name]:6.2f} {got[name] - t:+6.2f}", file=sys.stderr)
    print(f"StyleX distance to the references: start {result.initial_distance:.4f} -> tuned "
          f"{result.distance:.4f} (true parameters on this content: {d_truth:.4f}); "
          f"{result.steps} steps, {result.seconds:.1f} s", file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    comparison, trajectory = save_figures(result, objective, refs, args.out, truth=true_flat)
    summary = result.to_dict()
    errors = {k: got[k] - float(v) for k, v in zip(lap.PARAM_NAMES, true_flat)}
    summary.update(truth=truth.to_dict(), errors=errors, distance_at_truth=d_truth,
                   recovered=bool(max(abs(e) for e in errors.values()) <= 0.5),
                   quick=bool(args.quick), size=settings["size"], seed=args.seed,
                   outputs={"comparison": comparison, "trajectory": trajectory})
    write_json(os.path.join(args.out, "result.json"), summary)
    print(f"wrote {comparison}, {trajectory}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0
