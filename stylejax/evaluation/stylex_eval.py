"""The StyleX paper's evaluation (Fig. 3, Fig. 4), made quantitative, with baselines.

Test sets (all on synthetic raw phantoms the encoder never saw, CC and MLO views
alternating, seeds ``seed_start + i``; see :data:`EVAL_SEED_START`):

* **LAP-w, LAP-l, LAP-h** - one parameter swept over 0, 1, ..., 10 (10 steps from
  minimum to maximum; the odd values are not training styles), the other two at 5.
* **LAP-x** - every parameter at 0 or 10: 8 extreme styles.
* **Vendor** - the 32 black-box vendor styles (:mod:`stylejax.pipeline.blackbox`),
  4 of them held out from training.

Numbers (per encoder; the paper only showed pictures):

* ``spearman_tsne_{w,l,h}`` - ``|Spearman|`` between a sweep's 1-D t-SNE coordinate
  and the swept value (absolute: t-SNE's orientation is arbitrary);
* ``spearman_dist_{w,l,h}`` - Spearman between the swept value and the distance of
  each image to the sweep's first style (value 0) shown on *another* phantom;
* ``odd_between_{w,l,h}`` - fraction of unseen odd values whose median 1-D
  coordinate lies between those of its two even neighbours;
* ``silhouette_*`` / ``retrieval_*`` - silhouette of the style clusters (in the
  encoder's own metric) and nearest-neighbour style retrieval across non-matching
  content, for LAP-x, for the sweeps (``fine``: styles one parameter unit apart,
  averaged over the three sweeps), for all vendor styles and for the held-out
  ones (``*_heldout``: held-out queries / samples, among all 32 styles);
* ``auc_*`` - ROC AUC of the distance separating same-style/different-content
  pairs from different-style/same-content pairs; ``auc_content`` pools the LAP-x
  and vendor pairs (the headline content-invariance number).

:func:`evaluate` runs everything, writes ``fig3_<encoder>.png``,
``fig4_<encoder>.png`` and ``metrics.json``, and returns the results dict;
:func:`format_table` renders the comparison table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from stylejax.metrics import embedding as E

#: First phantom seed of the evaluation content. Seeds ``EVAL_SEED_START ..
#: EVAL_SEED_START + 99_999`` are reserved for evaluation; training data must not
#: use them (the training configs draw phantoms from ``data_seed >= 1_000_000``).
EVAL_SEED_START = 0
EVAL_SEED_RESERVED = 100_000

PARAMS = ("w", "l", "h")
SWEEP_VALUES = tuple(float(v) for v in range(11))
FIXED_VALUE = 5.0
LAPX_VALUES = (0.0, 10.0)

#: Targets of issue 3 for the shipped model (metric -> minimum).
TARGETS = {
    **{f"spearman_tsne_{p}": 0.9 for p in PARAMS},
    **{f"spearman_dist_{p}": 0.9 for p in PARAMS},
    "retrieval_lapx": 0.95,
    "auc_content": 0.95,
    "silhouette_vendor_heldout": 0.4,
}

#: Rows of the comparison table, in order (all "higher is better").
METRIC_NAMES = (
    *(f"spearman_tsne_{p}" for p in PARAMS),
    *(f"spearman_dist_{p}" for p in PARAMS),
    *(f"odd_between_{p}" for p in PARAMS),
    "silhouette_lapx", "retrieval_lapx", "auc_lapx",
    "silhouette_fine", "retrieval_fine", "auc_fine",
    "silhouette_vendor", "retrieval_vendor", "auc_vendor",
    "silhouette_vendor_heldout", "retrieval_vendor_heldout",
    "auc_content",
)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Size of the evaluation.

    Attributes:
      size: side of the (square) phantoms in pixels; use the pixel scale the
        encoder was trained at (StyleX ``embed_size``).
      contents: number of phantoms (content); each appears in every style.
      seed_start: first phantom seed (see :data:`EVAL_SEED_START`).
      tsne_iters: t-SNE gradient steps (250 of them with early exaggeration).
      perplexity: t-SNE perplexity (capped at ``(N - 1) / 3`` for small sets).
      batch_size: images per ``embed`` call.
      fig4_styles: vendor styles shown in Fig. 4; the first is the reference style.
      baseline_figures: also draw Fig. 3 for the baselines (the encoder under test
        always gets Fig. 3 and Fig. 4).
    """

    size: int = 256
    contents: int = 12
    seed_start: int = EVAL_SEED_START
    tsne_iters: int = 1000
    perplexity: float = 30.0
    batch_size: int = 16
    fig4_styles: tuple[int, ...] = (0, 7, 13, 18, 29)
    baseline_figures: bool = True

    @classmethod
    def quick(cls, **overrides) -> "EvalConfig":
        """Seconds-scale settings for tests and CI: 3 phantoms of 64 px, figures of the
        encoder under test only."""
        return dataclasses.replace(cls(size=64, contents=3, tsne_iters=500,
                                       baseline_figures=False), **overrides)

    def validate(self) -> "EvalConfig":
        if self.size < 32:
            raise ValueError(f"size must be >= 32 pixels (got {self.size})")
        if self.contents < 2:
            raise ValueError(f"contents must be >= 2: retrieval and AUC need non-matching "
                             f"content (got {self.contents})")
        if self.seed_start < 0:
            raise ValueError(f"seed_start must be >= 0 (got {self.seed_start})")
        if self.tsne_iters <= 250:
            raise ValueError(f"tsne_iters must exceed the 250 early-exaggeration steps "
                             f"(got {self.tsne_iters})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {self.batch_size})")
        if len(self.fig4_styles) < 2 or not all(0 <= s < 32 for s in self.fig4_styles):
            raise ValueError(f"fig4_styles needs >= 2 vendor styles in 0..31 "
                             f"(got {self.fig4_styles})")
        return self


