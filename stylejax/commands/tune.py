"""``stylejax tune``: find the pipeline parameters that give raw images a reference style."""

from __future__ import annotations

import argparse
import json
import os
import sys

EXAMPLE = """example:
  stylejax phantoms -n 3 -o phantoms/                # raw images to try
  stylejax lap phantoms/phantom_000001_cc.tif --w 7 --l 3 --h 8 -o ref.png  # a "liked" style
  stylejax tune --raw phantoms/phantom_000000_cc.tif phantoms/phantom_000002_cc.tif \\
      --reference ref.png --out tuned/ --json
  stylejax tune --raw phantoms/phantom_000000_cc.tif --reference ref.png \\
      --pipeline extended-lap --out tuned_extended/

RAW files are linear "for processing" detector images (DICOM, TIFF, PNG or NPY,
values > 0). REF files are images in the wanted style, any content; 8- and 16-bit
files are mapped to [0, 1] over their bit depth, float files must already lie in
[0, 1]. Without --model the StyleX model shipped with stylejax is the loss.
Give it several images of each kind: the style of a few particular images reads
through the metric with some content noise (docs/tuning.md measures how many help).
References are embedded once; each raw image adds to every step.
--pipeline: "lap" (w, l, h), "extended-lap" (w and one gain per pyramid band,
band0 the finest; the number of bands follows the smallest raw image), a name
registered with stylejax.pipeline.registry.register, or MODULE:NAME to import
MODULE (which registers NAME) first. Parameters are reported by name in
result.json and --json output ("params", in the order of "parameter_names").
Writes OUT/tuned_<name>.png (16-bit; tuned_<k>_<name>.png when two raw files share
a name), OUT/comparison.png (before / after /
references), OUT/trajectory.png (distance and parameters per step) and
OUT/result.json."""


