"""Figures of the StyleX evaluation: the paper's Fig. 3 and Fig. 4 for any encoder.

* :func:`figure3` - top: boxplots of the 1-D t-SNE coordinate per swept value for
  LAP-w, LAP-l, LAP-h (unseen odd values hatched); bottom: 2-D t-SNE of LAP-x (8
  extreme styles, each cluster's spread drawn as a cross at its centre) and of the
  32 vendor styles (held-out styles as stars, labelled).
* :func:`figure4` - a reference image and the encoder's distance from it to the
  same content (top row) and to other content (bottom row) in several vendor
  styles, column by column the same style.

Both write a small PNG (Agg backend, modest dpi) and return its path.
"""

from __future__ import annotations

import numpy as np

from stylejax.metrics import embedding as E

_DPI = 80


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _style_colors(n: int):
    plt = _pyplot()
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("gist_ncar")(0.05 + 0.9 * i / max(n - 1, 1)) for i in range(n)]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _boxplot(ax, coord, s, metrics):
    values = sorted(set(s.value.tolist()))
    data = [coord[s.value == v] for v in values]
    box = ax.boxplot(data, positions=range(len(values)), widths=0.6, patch_artist=True,
                     showfliers=False)
    for v, patch in zip(values, box["boxes"]):
        odd = int(v) % 2 == 1
        patch.set_facecolor("#f4a261" if odd else "#8ab6d6")
        patch.set_hatch("//" if odd else "")
    ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
    p = s.name
    ax.set_xlabel(f"LAP-{p} value (others at 5; hatched: unseen odd values)")
    ax.set_ylabel("1-D t-SNE")
    ax.set_title(f"LAP-{p}: |rho| t-SNE {_fmt(metrics.get(f'spearman_tsne_{p}'))}, "
                 f"distance {_fmt(metrics.get(f'spearman_dist_{p}'))}", fontsize=9)


def _scatter_lapx(ax, y, s, metrics):
    colors = _style_colors(len(s.labels))
    for k, label in enumerate(s.labels):
        pts = y[s.style == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=colors[k], label=label, alpha=0.8)
        c, sd = pts.mean(0), pts.std(0)
        ax.errorbar(c[0], c[1], xerr=sd[0], yerr=sd[1], color=colors[k], lw=1.2, capsize=3)
    ax.legend(fontsize=6, ncol=2, title="w l h (-: 0, +: 10)", title_fontsize=6,
              loc="best", framealpha=0.6)
    ax.set_title(f"LAP-x (2-D t-SNE): silhouette {_fmt(metrics.get('silhouette_lapx'))}, "
                 f"retrieval {_fmt(metrics.get('retrieval_lapx'))}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _scatter_vendor(ax, y, s, metrics):
    colors = _style_colors(len(s.labels))
    for k, label in enumerate(s.labels):
        mask = s.style == k
        held = bool(s.held_out[mask][0])
        pts = y[mask]
        ax.scatter(pts[:, 0], pts[:, 1], s=70 if held else 12, color=colors[k],
                   marker="*" if held else "o", edgecolors="k" if held else "none",
                   linewidths=0.6, alpha=0.9)
        if held:
            c = pts.mean(0)
            ax.annotate(label.rstrip("*"), c, fontsize=8, fontweight="bold",
                        xytext=(4, 4), textcoords="offset points")
    ax.scatter([], [], marker="o", color="grey", s=12, label="training styles")
    ax.scatter([], [], marker="*", color="grey", edgecolors="k", s=70, label="held-out styles")
    ax.legend(fontsize=7, loc="best", framealpha=0.6)
    ax.set_title(f"Vendor styles (2-D t-SNE): silhouette {_fmt(metrics.get('silhouette_vendor'))}"
                 f", held-out {_fmt(metrics.get('silhouette_vendor_heldout'))}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def figure3(path: str, sets: dict, tsne: dict, metrics: dict, title: str = "") -> str:
    """The paper's Fig. 3 for one encoder.

    Args:
      path: output PNG path.
      sets: set name -> :class:`~stylejax.evaluation.stylex_eval.StyleSet`.
      tsne: ``"w"``, ``"l"``, ``"h"`` -> ``[M]`` 1-D coordinates; ``"lapx"``,
        ``"vendor"`` -> ``[M, 2]``.
      metrics: the encoder's metrics (quoted in the panel titles).
      title: figure title (the encoder's name).
    Returns:
      ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplot_mosaic([["w", "l", "h"], ["lapx", "vendor", "vendor"]],
                                   figsize=(15, 9), layout="constrained")
    for p in ("w", "l", "h"):
        _boxplot(axes[p], tsne[p], sets[p], metrics)
    _scatter_lapx(axes["lapx"], tsne["lapx"], sets["lapx"], metrics)
    _scatter_vendor(axes["vendor"], tsne["vendor"], sets["vendor"], metrics)
    fig.suptitle(f"{title}: style embeddings of unseen phantoms (Fig. 3)")
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def figure4(path: str, vendor, z, metric: str, styles, content=(0, 1), title: str = "") -> str:
    """The paper's Fig. 4: distances from a reference image, matching and non-matching content.

    Args:
      path: output PNG path.
      vendor: the vendor :class:`~stylejax.evaluation.stylex_eval.StyleSet`.
      z: ``[M, D]`` embeddings of ``vendor.images``.
      metric: the encoder's distance.
      styles: vendor styles per column; the reference is ``styles[0]`` on
        ``content[0]`` (top left).
      content: (reference content, other content) indices.
      title: figure title (the encoder's name).
    Returns:
      ``path``.
    """
    plt = _pyplot()

    def index(style, c):
        hit = np.flatnonzero((vendor.style == style) & (vendor.content == c))
        if hit.size != 1:
            raise ValueError(f"vendor set has no image of style {style} and content {c}")
        return int(hit[0])

    ref = index(styles[0], content[0])
    fig, axes = plt.subplots(2, len(styles), figsize=(2.0 * len(styles), 4.8),
                             layout="constrained", squeeze=False)
    for row, c in enumerate(content):
        for col, style in enumerate(styles):
            i = index(style, c)
            d = E.pairwise_distances(z[ref:ref + 1], z[i:i + 1], metric)[0, 0]
            ax = axes[row, col]
            ax.imshow(vendor.images[i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            name = "reference" if i == ref else f"d = {d:.3f}"
            held = " (held out)" if vendor.held_out[i] else ""
            ax.set_title(f"style {style}{held}\n{name}", fontsize=9)
            if col == 0:
                ax.set_ylabel("same content" if row == 0 else "other content")
    fig.suptitle(f"{title}: {metric} distance to the reference (Fig. 4)")
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path