@dataclasses.dataclass
class StyleSet:
    """Images of every content in every style of one test set.

    Attributes:
      name: "w", "l", "h" (sweeps), "lapx" or "vendor".
      images: ``[M, H, W]`` float32 in [0, 1], style-major (style k, content c at
        ``k * contents + c``).
      style: ``[M]`` style index into ``labels``; content: ``[M]`` content index.
      labels: a printable name per style.
      value: ``[M]`` swept parameter value (sweeps only).
      held_out: ``[M]`` True for held-out vendor styles (vendor only).
    """

    name: str
    images: np.ndarray
    style: np.ndarray
    content: np.ndarray
    labels: list
    value: np.ndarray | None = None
    held_out: np.ndarray | None = None


# ----------------------------------------------------------------------------
# Test sets.
# ----------------------------------------------------------------------------

def content_seeds(cfg: EvalConfig) -> list[int]:
    """Phantom seeds of the evaluation content."""
    return [cfg.seed_start + i for i in range(cfg.contents)]


def make_contents(cfg: EvalConfig) -> np.ndarray:
    """``[contents, size, size]`` raw phantoms, CC and MLO views alternating."""
    from stylejax.data import phantom
    return np.stack([phantom.mammogram(seed, size=(cfg.size, cfg.size),
                                       view="cc" if i % 2 == 0 else "mlo").raw
                     for i, seed in enumerate(content_seeds(cfg))]).astype(np.float32)


def _lap_set(name, raws, params, labels, value=None) -> StyleSet:
    from stylejax.pipeline import lap
    params = np.asarray(params, np.float32)
    k, c = params.shape[0], raws.shape[0]
    # One style at a time over all phantoms: a single shape, so LAP compiles once.
    images = np.concatenate([np.asarray(lap.process(raws, lap.LAPParams.from_array(p)),
                                        np.float32) for p in params])
    value = None if value is None else np.repeat(np.asarray(value, np.float64), c)
    return StyleSet(name, images, np.repeat(np.arange(k), c), np.tile(np.arange(c), k),
                    list(labels), value=value)


