"""Whole-image versus tiled StyleX embeddings, on two independent sets of unseen content.

The shipped model was trained on 128 px views of 256 px phantoms. ``StyleX.embed``
used to show it whole 256 px images (four times the field of view, air and
anatomy around the tissue); with ``tile_size`` it embeds the image as 128 px tiles
and averages their unit-length embeddings. Measured on the raw 2048-d embeddings
(``without_projection()``: the style projection came after). This runs the StyleX evaluation
(:mod:`stylejax.evaluation.stylex_eval`, without baselines) for tilings of the same
weights on the standard evaluation phantoms (seeds 0-11) and on a second set
(seeds 50000-50011) that played no part in choosing the tiling, and prints the
metrics side by side.

Tilings (``tile_size`` / tile positions at 256 px):
  tiles128  128: a 2x2 grid, no overlap (what the shipped model now uses)
  whole     None: the whole image in one pass (the embedding before tiling)

Command (2 CPU cores: about 4 minutes):
    python experiments/stylex_tiling.py
Writes experiments/results/stylex_tiling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from stylejax import stylex
from stylejax.evaluation import stylex_eval as SE

HERE = os.path.dirname(os.path.abspath(__file__))
TILINGS = {"tiles128": 128, "whole": None}  # the first is the one under test
CONTENT_SETS = {"eval (seeds 0-11)": 0, "second set (seeds 50000-50011)": 50_000}


def variant(model, name: str, tile_size):
    """The shipped weights with another tiling, named ``name`` in the tables."""
    out = model.replace(tile_size=tile_size)
    out.name = name
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(HERE, "results", "stylex_tiling.json"))
    args = p.parse_args(argv)
    model = stylex.load_pretrained().without_projection()
    encoders = [variant(model, name, tile) for name, tile in TILINGS.items()]
    results = {}
    t0 = time.time()
    for label, seed in CONTENT_SETS.items():
        cfg = SE.EvalConfig(seed_start=seed)
        report = SE.evaluate(encoders[0], f"/tmp/stylex_tiling_{seed}", cfg,
                             baselines=encoders[1:], progress=False)
        results[label] = {name: report["encoders"][name]["metrics"] for name in TILINGS}
        print(f"\n{label}")
        print(SE.format_table(report["table"], list(TILINGS)))
    out = dict(experiment="stylex_tiling", tilings=TILINGS, content_seeds=CONTENT_SETS,
               targets=SE.TARGETS, metrics=results, seconds=round(time.time() - t0, 1))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {args.out} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
