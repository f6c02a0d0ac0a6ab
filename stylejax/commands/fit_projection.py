"""``stylejax fit-projection``: give a trained StyleX model its style projection."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  stylejax fit-projection --model runs/a --out runs/a_model
  stylejax fit-projection --model stylejax/assets/stylex_default \\
      --out stylejax/assets/stylex_default

The projection (linear discriminant analysis on embeddings of the 216 LAP training
styles and the vendor training styles, on the model's own training phantoms) keeps
the directions that separate styles and shrinks those that follow content; see
stylejax/train/projection.py. 'stylejax train simsiam --export' fits it already;
this command is for models saved without one.
"""


def register(subparsers):
    p = subparsers.add_parser(
        "fit-projection", help="fit a StyleX model's style projection (LDA on training styles)",
        description="Fit the style projection of a StyleX model (a saved model or a training "
                    "run) on its training styles and save the model with it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR",
                   help="saved StyleX model or training run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="where to save the model")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from stylejax.metrics import stylex
    from stylejax.train import projection, simsiam

    model = simsiam.load_model(args.model)
    dtype = "float16"
    meta = os.path.join(args.model, stylex.MODEL_FILE)
    if os.path.exists(meta):  # keep a saved model's dtype; a training run exports float16
        with open(meta) as f:
            dtype = json.load(f).get("dtype", dtype)
    fitted = projection.fit(model, progress=not args.no_progress)
    fitted.save(args.out, dtype=dtype)
    print(json.dumps(dict(out=args.out, embedding_dim=fitted.embedding_dim,
                          projection=fitted.info["projection"])), file=sys.stderr)
    return 0