def sweep_set(raws, param: str) -> StyleSet:
    """LAP sweep of ``param`` over :data:`SWEEP_VALUES`, the others at 5."""
    if param not in PARAMS:
        raise ValueError(f"param must be one of {PARAMS} (got {param!r})")
    col = PARAMS.index(param)
    params = np.full((len(SWEEP_VALUES), 3), FIXED_VALUE, np.float32)
    params[:, col] = SWEEP_VALUES
    return _lap_set(param, raws, params, [f"{param}={v:g}" for v in SWEEP_VALUES],
                    value=SWEEP_VALUES)


def lapx_set(raws) -> StyleSet:
    """LAP-x: the 8 styles with each parameter at its minimum or maximum."""
    params = np.array([[w, l, h] for w in LAPX_VALUES for l in LAPX_VALUES  # noqa: E741
                       for h in LAPX_VALUES], np.float32)
    labels = ["".join(f"{n}{'+' if v else '-'}" for n, v in zip(PARAMS, row)) for row in params]
    return _lap_set("lapx", raws, params, labels)


def vendor_set(raws, progress=None) -> StyleSet:
    """All 32 black-box vendor styles (``held_out`` marks the 4 held-out ones)."""
    from stylejax.pipeline import blackbox
    n, c = blackbox.NUM_STYLES, raws.shape[0]
    images = np.empty((n * c,) + raws.shape[1:], np.float32)
    for s in range(n):
        for i in range(c):
            images[s * c + i] = blackbox.apply(raws[i], s)
            if progress is not None:
                progress.update(1)
    style = np.repeat(np.arange(n), c)
    labels = [f"{s}{'*' if s in blackbox.HELD_OUT else ''}" for s in range(n)]
    return StyleSet("vendor", images, style, np.tile(np.arange(c), n), labels,
                    held_out=np.isin(style, blackbox.HELD_OUT))


def make_sets(cfg: EvalConfig, progress=None) -> dict[str, StyleSet]:
    """Every test set, keyed ``"w", "l", "h", "lapx", "vendor"``."""
    raws = make_contents(cfg)
    sets = {p: sweep_set(raws, p) for p in PARAMS}
    sets["lapx"] = lapx_set(raws)
    sets["vendor"] = vendor_set(raws, progress)
    return sets


# ----------------------------------------------------------------------------
# Embeddings and metrics.
# ----------------------------------------------------------------------------

def encoder_name(encoder) -> str:
    """``encoder.name`` if it has one (the baselines do), else ``"stylex"``."""
    return str(getattr(encoder, "name", "stylex"))


def encoder_metric(encoder) -> str:
    """Distance the encoder's embeddings are compared with (StyleX: cosine, Eq. 1)."""
    return str(getattr(encoder, "metric", "cosine"))


def embed(encoder, images, batch_size: int, progress=None) -> np.ndarray:
    """``encoder.embed`` over fixed-size batches (the last one padded, so jit compiles once)."""
    out = []
    for i in range(0, images.shape[0], batch_size):
        chunk = images[i:i + batch_size]
        n = chunk.shape[0]
        if n < batch_size and images.shape[0] > batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
        z = np.asarray(encoder.embed(chunk), np.float64)[:n]
        if z.ndim != 2 or z.shape[0] != n:
            raise ValueError(f"encoder.embed must return [N, D] (got shape {z.shape} for N={n})")
        if not np.all(np.isfinite(z)):
            raise ValueError("encoder.embed returned non-finite values")
        out.append(z)
        if progress is not None:
            progress.update(n)
    return np.concatenate(out, axis=0)


def _perplexity(cfg: EvalConfig, n: int) -> float:
    return float(min(cfg.perplexity, (n - 1) / 3.0))