def register(subparsers):
    parser = subparsers.add_parser(
        "tune", help="tune LAP toward the style of reference images (StyleX as the loss)",
        description="Optimise the parameters of a differentiable pipeline (LAP's w, l, h by "
                    "default) with gradients so that the raw images take the style of the "
                    "reference images (content need not match), with the StyleX distance "
                    "as the loss.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", nargs="+", required=True, metavar="RAW",
                        help="raw detector image file(s)")
    parser.add_argument("--reference", nargs="+", required=True, metavar="REF",
                        help="reference image file(s) in the wanted style")
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="StyleX model or training run directory (default: shipped model)")
    parser.add_argument("--metric", choices=("stylex", "combined"), default="stylex",
                        help="the loss: the StyleX distance (default), or its mean with the "
                             "style-statistics distance, better on vendor styles StyleX never "
                             "saw (shipped model and head only; docs/stylex.md)")
    parser.add_argument("--pipeline", default="lap", metavar="NAME",
                        help="pipeline to tune: lap (default), extended-lap, a registered "
                             "name, or MODULE:NAME")
    parser.add_argument("--steps", type=int, default=150,
                        help="maximum L-BFGS evaluations per start or Adam steps (default 150)")
    parser.add_argument("--starts", type=int, default=4,
                        help="optimisations run side by side; the best is kept (default 4)")
    parser.add_argument("--screen", type=int, default=64, metavar="N",
                        help="quasi-random points evaluated forward-only to choose the starts "
                             "(default 64; 0 starts from the neutral point and a Latin "
                             "hypercube)")
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                        help="L-BFGS-B (default; converges in tens of evaluations) or Adam")
    parser.add_argument("--lr", type=float, default=0.1,
                        help="peak Adam learning rate (default 0.1; Adam only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start points")
    parser.add_argument("--out", default="tune_out", metavar="DIR",
                        help="output directory (default tune_out)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the result on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def resolve_pipeline_name(name: str) -> str:
    """Check a ``--pipeline`` value and return the registered name.

    ``MODULE:NAME`` imports ``MODULE`` first (it is expected to register ``NAME``).

    Raises:
      ValueError: an unknown name (listing the registered ones) or a module that
        cannot be imported.
    """
    import importlib

    from stylejax.pipeline import registry

    if ":" in name:
        module, name = name.rsplit(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"--pipeline: cannot import module {module!r}: {err}") from err
    if name not in registry.names():
        raise ValueError(f"--pipeline: unknown pipeline {name!r}; registered: "
                         f"{', '.join(registry.names())}")
    return name


def read_inputs(raw_paths, reference_paths, model):
    """Read and validate the files, naming a bad one in the error.

    Returns:
      ``(raws, references)``: lists of float32 ``[H, W]`` arrays.
    """
    from stylejax import tune
    from stylejax.data import io

    size = tune.min_image_size(model)
    raws = [io.read_image(p) for p in raw_paths]
    refs = [io.read_image(p, normalize=True) for p in reference_paths]
    tune.image_list(raws, "raw", min_size=size, raw=True,
                    labels=[f"raw image {p}" for p in raw_paths])
    tune.image_list(refs, "reference", min_size=size, raw=False,
                    labels=[f"reference image {p}" for p in reference_paths])
    return raws, refs


def distances(objective, points, batch: int):
    """Distances of flat parameters ``points [K, P]``, evaluated ``batch`` rows at a
    time with the objective's value-and-gradient program (the one a fit with
    ``starts=batch`` compiled, so no new compilation; the last batch is padded).

    Returns:
      ``[K]`` float64 numpy array.
    """
    import numpy as np

    points = np.atleast_2d(np.asarray(points, np.float32))
    out = []
    for start in range(0, len(points), batch):
        block = points[start:start + batch]
        padded = np.concatenate([block, np.repeat(block[-1:], batch - len(block), axis=0)])
        out.append(np.asarray(objective.values_and_grads(padded)[0], np.float64)[:len(block)])
    return np.concatenate(out)


def save_figures(result, objective, references, out_dir, *, truth=None, before=None):
    """Write ``comparison.png`` and ``trajectory.png`` to ``out_dir``.

    Args:
      result: a :class:`stylejax.tune.TuneResult`.
      objective: the :class:`stylejax.tune.Objective` it was fitted on.
      references: list of ``[H, W]`` reference images in [0, 1].
      out_dir: output directory (exists).
      truth: optional true parameters (flat, ``Pipeline.names`` order): a panel
        of the raw in that style, and dashed lines in the trajectory.
      before: parameters for the "before" column (default the pipeline's neutral ones).
    Returns:
      ``(comparison_path, trajectory_path)``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pipe = result.pipeline
    before = pipe.init if before is None else before
    start = objective.images(before)[0][0]
    after = objective.images(result.params)[0][0]
    refs = list(references)[:3]
    d_before = distances(objective, pipe.flatten(before), result.starts)[0]
    panels = [(start, f"before ({_fmt(pipe.to_dict(before))})\nStyleX distance {d_before:.4f}"),
              (after, f"after ({_fmt(pipe.to_dict(result.params))})\n"
                      f"StyleX distance {result.distance:.4f}")]
    if truth is not None:
        target = objective.images(pipe.unflatten(np.ravel(truth)))[0][0]
        panels.append((target, f"hidden target ({_fmt(dict(zip(pipe.names(), np.ravel(truth))))})"
                               f"\nnot seen by the tuner"))
    panels += [(r, f"reference {i + 1} (other content)") for i, r in enumerate(refs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.7))
    for ax, (image, title) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    comparison = os.path.join(out_dir, "comparison.png")
    fig.savefig(comparison, dpi=110)
    plt.close(fig)

    fig, (ax_d, ax_p) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(result.steps)
    for k in range(result.starts):
        best = k == result.best_start
        ax_d.plot(steps, result.history[:, k], lw=2 if best else 0.8, alpha=1 if best else 0.5,
                  label=f"start {k}" + (" (best)" if best else ""))
    ax_d.set_yscale("log")
    xlabel = "round of evaluations" if result.optimizer == "lbfgs" else "Adam step"
    ax_d.set_xlabel(xlabel)
    ax_d.set_ylabel("StyleX distance")
    ax_d.legend(fontsize=7)
    names = pipe.names()
    path = result.trajectory[:, result.best_start]
    for i, name in enumerate(names):
        line, = ax_p.plot(steps, path[:, i], label=name)
        if truth is not None:
            ax_p.axhline(float(np.ravel(truth)[i]), ls="--", lw=0.8, color=line.get_color())
    lo, hi = pipe.bounds()
    ax_p.set_ylim(float(lo.min()) - 0.3, float(hi.max()) + 0.3)
    ax_p.set_xlabel(xlabel)
    ax_p.set_ylabel("parameter (best start)" + ("; dashed: truth" if truth is not None else ""))
    ax_p.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    trajectory = os.path.join(out_dir, "trajectory.png")
    fig.savefig(trajectory, dpi=110)
    plt.close(fig)
    return comparison, trajectory


def check_options(args):
    """ValueErrors naming the option, before any work: counts, a finite learning
    rate, a non-negative seed."""
    import math
    for name in ("steps", "starts"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1 (got {value})")
    if getattr(args, "screen", 0) < 0:
        raise ValueError(f"--screen must be >= 0 (got {args.screen})")
    lr = getattr(args, "lr", None)
    if lr is not None and not 0 < lr < math.inf:
        raise ValueError(f"--lr must be a finite number > 0 (got {lr})")
    if getattr(args, "seed", 0) < 0:
        raise ValueError(f"--seed must be >= 0 (got {args.seed})")
    if getattr(args, "metric", "stylex") == "combined" and getattr(args, "model", None):
        raise ValueError("--metric combined uses the shipped StyleX model and its "
                         "style-statistics head; it cannot be given --model")


def check_output_folder(path: str, option: str = "--out"):
    """ValueError naming ``option`` unless folder ``path`` can be created or
    written (checked before any work)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path}: cannot create it, {parent} is a file, not a folder")
    target = path if os.path.isdir(path) else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: folder {target} is not writable")


