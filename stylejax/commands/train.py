"""``stylejax train TASK``: train (or resume) a registered training task.

``stylejax train-stylex`` is kept as an alias of ``stylejax train simsiam``.
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  stylejax train simsiam --config smoke --workdir /tmp/stylex_smoke
  stylejax train simsiam --config default --workdir /tmp/stylex_default \\
      --export stylejax/assets/stylex_default
  stylejax train simsiam --config my_config.py --workdir runs/a --steps 2000

tasks:
{tasks}

--config takes a named config of the task (simsiam: smoke, cpu, default, vendor,
paper, pod; see stylejax/train/simsiam_configs.py) or a .py file defining
get_config() that returns the task's config class (start from a named one with
dataclasses.replace). Re-running the same command resumes from the last checkpoint
in --workdir. The workdir holds config.json, checkpoints/, metrics.jsonl and loss.png.
"""

ALIAS_EPILOG = """\
examples:
  stylejax train-stylex --config smoke --workdir /tmp/stylex_smoke
  stylejax train-stylex --config default --workdir /tmp/stylex_default \\
      --export stylejax/assets/stylex_default

The same as 'stylejax train simsiam ...' (see 'stylejax train --help').
"""


def _add_options(p):
    p.add_argument("--config", required=True, metavar="NAME_OR_FILE",
                   help="a named config of the task (e.g. smoke, default) or a .py file "
                        "with get_config()")
    p.add_argument("--workdir", required=True, metavar="DIR",
                   help="run directory (checkpoints, metrics); resumed when it exists")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="total training steps (overrides the config)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="after training, write the task's shipped artefact to DIR (simsiam: "
                        "fit the style projection and save the model, float16, for "
                        "stylex.load)")
    p.add_argument("--data", default=None, metavar="PATH_OR_NAME",
                   help="train on a folder of raw DICOM/TIFF/PNG/NPY images or a data set "
                        "name (built once as an array_record TFDS data set, streamed "
                        "through Grain; simsiam) instead of synthetic phantoms")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def register(subparsers):
    from stylejax.train import registry

    tasks = "\n".join(f"  {name:<10} {summary}" for name, (_, _, summary)
                      in registry.TASKS.items())
    p = subparsers.add_parser(
        "train", help="train a network (a registered task, e.g. simsiam = StyleX)",
        description="Train a registered task on the generic loop: data parallel over all "
                    "devices, orbax checkpoints, automatic resume, NaN guard, "
                    "metrics.jsonl and loss.png in the workdir.",
        epilog=EPILOG.format(tasks=tasks), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", metavar="TASK", choices=registry.names(),
                   help=f"what to train: {', '.join(registry.names())}")
    _add_options(p)
    p.set_defaults(func=run)

    alias = subparsers.add_parser(
        "train-stylex", help="alias of 'train simsiam' (the StyleX style encoder)",
        description="Train the StyleX style encoder with SimSiam on positive pairs that "
                    "share a style (alias of 'stylejax train simsiam').",
        epilog=ALIAS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(alias)
    alias.set_defaults(func=run, task="simsiam")


def run(args) -> int:
    import jax

    from stylejax.cli import StylejaxError
    from stylejax.train import loop, registry
    from stylejax.train.config import load_config

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1 (got {args.steps})")
    task = registry.get(args.task)
    export = getattr(task, "export", None)
    if args.export and export is None:
        raise ValueError(f"task {task.name!r} has nothing to --export")
    if getattr(args, "data", None):
        if not hasattr(task, "with_data"):
            raise ValueError(f"task {task.name!r} does not take --data")
        task = task.with_data(args.data)
    cfg = load_config(task, args.config)
    if args.export:
        from stylejax.commands.tune import check_output_folder
        check_output_folder(args.export, "--export")  # before training, not after
    try:
        result = loop.run(task, cfg, args.workdir, steps=args.steps,
                          progress=not args.no_progress)
    except loop.TrainingDiverged as err:
        raise StylejaxError(str(err)) from None
    summary = dict(task=task.name, config=cfg.name, workdir=args.workdir, step=result.step,
                   **result.last_metrics)
    if args.export and jax.process_index() == 0:
        export(result.config, result.state, args.export, progress=not args.no_progress)
        summary["export"] = args.export
    print(json.dumps(summary), file=sys.stderr)
    return 0
