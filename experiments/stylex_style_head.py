"""Issue 20, CPU route: a small head on the frozen encoder's channel statistics.

Input: the per-channel mean and standard deviation of the frozen shipped encoder's
stages (``experiments/stylex_stage_statistics.py features`` caches them), standardised
with the ``train`` set's statistics. Heads (all fitted on training seeds only: phantoms
1_000_000-1_000_015, the 28 bank training styles, ``random_style(1_000_000 + k)``,
48 LAP training styles; see ``stylex_stage_statistics.py``):

* ``lda``: Fisher LDA on the training styles (closed form, supervised by style labels;
  :func:`stylejax.metrics.style_projection.fit_lda`);
* ``ntxent``: contrastive, label-free in the paper's sense - every batch is pairs of
  images that share a style on two different phantoms (NT-Xent, in-batch negatives,
  one pair per style in a batch);
* ``simsiam``: the paper's objective on the same pairs (predictor, stop-gradient);
* ``ce``: supervised, softmax over the training styles with a cosine classifier.

Each as ``linear`` (``D -> dim``) or ``mlp`` (``D -> hidden -> dim``, GELU); the
output is compared by cosine. Selection reads only the ``selection`` set's ``random``
numbers (``search``, ``alpha``); ``lap`` runs ``evaluate-stylex``'s numbers for the
head and the combinations ``[unit(shipped+proj), alpha * unit(head)]``; ``final``
evaluates the chosen heads once on the ``test`` set. ``--train train,train_b`` names
the training caches the head is fitted on.

Commands (see docs/stylex.md, "Unseen vendor styles"):
    python experiments/stylex_style_head.py search --kind meanlogstd --train train,train_b
    python experiments/stylex_style_head.py export --train train,train_b \
        --head-dir stylejax/assets/stylex_style_head
    python experiments/stylex_style_head.py alpha --train train,train_b
    python experiments/stylex_style_head.py lap --head-dir stylejax/assets/stylex_style_head
    python experiments/stylex_style_head.py final --train train,train_b --alpha 1.0 \
        --head-dir stylejax/assets/stylex_style_head --label-free mlp_ntxent_noise \
        --out experiments/results/stylex_unseen_head_test.json
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


def _module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _module("stylex_stage_statistics")
P = S.protocol()


def unit(z):
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def train_head(x, style, content, *, arch="linear", loss="ntxent", dim=64, hidden=512,
               steps=1500, batch=96, lr=1e-3, temp=0.1, wd=1e-4, noise=0.0, seed=0):
    """Train a head on ``x`` ``[N, D]``; returns ``params`` for :func:`apply_head`.

    Pairs: ``batch`` distinct styles per step, each on two different contents.
    """
    import jax
    import jax.numpy as jnp
    import optax

    styles, inverse = np.unique(style, return_inverse=True)
    contents = np.unique(content)
    table = -np.ones((len(styles), len(contents)), np.int64)
    table[inverse, np.searchsorted(contents, content)] = np.arange(len(x))
    if (table < 0).any():
        raise ValueError("every style must appear on every content")
    d_in = x.shape[1]
    key = jax.random.PRNGKey(seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {}
    if arch == "linear":
        params["w1"] = jax.random.normal(k1, (d_in, dim)) / np.sqrt(d_in)
    else:
        params["w1"] = jax.random.normal(k1, (d_in, hidden)) / np.sqrt(d_in)
        params["b1"] = jnp.zeros(hidden)
        params["w2"] = jax.random.normal(k2, (hidden, dim)) / np.sqrt(hidden)
    if loss == "simsiam":
        params["p1"] = jax.random.normal(k3, (dim, dim // 2)) / np.sqrt(dim)
        params["p2"] = jax.random.normal(k4, (dim // 2, dim)) / np.sqrt(dim // 2)
    if loss == "ce":
        params["cls"] = jax.random.normal(k3, (dim, len(styles))) / np.sqrt(dim)
    xj = jnp.asarray(x, jnp.float32)

    def embed(p, h):
        return _apply(p, h, arch)

    def loss_fn(p, idx_a, idx_b, labels, nkey):
        ha, hb = xj[idx_a], xj[idx_b]
        if noise > 0:
            ka, kb = jax.random.split(nkey)
            ha = ha + noise * jax.random.normal(ka, ha.shape)
            hb = hb + noise * jax.random.normal(kb, hb.shape)
        za, zb = embed(p, ha), embed(p, hb)
        if loss == "ntxent":
            ua, ub = _unit(za), _unit(zb)
            logits = ua @ ub.T / temp
            t = jnp.arange(ua.shape[0])
            return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, t).mean()
                          + optax.softmax_cross_entropy_with_integer_labels(logits.T, t).mean())
        if loss == "simsiam":
            def pred(z):
                return jax.nn.gelu(_bn(z) @ p["p1"]) @ p["p2"]
            za_n, zb_n = _bn(za), _bn(zb)
            return -0.5 * (jnp.mean(jnp.sum(_unit(pred(za_n)) * jax.lax.stop_gradient(
                _unit(zb_n)), -1)) + jnp.mean(jnp.sum(_unit(pred(zb_n)) * jax.lax.stop_gradient(
                    _unit(za_n)), -1)))
        if loss == "ce":
            w = p["cls"] / jnp.linalg.norm(p["cls"], axis=0, keepdims=True)
            la, lb = _unit(za) @ w / temp, _unit(zb) @ w / temp
            return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(la, labels).mean()
                          + optax.softmax_cross_entropy_with_integer_labels(lb, labels).mean())
        raise ValueError(loss)

    sched = optax.cosine_decay_schedule(lr, steps)
    opt = optax.adamw(sched, weight_decay=wd)
    state = opt.init(params)

    @jax.jit
    def step(p, s, idx_a, idx_b, labels, nkey):
        value, grad = jax.value_and_grad(loss_fn)(p, idx_a, idx_b, labels, nkey)
        upd, s = opt.update(grad, s, p)
        return optax.apply_updates(p, upd), s, value

    rng = np.random.default_rng(seed)
    losses = []
    for i in range(steps):
        st = rng.choice(len(styles), batch, replace=False)
        ca = rng.integers(0, len(contents), batch)
        cb = (ca + rng.integers(1, len(contents), batch)) % len(contents)
        params, state, value = step(params, state, jnp.asarray(table[st, ca]),
                                    jnp.asarray(table[st, cb]), jnp.asarray(st),
                                    jax.random.fold_in(key, i))
        if i % 100 == 0 or i == steps - 1:
            losses.append(float(value))
    return {k: np.asarray(v) for k, v in params.items()}, losses


def _unit(z):
    import jax.numpy as jnp
    return z / jnp.sqrt(jnp.sum(z * z, -1, keepdims=True) + 1e-12)


def _bn(z):
    import jax.numpy as jnp
    return (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-5)


def _apply(p, h, arch):
    import jax
    if arch == "linear":
        return h @ p["w1"]
    return jax.nn.gelu(h @ p["w1"] + p["b1"]) @ p["w2"]


def apply_head(params, x, arch):
    import jax.numpy as jnp
    return np.asarray(_apply({k: jnp.asarray(v) for k, v in params.items()},
                             jnp.asarray(x, jnp.float32), arch), np.float64)


def fit(spec, train, x_train):
    """Fit head ``spec`` on the train set; returns ``embed(x) -> z``."""
    if spec["loss"] == "lda":
        from stylejax.metrics import style_projection
        mean, matrix = style_projection.fit_lda(x_train, train["style"], dims=spec.get("dim", 64),
                                                shrinkage=spec.get("shrinkage", 0.1))
        return (lambda x: (x - mean) @ matrix), {"mean": mean, "matrix": matrix}, []
    params, losses = train_head(x_train, train["style"], train["content"],
                                **{k: v for k, v in spec.items() if k not in ("taps", "kind")})
    return (lambda x: apply_head(params, x, spec["arch"])), params, losses


SPECS = {
    "lda64": dict(loss="lda", dim=64, shrinkage=0.1),
    "lda64_s1": dict(loss="lda", dim=64, shrinkage=1.0),
    "lda128": dict(loss="lda", dim=128, shrinkage=0.1),
    "lda32": dict(loss="lda", dim=32, shrinkage=0.1),
    "lda64_s001": dict(loss="lda", dim=64, shrinkage=0.01),
    "lda64_s03": dict(loss="lda", dim=64, shrinkage=0.3),
    "lda16": dict(loss="lda", dim=16, shrinkage=0.1),
    "lin_ntxent": dict(arch="linear", loss="ntxent"),
    "mlp_ntxent": dict(arch="mlp", loss="ntxent"),
    "mlp_ntxent_t05": dict(arch="mlp", loss="ntxent", temp=0.05),
    "mlp_ntxent_t2": dict(arch="mlp", loss="ntxent", temp=0.2),
    "mlp_ntxent_noise": dict(arch="mlp", loss="ntxent", noise=0.3),
    "lin_simsiam": dict(arch="linear", loss="simsiam"),
    "mlp_simsiam": dict(arch="mlp", loss="simsiam"),
    "lin_ce": dict(arch="linear", loss="ce"),
    "mlp_ce": dict(arch="mlp", loss="ce"),
}


def search(taps, kind, names, out, groups=None, log=print, train_names=("train",)):
    """Fit every head in ``names`` on ``train``; protocol numbers on ``selection``."""
    train, data = train_features(train_names), S.load_features("selection")
    if groups is not None:
        m = np.isin(train["group"], groups)
        train = {k: (v[m] if isinstance(v, np.ndarray) and v.shape[:1] == m.shape else v)
                 for k, v in train.items()}
    xt, xs = S.stat_matrix(train, taps, kind), S.stat_matrix(data, taps, kind)
    std = S.Standardise(xt)
    xt, xs = std(xt), std(xs)
    rows = {"shipped": P.metrics(data["raw"], data, "cosine"),
            "shipped+proj": P.metrics(data["proj"], data, "cosine"),
            "stats (no head)": P.metrics(xs, data, "cosine")}
    info = {}
    for name in names:
        t = time.time()
        f, _, losses = fit(SPECS[name], train, xt)
        rows[name] = P.metrics(f(xs), data, "cosine")
        info[name] = dict(SPECS[name], seconds=round(time.time() - t, 1),
                          loss_first_last=losses[:1] + losses[-1:])
        log(f"{name}: random {rows[name]['retrieval_random']:.3f} / "
            f"{rows[name]['silhouette_random']:.3f} ({time.time() - t:.0f} s, loss {losses[-1:]})")
    log("\n" + P.table(rows))
    result = dict(set="selection", taps=list(taps), kind=kind, groups=groups, heads=info,
                  rows=rows, command="python experiments/stylex_style_head.py "
                  + " ".join(sys.argv[1:]))
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    return result


def train_features(names=("train",)):
    """The training-seed caches concatenated (styles renumbered per file)."""
    parts = [S.load_features(n) for n in names]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]
           if isinstance(parts[0][k], np.ndarray) and k not in ("styles", "seeds")}
    offset, style = 0, []
    for p in parts:
        style.append(p["style"] + offset)
        offset += int(p["style"].max()) + 1
    out["style"] = np.concatenate(style)
    out["styles"] = sum((p["styles"] for p in parts), [])
    out["seeds"] = np.unique(np.concatenate([p["seeds"] for p in parts]))
    return out


def fit_library_head(train_names, dims=64, shrinkage=0.1):
    """The chosen head as the library builds it (:mod:`stylejax.metrics.style_statistics`),
    from the cached training statistics."""
    from stylejax.metrics import style_statistics as SS
    train = train_features(train_names)
    x = S.stat_matrix(train, SS.TAPS, "meanlogstd")
    return SS.fit_head(x, train["style"], dims=dims, shrinkage=shrinkage), train


def combine(a, b, alpha):
    """``[unit(a), alpha * unit(b)]`` (cosine of it = mix of the two cosines)."""
    return np.concatenate([unit(a), alpha * unit(b)], axis=1)


ALPHAS = (0.5, 0.75, 1.0, 1.5, 2.0)


def select_alpha(train_names, out, log=print):
    """Head alone and combinations with the shipped embedding on the selection set."""
    (mean, matrix), _ = fit_library_head(train_names)
    data = S.load_features("selection")
    from stylejax.metrics import style_statistics as SS
    head = (S.stat_matrix(data, SS.TAPS, "meanlogstd") - mean) @ matrix
    rows = {"shipped": P.metrics(data["raw"], data, "cosine"),
            "shipped+proj": P.metrics(data["proj"], data, "cosine"),
            "stats head": P.metrics(head, data, "cosine")}
    for a in ALPHAS:
        rows[f"proj + {a} head"] = P.metrics(combine(data["proj"], head, a), data, "cosine")
    log("\n" + P.table(rows))
    with open(out, "w") as fh:
        json.dump(dict(set="selection", train=list(train_names), rows=rows,
                       command="python experiments/stylex_style_head.py "
                       + " ".join(sys.argv[1:])), fh, indent=1)


def lap_check(head_dir, out, alphas=ALPHAS, log=print):
    """``evaluate-stylex``'s numbers (phantoms 0-11) for the head alone and the
    combinations, beside the shipped model, from one embedding pass per set."""
    from stylejax.evaluation import stylex_eval as SE
    from stylejax.metrics import style_statistics as SS
    from stylejax.metrics import stylex
    cfg = SE.EvalConfig().validate()
    shipped = stylex.load_pretrained()
    stats = SS.load(head_dir, shipped)
    sets = SE.make_sets(cfg)
    t = time.time()
    emb_s = {k: SE.embed(shipped, s.images, cfg.batch_size) for k, s in sets.items()}
    emb_h = {k: SE.embed(stats, s.images, cfg.batch_size) for k, s in sets.items()}
    log(f"embedded the evaluate-stylex sets ({time.time() - t:.0f} s)")
    results = {"shipped": SE.evaluate_embeddings(emb_s, sets, "cosine", cfg)[0],
               "stats head": SE.evaluate_embeddings(emb_h, sets, "cosine", cfg)[0]}
    for a in alphas:
        emb = {k: combine(emb_s[k], emb_h[k], a) for k in sets}
        results[f"proj + {a} head"] = SE.evaluate_embeddings(emb, sets, "cosine", cfg)[0]
    rows, _ = SE.compare(results, "shipped")
    log("\n" + SE.format_table(rows, list(results)))
    with open(out, "w") as fh:
        json.dump(dict(results=results, config=dict(seeds=SE.content_seeds(cfg), size=cfg.size),
                       command="python experiments/stylex_style_head.py "
                       + " ".join(sys.argv[1:])), fh, indent=1)


def final(head_dir, train_names, alpha, label_free, out, log=print):
    """The chosen descriptors, each evaluated once on the ``test`` set."""
    from stylejax.evaluation import stylex_eval as SE
    from stylejax.metrics import baselines as B
    from stylejax.metrics import style_statistics as SS
    from stylejax.metrics import stylex
    shipped = stylex.load_pretrained()
    P.check_unseen(shipped.info, "test")
    data = S.load_features("test")
    images = P.make_set("test", cache="/work/runs/stylex_unseen_cache")["images"]
    rows = {"handcrafted": P.metrics(SE.embed(B.HandcraftedStyle(), images, 64), data,
                                     "euclidean"),
            "shipped": P.metrics(data["raw"], data, "cosine"),
            "shipped+proj": P.metrics(data["proj"], data, "cosine")}
    train = train_features(train_names)
    xt, xs = (S.stat_matrix(d, SS.TAPS, "meanlogstd") for d in (train, data))
    std = S.Standardise(xt)
    rows["stats, no head"] = P.metrics(std(xs), data, "cosine")
    t = time.time()
    desc = SS.load(head_dir, shipped)
    head = SE.embed(desc, images, 16)  # the library path, from the images
    cached = (xs - np.asarray(desc.head[0], np.float64)) @ np.asarray(desc.head[1], np.float64)
    log(f"library head embedded {len(images)} test images ({time.time() - t:.0f} s); "
        f"max |library - cached| = {np.abs(head - cached).max():.2e}")
    rows["stats + LDA head"] = P.metrics(head, data, "cosine")
    if label_free:
        f, _, losses = fit(SPECS[label_free], train, std(xt))
        rows[f"stats + {label_free} (label-free)"] = P.metrics(f(std(xs)), data, "cosine")
    rows[f"shipped+proj + {alpha} x LDA head"] = P.metrics(combine(data["proj"], head, alpha),
                                                           data, "cosine")
    P.add_gaps(rows)
    log("\n" + P.table(rows))
    with open(out, "w") as fh:
        json.dump(dict(set="test", seeds=P.SETS["test"], train=list(train_names),
                       head_dir=head_dir, alpha=alpha, label_free=label_free, rows=rows,
                       load_average=os.getloadavg(),
                       command="python experiments/stylex_style_head.py "
                       + " ".join(sys.argv[1:])), fh, indent=1)


def variants(train_names, other, out, log=print):
    """Pilot: LDA64 on the statistics at 256 px, on another cache (``other``: 128, the
    images at 128 px, or ``masked``, tissue positions only), and on both (selection)."""
    from stylejax.metrics import style_projection
    taps = S.TAPS

    def load(names, size):
        parts = [S.load_features(n, stats_size=size) for n in names]
        return np.concatenate([S.stat_matrix(p, taps, "meanlogstd") for p in parts])

    train = train_features(train_names)
    sel = S.load_features("selection")
    xs = {size: (load(train_names, size), S.stat_matrix(
        S.load_features("selection", stats_size=size), taps, "meanlogstd"))
        for size in (256, other)}
    rows = {}
    for name, sizes in (("256 px", (256,)), (str(other), (other,)),
                        (f"256 px + {other}", (256, other))):
        stds = [S.Standardise(xs[z][0]) for z in sizes]
        zt = np.concatenate([sd(xs[z][0]) for sd, z in zip(stds, sizes)], 1)
        zs = np.concatenate([sd(xs[z][1]) for sd, z in zip(stds, sizes)], 1)
        mean, matrix = style_projection.fit_lda(zt, train["style"], dims=64, shrinkage=0.1)
        rows[f"stats {name} + LDA64"] = P.metrics((zs - mean) @ matrix, sel, "cosine")
    log("\n" + P.table(rows))
    with open(out, "w") as fh:
        json.dump(dict(set="selection", train=list(train_names), rows=rows,
                       command="python experiments/stylex_style_head.py "
                       + " ".join(sys.argv[1:])), fh, indent=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("search", "export", "alpha", "lap", "final",
                                          "variants"))
    parser.add_argument("--other", default="128",
                        type=lambda v: v if v in ("masked", "selfmasked") else int(v), help="variants: the second statistics cache (128, masked, selfmasked)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--label-free", default="mlp_ntxent_noise")
    parser.add_argument("--train", default="train", help="training caches, e.g. train,train_b")
    parser.add_argument("--head-dir", default=os.path.join(S.CACHE, "head"))
    parser.add_argument("--taps", default=",".join(S.TAPS))
    parser.add_argument("--kind", default="meanstd")
    parser.add_argument("--head", action="append", default=None)
    parser.add_argument("--groups", default=None, help="train groups, e.g. train,random")
    parser.add_argument("--out", default=os.path.join(S.CACHE, "head_search.json"))
    args = parser.parse_args(argv)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)

    train_names = tuple(args.train.split(","))
    if args.phase == "search":
        search(tuple(args.taps.split(",")), args.kind, args.head or list(SPECS), args.out,
               None if args.groups is None else args.groups.split(","), log, train_names)
    elif args.phase == "export":
        from stylejax.metrics import style_statistics as SS
        from stylejax.metrics import stylex
        head, train = fit_library_head(train_names)
        info = dict(encoder="shipped (stylejax/assets/stylex_default)", fit="fisher lda",
                    dims=64, shrinkage=0.1, phantoms=[int(train["seeds"].min()),
                                                      int(train["seeds"].max())],
                    train_sets={n: dict({"train": S.TRAIN, "train_b": S.TRAIN_B,
                                         "train_c": S.TRAIN_C}[n]) for n in train_names},
                    styles=len(train["styles"]), images=int(len(train["style"])), size=S.SIZE)
        SS.StyleStatistics(stylex.load_pretrained(), head=head, info=info).save(args.head_dir)
        log(f"wrote {args.head_dir}")
    elif args.phase == "alpha":
        select_alpha(train_names, args.out, log)
    elif args.phase == "variants":
        variants(train_names, args.other, args.out, log)
    elif args.phase == "lap":
        lap_check(args.head_dir, args.out, log=log)
    else:
        final(args.head_dir, train_names, args.alpha, args.label_free, args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