def tuned_names(raw_paths) -> list[str]:
    """Output file names for the raw images: ``tuned_<stem>.png``, or
    ``tuned_<k>_<stem>.png`` (k = position) for all when two stems are equal."""
    from pathlib import Path
    stems = [Path(p).stem for p in raw_paths]
    if len(set(stems)) == len(stems):
        return [f"tuned_{s}.png" for s in stems]
    return [f"tuned_{k}_{s}.png" for k, s in enumerate(stems)]


def write_json(path: str, value):
    """Write JSON to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fmt(params: dict) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in params.items())


def run(args) -> int:
    from stylejax import tune
    from stylejax.data import io

    check_options(args)
    check_output_folder(args.out)
    names = tuned_names(args.raw)
    for name in names:
        io.check_output_path(os.path.join(args.out, name))
    pipeline = resolve_pipeline_name(args.pipeline)
    if args.metric == "combined":
        from stylejax.metrics import style_combination
        model = style_combination.load_pretrained()
    else:
        model = tune.resolve_model(args.model)
    raws, refs = read_inputs(args.raw, args.reference, model)
    objective = tune.Objective(raws, refs, model=model, pipeline=pipeline)
    result = tune.fit(None, None, objective=objective, steps=args.steps, starts=args.starts,
                      optimizer=args.optimizer, lr=args.lr, seed=args.seed,
                      screen=args.screen, progress=not args.quiet)
    os.makedirs(args.out, exist_ok=True)
    tuned = []
    for name, raw in zip(names, raws):
        image = tune.apply(raw, result.params, result.pipeline)
        tuned.append(str(io.write_image(os.path.join(args.out, name), image, bits=16)))
    comparison, trajectory = save_figures(result, objective, refs, args.out)
    summary = result.to_dict()
    summary.update(raw=list(args.raw), reference=list(args.reference),
                   model=args.model or "shipped", metric=args.metric,
                   outputs={"tuned": tuned, "comparison": comparison, "trajectory": trajectory})
    write_json(os.path.join(args.out, "result.json"), summary)
    print(f"tuned {result.pipeline.name} {_fmt(summary['params'])}: {getattr(model, 'name', 'style')} distance "
          f"{result.initial_distance:.4f} -> {result.distance:.4f} in {result.steps} steps "
          f"({result.seconds:.1f} s); wrote {os.path.join(args.out, '')}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0
