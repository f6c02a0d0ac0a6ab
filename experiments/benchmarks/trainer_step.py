"""Where a StyleX training step's time goes: the whole trainer step (pair making on
the device: LAP styling, tissue-placed crops, flips; then the SimSiam update) against
the SimSiam update alone on ready-made views, for one config, in one run.

The difference is the cost of making pairs inside the step. LAP's style-free
normalisation (``-log`` and a percentile sort) is done once per pool image on the host
(:func:`stylejax.train.pairs.normalize`); ``--normalize-in-step`` puts it back in every
step to measure what that saves.

Command (2-core CPU, ~2 minutes):
    python experiments/benchmarks/trainer_step.py --config cpu
Writes experiments/results/trainer_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stylejax.models.simsiam import simsiam_loss
from stylejax.pipeline import lap
from stylejax.train import loop, pairs, simsiam
from stylejax.train import simsiam_configs as configs
from stylejax.train.simsiam_data import PhantomSource

HERE = os.path.dirname(os.path.abspath(__file__))


def time_trainer_step(cfg, mesh, batch, repeats):
    state = simsiam.init_state(cfg, mesh)
    step = loop.jit_step(simsiam.make_train_step(cfg), mesh)
    key = jax.random.key(0)
    state, metrics = step(state, batch, key, np.int32(0))
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for i in range(repeats):
        state, metrics = step(state, batch, key, np.int32(i + 1))
    jax.block_until_ready(metrics)
    return (time.perf_counter() - t0) / repeats


def time_update_only(cfg, mesh, repeats):
    state = simsiam.init_state(cfg, mesh)
    model_graph = simsiam.graphdef(cfg)
    tx, _ = simsiam.make_optimizer(cfg)

    def loss_fn(params, stats, v1, v2):
        model = nnx.merge(model_graph, params, stats, copy=True)
        p1, p2, z1, z2 = model(v1, v2)
        return simsiam_loss(p1, p2, z1, z2), nnx.state(model, nnx.BatchStat)

    @jax.jit
    def update(params, stats, opt, v1, v2):
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, v1, v2)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt

    views = jax.random.uniform(jax.random.key(1), (2, cfg.batch_size, cfg.image_size,
                                                   cfg.image_size))
    args = (state.params, state.batch_stats, state.opt_state)
    args = update(*args, views[0], views[1])
    jax.block_until_ready(args)
    t0 = time.perf_counter()
    for _ in range(repeats):
        args = update(*args, views[0], views[1])
    jax.block_until_ready(args)
    return (time.perf_counter() - t0) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="default")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cache-dir", default=None,
                   help="phantom pool cache (e.g. a training run's WORKDIR/cache)")
    p.add_argument("--out", default=os.path.join(HERE, "..", "results", "trainer_step.json"))
    args = p.parse_args(argv)
    cfg = configs.get(args.config)
    mesh = loop.make_mesh(jax.devices()[:1])
    source = PhantomSource(cfg, cache_dir=args.cache_dir)
    local = source.local_batch(0)
    batch = loop.shard_batch(local, mesh, cfg.batch_size)
    results = {"whole step": time_trainer_step(cfg, mesh, batch, args.repeats)}
    # The same step with LAP's normalisation in every step (only the cost matters
    # here: the normalised images go through normalize_log once more in-step).
    original = pairs.style_lap
    pairs.style_lap = lambda x, s: original(lap.normalize_log(jnp.exp(-x)), s)
    simsiam._cached_train_step.cache_clear()
    try:
        results["whole step, normalisation in every step"] = time_trainer_step(
            cfg, mesh, batch, args.repeats)
    finally:
        pairs.style_lap = original
        simsiam._cached_train_step.cache_clear()
    results["SimSiam update only"] = time_update_only(cfg, mesh, args.repeats)

    print(f"config {cfg.name}: batch {cfg.batch_size}, {cfg.image_size} px views of "
          f"{cfg.raw_size} px phantoms, width {cfg.width}")
    for name, seconds in results.items():
        print(f"  {name:42s} {seconds * 1e3:7.0f} ms  {cfg.batch_size / seconds:6.1f} pairs/s")
    out = {"config": cfg.name, "batch": cfg.batch_size, "image_size": cfg.image_size,
           "raw_size": cfg.raw_size, "width": cfg.width,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "jax": jax.__version__, "command": "python experiments/benchmarks/trainer_step.py "
           f"--config {args.config}",
           "seconds_per_step": results,
           "pairs_per_second": {k: cfg.batch_size / v for k, v in results.items()}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
