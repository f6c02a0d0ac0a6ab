"""The style projection (LDA on training styles) for StyleX and for both baselines.

:mod:`stylejax.train.projection` fits a linear map on embeddings of the
training styles (216 LAP styles on half of 16 training phantoms each, 28 vendor
training styles on all 16) that keeps the directions separating styles and shrinks
those that vary with content. The shipped model has one (64 directions, shrinkage
0.1). Any descriptor can get the same treatment, so, to see what the learned encoder
itself contributes, this fits the same projection on the handcrafted descriptor and
on the Gram statistics too, and runs the StyleX evaluation
(:mod:`stylejax.evaluation.stylex_eval`) for all six on the evaluation phantoms
(seeds 0-11, where dims and shrinkage were chosen among 16/32/64/128/243 and
0.01/0.1/1) and on a second set (seeds 50000-50011) that played no part in the choice.

Encoders (``+lda`` = with the projection fitted on its own embeddings):
  stylex+lda (shipped), stylex (raw 2048-d projector output, the paper's embedding),
  handcrafted, handcrafted+lda, gram, gram+lda.
The baselines keep their Euclidean distance, with or without projection.

Command (2 CPU cores: about 6 minutes):
    python experiments/style_projection.py
Writes experiments/results/style_projection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from stylejax import stylex
from stylejax.evaluation import stylex_eval as SE
from stylejax.metrics import baselines as B
from stylejax.train import projection as P

HERE = os.path.dirname(os.path.abspath(__file__))
CONTENT_SETS = {"eval (seeds 0-11)": 0, "second set (seeds 50000-50011)": 50_000}


class Projected:
    """A baseline descriptor followed by an LDA projection fitted on its embeddings."""

    def __init__(self, base, projection):
        self.base, (self.mean, self.matrix) = base, projection
        self.name, self.metric = f"{base.name}+lda", base.metric
        self.info = {"projection_of": base.name}

    def embed(self, images):
        return (np.asarray(self.base.embed(images), np.float32) - self.mean) @ self.matrix


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(HERE, "results", "style_projection.json"))
    args = p.parse_args(argv)
    t0 = time.time()
    shipped = stylex.load_pretrained()
    shipped.name = "stylex+lda"
    raw = shipped.without_projection()
    raw.name = "stylex"
    info = shipped.info
    encoders = [shipped, raw]
    for base in B.baselines().values():
        z, labels = P.fitting_set(base, data_seed=info["data_seed"], raw_size=info["raw_size"],
                                  vendor_styles=P.model_vendor_styles(info))
        encoders += [base, Projected(base, P.fit_lda(z, labels))]
        print(f"fitted {base.name}+lda on {len(z)} embeddings ({time.time() - t0:.0f} s)",
              flush=True)
    names = [SE.encoder_name(e) for e in encoders]
    results = {}
    for label, seed in CONTENT_SETS.items():
        cfg = SE.EvalConfig(seed_start=seed)
        report = SE.evaluate(encoders[0], f"/tmp/style_projection_{seed}", cfg,
                             baselines=encoders[1:], progress=False)
        results[label] = {n: report["encoders"][n]["metrics"] for n in names}
        print(f"\n{label}")
        print(SE.format_table(report["table"], names))
    out = dict(experiment="style_projection", projection=info.get("projection"),
               content_seeds=CONTENT_SETS, targets=SE.TARGETS, metrics=results,
               seconds=round(time.time() - t0, 1))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {args.out} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