def _tsne(z, dim, metric, cfg):
    return E.tsne(z, dim, perplexity=_perplexity(cfg, z.shape[0]), metric=metric,
                  n_iter=cfg.tsne_iters)


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def sweep_metrics(z, s: StyleSet, metric: str, cfg: EvalConfig):
    """Metrics of one sweep set; returns ``(metrics, oriented 1-D coordinate)``."""
    coord = _tsne(z, 1, metric, cfg)[:, 0]
    rho = E.spearman(coord, s.value)
    if rho < 0:  # orient the picture so the coordinate grows with the parameter
        coord = -coord
    contents = int(s.content.max()) + 1
    # Reference: the first style (value 0) on the next phantom, i.e. non-matching content.
    first = np.flatnonzero(s.style == 0)
    ref = first[(s.content + 1) % contents]
    d = E.paired_distances(z, z[ref], metric)
    medians = {v: np.median(coord[s.value == v]) for v in SWEEP_VALUES}
    odd = [v for v in SWEEP_VALUES if int(v) % 2 == 1]
    between = [min(medians[v - 1], medians[v + 1]) <= medians[v] <= max(medians[v - 1],
                                                                        medians[v + 1])
               for v in odd]
    m = {"spearman_tsne": _finite(abs(rho)) if math.isfinite(rho) else None,
         "spearman_dist": _finite(E.spearman(d, s.value)),
         "odd_between": float(np.mean(between)),
         "silhouette": E.silhouette_score(z, s.style, metric),
         "retrieval": E.retrieval_accuracy(z, s.style, s.content, metric),
         "auc": E.content_invariance_auc(z, s.style, s.content, metric)}
    return m, coord


def _pair_scores(z, s: StyleSet, metric: str):
    pos, neg = E.style_content_pairs(s.style, s.content)
    d = E.pairwise_distances(z, metric=metric)
    return -d[pos[:, 0], pos[:, 1]], -d[neg[:, 0], neg[:, 1]]


def evaluate_embeddings(emb: dict, sets: dict, metric: str, cfg: EvalConfig, progress=None):
    """All metrics of one encoder from its embeddings of every set.

    Args:
      emb: set name -> ``[M, D]`` embeddings; sets: set name -> :class:`StyleSet`.
      metric: the encoder's distance ("cosine" or "euclidean").
    Returns:
      ``(metrics, tsne)``: metric name -> value (see :data:`METRIC_NAMES`), and the
      t-SNE coordinates used by the figures (``"w"``, ``"l"``, ``"h"``: ``[M]``;
      ``"lapx"``, ``"vendor"``: ``[M, 2]``).
    """
    out, tsne = {}, {}
    fine = {"silhouette": [], "retrieval": []}
    fine_pos, fine_neg = [], []
    for p in PARAMS:
        m, tsne[p] = sweep_metrics(emb[p], sets[p], metric, cfg)
        for key in ("spearman_tsne", "spearman_dist", "odd_between"):
            out[f"{key}_{p}"] = m[key]
        for key in ("silhouette", "retrieval", "auc"):
            out[f"{key}_fine_{p}"] = m[key]
        fine["silhouette"].append(m["silhouette"])
        fine["retrieval"].append(m["retrieval"])
        pos, neg = _pair_scores(emb[p], sets[p], metric)
        fine_pos.append(pos)
        fine_neg.append(neg)
        if progress is not None:
            progress.update(1)
    out["silhouette_fine"] = float(np.mean(fine["silhouette"]))
    out["retrieval_fine"] = float(np.mean(fine["retrieval"]))
    out["auc_fine"] = E.roc_auc(np.concatenate(fine_pos), np.concatenate(fine_neg))

    x, v = sets["lapx"], sets["vendor"]
    zx, zv = emb["lapx"], emb["vendor"]
    out["silhouette_lapx"] = E.silhouette_score(zx, x.style, metric)
    out["retrieval_lapx"] = E.retrieval_accuracy(zx, x.style, x.content, metric)
    out["auc_lapx"] = E.content_invariance_auc(zx, x.style, x.content, metric)
    sil = E.silhouette_samples(zv, v.style, metric)
    out["silhouette_vendor"] = float(sil.mean())
    out["silhouette_vendor_heldout"] = float(sil[v.held_out].mean())
    out["retrieval_vendor"] = E.retrieval_accuracy(zv, v.style, v.content, metric)
    out["retrieval_vendor_heldout"] = E.retrieval_accuracy(zv, v.style, v.content, metric,
                                                           queries=v.held_out)
    out["auc_vendor"] = E.content_invariance_auc(zv, v.style, v.content, metric)
    px, nx = _pair_scores(zx, x, metric)
    pv, nv = _pair_scores(zv, v, metric)
    out["auc_content"] = E.roc_auc(np.concatenate([px, pv]), np.concatenate([nx, nv]))
    for name in ("lapx", "vendor"):
        tsne[name] = _tsne(emb[name], 2, metric, cfg)
        if progress is not None:
            progress.update(1)
    return {k: (None if val is None else float(val)) for k, val in out.items()}, tsne


