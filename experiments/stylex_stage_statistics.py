"""Issue 20, CPU route: channel statistics of the frozen StyleX encoder's stages.

The shipped encoder's pooled embedding is trained on LAP and bank styles and sees
little of unseen vendor styles; its intermediate feature maps may carry them better.
For every image this script takes the per-channel mean and standard deviation of the
frozen shipped encoder's ``stem``, ``stage1`` .. ``stage4`` activations (the
classical Gatys / AdaIN style representation) and, in the same run, the shipped
embedding (raw 2048-d and projected 64-d), and caches them per image set:

* ``train``: training seeds only - phantoms ``1_000_000 + i``, i < 16 (the shipped
  model's own training pool, CC/MLO alternating, 256 px) in the 28 bank training
  styles and in ``random_style(1_000_000 + k)``, k < 240 (the trainers' range), plus 48
  of the 216 LAP training styles (even grid values); ``train_b``: the same phantoms in
  ``random_style(1_000_240 + k)``, k < 240; ``train_c``: the other 168 LAP styles;
* ``selection`` and ``test``: the sets of ``experiments/stylex_unseen_styles.py``
  (phantoms 80000+/70000+, random styles 8_000_000+/7_000_000+).

Descriptors built from the cache (``probe``): the statistics standardised per
dimension with the mean/std of the ``train`` set only; compared by cosine or
Euclidean distance with the protocol's numbers. Heads learned on top live in
``experiments/stylex_style_head.py``.

Commands (2-core CPU):
    python experiments/stylex_stage_statistics.py features --set selection --set test \
        --set train --set train_b
    python experiments/stylex_stage_statistics.py probe --set selection
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = "/work/runs/stylex_unseen_stats"
TAPS = ("stem", "stage1", "stage2", "stage3", "stage4")
#: Training-seed set: the shipped model's training phantoms and the trainers' random styles.
TRAIN = dict(content_seed=1_000_000, contents=16, style_seed=1_000_000, random=240,
             lap_styles=48)
#: The other 168 LAP training styles (those ``TRAIN`` does not hold), same phantoms.
TRAIN_C = dict(content_seed=1_000_000, contents=16, style_seed=1_000_000, random=0,
               lap_styles="rest", bank=False)
#: More random training draws (``random_style(1_000_240 + k)``) on the same phantoms.
TRAIN_B = dict(content_seed=1_000_000, contents=16, style_seed=1_000_240, random=240,
               lap_styles=0, bank=False)
SIZE = 256


def protocol():
    """The evaluation protocol module (experiments/stylex_unseen_styles.py)."""
    spec = importlib.util.spec_from_file_location(
        "stylex_unseen_styles", os.path.join(HERE, "stylex_unseen_styles.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_train_set(spec=TRAIN, size: int = SIZE) -> dict:
    """Training-seed images: bank training styles, random training draws, LAP styles.

    Returns the same layout as the protocol's ``make_set`` (style-major), ``group``
    "train" (bank), "random" (random draws) or "lap".
    """
    from stylejax.data import phantom
    from stylejax.pipeline import blackbox, lap, vendor_random
    seeds = [spec["content_seed"] + i for i in range(spec["contents"])]
    raws = np.stack([phantom.mammogram(s, size=(size, size),
                                       view="cc" if i % 2 == 0 else "mlo").raw
                     for i, s in enumerate(seeds)]).astype(np.float32)
    styles = vendor_random.training_styles(spec["random"], spec["style_seed"])
    if not spec.get("bank", True):
        styles = [s for s in styles if not isinstance(s, int)]
    images = [blackbox.apply_batch(raws, s).astype(np.float32) for s in styles]
    groups = ["train" if isinstance(s, int) else "random" for s in styles]
    names = [str(s) if isinstance(s, int) else blackbox.describe(s) for s in styles]
    grid = np.asarray(lap.lap_grid())
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(grid), TRAIN["lap_styles"], replace=False))
    if spec["lap_styles"] == "rest":
        chosen = np.setdiff1d(np.arange(len(grid)), chosen)
    elif spec["lap_styles"] != TRAIN["lap_styles"]:
        chosen = np.sort(np.random.default_rng(0).choice(len(grid), spec["lap_styles"],
                                                         replace=False))
    for k in chosen:
        images.append(np.asarray(lap.process(raws, lap.LAPParams.from_array(grid[k])),
                                 np.float32))
        groups.append("lap")
        names.append("lap " + " ".join(f"{v:g}" for v in grid[k]))
    c = len(seeds)
    return dict(images=np.concatenate(images), style=np.repeat(np.arange(len(names)), c),
                content=np.tile(np.arange(c), len(names)),
                group=np.repeat(np.asarray(groups), c), styles=names, seeds=seeds)


def stage_statistics(model, images, taps=TAPS, batch: int = 16, masks=None) -> dict:
    """``{tap: (mean [N, C], std [N, C])}`` of the frozen encoder's feature maps.

    The image at its own pixel scale (the protocol's 256 px = the model's
    ``embed_size``), one pass per batch through :class:`StyleXFeatures`. With
    ``masks`` ``[N, H, W]`` (1 = tissue; a pilot) the statistics are weighted by the
    tissue fraction of each feature-map position (average-pooled mask).
    """
    import jax
    import jax.numpy as jnp

    from stylejax.models import features
    extractor = features.StyleXFeatures(model.encoder())

    @jax.jit
    def stats(x, m):
        maps = extractor(x, taps)
        out = {}
        for t in taps:
            f = maps[t]
            n, h, w, _ = f.shape
            k = m.shape[1] // h
            wgt = m[:, :h * k, :w * k].reshape(n, h, k, w, k).mean((2, 4))[..., None]
            wgt = wgt / jnp.maximum(wgt.sum((1, 2), keepdims=True), 1e-12)
            mu = jnp.sum(wgt * f, axis=(1, 2))
            v = jnp.sum(wgt * jnp.square(f - mu[:, None, None]), axis=(1, 2))
            out[t] = (mu, jnp.sqrt(v))
        return out

    if masks is None:
        masks = np.ones(images.shape, np.float32)
    parts = []
    for i in range(0, len(images), batch):
        chunk, mchunk = images[i:i + batch], masks[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
            mchunk = np.concatenate([mchunk, np.repeat(mchunk[-1:], batch - n, 0)])
        out = stats(jnp.asarray(chunk, jnp.float32), jnp.asarray(mchunk, jnp.float32))
        parts.append({t: tuple(np.asarray(a)[:n] for a in out[t]) for t in taps})
    return {t: (np.concatenate([p[t][0] for p in parts]),
                np.concatenate([p[t][1] for p in parts])) for t in taps}


def tissue_masks(data: dict, size: int = SIZE) -> np.ndarray:
    """``[N, size, size]`` float: each image's phantom breast mask (by its content)."""
    from stylejax.data import phantom
    per = np.stack([phantom.mammogram(s, size=(size, size),
                                      view="cc" if i % 2 == 0 else "mlo").labels
                    != phantom.BACKGROUND for i, s in enumerate(data["seeds"])])
    return per[data["content"]].astype(np.float32)


