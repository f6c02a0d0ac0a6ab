"""``stylejax evaluate-stylex``: the StyleX paper's evaluation with numbers and baselines."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

EXAMPLE = """example:
  stylejax evaluate-stylex --out eval/                   # the shipped model, ~1-5 min on CPU
  stylejax evaluate-stylex --model runs/stylex --out eval/ --quick
  stylejax evaluate-stylex --encoder handcrafted --out eval_hc/ --quick

Writes fig3_<encoder>.png (1-D t-SNE boxplots of the LAP-w/l/h sweeps, 2-D t-SNE
of LAP-x and of the 32 vendor styles), fig4_<encoder>.png (distances from a
reference to matching and non-matching content) and metrics.json (Spearman,
silhouette, cross-content retrieval and content-invariance AUC for the encoder
and the two baselines), and prints the comparison table. Content: unseen
phantoms with seeds from 0 (reserved for evaluation; training uses >= 1000000)."""


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate-stylex", help="evaluate a StyleX model against baselines (figures + metrics)",
        description="Reproduce the StyleX paper's Fig. 3 and Fig. 4 on unseen synthetic "
                    "content and measure them: Spearman of the sweeps, silhouette, "
                    "retrieval across content, content-invariance AUC; the same for a "
                    "handcrafted and a random-CNN Gram baseline.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", metavar="DIR",
                        help="saved StyleX model or training run (default: the shipped model)")
    parser.add_argument("--encoder", choices=("stylex", "handcrafted", "gram"), default="stylex",
                        help="encoder under test (default stylex; a baseline name puts that "
                             "baseline under test, compared with the other one)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help="3 phantoms of 64 px and shorter t-SNE (tests, CI)")
    parser.add_argument("--size", type=int, metavar="PX",
                        help="phantom side (default: the model's embed_size, 256; quick: 64)")
    parser.add_argument("--contents", type=int, metavar="N",
                        help="number of phantoms (default 12; quick: 3)")
    parser.add_argument("--json", action="store_true",
                        help="print metrics.json on stdout instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _load_encoder(args):
    if args.encoder != "stylex":
        if args.model:
            raise ValueError("--model only applies to --encoder stylex")
        from stylejax.metrics import baselines
        return baselines.baselines()[args.encoder]
    if args.model:
        from stylejax.train import simsiam
        return simsiam.load_model(args.model)
    from stylejax.metrics import stylex
    return stylex.load_pretrained()


def _command_line(args) -> str:
    """The command that reproduces this evaluation, for metrics.json."""
    parts = ["stylejax", "evaluate-stylex"]
    if args.model:
        parts += ["--model", args.model]
    if args.encoder != "stylex":
        parts += ["--encoder", args.encoder]
    parts += ["--out", args.out]
    if args.quick:
        parts.append("--quick")
    for flag in ("size", "contents"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    from stylejax.evaluation import stylex_eval as ev

    encoder = _load_encoder(args)
    overrides = {}
    if args.size is not None:
        overrides["size"] = args.size
    elif not args.quick and getattr(encoder, "embed_size", None):
        overrides["size"] = int(encoder.embed_size)
    if args.contents is not None:
        overrides["contents"] = args.contents
    cfg = ev.EvalConfig.quick(**overrides) if args.quick else ev.EvalConfig(**overrides)
    command = _command_line(args)
    report = ev.evaluate(encoder, args.out, cfg, progress=not args.no_progress, command=command)
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    names = list(report["encoders"])
    print(ev.format_table(report["table"], names))
    print()
    for line in report["verdicts"]:
        print(line)
    print(f"\nwrote {', '.join(report['figures'])} and metrics.json to {args.out} "
          f"({report['seconds']:.0f} s)", file=sys.stderr)
    return 0
