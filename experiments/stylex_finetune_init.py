"""Start a StyleX training run from a saved model's weights (fine-tuning, issue 20).

Writes a step-0 checkpoint into a new workdir: the SimSiam state of ``--config`` with
the encoder (backbone + projector parameters and BatchNorm statistics) taken from
``--from`` (default: the shipped model) and a freshly initialised predictor (saved
models do not keep it) and optimiser state. The ordinary trainer then resumes from
it, so the fine-tune is run, extended and resumed with the usual command::

    python experiments/stylex_finetune_init.py --config vendor-finetune \
        --workdir /work/runs/stylex_ft
    stylejax train simsiam --config vendor-finetune --workdir /work/runs/stylex_ft \
        [--steps N] [--export DIR]

The checkpoint goes through the loop's own machinery (``config.json``, the orbax
``checkpoints/0`` and its digest in ``checkpoint_digests.json``), so resuming
checks the config as for any run. ``--predictor-steps K`` first fits the fresh
predictor for ``K`` steps with the encoder frozen (batches of the run's own data, LR
of the config), so the first encoder updates are not driven by a random predictor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def seeded_state(cfg, mesh, model):
    """The initial :class:`~stylejax.train.simsiam.TrainState` of ``cfg`` with
    ``model``'s encoder weights (a :class:`~stylejax.metrics.stylex.StyleX`)."""
    import jax
    import numpy as np
    from flax import nnx

    from stylejax.metrics.stylex import _leaf_name
    from stylejax.train import loop, simsiam

    if (model.width, model.dim) != (cfg.width, cfg.dim):
        raise ValueError(f"the model is width {model.width}, dim {model.dim}; the config "
                         f"wants width {cfg.width}, dim {cfg.dim}")
    flat = model.flat_weights()
    state = loop.host_copy(simsiam.init_state(cfg, mesh))
    used = set()

    def fill(tree):
        pure = tree.to_pure_dict()
        leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
        values = []
        for path, value in leaves:
            name = _leaf_name(path)
            head, _, rest = name.partition("/")
            if head == "encoder":
                if rest not in flat:
                    raise ValueError(f"the model has no weight {rest}")
                new = np.asarray(flat[rest], np.float32)
                if new.shape != value.shape:
                    raise ValueError(f"{rest}: model {new.shape}, config {value.shape}")
                used.add(rest)
                value = new
            values.append(value)
        nnx.replace_by_pure_dict(tree, jax.tree_util.tree_unflatten(treedef, values))
        return tree

    state = simsiam.TrainState(fill(state.params), fill(state.batch_stats), state.opt_state,
                               state.step)
    missing = sorted(set(flat) - used)
    if missing:
        raise ValueError(f"model weights not placed in the state: {missing[:5]}")
    return loop.replicate(state, mesh)