def cache_path(name: str, cache: str = CACHE, stats_size: int | str = SIZE) -> str:
    tail = "" if stats_size == SIZE else f"_stats{stats_size}"
    return os.path.join(cache, f"{name}_{SIZE}{tail}.npz")


def compute_features(name: str, cache: str = CACHE, log=print, stats_size: int = SIZE) -> str:
    """Embed one set (``train``, ``selection``, ``test``) and write its cache file.

    ``stats_size`` other than 256: the statistics of the images resized to that side
    (linear, anti-aliased) only, without the shipped embeddings (a multi-scale pilot).
    """
    from stylejax.metrics import stylex
    P = protocol()
    model = stylex.load_pretrained()
    t = time.time()
    if name.startswith("train"):
        data = make_train_set({"train": TRAIN, "train_b": TRAIN_B, "train_c": TRAIN_C}[name])
    else:
        P.check_unseen(model.info, name)
        data = P.make_set(name, cache="/work/runs/stylex_unseen_cache")
    log(f"{name}: {len(data['styles'])} styles x {len(data['seeds'])} phantoms "
        f"({time.time() - t:.0f} s)")
    t = time.time()
    images = data["images"]
    masks = None
    if stats_size == "masked":
        masks = tissue_masks(data)
    elif stats_size == "selfmasked":
        from stylejax.pipeline import blackbox
        masks = np.stack([blackbox._tissue_mask(im) for im in images]).astype(np.float32)
    elif stats_size != SIZE:
        import jax
        images = np.concatenate([np.asarray(jax.image.resize(
            images[i:i + 256], (len(images[i:i + 256]), stats_size, stats_size), "linear",
            antialias=True)) for i in range(0, len(images), 256)])
    stats = stage_statistics(model, images, masks=masks)
    log(f"{name}: stage statistics, {stats_size} ({time.time() - t:.0f} s)")
    arrays = {f"{tap}_mean": s[0] for tap, s in stats.items()}
    arrays.update({f"{tap}_std": s[1] for tap, s in stats.items()})
    if stats_size == SIZE:
        t = time.time()
        emb = P.stylex_embeddings(model, data["images"])
        log(f"{name}: shipped embeddings ({time.time() - t:.0f} s)")
        arrays.update(raw=emb["raw"].astype(np.float32), proj=emb["proj"].astype(np.float32))
    arrays.update(style=data["style"], content=data["content"], group=data["group"],
                  styles=np.asarray(data["styles"]), seeds=np.asarray(data["seeds"]))
    os.makedirs(cache, exist_ok=True)
    path = cache_path(name, cache, stats_size)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return path


def load_features(name: str, cache: str = CACHE, stats_size: int = SIZE) -> dict:
    with np.load(cache_path(name, cache, stats_size)) as f:
        out = {k: f[k] for k in f.files}
    out["styles"] = [str(s) for s in out["styles"]]
    return out


