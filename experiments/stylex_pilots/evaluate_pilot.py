"""A 6-phantom version of ``stylejax evaluate-stylex`` for quick comparisons of runs.

Usage: python experiments/stylex_pilots/evaluate_pilot.py RUN_DIR|shipped
Prints one line of the main metrics (no baselines, shorter t-SNE).
"""

import sys
import tempfile

from stylejax import stylex
from stylejax.evaluation import stylex_eval
from stylejax.train import simsiam

KEYS = ("spearman_tsne_w", "spearman_tsne_l", "spearman_tsne_h", "spearman_dist_h",
        "retrieval_lapx", "auc_content", "auc_fine", "silhouette_vendor_heldout",
        "retrieval_vendor", "auc_fine_h")


def main(target: str) -> None:
    model = stylex.load_pretrained() if target == "shipped" else simsiam.load_model(target)
    cfg = stylex_eval.EvalConfig(contents=6, tsne_iters=500, baseline_figures=False)
    with tempfile.TemporaryDirectory() as out:
        report = stylex_eval.evaluate(model, out, cfg, baselines=[], progress=False)
    metrics = report["encoders"][report["main"]]["metrics"]
    print(target, " ".join(f"{k}={metrics[k]:.3f}" for k in KEYS))


if __name__ == "__main__":
    main(sys.argv[1])