# ----------------------------------------------------------------------------
# Comparison.
# ----------------------------------------------------------------------------

def compare(results: dict, main: str) -> tuple[list, list]:
    """Comparison table rows and one verdict line per metric.

    Args:
      results: encoder name -> metrics dict; main: the encoder under test.
    Returns:
      ``(rows, verdicts)``: rows are dicts ``{"metric", "target", "best", "meets_target",
      <encoder>: value, ...}``; ``meets_target`` refers to ``main`` (None without a target).
    """
    rows, verdicts = [], []
    names = list(results)
    for metric in METRIC_NAMES:
        values = {n: results[n].get(metric) for n in names}
        valid = {n: v for n, v in values.items() if v is not None}
        best = max(valid, key=valid.get) if valid else None
        target = TARGETS.get(metric)
        mv = values.get(main)
        meets = None if target is None or mv is None else bool(mv >= target)
        rows.append({"metric": metric, **values, "target": target, "best": best,
                     "meets_target": meets})
        ranked = sorted(valid, key=valid.get, reverse=True)
        if not valid:
            line = f"{metric}: undefined for every encoder"
        else:
            tie = len(ranked) > 1 and valid[ranked[0]] - valid[ranked[1]] < 0.01
            order = " > ".join(f"{n} {valid[n]:.3f}" for n in ranked)
            line = f"{metric}: {'tie (within 0.01), ' if tie else ''}{best} best ({order})"
        if meets is not None:
            line += f"; {main} target >= {target:g}: {'met' if meets else 'NOT met'}"
        verdicts.append(line)
    return rows, verdicts


