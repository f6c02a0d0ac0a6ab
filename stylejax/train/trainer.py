"""The standard StyleX trainer: SimSiam, data parallel, checkpointed, resumable.

* **Parallelism**: one mesh axis ``data`` over all devices (``jax.make_mesh``);
  the batch is sharded on it, parameters and optimiser state are replicated.
  BatchNorm is written per device-agnostic batch, so under ``jit`` XLA reduces
  its statistics over the *global* batch (SimSiam's SyncBN). Multi-host: with
  ``Config.distributed`` every process calls ``jax.distributed.initialize()``,
  builds only its rows of each batch and hands them to
  ``jax.make_array_from_process_local_data``; only process 0 writes logs/plots.
* **Data**: on GPUs and TPUs the default source (:class:`PhantomSource`) keeps
  its phantom and vendor pools on the accelerators (replicated, copied once);
  each step the host sends only the rows' indices and
  :func:`stylejax.train.data.gather_batch` builds the images in a jitted gather,
  so the host never copies image rows (168 MB per ``default`` batch). On the
  CPU the host's numpy gather is faster (24-29 ms against 54-59 ms for the jitted
  one per ``default`` batch, ``experiments/benchmarks/batch_gather.py``), so it
  stays there. Other sources hand over host batches (``local_batch``).
* **Step**: a pure function ``(state, batch, key) -> (state, metrics)``, jitted
  with the state donated; its randomness is ``jax.random.fold_in(key, step)``,
  and host batches depend only on ``(seed, step)``, so a resumed run continues
  exactly as an uninterrupted one.
* **Optimiser** (SimSiam recipe): SGD momentum 0.9 with weight decay 1e-4
  (added to the gradient, as PyTorch does), ``lr = base_lr * batch / 256`` with
  cosine decay and no warm-up; the predictor keeps the peak lr (``fix_pred_lr``).
* **Checkpoints**: orbax ``CheckpointManager`` in ``WORKDIR/checkpoints``, every
  ``checkpoint_every`` steps and at the end; a checkpoint only becomes visible
  once fully written, so a run killed at any moment resumes from the last
  complete one. Training resumes automatically from the workdir.
* **NaN guard**: losses and gradient norms are checked before every log line
  and every save; a non-finite value stops the run with
  :class:`TrainingDiverged` before anything non-finite is saved, so the last
  checkpoint stays good.
* **Logs**: ``WORKDIR/config.json``, ``metrics.jsonl`` (one JSON object per step)
  and ``loss.png``; a tqdm progress bar.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.data import pairs
from stylejax.models.simsiam import SimSiam, collapse_std, simsiam_loss
from stylejax.train import configs as _configs
from stylejax.train.configs import Config
from stylejax.train.data import PhantomSource, gather_batch

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class TrainingDiverged(RuntimeError):
    """The loss (or gradient) became NaN/inf; the last good checkpoint is kept."""


@struct.dataclass
class TrainState:
    """Everything a step updates (a pytree; saved whole in checkpoints)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: the final :class:`TrainState` (replicated on the mesh).
      graphdef: the model's NNX graph definition (``nnx.merge(graphdef,
        state.params, state.batch_stats)`` rebuilds the model).
      step: the last completed step.
      workdir: the run directory.
      last_metrics: the metrics of the last step (Python floats).
    """

    state: TrainState
    graphdef: Any
    step: int
    workdir: str
    last_metrics: dict


def build_model(cfg: Config, seed: int | None = None) -> SimSiam:
    """A freshly initialised :class:`SimSiam` for ``cfg``."""
    dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else None
    # XLA's RngBitGenerator: the threefry initialisers took ~1 s of XLA CPU
    # compilation per parameter shape (40 s for a ResNet-18), this takes ~0.1 s.
    key = jax.random.key(cfg.seed if seed is None else seed, impl="rbg")
    return SimSiam(width=cfg.width, dim=cfg.dim, pred_dim=cfg.pred_dim, dtype=dtype,
                   rngs=nnx.Rngs(key))


def make_optimizer(cfg: Config, total_steps: int | None = None):
    """SGD + weight decay, cosine lr for the encoder, constant lr for the predictor.

    Returns:
      ``(tx, schedule)``; ``schedule(step)`` is the encoder's learning rate.
    """
    steps = cfg.steps if total_steps is None else total_steps
    peak = cfg.lr
    schedule = optax.cosine_decay_schedule(peak, max(steps, 1))

    def sgd(lr):
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                           optax.sgd(lr, momentum=cfg.momentum))

    def label(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "predictor" if cfg.fix_pred_lr and _is_predictor(path) else "encoder",
            params)

    tx = optax.partition({"encoder": sgd(schedule), "predictor": sgd(peak)}, label)
    return tx, schedule


def _is_predictor(path) -> bool:
    return any(getattr(k, "key", getattr(k, "name", None)) == "predictor" for k in path)


def make_mesh(devices=None):
    """A 1-D mesh with axis ``data`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def init_state(cfg: Config, mesh) -> tuple[Any, TrainState]:
    """Initial ``(graphdef, state)``, the state replicated over ``mesh``."""
    graphdef = nnx.split(nnx.eval_shape(lambda: build_model(cfg)), nnx.Param, nnx.BatchStat)[0]
    return graphdef, _cached_init(_step_key(cfg), mesh)()


@functools.lru_cache(maxsize=8)
def _cached_init(cfg: Config, mesh) -> Callable:
    """One compiled initialiser per (config, mesh) instead of one eager dispatch
    (and XLA compilation) per parameter."""
    tx, _ = make_optimizer(cfg)

    def create():
        params, batch_stats = nnx.split(build_model(cfg), nnx.Param, nnx.BatchStat)[1:]
        return TrainState(params=params, batch_stats=batch_stats, opt_state=tx.init(params),
                          step=jnp.zeros((), jnp.int32))

    return jax.jit(create, out_shardings=NamedSharding(mesh, P()))


def _step_key(cfg: Config) -> Config:
    """``cfg`` without the fields that do not change the computation (cache key)."""
    return dataclasses.replace(
        cfg, **{name: None for name in _configs.RESUMABLE_CHANGES if name != "steps"})


def make_train_step(cfg: Config, graphdef, mesh, total_steps: int | None = None) -> Callable:
    """The jitted step ``(state, batch, key) -> (state, metrics)``.

    ``batch`` is a global batch as :meth:`PhantomSource.local_batch` makes
    it (``a``, ``b`` ``[B, raw, raw]``, ``prestyled`` ``[B]``, optional tissue
    masks ``tissue_a``, ``tissue_b``), sharded on ``data``; ``state`` is
    donated. ``metrics`` are replicated scalars: ``loss``, ``grad_norm``,
    ``z_std`` (collapse monitor) and ``lr``.
    Steps are cached per (config, graph, mesh), so repeated :func:`train` calls
    in one process (resuming, notebooks, tests) compile once.
    """
    return _cached_train_step(_step_key(cfg), graphdef, mesh,
                              cfg.steps if total_steps is None else total_steps)


@functools.lru_cache(maxsize=8)
def _cached_train_step(cfg: Config, graphdef, mesh, total_steps: int) -> Callable:
    tx, schedule = make_optimizer(cfg, total_steps)
    spec = pairs.PairSpec(image_size=cfg.image_size, crop_scale=tuple(cfg.crop_scale),
                          min_tissue=cfg.min_tissue)
    spec.validate((cfg.raw_size, cfg.raw_size))
    grid = pairs.training_styles()

    def loss_fn(params, batch_stats, view1, view2):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        p1, p2, z1, z2 = model(view1, view2)
        return simsiam_loss(p1, p2, z1, z2), (nnx.state(model, nnx.BatchStat), z1)

    def step(state: TrainState, batch, key):
        k = jax.random.fold_in(key, state.step)
        view1, view2, _ = pairs.make_pairs(k, batch["a"], batch["b"], batch["prestyled"],
                                           spec, grid, batch.get("tissue_a"),
                                           batch.get("tissue_b"))
        (loss, (batch_stats, z1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, view1, view2)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(loss=loss, grad_norm=optax.global_norm(grads), z_std=collapse_std(z1),
                       lr=schedule(state.step))
        return TrainState(params, batch_stats, opt_state, state.step + 1), metrics

    replicated = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(replicated, NamedSharding(mesh, P("data")), replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def device_pools(source: PhantomSource, mesh) -> dict:
    """``source.pools()`` as arrays replicated over the mesh (multi-host safe: each
    process fills its own devices from its identical host copy)."""
    sharding = NamedSharding(mesh, P())
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
            for k, v in source.pools().items()}


@functools.lru_cache(maxsize=8)
def make_gather(mesh) -> Callable:
    """Jitted :func:`~stylejax.train.data.gather_batch`: replicated pools, indices and
    images sharded on ``data``."""
    data = NamedSharding(mesh, P("data"))
    return jax.jit(gather_batch, in_shardings=(NamedSharding(mesh, P()), data),
                   out_shardings=data)


def host_copy(tree):
    """Numpy copies of (replicated) arrays from this process's first local shard.

    Works on multi-host meshes, where ``jax.device_get`` of a replicated global
    array is not allowed because not all of its shards are addressable.
    """
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))
                        if isinstance(x, jax.Array) else x, tree)


def shard_batch(local: dict, mesh, global_batch: int) -> dict:
    """This process's rows -> global arrays sharded on ``data``."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v),
                                                      (global_batch,) + np.shape(v)[1:])
            for k, v in local.items()}


def checkpoint_manager(workdir: str, cfg: Config):
    """An orbax ``CheckpointManager`` for ``WORKDIR/checkpoints``."""
    import orbax.checkpoint as ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints, create=True)
    return ocp.CheckpointManager(_join(workdir, CHECKPOINT_DIR), options=options)


def _join(workdir, name):
    return f"{workdir.rstrip('/')}/{name}" if "://" in workdir else os.path.join(
        os.path.abspath(workdir), name)


def restore(manager, abstract_state: TrainState, step: int | None = None) -> TrainState:
    """Restore ``step`` (default: the latest) with the shapes/shardings of ``abstract_state``."""
    import orbax.checkpoint as ocp
    step = manager.latest_step() if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return manager.restore(step, args=ocp.args.StandardRestore(target))


def load_run(workdir: str, step: int | None = None):
    """Load a run's config and model state on the default device.

    Returns:
      ``(cfg, graphdef, state, step)``.
    Raises:
      ValueError: ``workdir`` is not a StyleX training run or has no checkpoint.
    """
    cfg_path = _join(workdir, CONFIG_FILE)
    if not os.path.exists(cfg_path) or not os.path.isdir(_join(workdir, CHECKPOINT_DIR)):
        raise ValueError(f"{workdir} is not a StyleX training run (no {CONFIG_FILE} and "
                         f"{CHECKPOINT_DIR}/ there)")
    with open(cfg_path) as f:
        cfg = Config.from_dict(json.load(f))
    manager = checkpoint_manager(workdir, cfg)
    try:
        if manager.latest_step() is None:
            raise ValueError(f"{workdir} has no complete checkpoint yet")
        mesh = make_mesh(jax.devices()[:1])
        graphdef, abstract = jax.eval_shape(lambda: init_state(cfg, mesh))
        state = restore(manager, abstract, step)
        return cfg, graphdef, state, int(state.step)
    finally:
        manager.close()


def _check_resume_config(workdir: str, cfg: Config):
    path = _join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    now = cfg.to_dict()
    diff = [k for k in now if k not in _configs.RESUMABLE_CHANGES
            and json.dumps(saved.get(k)) != json.dumps(now[k])]
    if diff:
        raise ValueError(f"{workdir} holds a run with a different config "
                         f"({', '.join(f'{k}: {saved.get(k)!r} -> {now[k]!r}' for k in diff)}); "
                         "use a new --workdir or the same config")


def _write_atomic(path: str, text: str):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _truncate_metrics(path: str, last_step: int):
    """Drop metric lines past ``last_step`` (written after the checkpoint we resume from)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line in f if line.strip() and json.loads(line)["step"] <= last_step]
    _write_atomic(path, "".join(keep))


def plot_metrics(metrics_path: str, out_path: str):
    """Loss (and collapse monitor) versus step, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], lw=0.8, color="tab:blue", label="loss")
    if len(rows) >= 20:
        k = max(len(rows) // 20, 2)
        smooth = np.convolve([r["loss"] for r in rows], np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=2, color="tab:blue", alpha=0.6, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("SimSiam loss (-cos)")
    ax.set_ylim(-1.02, max(0.05, max(r["loss"] for r in rows) + 0.05))
    ax2 = ax.twinx()
    ax2.plot(steps, [r["z_std"] for r in rows], lw=0.8, color="tab:orange", label="z_std")
    ax2.set_ylabel("std of normalised z (0 = collapse)", color="tab:orange")
    ax2.set_ylim(bottom=0)
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title("StyleX SimSiam training")
    fig.tight_layout()
    tmp = f"{out_path}.tmp{os.getpid()}.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out_path)


def train(cfg: Config, workdir: str, *, steps: int | None = None, source=None,
          callback: Callable[[int, TrainState], None] | None = None, devices=None,
          progress: bool = True, gather_on_device: bool | None = None) -> TrainResult:
    """Train (or resume) a StyleX encoder in ``workdir``.

    Args:
      cfg: the run's :class:`Config`.
      workdir: run directory (created; resumed from when it holds checkpoints).
      steps: total number of steps (overrides ``cfg.steps``).
      source: batch source with ``local_batch(step, process_index, process_count)``
        returning what :meth:`PhantomSource.local_batch` does (LAP pairs as
        normalised raw images, :func:`stylejax.data.pairs.normalize`)
        (default: :class:`PhantomSource` cached in ``WORKDIR/cache``). A
        :class:`PhantomSource` is gathered on the accelerators (see the module
        doc); other sources on the host.
      gather_on_device: gather a :class:`PhantomSource`'s batches on the devices
        (default: unless the devices are CPUs). Either way the batches, and so
        the run, are the same.
      callback: called as ``callback(step, state)`` after each step is dispatched
        (tests use it to interrupt a run).
      devices: devices of the data mesh (default: all).
      progress: show a tqdm progress bar (process 0 only).
    Returns:
      :class:`TrainResult`.
    Raises:
      TrainingDiverged: a non-finite loss or gradient; the workdir keeps the
        last good checkpoint.
      ValueError: invalid config, or a workdir holding a run with another config.
    """
    from tqdm import tqdm

    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=int(steps))
    cfg.validate()
    if cfg.distributed and not jax.distributed.is_initialized():
        jax.distributed.initialize()
    lead = jax.process_index() == 0
    mesh = make_mesh(devices)
    if cfg.batch_size % mesh.size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {mesh.size} devices")
    local_workdir = "://" not in workdir
    if local_workdir:
        os.makedirs(workdir, exist_ok=True)
        _check_resume_config(workdir, cfg)
        if lead:
            _write_atomic(_join(workdir, CONFIG_FILE), cfg.to_json())
    if source is None:
        source = PhantomSource(cfg, cache_dir=_join(workdir, "cache") if local_workdir else None)

    graphdef, state = init_state(cfg, mesh)
    step_fn = make_train_step(cfg, graphdef, mesh)
    if gather_on_device is None:
        gather_on_device = mesh.devices.flat[0].platform != "cpu"
    if gather_on_device and isinstance(source, PhantomSource):
        pools, gather = device_pools(source, mesh), make_gather(mesh)

        def global_batch(step):
            idx = source.local_indices(step, jax.process_index(), jax.process_count())
            return gather(pools, shard_batch(idx, mesh, cfg.batch_size))
    else:
        def global_batch(step):
            local = source.local_batch(step, jax.process_index(), jax.process_count())
            return shard_batch(local, mesh, cfg.batch_size)
    key = jax.device_put(jax.random.key(cfg.seed), NamedSharding(mesh, P()))
    manager = checkpoint_manager(workdir, cfg)
    metrics_path = _join(workdir, METRICS_FILE)
    start = 0
    if manager.latest_step() is not None:
        state = restore(manager, state)
        start = int(manager.latest_step())
    if lead and local_workdir:
        _truncate_metrics(metrics_path, start)

    pending: list[tuple[int, dict]] = []
    last = {}
    last_good = manager.latest_step()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and lead),
               desc=f"stylex {cfg.name}", unit="step", dynamic_ncols=True)
    t_flush, n_flush = time.perf_counter(), 0

    def flush(step):
        nonlocal pending, last, t_flush, n_flush
        if not pending:
            return
        rows = host_copy([m for _, m in pending])
        elapsed = time.perf_counter() - t_flush
        rate = n_flush * cfg.batch_size / elapsed if elapsed > 0 else float("nan")
        lines = []
        for (s, _), m in zip(pending, rows):
            m = {k: float(v) for k, v in m.items()}
            if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                where = (f"step {last_good} in {_join(workdir, CHECKPOINT_DIR)}"
                         if last_good is not None else "none (no checkpoint was saved yet)")
                raise TrainingDiverged(
                    f"non-finite loss ({m['loss']}) or gradient norm ({m['grad_norm']}) at "
                    f"step {s}; stopped without saving. Last good checkpoint: {where}. "
                    "Lower base_lr or check the data.")
            lines.append(json.dumps(dict(step=s, **m)))
            last = m
        pending = []
        if lead and local_workdir:
            with open(metrics_path, "a") as f:
                f.write("\n".join(lines) + "\n")
        bar.set_postfix(loss=f"{last['loss']:.4f}", z_std=f"{last['z_std']:.4f}",
                        pairs_s=f"{rate:.1f}")
        t_flush, n_flush = time.perf_counter(), 0

    try:
        for step in range(start, cfg.steps):
            state, metrics = step_fn(state, global_batch(step), key)
            done = step + 1
            pending.append((done, metrics))
            n_flush += 1
            bar.update(1)
            if callback is not None:
                callback(done, state)
            save = done % cfg.checkpoint_every == 0 or done == cfg.steps
            if save or done % cfg.log_every == 0 or done == start + 1:
                flush(done)
            if save:
                import orbax.checkpoint as ocp
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                last_good = done
            if lead and local_workdir and (done % cfg.plot_every == 0 or done == cfg.steps):
                plot_metrics(metrics_path, _join(workdir, PLOT_FILE))
        flush(cfg.steps)
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
    return TrainResult(state=state, graphdef=graphdef, step=int(host_copy(state.step)),
                       workdir=workdir, last_metrics=last)