def stat_matrix(data: dict, taps=TAPS, kind: str = "meanstd") -> np.ndarray:
    """``[N, D]`` raw statistics: ``meanstd`` (mean and std per channel), ``mean``,
    ``std``, ``meanlogstd`` (mean and log std)."""
    cols = []
    for t in taps:
        m, s = data[f"{t}_mean"].astype(np.float64), data[f"{t}_std"].astype(np.float64)
        if kind in ("meanstd", "mean", "meanlogstd"):
            cols.append(m)
        if kind in ("meanstd", "std"):
            cols.append(s)
        if kind == "meanlogstd":
            cols.append(np.log(s + 1e-3))
    return np.concatenate(cols, axis=1)


class Standardise:
    """Per-dimension standardisation with the training set's mean and std
    (dimensions that never vary there are dropped); optional per-tap weights so each
    tap contributes equally (``1 / sqrt(dims of the tap)``)."""

    def __init__(self, x_train: np.ndarray, tap_sizes=None):
        self.mean = x_train.mean(0)
        self.std = x_train.std(0)
        self.keep = self.std > 1e-6 * max(float(self.std.max()), 1e-12)
        w = np.ones(x_train.shape[1])
        if tap_sizes is not None:
            start = 0
            for n in tap_sizes:
                w[start:start + n] = 1.0 / np.sqrt(n)
                start += n
        self.weight = w

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / np.where(self.keep, self.std, 1.0) * self.weight
        return z[:, self.keep]


def tap_sizes(data: dict, taps, kind: str) -> list[int]:
    per = 2 if kind in ("meanstd", "meanlogstd") else 1
    return [per * data[f"{t}_mean"].shape[1] for t in taps]


def probe(set_name: str, out: str, log=print) -> dict:
    """Zero-training descriptors on one evaluation set (standardised on ``train``)."""
    P = protocol()
    train, data = load_features("train"), load_features(set_name)
    rows = {}
    for name, metric in (("shipped", "cosine"), ("shipped+proj", "cosine")):
        rows[name] = P.metrics(data["raw" if name == "shipped" else "proj"], data, metric)
    from stylejax.evaluation import stylex_eval as SE
    from stylejax.metrics import baselines as B
    cache = "/work/runs/stylex_unseen_cache"
    images = P.make_set(set_name, cache=cache)["images"]
    rows["handcrafted"] = P.metrics(SE.embed(B.HandcraftedStyle(), images, 64), data,
                                    "euclidean")
    variants = []
    for taps in (TAPS, ("stem", "stage1", "stage2", "stage3"), ("stem", "stage1", "stage2"),
                 ("stage1", "stage2", "stage3"), ("stage3", "stage4"), ("stage4",)):
        for kind in ("meanstd", "mean", "std", "meanlogstd"):
            for balanced in (False, True):
                variants.append((taps, kind, balanced))
    for taps, kind, balanced in variants:
        std = Standardise(stat_matrix(train, taps, kind),
                          tap_sizes(train, taps, kind) if balanced else None)
        z = std(stat_matrix(data, taps, kind))
        for metric in ("cosine", "euclidean"):
            name = f"{'+'.join(taps)}|{kind}|{'bal' if balanced else 'flat'}|{metric}"
            rows[name] = P.metrics(z, data, metric)
    log(P.table({k: rows[k] for k in list(rows)[:3]}))
    ranked = sorted((k for k in rows if "|" in k),
                    key=lambda k: -(rows[k]["retrieval_random"] + rows[k]["silhouette_random"]))
    log(P.table({k: rows[k] for k in ranked[:15]}))
    result = {"set": set_name, "train": {k: v for k, v in TRAIN.items()},
              "rows": rows,
              "command": "python experiments/stylex_stage_statistics.py " + " ".join(sys.argv[1:])}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("features", "probe"))
    parser.add_argument("--set", action="append", default=None,
                        choices=("train", "train_b", "train_c", "selection", "test"))
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--out", default=None)
    parser.add_argument("--stats-size", default=SIZE,
                        type=lambda v: v if v in ("masked", "selfmasked") else int(v),
                        help="features: image side for the statistics (multi-scale pilot), "
                             "'masked' (the phantom's breast positions only, 256 px) or "
                             "'selfmasked' (positions of an Otsu tissue mask of the styled "
                             "image itself); pilots")
    args = parser.parse_args(argv)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)

    sets = args.set or ["selection"]
    if args.phase == "features":
        for name in sets:
            log(f"wrote {compute_features(name, args.cache, log, args.stats_size)}")
        return 0
    for name in sets:
        if name == "test":
            raise SystemExit("probe reads the selection set only; the test set is read once, "
                             "by experiments/stylex_style_head.py --final")
        out = args.out or os.path.join(args.cache, f"probe_{name}.json")
        probe(name, out, log)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