def fit_predictor(cfg, mesh, state, workdir, steps: int, log=print):
    """``state`` with its predictor trained ``steps`` steps on the run's batches, the
    encoder (parameters and BatchNorm statistics) left as they are."""
    import jax
    import optax
    from flax import nnx

    from stylejax.models.simsiam import simsiam_loss
    from stylejax.train import pairs, simsiam

    model_def = simsiam.graphdef(cfg)
    spec = pairs.PairSpec(image_size=cfg.image_size, crop_scale=tuple(cfg.crop_scale),
                          min_tissue=cfg.min_tissue)
    grid = pairs.training_styles()
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(cfg.lr, momentum=cfg.momentum))
    pred = state.params["predictor"]
    opt = tx.init(pred)

    def loss_fn(pred, params, batch_stats, v1, v2):
        params = nnx.State({**params, "predictor": pred})
        model = nnx.merge(model_def, params, batch_stats, copy=True)
        p1, p2, z1, z2 = model(v1, v2)
        stats = nnx.state(model, nnx.BatchStat)
        return simsiam_loss(p1, p2, z1, z2), stats["predictor"]

    @jax.jit
    def step(pred, opt, params, batch_stats, batch, key):
        v1, v2, _ = pairs.make_pairs(key, batch["a"], batch["b"], batch["prestyled"], spec,
                                     grid, batch.get("tissue_a"), batch.get("tissue_b"))
        (loss, pstats), g = jax.value_and_grad(loss_fn, has_aux=True)(
            pred, jax.lax.stop_gradient(params), batch_stats, v1, v2)
        updates, opt = tx.update(g, opt, pred)
        return optax.apply_updates(pred, updates), opt, pstats, loss

    batches = simsiam.SimSiamTask().batches(cfg, mesh, workdir)
    stats = state.batch_stats
    key = jax.random.key(cfg.seed + 7919, impl=cfg.rng_impl)
    for i in range(steps):
        # Batches from the far end of the step range the run uses (not its first ones).
        pred, opt, pstats, loss = step(pred, opt, state.params, stats,
                                       batches(10_000_000 + i), jax.random.fold_in(key, i))
        stats = nnx.State({**stats, "predictor": pstats})
        if i % 10 == 0 or i == steps - 1:
            log(f"predictor step {i + 1}/{steps}: loss {float(loss):.4f}")
    params = nnx.State({**state.params, "predictor": pred})
    return simsiam.TrainState(params, stats, state.opt_state, state.step)


def write_digest(cfg, mesh, workdir, state=None):
    """Save ``state`` as step 0 (unless None: it is saved already), read it back into
    the trainer's own state structure and record that state's digest, which is what
    the trainer verifies on resume (the digest hashes the tree structure too, so it is
    taken from the restored state, not from ``state``); check the values came back."""
    import numpy as np
    import orbax.checkpoint as ocp

    from stylejax.train import loop, simsiam
    manager = loop.checkpoint_manager(workdir, cfg.keep_checkpoints)
    try:
        if state is not None:
            manager.save(0, args=ocp.args.StandardSave(state))
            manager.wait_until_finished()
        restored = loop.restore(manager, simsiam.init_state(cfg, mesh), 0)
    finally:
        manager.close()
    if state is not None:
        def flat(tree):
            return {str(k): np.asarray(loop.host_copy(v)) for k, v in
                    jax_leaves_with_path(tree)}
        a, b = flat(state), flat(restored)
        if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
            raise RuntimeError("the step-0 checkpoint does not read back as written")
    with open(os.path.join(workdir, loop.DIGEST_FILE), "w") as f:
        json.dump({"0": loop.state_digest(restored)}, f)


def jax_leaves_with_path(tree):
    import jax
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="simsiam config name or file")
    parser.add_argument("--workdir", required=True, help="new run folder")
    parser.add_argument("--from", dest="source", default="shipped",
                        help="saved StyleX model folder (default: the shipped model)")
    parser.add_argument("--predictor-steps", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)

    from stylejax.metrics import stylex
    from stylejax.train import loop, simsiam_configs

    cfg = simsiam_configs.get(args.config).validate()
    if loop.is_run(args.workdir) or os.path.exists(os.path.join(args.workdir,
                                                                loop.CHECKPOINT_DIR)):
        raise SystemExit(f"{args.workdir} already holds a run; give a new --workdir")
    model = stylex.load_pretrained() if args.source == "shipped" else stylex.load(args.source)
    mesh = loop.make_mesh()
    state = seeded_state(cfg, mesh, model)
    log(f"encoder weights from {args.source} placed in a {cfg.name} state")
    os.makedirs(args.workdir, exist_ok=True)
    if args.predictor_steps:
        state = loop.replicate(loop.host_copy(fit_predictor(
            cfg, mesh, state, args.workdir, args.predictor_steps, log)), mesh)
    with open(os.path.join(args.workdir, loop.CONFIG_FILE), "w") as f:
        f.write(cfg.to_json())
    write_digest(cfg, mesh, args.workdir, state)
    log(f"wrote step-0 checkpoint to {args.workdir} (from {args.source}; "
        f"{args.predictor_steps} predictor steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
