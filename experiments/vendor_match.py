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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "vendor_match.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.coarse = 64, 5, 2
        args.styles = args.styles or [0, 3, 10, 25]

    from stylejax import phantom, tune
    from stylejax.pipeline import blackbox
    from stylejax.tune import vendor_match

    model = tune.resolve_model(args.model)
    size = (args.size, args.size)
    raws = [phantom.mammogram(50_000 + i, size=size, view="cc").raw for i in range(args.raws)]
    ref_raws = [phantom.mammogram(60_000 + i, size=size, view=("mlo", "cc")[i % 2]).raw
                for i in range(args.references)]
    print(f"{'style':>5} {'held':>4} {'w':>5} {'l':>5} {'h':>5} {'dist':>7} {'d(5,5,5)':>8} "
          f"{'SSIM':>6} {'S(5,5,5)':>8} {'S grid':>6} {'s':>6}")

    def report(m):
        p = m.params
        print(f"{m.style:5d} {'yes' if m.held_out else '':>4} {p.w:5.2f} {p.l:5.2f} {p.h:5.2f} "
              f"{m.distance:7.4f} {m.distance_neutral:8.4f} {m.ssim:6.3f} {m.ssim_neutral:8.3f} "
              f"{m.ssim_grid_best:6.3f} {m.seconds:6.1f}", flush=True)

    t0 = time.perf_counter()
    matches = vendor_match.match_all(raws, ref_raws, model=model, styles=args.styles,
                                     progress=report, steps=args.steps, starts=args.starts,
                                     coarse=args.coarse)
    total = time.perf_counter() - t0
    rows = [m.to_dict() for m in matches]
    summary = {
        "mean_distance": float(np.mean([m.distance for m in matches])),
        "mean_distance_neutral": float(np.mean([m.distance_neutral for m in matches])),
        "mean_ssim": float(np.mean([m.ssim for m in matches])),
        "mean_ssim_neutral": float(np.mean([m.ssim_neutral for m in matches])),
        "mean_ssim_grid_best": float(np.mean([m.ssim_grid_best for m in matches])),
        "styles_where_tuning_beats_neutral_ssim": int(sum(m.ssim > m.ssim_neutral
                                                          for m in matches)),
        "styles": len(matches), "seconds": total,
    }
    print(json.dumps(summary, indent=1))
    info = getattr(model, "info", {})
    out = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
           "model": info if isinstance(info, dict) else str(info),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "held_out_styles": list(blackbox.HELD_OUT), "summary": summary, "matches": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    _figure(matches, raws[0], os.path.splitext(args.out)[0] + ".png")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _figure(matches, raw, path):
    """Vendor output vs matched LAP output on the same raw image, for up to 8 styles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylejax import tune
    from stylejax.pipeline import blackbox

    shown = matches[:: max(1, len(matches) // 8)][:8]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.2 * len(shown), 4.8), squeeze=False)
    for j, m in enumerate(shown):
        axes[0, j].imshow(blackbox.apply(raw, m.style), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"vendor {m.style}", fontsize=8)
        axes[1, j].imshow(tune.apply(raw, m.params), cmap="gray", vmin=0, vmax=1)
        axes[1, j].set_title(f"LAP d={m.distance:.3f}\nSSIM {m.ssim:.2f}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
