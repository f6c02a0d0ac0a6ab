"""LAP parameter mapping and sweeps (the StyleX paper's Fig. 2, on a synthetic mammogram).

Run:  python experiments/figures/lap_sweep.py [--size 384] [--out experiments/figures]
Writes lap_mapping.png (0..10 scale -> band gains and window width) and
lap_sweep.png (rows: w, l and h swept 0..10 in 10 steps with the others at 5;
last row: the 8 extreme LAP-x styles).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sweep_values(steps=10):
    return np.linspace(0.0, 10.0, steps)


def lap_sweep_figure(raw, path, steps=10):
    """Grid of LAP outputs for the three sweeps and LAP-x; returns the path."""
    import jax
    import jax.numpy as jnp

    from stylejax import lap

    x = lap.normalize_log(jnp.asarray(raw))
    values = sweep_values(steps)
    rows = []
    for name in lap.PARAM_NAMES:
        grid = np.full((steps, 3), 5.0, np.float32)
        grid[:, lap.PARAM_NAMES.index(name)] = values
        rows.append((f"LAP-{name}", grid))
    rows.append(("LAP-x", lap.lap_grid((0, 10))))
    run = jax.jit(jax.vmap(lambda p: lap.process_normalized(x, lap.LAPParams.from_array(p))))
    cols = max(len(g) for _, g in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.9 * len(rows)))
    for r, (label, grid) in enumerate(rows):
        images = np.asarray(run(jnp.asarray(grid)))
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(grid):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
                w, l, h = grid[c]
                ax.set_title(f"w{w:.3g} l{l:.3g} h{h:.3g}", fontsize=6)
        axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=9)
    fig.suptitle("LAP styles of one synthetic raw mammogram (sweeps 0..10, others at 5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mapping_figure(path):
    """Plot of the parameter-to-gain/width mapping; returns the path."""
    from stylejax import lap

    p = np.linspace(0, 10, 101)
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].semilogy(p, np.asarray(lap.gain_h(p)), label="h: high-band gain")
    ax[0].semilogy(p, np.asarray(lap.gain_l(p)), label="l: low/mid-band gain")
    ax[0].axhline(1, color="gray", lw=0.5)
    ax[0].set_xlabel("parameter (0..10)")
    ax[0].set_ylabel("gain")
    ax[0].legend()
    y = np.linspace(-0.5, 1.5, 200)
    for w in (0, 2.5, 5, 7.5, 10):
        ax[1].plot(y, np.asarray(lap.soft_window(y, w)), label=f"w={w:g}")
    ax[1].set_xlabel("normalised attenuation")
    ax[1].set_ylabel("output")
    ax[1].legend(fontsize=7)
    ax[1].set_title("soft window")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent))
    args = parser.parse_args()
    from stylejax import phantom

    raw = phantom.mammogram(args.seed, size=(args.size, args.size), view="mlo").raw
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(mapping_figure(out / "lap_mapping.png"))
    print(lap_sweep_figure(raw, out / "lap_sweep.png"))


if __name__ == "__main__":
    main()
