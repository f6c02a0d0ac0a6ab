"""StyleX on vendor styles it never saw (issue 20): the evaluation protocol.

Every style is shown on every phantom of a content set; an encoder embeds all the
images, and for each group of styles the script reports

* ``retrieval_<group>``: nearest-neighbour style retrieval across content (queries:
  the group's images; gallery: every image of the set showing *other* content; a hit
  when the nearest one has the query's style), as ``evaluate-stylex`` computes it;
* ``silhouette_<group>``: mean silhouette of the group's images, clusters = styles,
  in the encoder's own distance (cosine for StyleX, Euclidean for the descriptor);

for ``heldout`` (the 4 held-out bank styles, :data:`stylejax.pipeline.blackbox.HELD_OUT`),
``random`` (fresh :func:`stylejax.pipeline.vendor_random.random_style` draws) and
``train`` (the 28 bank training styles, for reference), all 32 bank styles and the
random draws sharing one gallery. ``*_unseen_only`` repeats both numbers on the unseen
styles alone (held-out + random, no training style in the gallery), and
``retrieval_heldout_by_style`` splits the held-out retrieval per style.

Encoders: each StyleX model with its style projection (``NAME+proj``, what
``model.embed`` returns) and without it (``NAME``, the paper's label-free 2048-d
embedding: the same forward pass, before the projection), and the handcrafted
descriptor of :mod:`stylejax.metrics.baselines` (``handcrafted``: 32-bin histogram +
Laplacian band energies, Euclidean). ``gap_*`` = StyleX minus handcrafted.

Seeds (no training or selection step touches them; checked at start-up against each
model's ``info``):

* ``test`` set: phantoms 70000-70015 (16, CC/MLO alternating, 256 px), random styles
  ``random_style(7_000_000 + k)``, k < 32. Report numbers from this set only.
* ``selection`` set: phantoms 80000-80011, random styles ``random_style(8_000_000 + k)``,
  k < 24. Pilots and checkpoints are compared on this set's ``random`` numbers, so the
  test set plays no part in any choice.

Training draws phantoms from ``data_seed + i`` (>= 1_000_000) and random styles from
``random_style(data_seed + k)``; ``evaluate-stylex`` and the earlier experiments use
phantoms 0-11, 50000-50011 and 60000+ and random styles 10000-10499; tests use random
styles below 1000. The 4 held-out bank styles are necessarily the same in both sets
(there are only 4): they are never trained on, and selection does not read them.

Command (2-core CPU shared with other jobs: a few minutes per model; the styled images
are cached in ``--cache``):
    python experiments/stylex_unseen_styles.py --model shipped
    python experiments/stylex_unseen_styles.py --model shipped --model ft=/work/runs/X_export
Writes experiments/results/stylex_unseen_styles.json (``--out``).
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
#: The content and style seeds of each set (see the module doc).
SETS = {
    "test": dict(content_seed=70_000, contents=16, style_seed=7_000_000, random=32),
    "selection": dict(content_seed=80_000, contents=12, style_seed=8_000_000, random=24),
}
SIZE = 256
GROUPS = ("heldout", "random", "train")


def make_set(name: str, size: int = SIZE, cache: str | None = None) -> dict:
    """Images of one set: every bank style and random draw on every phantom.

    Returns:
      dict ``images`` ``[S * C, size, size]`` float32 (style-major), ``style`` and
      ``content`` ``[S * C]`` int labels, ``group`` ``[S * C]`` ("train", "heldout",
      "random"), ``styles`` (printable name per style), ``seeds`` (content seeds).
    """
    from stylejax.data import phantom
    from stylejax.pipeline import blackbox, vendor_random
    spec = SETS[name]
    seeds = [spec["content_seed"] + i for i in range(spec["contents"])]
    styles = list(range(blackbox.NUM_STYLES)) + vendor_random.random_styles(
        spec["random"], seed=spec["style_seed"])
    groups = ["heldout" if isinstance(s, int) and s in blackbox.HELD_OUT else
              "train" if isinstance(s, int) else "random" for s in styles]
    c = len(seeds)
    path = None if cache is None else os.path.join(cache, f"unseen_{name}_{size}.npy")
    if path is not None and os.path.exists(path):
        images = np.load(path).astype(np.float32)
    else:
        raws = np.stack([phantom.mammogram(s, size=(size, size),
                                           view="cc" if i % 2 == 0 else "mlo").raw
                         for i, s in enumerate(seeds)]).astype(np.float32)
        images = np.concatenate([blackbox.apply_batch(raws, s) for s in styles]).astype(
            np.float32)
        if path is not None:
            os.makedirs(cache, exist_ok=True)
            np.save(path + ".tmp.npy", images.astype(np.float16))
            os.replace(path + ".tmp.npy", path)
    return dict(images=images, style=np.repeat(np.arange(len(styles)), c),
                content=np.tile(np.arange(c), len(styles)),
                group=np.repeat(np.asarray(groups), c),
                styles=[str(s) if isinstance(s, int) else blackbox.describe(s) for s in styles],
                seeds=seeds)


def check_unseen(info: dict, name: str):
    """ValueError if the set's phantoms or random styles overlap a model's training data."""
    spec = SETS[name]
    start = info.get("data_seed")
    if start is None:
        return
    n_raw = int(info.get("num_raw", 0))
    lo, hi = spec["content_seed"], spec["content_seed"] + spec["contents"]
    if lo < start + n_raw and start < hi:
        raise ValueError(f"{name} phantoms {lo}..{hi - 1} overlap training phantoms "
                         f"{start}..{start + n_raw - 1}")
    n_rand = int(info.get("vendor_random_styles", 0))
    lo, hi = spec["style_seed"], spec["style_seed"] + spec["random"]
    if n_rand and lo < start + n_rand and start < hi:
        raise ValueError(f"{name} random styles {lo}..{hi - 1} overlap training styles "
                         f"{start}..{start + n_rand - 1}")


def metrics(z, data: dict, metric: str) -> dict:
    """The protocol's numbers for embeddings ``z`` ``[S * C, D]`` of :func:`make_set`'s images."""
    from stylejax.metrics import embedding as E
    style, content, group = data["style"], data["content"], data["group"]
    sil = E.silhouette_samples(z, style, metric)
    out = {}
    for g in GROUPS:
        m = group == g
        out[f"retrieval_{g}"] = E.retrieval_accuracy(z, style, content, metric, queries=m)
        out[f"silhouette_{g}"] = float(sil[m].mean())
    u = group != "train"
    out["retrieval_unseen_only"] = E.retrieval_accuracy(z[u], style[u], content[u], metric)
    out["silhouette_unseen_only"] = E.silhouette_score(z[u], style[u], metric)
    out["retrieval_heldout_by_style"] = {
        data["styles"][s]: E.retrieval_accuracy(z, style, content, metric, queries=style == s)
        for s in np.unique(style[group == "heldout"])}
    return {k: (v if isinstance(v, dict) else round(float(v), 4)) for k, v in out.items()}


def stylex_embeddings(model, images, batch: int = 16) -> dict:
    """``{"raw": [N, dim], "proj": [N, k] or None}``: one forward pass; the projection
    applied to the raw embedding as ``StyleX.embed`` does."""
    from stylejax.evaluation import stylex_eval as SE
    raw = SE.embed(model.without_projection(), images, batch)
    proj = None
    if model.projection is not None:
        mean, matrix = (np.asarray(v, np.float64) for v in model.projection)
        proj = (raw - mean) @ matrix
    return {"raw": raw, "proj": proj}


def load(spec: str):
    """``NAME=PATH``, ``PATH`` or ``shipped`` -> ``(name, StyleX)``."""
    from stylejax.metrics import stylex
    name, _, path = spec.rpartition("=")
    if path == "shipped":
        return name or "shipped", stylex.load_pretrained()
    from stylejax.train import simsiam
    return name or os.path.basename(os.path.normpath(path)), simsiam.load_model(path)


def add_gaps(rows, base_name="handcrafted"):
    """Add ``gap_<metric>`` (row minus the ``base_name`` row) to every other row, in place."""
    base = rows[base_name]
    for name, row in rows.items():
        if name != base_name:
            row.update({f"gap_{k}": round(row[k] - base[k], 4) for k in
                        ("retrieval_heldout", "retrieval_random", "silhouette_heldout",
                         "silhouette_random")})

def run(models, set_name: str, cache: str | None, handcrafted: bool = True, log=print) -> dict:
    """Evaluate ``[(name, StyleX)]`` (and the handcrafted descriptor) on one set."""
    from stylejax.evaluation import stylex_eval as SE
    from stylejax.metrics import baselines as B
    for _, model in models:
        check_unseen(model.info, set_name)
    t = time.time()
    data = make_set(set_name, cache=cache)
    log(f"{set_name} set: {len(data['styles'])} styles x {len(data['seeds'])} phantoms "
        f"({time.time() - t:.0f} s)")
    rows = {}
    if handcrafted:
        z = SE.embed(B.HandcraftedStyle(), data["images"], 64)
        rows["handcrafted"] = metrics(z, data, "euclidean")
    for name, model in models:
        t = time.time()
        emb = stylex_embeddings(model, data["images"])
        rows[name] = metrics(emb["raw"], data, "cosine")
        if emb["proj"] is not None:
            rows[f"{name}+proj"] = metrics(emb["proj"], data, "cosine")
        log(f"{name}: embedded {len(data['images'])} images ({time.time() - t:.0f} s)")
    if "handcrafted" in rows:
        add_gaps(rows)
    return dict(seeds=dict(SETS[set_name], content_seeds=data["seeds"]),
                styles=data["styles"], encoders=rows)


def table(rows: dict) -> str:
    keys = ("retrieval_heldout", "silhouette_heldout", "retrieval_random", "silhouette_random",
            "retrieval_train", "silhouette_train", "retrieval_unseen_only",
            "silhouette_unseen_only")
    width = max(len(n) for n in rows)
    short = [k.replace("retrieval", "ret").replace("silhouette", "sil") for k in keys]
    head = f"{'encoder':<{width}}  " + "  ".join(f"{k:>18}" for k in short)
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[k]:>18.3f}" for k in keys))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="shipped, PATH or NAME=PATH (a saved model or a training run); "
                             "repeatable (default: shipped)")
    parser.add_argument("--set", choices=tuple(SETS) + ("both",), default="test")
    parser.add_argument("--cache", default="/work/runs/stylex_unseen_cache",
                        help="folder for the styled images ('' for none)")
    parser.add_argument("--no-handcrafted", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results",
                                                      "stylex_unseen_styles.json"))
    args = parser.parse_args(argv)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)

    models = [load(m) for m in (args.model or ["shipped"])]
    results = {}
    for set_name in (SETS if args.set == "both" else (args.set,)):
        results[set_name] = run(models, set_name, args.cache or None,
                                not args.no_handcrafted, log)
        print(f"\n{set_name} set\n{table(results[set_name]['encoders'])}\n", flush=True)
    out = {"description": __doc__.split("\n\n")[0],
           "command": "python experiments/stylex_unseen_styles.py "
                      + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "load_average": os.getloadavg(), "size": SIZE,
           "models": {n: m.info for n, m in models}, "sets": results,
           "seconds": round(time.time() - t0, 1)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=str)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
