"""The 32 black-box vendor styles applied to one synthetic raw mammogram.

Run:  python experiments/figures/blackbox_styles.py [--size 512] [--out experiments/figures]
      [--timing]
Writes blackbox_styles.png: a 4 x 8 grid, one panel per style (full view and a 2x
zoom on the tissue, to show sharpening / noise texture), titled with the style
number and family; held-out styles (``blackbox.HELD_OUT``) are framed in red and
starred. ``--timing`` also prints the time of every style at ``--size`` (best of 3).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def synthetic_raw(size: int, seed: int = 0) -> np.ndarray:
    """Fallback raw mammogram (numpy only) when ``stylejax.phantom`` is absent."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.sqrt((xx / (0.8 * size)) ** 2 + ((yy - size / 2) / (0.45 * size)) ** 2)
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size)))
    tex = np.real(np.fft.ifft2(spec * f ** -1.5))
    tex = (tex - tex.mean()) / tex.std()
    gland = 1.0 / (1.0 + np.exp(-(1.6 * tex - 0.6 - 1.2 * r)))
    att = 5.0 * np.clip(1 - r ** 2, 0, 1) ** 0.3 * (0.45 + 0.35 * gland)
    raw = rng.poisson(2000.0 * np.exp(-att)) + rng.normal(0, 3.0, (size, size))
    return np.maximum(raw, 1.0).astype(np.float32)


def load_raw(size: int) -> tuple[np.ndarray, str]:
    try:
        from stylejax import phantom
    except ImportError:
        return synthetic_raw(size), "numpy fallback phantom"
    return phantom.mammogram(0, size=(size, size), view="cc").raw, "stylejax.phantom CC, seed 0"


def zoom_window(raw: np.ndarray) -> tuple[slice, slice]:
    """A square a quarter of the image wide, centred on the breast's centroid."""
    from stylejax import blackbox

    h, w = raw.shape
    side = max(16, min(h, w) // 4)
    breast = blackbox.normalized_log(raw) > 0.2
    cy, cx = (np.argwhere(breast).mean(axis=0) if breast.any() else (h / 2, w / 2))
    y = int(np.clip(cy - side / 2, 0, h - side))
    x = int(np.clip(cx - side / 2, 0, w - side))
    return slice(y, y + side), slice(x, x + side)


def styles_figure(raw: np.ndarray, path: Path, source: str) -> Path:
    from stylejax import blackbox

    sy, sx = zoom_window(raw)
    fig, axes = plt.subplots(4, 8, figsize=(19.2, 6.6))
    for style, ax in enumerate(axes.flat):
        out = blackbox.apply(raw, style)
        full = out[::2, ::2] if min(out.shape) >= 384 else out
        crop = out[sy, sx]
        k = max(1, full.shape[0] // crop.shape[0])
        crop = np.kron(crop, np.ones((k, k)))[:full.shape[0]]  # nearest-neighbour 2x zoom
        gap = np.ones((full.shape[0], 3))
        panel = np.concatenate([full, gap, crop], axis=1)
        ax.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        held = style in blackbox.HELD_OUT
        ax.set_title(f"{style}{'*' if held else ''} {blackbox.family(style)}", fontsize=9,
                     color="red" if held else "black")
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if held else "white")
            spine.set_linewidth(2.5 if held else 0.5)
    fig.suptitle("stylejax.blackbox: the 32 vendor styles (left: full view, right: 2x zoom); "
                 f"* red = held out {tuple(blackbox.HELD_OUT)}.  Raw: {source}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def timing_table(raw: np.ndarray, repeats: int = 3) -> list[tuple[int, float]]:
    from stylejax import blackbox

    rows = []
    for style in range(blackbox.NUM_STYLES):
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            blackbox.apply(raw, style)
            best = min(best, time.perf_counter() - t0)
        rows.append((style, best * 1e3))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args(argv)
    raw, source = load_raw(args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    path = styles_figure(raw, args.out / "blackbox_styles.png", source)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    if args.timing:
        from stylejax import blackbox

        rows = timing_table(raw)
        print(f"time per style at {args.size}x{args.size} (best of 3):")
        for style, ms in rows:
            print(f"  {style:2d} {ms:7.1f} ms  {blackbox.describe(style)}")
        slowest = max(rows, key=lambda r: r[1])
        print(f"slowest: style {slowest[0]} {slowest[1]:.1f} ms; "
              f"mean {np.mean([r[1] for r in rows]):.1f} ms")


if __name__ == "__main__":
    main()
