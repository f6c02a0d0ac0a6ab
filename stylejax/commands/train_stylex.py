"""``stylejax train-stylex``: train (or resume) a StyleX encoder with SimSiam."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  stylejax train-stylex --config smoke --workdir /tmp/stylex_smoke
  stylejax train-stylex --config default --workdir /tmp/stylex_default \\
      --export stylejax/assets/stylex_default
  stylejax train-stylex --config my_config.py --workdir runs/a --steps 2000

Named configs: smoke, cpu, default, vendor, paper, pod (see stylejax/train/configs.py);
a .py file must define get_config() returning a stylejax.train.configs.Config.
Re-running the same command resumes from the last checkpoint in --workdir.
"""


def register(subparsers):
    p = subparsers.add_parser(
        "train-stylex", help="train the StyleX style encoder (SimSiam) on synthetic data",
        description="Train the StyleX style encoder with SimSiam on positive pairs that "
                    "share a style (LAP and vendor styles of synthetic raw mammograms). "
                    "Data parallel over all devices; checkpoints, resumes automatically, "
                    "writes metrics.jsonl and loss.png in the workdir.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="NAME_OR_FILE",
                   help="smoke | cpu | default | vendor | paper | pod, or a .py file with get_config()")
    p.add_argument("--workdir", required=True, metavar="DIR",
                   help="run directory (checkpoints, metrics); resumed when it exists")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="total training steps (overrides the config)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="after training, fit the style projection (about a minute on a CPU) "
                        "and save the model (float16) to DIR for stylex.load")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from stylejax.cli import StylejaxError
    from stylejax.train import configs, trainer

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1 (got {args.steps})")
    cfg = configs.get(args.config)
    try:
        result = trainer.train(cfg, args.workdir, steps=args.steps, progress=not args.no_progress)
    except trainer.TrainingDiverged as err:
        raise StylejaxError(str(err)) from None
    summary = dict(config=cfg.name, workdir=args.workdir, step=result.step, **result.last_metrics)
    import jax
    if args.export and jax.process_index() == 0:
        from stylejax.metrics import style_projection, stylex
        model = stylex.from_run(cfg, result.graphdef, result.state, result.step)
        model = style_projection.fit(model, progress=not args.no_progress)
        model.save(args.export, dtype="float16")
        summary["export"] = args.export
    print(json.dumps(summary), file=sys.stderr)
    return 0
