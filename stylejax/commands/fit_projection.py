"""``stylejax fit-projection``: give a trained StyleX model its style projection."""

from __future__ import annotations

import argparse
import json
import os
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
    from stylejax.metrics import stylex
    from stylejax.train import projection, simsiam

    if "://" not in args.out:  # local: checked before the fit, not after
        stylex.check_output_dir(os.path.abspath(args.out))
    model = simsiam.load_model(args.model)
    # keep a saved model's dtype (load_model checked the file); a run exports float16
    dtype = _saved_dtype(args.model) or "float16"
    fitted = projection.fit(model, progress=not args.no_progress)
    fitted.save(args.out, dtype=dtype)
    print(json.dumps(dict(out=args.out, embedding_dim=fitted.embedding_dim,
                          projection=fitted.info["projection"])), file=sys.stderr)
    return 0


def _saved_dtype(folder):
    """The dtype recorded in a saved model's description (local or gs://), else None."""
    from etils import epath

    from stylejax.metrics import stylex
    meta = epath.Path(folder) / stylex.MODEL_FILE
    if not meta.exists():
        return None
    if "://" not in str(folder):
        return stylex._read_meta(os.path.join(folder, stylex.MODEL_FILE)).get("dtype")
    return json.loads(meta.read_text()).get("dtype")  # size checked by load_model
