"""Figure: synthetic raw mammograms (CC and MLO) and their tissue label maps.

Run from the repository root::

    python experiments/figures/phantom_examples.py

It writes ``experiments/figures/phantoms.png`` (the README figure): for three seeds,
from a fatty to a dense breast, the CC and MLO views as a log display of the raw
signal (-log raw, windowed on the breast; dense tissue bright), a detail crop
around a microcalcification cluster at full resolution (two clusters are asked for
in every image), and the label map.
Takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from stylejax import phantom  # noqa: E402

SEEDS = (5, 3, 1)            # fatty, scattered, dense (patient density 0.07, 0.22, 0.67)
SIZE = (512, 416)
CROP = 72


def detail_box(m: phantom.Mammogram) -> tuple[int, int]:
    """Top-left corner of a CROP x CROP box on the calcification cluster that fits best
    inside the breast (most specks, least background)."""
    H, W = m.size
    rows, cols = np.nonzero(m.labels == phantom.CALCIFICATION)
    if rows.size == 0:
        rows, cols = np.nonzero(m.labels == phantom.FIBROGLANDULAR)
    best, corner = -np.inf, (0, 0)
    for r, c in zip(rows[::3], cols[::3]):
        r0 = int(np.clip(r - CROP // 2, 0, H - CROP))
        c0 = int(np.clip(c - CROP // 2, 0, W - CROP))
        box = m.labels[r0:r0 + CROP, c0:c0 + CROP]
        score = np.sum(box == phantom.CALCIFICATION) - 0.1 * np.sum(box == phantom.BACKGROUND)
        if score > best:
            best, corner = score, (r0, c0)
    return corner


def main(out: Path) -> None:
    made = [phantom.mammogram(s, size=SIZE, view=v, calcifications=2)
            for s in SEEDS for v in phantom.VIEWS]
    col_in = 2.0                                  # inches per column
    ratios = [SIZE[0] / SIZE[1], 1.0, SIZE[0] / SIZE[1]]
    figsize = (col_in * len(made), col_in * sum(ratios) + 1.0)
    fig, axes = plt.subplots(3, len(made), figsize=figsize,
                             gridspec_kw={"height_ratios": ratios, "hspace": 0.04,
                                          "wspace": 0.04})
    for j, m in enumerate(made):
        shown = phantom.log_display(m.raw, m.labels)
        r0, c0 = detail_box(m)
        ax = axes[0, j]
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
        ax.add_patch(Rectangle((c0, r0), CROP, CROP, fill=False, ec="#ffcc00", lw=0.8))
        ax.set_title(f"seed {m.seed} {m.view.upper()}\n"
                     f"β={m.params['beta']:.2f}, density {m.params['density']:.2f}",
                     fontsize=8)
        # Detail: its own window, so the noise, vessels and specks are visible.
        crop = -np.log(m.raw[r0:r0 + CROP, c0:c0 + CROP])
        lo, hi = np.percentile(crop, (1, 99.7))
        axes[1, j].imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        axes[2, j].imshow(phantom.label_rgb(m.labels), interpolation="nearest")
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("raw, log display", fontsize=8)
    axes[1, 0].set_ylabel(f"detail {CROP}x{CROP} px", fontsize=8)
    axes[2, 0].set_ylabel("tissue labels", fontsize=8)
    handles = [Patch(fc=phantom.LABEL_COLORS[i], ec="0.5", label=name)
               for i, name in enumerate(phantom.LABEL_NAMES)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, axes[2, 0].get_position().y0 - 0.005))
    fig.suptitle(f"stylejax.phantom: synthetic raw mammograms, {SIZE[0]}x{SIZE[1]}",
                 fontsize=10, y=axes[0, 0].get_position().y1 + 0.075)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path,
                        default=Path(__file__).resolve().parent / "phantoms.png")
    main(parser.parse_args().out)
