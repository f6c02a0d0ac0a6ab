"""Does the style projection generalise to unseen vendor styles when fitted on many random ones?

The shipped StyleX model separates the 28 vendor training styles well but not the 4
held-out ones (silhouette 0.08 against a 0.4 target). Its style projection (an LDA,
:mod:`stylejax.train.projection`) is fitted on 216 LAP styles and those 28
vendor styles. :mod:`stylejax.pipeline.vendor_random` draws new vendor styles from
the same operators; this fits the projection with ``0 / 100 / --random`` of them
added (each on all 16 fitting phantoms, encoder weights unchanged) and runs the
StyleX evaluation on the evaluation phantoms (seeds 0-11) and on a second set
(seeds 50000-50011).

Leakage check: random chains never repeat a held-out style's operator sequence,
but the operators are the same. For each held-out style the mean absolute pixel
difference (MAD, on 4 evaluation phantoms) to its nearest random style is reported
beside the MAD to its nearest bank training style. Random styles closer to a
held-out style than any training style is would make the held-out numbers
optimistic, so the last variant (``filtered``) drops every random style that is
closer to some held-out style than that style's nearest training style: the
projection then sees nothing nearer to the held-out styles than the bank already
offered.

Command (2-core CPU, about 8 minutes):
    python experiments/random_vendor_styles.py
Writes experiments/results/random_vendor_styles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ("silhouette_vendor_heldout", "retrieval_vendor_heldout", "silhouette_vendor",
        "retrieval_vendor", "auc_content", "retrieval_lapx", "spearman_dist_w",
        "spearman_dist_l", "spearman_dist_h")


def leakage(random, phantoms=4, size=256):
    """Per held-out style: mean |pixel difference| to the nearest bank training style
    and to the nearest random style, on evaluation phantoms 0..phantoms-1; and the
    indices of the random styles closer to some held-out style than its nearest
    bank training style."""
    from stylejax import blackbox, phantom
    raws = np.stack([phantom.mammogram(s, size=(size, size), view=("cc", "mlo")[s % 2]).raw
                     for s in range(phantoms)])
    render = {}

    def images(style):
        key = style if isinstance(style, int) else id(style)
        if key not in render:
            render[key] = blackbox.apply_batch(raws, style)
        return render[key]

    out, too_close = {}, set()
    for h in blackbox.HELD_OUT:
        target = images(h)
        bank = [(float(np.abs(images(s) - target).mean()), s) for s in blackbox.TRAIN_STYLES]
        rand = [(float(np.abs(images(s) - target).mean()), k) for k, s in enumerate(random)]
        (db, sb), (dr, kr) = min(bank), min(rand)
        too_close |= {k for d, k in rand if d < db}
        out[str(h)] = {"held_out": blackbox.describe(h), "nearest_bank_style": int(sb),
                       "nearest_bank_mad": round(db, 4),
                       "nearest_random_mad": round(dr, 4),
                       "nearest_random": blackbox.describe(random[kr]),
                       "random_closer_than_bank": int(sum(d < db for d, _ in rand))}
    return out, sorted(too_close)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=500, help="random styles at most")
    parser.add_argument("--out", default=os.path.join(HERE, "results",
                                                      "random_vendor_styles.json"))
    args = parser.parse_args(argv)
    if args.random < 100:
        parser.error(f"--random must be >= 100 (got {args.random})")

    from stylejax import blackbox, stylex
    from stylejax.evaluation import stylex_eval as SE
    from stylejax.train import projection as P
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)

    shipped = stylex.load_pretrained()
    info = shipped.info
    random = blackbox.random_styles(args.random, seed=10_000)
    log("leakage check")
    leak, too_close = leakage(random)
    for h, row in leak.items():
        log(f"held-out {h}: nearest bank style {row['nearest_bank_style']} MAD "
            f"{row['nearest_bank_mad']:.3f}, nearest random MAD {row['nearest_random_mad']:.3f} "
            f"({row['random_closer_than_bank']} random styles closer than the bank's)")
    log(f"fitting set: 216 LAP + 28 bank + {args.random} random vendor styles")
    z, labels = P.fitting_set(shipped.without_projection(), data_seed=info["data_seed"],
                              raw_size=info["raw_size"],
                              vendor_styles=P.model_vendor_styles(info) + random)
    n_bank = len(blackbox.TRAIN_STYLES)
    results = {}
    variants = {"0": labels < 1000 + n_bank, "100": labels < 1000 + n_bank + 100,
                str(args.random): labels >= 0,
                f"{args.random} filtered": ~np.isin(labels, 1000 + n_bank + np.asarray(
                    too_close, int))}
    for count, keep in variants.items():
        model = shipped.replace(projection=P.fit_lda(z[keep], labels[keep]))
        row = {}
        for name, seed in (("eval", 0), ("second set", 50_000)):
            report = SE.evaluate(model, f"/tmp/random_vendor_styles_{count}_{seed}",
                                 SE.EvalConfig(seed_start=seed), baselines=[], progress=False)
            metrics = report["encoders"][SE.encoder_name(model)]["metrics"]
            row[name] = {k: round(float(metrics[k]), 4) for k in KEYS}
        results[count] = row
        log(f"{count:>12} random styles: held-out silhouette "
            f"{row['eval']['silhouette_vendor_heldout']:.3f} / "
            f"{row['second set']['silhouette_vendor_heldout']:.3f}, held-out retrieval "
            f"{row['eval']['retrieval_vendor_heldout']:.3f} / "
            f"{row['second set']['retrieval_vendor_heldout']:.3f}, all-vendor silhouette "
            f"{row['eval']['silhouette_vendor']:.3f}, content AUC {row['eval']['auc_content']:.3f}"
            " (eval / second set)")
    out = {"description": __doc__.split("\n\n")[0],
           "command": "python experiments/random_vendor_styles.py "
                      + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "random_seed_start": 10_000, "leakage": leak,
           "filtered_out": len(too_close), "by_random_styles": results,
           "seconds": round(time.time() - t0, 1)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
