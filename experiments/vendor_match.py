"""Match every black-box vendor style with LAP through the StyleX distance.

For each of the 32 vendor styles: references are the vendor outputs of phantoms
whose content differs from the tuned raw images; LAP is tuned on the raw images
(coarse forward-only grid for the start points, then Adam through LAP and the
encoder); reported are the StyleX distance reached, and the SSIM between the tuned
LAP output and the vendor output on the same raw images, next to the neutral LAP
(5, 5, 5) and the best SSIM of a content-matched LAP grid.

Command (shipped StyleX model, ~256 px phantoms, CPU):
    python experiments/vendor_match.py
    python experiments/vendor_match.py --quick        # 4 styles, smaller settings
Writes experiments/results/vendor_match.json (and vendor_match.png).
Unseen random vendor styles (``random_style(9_000_000 + k)``, seeds no StyleX
training, head fit or selection used) after the bank, and the combined metric
(:mod:`stylejax.metrics.style_combination`) instead of StyleX alone:
    python experiments/vendor_match.py --random 16 --metric combined \
        --out experiments/results/vendor_match_combined.json
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="phantom side in pixels")
    parser.add_argument("--raws", type=int, default=1, help="raw images tuned per style")
    parser.add_argument("--references", type=int, default=2, help="vendor references per style")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--coarse", type=int, default=4, help="start-search grid points per axis")
    parser.add_argument("--styles", type=int, nargs="*", default=None)
    parser.add_argument("--model", default=None, help="StyleX model directory (default shipped)")
    parser.add_argument("--metric", choices=("stylex", "combined"), default="stylex",
                        help="StyleX alone, or combined with the style-statistics descriptor "
                             "(shipped model and head)")
    parser.add_argument("--random", type=int, default=0, metavar="K",
                        help="also match K unseen random vendor styles")
    parser.add_argument("--random-seed", type=int, default=9_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "vendor_match.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.coarse = 64, 5, 2
        args.styles = args.styles or [0, 3, 10, 25]

    from stylejax import phantom, tune
    from stylejax.pipeline import blackbox, vendor_random
    from stylejax.tune import vendor_match

    if args.metric == "combined":
        if args.model:
            parser.error("--metric combined uses the shipped model and head (no --model)")
        from stylejax.metrics import style_combination
        model = style_combination.load_pretrained()
    else:
        model = tune.resolve_model(args.model)
    styles = list(range(blackbox.NUM_STYLES)) if args.styles is None else list(args.styles)
    labels = [str(s) for s in styles] + [f"r{k}" for k in range(args.random)]
    styles += vendor_random.random_styles(args.random, seed=args.random_seed)
    size = (args.size, args.size)
    raws = [phantom.mammogram(50_000 + i, size=size, view="cc").raw for i in range(args.raws)]
    ref_raws = [phantom.mammogram(60_000 + i, size=size, view=("mlo", "cc")[i % 2]).raw
                for i in range(args.references)]
    print(f"{'style':>5} {'held':>4} {'w':>5} {'l':>5} {'h':>5} {'dist':>7} {'d(5,5,5)':>8} "
          f"{'SSIM':>6} {'S(5,5,5)':>8} {'S grid':>6} {'s':>6}")

    done = []

    def report(m):
        p = m.params
        done.append(m)
        print(f"{labels[len(done) - 1]:>5} {'yes' if m.held_out else '':>4} {p.w:5.2f} {p.l:5.2f} {p.h:5.2f} "
              f"{m.distance:7.4f} {m.distance_neutral:8.4f} {m.ssim:6.3f} {m.ssim_neutral:8.3f} "
              f"{m.ssim_grid_best:6.3f} {m.seconds:6.1f}", flush=True)

    t0 = time.perf_counter()
    matches = vendor_match.match_all(raws, ref_raws, model=model, styles=styles,
                                     progress=report, steps=args.steps, starts=args.starts,
                                     coarse=args.coarse)
    total = time.perf_counter() - t0
    rows = [m.to_dict() for m in matches]

    def summarise(group):
        return {
            "mean_distance": float(np.mean([m.distance for m in group])),
            "mean_distance_neutral": float(np.mean([m.distance_neutral for m in group])),
            "mean_ssim": float(np.mean([m.ssim for m in group])),
            "mean_ssim_neutral": float(np.mean([m.ssim_neutral for m in group])),
            "mean_ssim_grid_best": float(np.mean([m.ssim_grid_best for m in group])),
            "styles_where_tuning_beats_neutral_ssim": int(sum(m.ssim > m.ssim_neutral
                                                              for m in group)),
            "styles": len(group)}

    bank = [m for m in matches if isinstance(m.style, int)]
    unseen = [m for m in matches if not isinstance(m.style, int)]
    summary = summarise(bank) if bank else {}
    summary["seconds"] = total
    if bank:
        summary["held_out"] = summarise([m for m in bank if m.held_out]) if any(
            m.held_out for m in bank) else None
    if unseen:
        summary["random"] = summarise(unseen)
        summary["random_seeds"] = [args.random_seed, args.random_seed + args.random - 1]
    print(json.dumps(summary, indent=1))
    info = getattr(model, "info", {})
    out = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
           "metric": getattr(model, "name", type(model).__name__),
           "model": info if isinstance(info, dict) else str(info),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "held_out_styles": list(blackbox.HELD_OUT), "summary": summary, "matches": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    _figure(matches, styles, raws[0], os.path.splitext(args.out)[0] + ".png")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _figure(matches, styles, raw, path):
    """Vendor output vs matched LAP output on the same raw image, for up to 8 styles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylejax import tune
    from stylejax.pipeline import blackbox

    step = max(1, len(matches) // 8)
    shown = list(zip(matches, styles))[::step][:8]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.2 * len(shown), 4.8), squeeze=False)
    for j, (m, style) in enumerate(shown):
        axes[0, j].imshow(blackbox.apply(raw, style), cmap="gray", vmin=0, vmax=1)
        name = f"vendor {style}" if isinstance(style, int) else f"random ({style.family})"
        axes[0, j].set_title(name, fontsize=8)
        axes[1, j].imshow(tune.apply(raw, m.params), cmap="gray", vmin=0, vmax=1)
        axes[1, j].set_title(f"LAP d={m.distance:.3f}\nSSIM {m.ssim:.2f}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