def format_table(rows: list, names: list) -> str:
    """Plain-text comparison table (one row per metric)."""
    width = max(len(r["metric"]) for r in rows)
    head = f"{'metric':<{width}}  " + "  ".join(f"{n:>11}" for n in names) + \
        f"  {'target':>6}  best"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "  ".join(f"{'n/a':>11}" if r[n] is None else f"{r[n]:>11.3f}" for n in names)
        target = "" if r["target"] is None else f">={r['target']:g}"
        mark = "" if r["meets_target"] is None else (" ok" if r["meets_target"] else " MISS")
        lines.append(f"{r['metric']:<{width}}  {cells}  {target:>6}  {r['best']}{mark}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------

def _check_unseen(encoder, cfg: EvalConfig):
    """Refuse content that overlaps the model's training phantoms, when it says which."""
    info = getattr(encoder, "info", None) or {}
    start, count = info.get("data_seed"), info.get("num_raw")
    if start is None or count is None:
        return
    lo, hi = cfg.seed_start, cfg.seed_start + cfg.contents
    if lo < start + count and start < hi:
        raise ValueError(f"evaluation phantoms (seeds {lo}..{hi - 1}) overlap the model's "
                         f"training phantoms (seeds {start}..{start + count - 1})")


def evaluate(encoder, out_dir: str, cfg: EvalConfig | None = None, *, baselines=None,
             progress: bool = True, command: str | None = None) -> dict:
    """Run the evaluation of ``encoder`` and its baselines; write figures and metrics.json.

    Args:
      encoder: the encoder under test: any object with ``embed(images [N, H, W] in
        [0, 1]) -> [N, D]``; optional ``name`` (default "stylex"), ``metric``
        ("cosine" default, or "euclidean") and ``info`` (a dict; if it has
        ``data_seed`` and ``num_raw``, overlap with the evaluation content is refused).
      out_dir: directory for ``fig3_<name>.png``, ``fig4_<name>.png``, ``metrics.json``.
      cfg: :class:`EvalConfig` (default: the full evaluation).
      baselines: other encoders to compare with (default: both of
        :func:`stylejax.metrics.baselines.baselines`); one named like ``encoder``
        is skipped.
      progress: show a progress bar on stderr.
      command: the command line that ran the evaluation, recorded for reproduction.
    Returns:
      The dict written to ``metrics.json`` (``command``, ``config``, ``main``,
      ``encoders``, ``targets``, ``table``, ``verdicts``, ``figures``, ``seconds``).
    """
    from tqdm import tqdm

    from stylejax.evaluation import stylex_figures as F
    from stylejax.metrics import baselines as B

    cfg = (cfg or EvalConfig()).validate()
    if not hasattr(encoder, "embed"):
        raise ValueError(f"encoder must have an embed(images) method "
                         f"(got {type(encoder).__name__})")
    _check_unseen(encoder, cfg)
    main = encoder_name(encoder)
    encoders = {main: encoder}
    for other in (B.baselines().values() if baselines is None else baselines):
        encoders.setdefault(encoder_name(other), other)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()

    n_images = cfg.contents * (3 * len(SWEEP_VALUES) + 8 + 32)
    total = cfg.contents * 32 + len(encoders) * (n_images + 5)
    with tqdm(total=total, desc="evaluate-stylex", unit="step", disable=not progress,
              dynamic_ncols=True) as bar:
        bar.set_postfix_str("test sets")
        sets = make_sets(cfg, bar)
        results, timing, figures = {}, {}, []
        for name, enc in encoders.items():
            t = time.time()
            bar.set_postfix_str(f"{name}: embedding")
            emb = {k: embed(enc, s.images, cfg.batch_size, bar) for k, s in sets.items()}
            bar.set_postfix_str(f"{name}: t-SNE and metrics")
            metrics, tsne = evaluate_embeddings(emb, sets, encoder_metric(enc), cfg, bar)
            results[name] = metrics
            timing[name] = time.time() - t
            if name == main or cfg.baseline_figures:
                figures.append(F.figure3(os.path.join(out_dir, f"fig3_{name}.png"), sets, tsne,
                                         metrics, title=name))
            if name == main:
                figures.append(F.figure4(os.path.join(out_dir, f"fig4_{name}.png"),
                                         sets["vendor"], emb["vendor"], encoder_metric(enc),
                                         cfg.fig4_styles, title=name))

    rows, verdicts = compare(results, main)
    vendor = sets["vendor"]
    report = {
        "command": command,
        "config": {**dataclasses.asdict(cfg), "content_seeds": content_seeds(cfg),
                   "sweep_values": list(SWEEP_VALUES), "fixed_value": FIXED_VALUE,
                   "heldout_vendor_styles": sorted({int(s) for s in
                                                    vendor.style[vendor.held_out]})},
        "main": main,
        "encoders": {n: {"metric": encoder_metric(e), "seconds": round(timing[n], 2),
                         "info": getattr(e, "info", None), "metrics": results[n]}
                     for n, e in encoders.items()},
        "targets": TARGETS,
        "table": rows,
        "verdicts": verdicts,
        "figures": [os.path.basename(f) for f in figures],
        "seconds": round(time.time() - t0, 2),
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    return report
