"""DCE-MRI ablation (the DCE paper's Tables 1/2 layout) on held-out synthetic series.

For both directions (CE -> non-CE and non-CE -> CE) and each model (full: AdaConv +
ConvLSTM; no ConvLSTM; AdaIN instead of AdaConv) and a per-frame histogram-matching
baseline, on held-out series (seeds from ``stylejax.train.dce.EVAL_SEED_START``; training
used seeds 0 .. pool_series - 1):

* PSNR (one MSE over the series), SSIM (mean over frames) against the paired ground truth (the same series in the target domain);
  MS-SSIM with as many of the paper's five scales as the frames allow (``11 * 2^(k-1)``
  pixels for k scales: 3 at 64 px, 5 from 176 px), the first k weights renormalised to
  sum 1 (``ms_ssim_scales`` in the JSON);
* content CW-SSIM (output vs the input, weight map far from enhancement -> 1) and style
  CW-SSIM (output vs the ground-truth target, enhanced -> 1), the DCE paper's Eq. 3, with
  the enhancement mask of the CE series (threshold 20/255 on the phantom's scale);
* temporal error: mean |(y[t+1] - y[t]) - (g[t+1] - g[t])| (lower is better).

The style reference of every method is the target-domain series of ANOTHER held-out seed
(another "patient"), so no method sees the ground truth.

Run::

    python experiments/dce_ablation.py --full DIR --no-convlstm DIR --adain DIR --series 16 \
        [--runs full=WORKDIR no_convlstm=WORKDIR adain=WORKDIR]

(missing model directories are skipped and listed in the JSON). Writes
``experiments/results/dce_ablation.json`` and ``experiments/figures/dce_ablation.png``
(and, with ``--runs``, the training curves ``experiments/figures/dce_training_curves.png``).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from stylejax.data.dce import dce, dce_labels
from stylejax.evaluation.bench import log, machine, write_json
from stylejax.methods.dce import translate
from stylejax.metrics.image import (MS_SSIM_WEIGHTS, WIN_SIZE, contrast_weight_map, cw_ssim,
                                    enhancement_mask, ms_ssim, psnr, ssim)
from stylejax.train.dce import EVAL_SEED_START

DIRECTIONS = {"ce-to-non-ce": ("ce", "non_ce"), "non-ce-to-ce": ("non_ce", "ce")}


def hist_match(series, reference):
    """Per-frame histogram matching of ``series`` to ``reference`` (the baseline)."""
    from skimage.exposure import match_histograms
    return np.stack([match_histograms(f, r) for f, r in zip(series, reference)]).astype(
        np.float32)


def scores(out, src, gt, ce):
    mask = enhancement_mask(ce, threshold=20.0 / 255.0)
    wc = contrast_weight_map(mask)
    ws = contrast_weight_map(mask, invert=True)
    dr = 1.0
    # PSNR over the whole series (one MSE): frame 0 is identical in both domains
    row = {"psnr": float(psnr(np.concatenate(list(out)), np.concatenate(list(gt)),
                              data_range=dr)),
           "ssim": float(np.mean(np.asarray(ssim(out, gt, data_range=dr)))),
           "cw_ssim_content": float(np.mean(np.asarray(
               cw_ssim(out, src, np.broadcast_to(wc, out.shape), data_range=dr)))),
           "cw_ssim_style": float(np.mean(np.asarray(
               cw_ssim(out, gt, np.broadcast_to(ws, out.shape), data_range=dr)))),
           "temporal_error": float(np.mean(np.abs(np.diff(out, axis=0) - np.diff(gt, axis=0))))}
    scales = ms_ssim_scales(min(out.shape[-2:]))
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales]) / np.sum(MS_SSIM_WEIGHTS[:scales])
    row["ms_ssim"] = float(np.mean(np.asarray(ms_ssim(out, gt, data_range=dr,
                                                      weights=tuple(weights)))))
    row["ms_ssim_scales"] = scales
    return row


def ms_ssim_scales(side: int) -> int:
    """How many of MS-SSIM's five scales fit a ``side``-pixel frame (at least 1)."""
    k = 1
    while k < len(MS_SSIM_WEIGHTS) and WIN_SIZE * 2 ** k <= side:
        k += 1
    return k


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", default=None)
    p.add_argument("--no-convlstm", default=None)
    p.add_argument("--adain", default=None)
    p.add_argument("--series", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--out", default="experiments/results/dce_ablation.json")
    p.add_argument("--figure", default="experiments/figures/dce_ablation.png")
    p.add_argument("--runs", nargs="*", default=[], metavar="NAME=WORKDIR",
                   help="training workdirs whose metrics.jsonl to plot (loss curves figure)")
    p.add_argument("--curves", default="experiments/figures/dce_training_curves.png")
    a = p.parse_args(argv)
    if a.runs:
        training_curves(dict(r.split("=", 1) for r in a.runs), a.curves)
    models = {k: v for k, v in (("full", a.full), ("no_convlstm", a.no_convlstm),
                                ("adain", a.adain)) if v and os.path.isdir(v)}
    missing = [k for k, v in (("full", a.full), ("no_convlstm", a.no_convlstm),
                              ("adain", a.adain)) if k not in models]
    seeds = [EVAL_SEED_START + i for i in range(a.series + 1)]
    data = [dce(s, (a.size, a.size), a.frames) for s in seeds]
    rows = {d: {m: [] for m in list(models) + ["hist_match", "identity"]} for d in DIRECTIONS}
    keep = {}
    for i in range(a.series):
        cur, ref = data[i], data[i + 1]
        for d, (src_name, dst_name) in DIRECTIONS.items():
            src, gt = getattr(cur, src_name), getattr(cur, dst_name)
            style = getattr(ref, dst_name)
            outs = {m: translate(src, style, direction=d, network=path)
                    for m, path in models.items()}
            outs["hist_match"] = hist_match(src, style)
            outs["identity"] = src
            for m, out in outs.items():
                rows[d][m].append(scores(out, src, gt, cur.ce))
            if i == 0:
                keep[d] = outs
        log(f"series {i + 1}/{a.series}")
    table = {d: {m: {k: (None if any(r[k] is None for r in v) else
                         float(np.mean([r[k] for r in v]))) for k in v[0]}
                 for m, v in per.items()} for d, per in rows.items()}
    # paired comparison of the models on the same series: mean difference and its standard
    # error over the series (a positive CW-SSIM difference favours the first model)
    paired = {}
    for d, per in rows.items():
        for m1, m2 in (("full", "no_convlstm"), ("full", "adain")):
            if m1 in per and m2 in per:
                for k in ("cw_ssim_style", "temporal_error"):
                    diff = np.array([r1[k] - r2[k] for r1, r2 in zip(per[m1], per[m2])])
                    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
                    paired[f"{d}: {m1} - {m2}: {k}"] = {"mean": float(diff.mean()), "se": se}
    payload = {"held_out_seeds": [seeds[0], seeds[-1]], "series": a.series,
               "size": a.size, "frames": a.frames, "models": models,
               "missing_models": missing, "table": table, "paired_differences": paired,
               "per_series": rows, "machine": machine()}
    write_json(a.out, payload)
    for d, per in table.items():
        print(f"\n{d}")
        scales = next(iter(per.values()))["ms_ssim_scales"]
        print(f"{'method':<12} {'PSNR':>7} {'SSIM':>6} {f'MS-SSIM{scales:.0f}':>8} {'CW-c':>6} "
              f"{'CW-s':>6} {'temp.err':>8}")
        for m, r in per.items():
            print(f"{m:<12} {r['psnr']:7.2f} {r['ssim']:6.3f} {r['ms_ssim']:8.3f} "
                  f"{r['cw_ssim_content']:6.3f} {r['cw_ssim_style']:6.3f} "
                  f"{r['temporal_error']:8.4f}")
    for name, v in paired.items():
        se = "n/a" if v["se"] is None else f"{v['se']:.4f}"
        print(f"{name}: {v['mean']:+.4f} (se {se})")
    figure(data[0], keep, a.figure)


def training_curves(runs, path, window=20):
    """Running means (``window`` steps) of the training losses of each run's metrics.jsonl."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("pair", "paired L1 (both directions)"), ("rec", "within-domain L1"),
            ("cycle", "cycle L1"), ("d_loss", "discriminator LSGAN")]
    fig, ax = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    for name, workdir in runs.items():
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        steps = np.array([r["step"] for r in rows])
        for axis, (k, title) in zip(ax, keys):
            v = np.array([r[k] for r in rows])
            w = min(window, len(v))
            axis.plot(steps[w - 1:], np.convolve(v, np.ones(w) / w, "valid"), label=name)
            axis.set_title(title, fontsize=8)
            axis.set_xlabel("step")
    ax[0].set_yscale("log")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def figure(series, keep, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = "ce-to-non-ce"
    outs = keep[d]
    names = ["input CE", "ground truth non-CE"] + list(outs)
    imgs = [series.ce, series.non_ce] + [outs[m] for m in outs]
    t = series.ce.shape[0]
    fig, ax = plt.subplots(len(imgs) + 1, t, figsize=(1.6 * t, 1.6 * (len(imgs) + 1)))
    for r, (n, im) in enumerate(zip(names, imgs)):
        for c in range(t):
            ax[r, c].imshow(im[c], cmap="gray", vmin=0, vmax=0.55)
            ax[r, c].set_xticks([])
            ax[r, c].set_yticks([])
        ax[r, 0].set_ylabel(n, fontsize=7)
    for c in range(t):
        ax[-1, c].axis("off")
    curve = fig.add_subplot(len(imgs) + 1, 1, len(imgs) + 1)
    labels = series.frame_labels()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = [(series.ce, "-", "CE input"), (series.non_ce, ":", "non-CE truth")]
    if "full" in outs:
        curves.append((outs["full"], "--", "full model"))
    shown = [lab for lab in range(1, len(dce_labels())) if np.any(labels == lab)]
    for j, lab in enumerate(shown):
        for im, style, _ in curves:
            vals = [im[k][labels[k] == lab].mean() for k in range(t)]
            curve.plot(series.times, vals, style, color=colors[j % len(colors)],
                       label=dce_labels()[lab] if style == "-" else None)
    for _, style, tag in curves:   # line styles, in black
        curve.plot([], [], style, color="k", label=tag)
    curve.set_xlabel("time (s)")
    curve.set_ylabel("mean signal (CE -> non-CE)")
    curve.legend(fontsize=5, ncol=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
