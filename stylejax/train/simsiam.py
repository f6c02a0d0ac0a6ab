"""The StyleX training task: SimSiam on style pairs (``stylejax train simsiam``).

Runs on the generic loop (:mod:`stylejax.train.loop`: mesh, checkpoints, resume,
NaN guard, logs); this module holds what is SimSiam's:

* **Model**: :class:`~stylejax.models.simsiam.SimSiam` (ResNet-18 encoder + projector
  + predictor); the state is a :class:`TrainState` (parameters, BatchNorm
  statistics, optimiser state, step counter). BatchNorm is written per
  device-agnostic batch, so under ``jit`` on the data mesh its statistics cover the
  *global* batch (SimSiam's SyncBN).
* **Optimiser** (SimSiam recipe): SGD momentum 0.9 with weight decay 1e-4 (added to
  the gradient, as PyTorch does), ``lr = base_lr * batch / 256`` with cosine decay
  and no warm-up; the predictor keeps the peak lr (``fix_pred_lr``).
* **Step**: positive pairs are made on the accelerator from the batch's raw images
  (:func:`stylejax.train.pairs.make_pairs`: one LAP training style per pair, or a
  pre-styled vendor pair, then crops and flips), then the SimSiam loss
  ``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2``. Metrics: ``loss``, ``grad_norm``,
  ``z_std`` (collapse monitor) and ``lr``.
* **Data**: :class:`~stylejax.train.simsiam_data.PhantomSource` (an in-memory pool of
  synthetic phantoms, cached in ``WORKDIR/cache``). On GPUs and TPUs its pools are
  copied to the accelerators once and each step's batch is gathered there from a
  few KB of indices (:func:`make_gather`); on CPUs the host gathers the rows
  (faster there, ``experiments/benchmarks/batch_gather.py``). Either way the
  batches, and so the run, are the same. Configs with ``stream_pool`` (``paper``,
  ``pod``) use a :class:`~stylejax.train.simsiam_stream.StreamSource` instead: the
  same pools in files on local disk, each step's rows read there, so host memory
  stays about one batch. Those and other sources (``--data``:
  :class:`~stylejax.train.simsiam_data.FolderSource`) hand over host batches
  (``local_batch``).
* **Export**: :func:`from_run` wraps the encoder as a
  :class:`~stylejax.metrics.stylex.StyleX`; ``--export`` fits its style projection
  (:func:`stylejax.train.projection.fit`) and saves it (float16).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.models.simsiam import SimSiam, collapse_std, simsiam_loss
from stylejax.train import loop, pairs, simsiam_configs
from stylejax.train.loop import TrainingDiverged  # noqa: F401  (re-exported for callers)
from stylejax.train.simsiam_configs import Config
from stylejax.train.simsiam_data import PhantomSource, gather_batch
from stylejax.train.simsiam_stream import StreamSource


@struct.dataclass
class TrainState:
    """Everything a step updates (a pytree; saved whole in checkpoints)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array


def build_model(cfg: Config, seed: int | None = None) -> SimSiam:
    """A freshly initialised :class:`SimSiam` for ``cfg``."""
    dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else None
    # XLA's RngBitGenerator: the threefry initialisers compile far more slowly on
    # XLA's CPU backend, once per parameter shape.
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


@functools.lru_cache(maxsize=8)
def _graphdef(cfg: Config):
    return nnx.split(nnx.eval_shape(lambda: build_model(cfg)), nnx.Param, nnx.BatchStat)[0]


def graphdef(cfg: Config):
    """The SimSiam model's NNX graph definition (``nnx.merge(graphdef(cfg),
    state.params, state.batch_stats)`` rebuilds the model)."""
    return _graphdef(cfg.computation_key())


def init_state(cfg: Config, mesh) -> TrainState:
    """The initial :class:`TrainState`, replicated over ``mesh``."""
    return _cached_init(cfg.computation_key(), mesh)()


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


def make_train_step(cfg: Config) -> Callable:
    """The pure step ``(state, batch, key) -> (state, metrics)`` (jit it, or let
    :func:`stylejax.train.loop.run` do it).

    ``batch`` is a global batch as :meth:`PhantomSource.local_batch` makes it (``a``,
    ``b`` ``[B, raw, raw]``, ``prestyled`` ``[B]``, optional tissue masks
    ``tissue_a``, ``tissue_b``), sharded on ``data``; ``key`` is the step's key.
    ``metrics`` are scalars: ``loss``, ``grad_norm``, ``z_std`` (collapse monitor) and
    ``lr``. One function object per computation (cached), so repeated runs in one
    process (resuming, notebooks, tests) compile once.
    """
    return _cached_train_step(cfg.computation_key())


@functools.lru_cache(maxsize=8)
def _cached_train_step(cfg: Config) -> Callable:
    model_def = _graphdef(cfg)
    tx, schedule = make_optimizer(cfg)
    spec = pairs.PairSpec(image_size=cfg.image_size, crop_scale=tuple(cfg.crop_scale),
                          min_tissue=cfg.min_tissue)
    spec.validate((cfg.raw_size, cfg.raw_size))
    grid = pairs.training_styles()

    def loss_fn(params, batch_stats, view1, view2):
        model = nnx.merge(model_def, params, batch_stats, copy=True)
        p1, p2, z1, z2 = model(view1, view2)
        return simsiam_loss(p1, p2, z1, z2), (nnx.state(model, nnx.BatchStat), z1)

    def step(state: TrainState, batch, key):
        view1, view2, _ = pairs.make_pairs(key, batch["a"], batch["b"], batch["prestyled"],
                                           spec, grid, batch.get("tissue_a"),
                                           batch.get("tissue_b"))
        (loss, (batch_stats, z1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, view1, view2)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(loss=loss, grad_norm=optax.global_norm(grads), z_std=collapse_std(z1),
                       lr=schedule(state.step))
        return TrainState(params, batch_stats, opt_state, state.step + 1), metrics

    return step


def device_pools(source: PhantomSource, mesh) -> dict:
    """``source.pools()`` as arrays replicated over the mesh."""
    return loop.replicate(source.pools(), mesh)


@functools.lru_cache(maxsize=8)
def make_gather(mesh) -> Callable:
    """Jitted :func:`~stylejax.train.simsiam_data.gather_batch`: replicated pools,
    indices and images sharded on ``data``."""
    data = NamedSharding(mesh, P("data"))
    return jax.jit(gather_batch, in_shardings=(NamedSharding(mesh, P()), data),
                   out_shardings=data)


class SimSiamTask:
    """The SimSiam :class:`~stylejax.train.loop.Task`.

    Args:
      source: batch source with ``local_batch(step, process_index, process_count)``
        returning what :meth:`PhantomSource.local_batch` does (default: a
        :class:`PhantomSource` for the config, cached in ``WORKDIR/cache``).
      gather_on_device: gather a :class:`PhantomSource`'s batches on the devices
        (default: unless the devices are CPUs; only sources whose
        ``on_device_pools`` is true, i.e. not the streaming ones).
    """

    name = "simsiam"
    configs = simsiam_configs.NAMED
    monitor = ("z_std",)

    def __init__(self, source=None, gather_on_device: bool | None = None,
                 data: str | None = None):
        self.source = source
        self.gather_on_device = gather_on_device
        self.data = data

    def with_data(self, data: str) -> "SimSiamTask":
        """This task training on a raw-image folder or data set
        (:class:`~stylejax.train.simsiam_data.FolderSource`; ``stylejax train simsiam
        --data PATH_OR_NAME``)."""
        return SimSiamTask(gather_on_device=self.gather_on_device, data=data)

    def init(self, cfg: Config, mesh) -> TrainState:
        return init_state(cfg, mesh)

    def batches(self, cfg: Config, mesh, workdir) -> Callable[[int], dict]:
        source = self.source
        if source is None and self.data is not None:
            from stylejax.train.simsiam_data import FolderSource
            source = FolderSource(cfg, self.data)
        if source is None:
            local = workdir is not None and "://" not in workdir
            kind = StreamSource if cfg.stream_pool else PhantomSource
            source = kind(cfg, cache_dir=loop.join(workdir, "cache") if local else None)
        on_device = self.gather_on_device
        if on_device is None:
            on_device = mesh.devices.flat[0].platform != "cpu"
        if on_device and getattr(source, "on_device_pools", False):
            pools, gather = device_pools(source, mesh), make_gather(mesh)

            def global_batch(step):
                idx = source.local_indices(step, jax.process_index(), jax.process_count())
                return gather(pools, loop.shard_batch(idx, mesh, cfg.batch_size))
        else:
            def global_batch(step):
                local = source.local_batch(step, jax.process_index(), jax.process_count())
                return loop.shard_batch(local, mesh, cfg.batch_size)
        return global_batch

    def step(self, cfg: Config, mesh) -> Callable:
        return make_train_step(cfg)

    def export(self, cfg: Config, state: TrainState, out_dir: str, *, progress: bool = True):
        """Fit the style projection and save the model (float16) to ``out_dir``."""
        from stylejax.train import projection
        model = from_run(cfg, graphdef(cfg), state, int(loop.host_copy(state.step)))
        projection.fit(model, progress=progress).save(out_dir, dtype="float16")


#: The registered task (``stylejax train simsiam``).
TASK = SimSiamTask()


def train(cfg: Config, workdir: str | None, *, steps: int | None = None, source=None,
          callback: Callable[[int, TrainState], None] | None = None, devices=None,
          progress: bool = True, gather_on_device: bool | None = None) -> loop.RunResult:
    """Train (or resume) a StyleX encoder in ``workdir`` (:func:`stylejax.train.loop.run`
    with a :class:`SimSiamTask`).

    Args:
      cfg: the run's :class:`Config`.
      workdir: run directory (created; resumed from when it holds checkpoints).
      steps: total number of steps (overrides ``cfg.steps``).
      source, gather_on_device: see :class:`SimSiamTask`.
      callback: called as ``callback(step, state)`` after each step is dispatched.
      devices: devices of the data mesh (default: all).
      progress: show a tqdm progress bar (process 0 only).
    Returns:
      :class:`~stylejax.train.loop.RunResult` (``state`` a :class:`TrainState`).
    Raises:
      TrainingDiverged: a non-finite loss or gradient; the workdir keeps the last
        good checkpoint.
      ValueError: invalid config, or a workdir holding a run with another config.
    """
    task = SimSiamTask(source, gather_on_device)
    return loop.run(task, cfg, workdir, steps=steps, devices=devices, progress=progress,
                    callback=callback)


# ------------------------------------------------------------------- run folders


def load_run(workdir: str, step: int | None = None):
    """Load a run's config and state on the default device.

    Returns:
      ``(cfg, graphdef, state, step)``.
    Raises:
      ValueError: ``workdir`` is not a StyleX training run or has no checkpoint.
    """
    cfg, state, step = loop.load_run(TASK, workdir, step)
    return cfg, graphdef(cfg), state, int(step)


def from_run(cfg: Config, model_def, state: TrainState, step: int):
    """A :class:`~stylejax.metrics.stylex.StyleX` from a training state (``model_def``:
    :func:`graphdef`), its ``info`` naming the training data (what the style
    projection fit needs)."""
    from stylejax.metrics.stylex import StyleX
    model = nnx.merge(model_def, loop.host_copy(state.params), loop.host_copy(state.batch_stats))
    info = dict(config=cfg.name, steps=int(step), image_size=cfg.image_size,
                raw_size=cfg.raw_size, min_tissue=cfg.min_tissue,
                vendor_fraction=cfg.vendor_fraction, data_seed=cfg.data_seed,
                num_raw=cfg.num_raw)
    if cfg.vendor_random_styles:
        info["vendor_random_styles"] = cfg.vendor_random_styles
    return StyleX.from_encoder(model.encoder, embed_size=cfg.embed_size,
                               tile_size=cfg.image_size, info=info)


def load_model(path: str):
    """A :class:`~stylejax.metrics.stylex.StyleX` from a saved model folder
    (:func:`stylejax.metrics.stylex.load`) or a SimSiam training run folder.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` is neither a saved StyleX model nor a training run.
    """
    from stylejax.metrics import stylex
    path = os.fspath(path)
    if "://" in path:  # gs:// etc. through etils.epath
        from etils import epath
        if loop.is_run(path) and not (epath.Path(path) / stylex.MODEL_FILE).exists():
            return from_run(*load_run(path))
        return stylex.load(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"StyleX model directory not found: {path}")
    if os.path.exists(os.path.join(path, stylex.MODEL_FILE)) or not loop.is_run(path):
        try:
            return stylex.load(path)
        except ValueError as err:
            if os.path.exists(os.path.join(path, stylex.MODEL_FILE)):
                raise
            raise ValueError(f"{path} is not a StyleX model or training run: expected "
                             f"{stylex.MODEL_FILE} + {stylex.WEIGHTS_FILE}, or "
                             f"{loop.CONFIG_FILE} + {loop.CHECKPOINT_DIR}/ ({err})") from None
    cfg, model_def, state, step = load_run(path)
    return from_run(cfg, model_def, state, step)


__all__ = ["Config", "SimSiamTask", "TASK", "TrainState", "TrainingDiverged", "build_model",
           "device_pools", "from_run", "graphdef", "init_state", "load_model", "load_run",
           "make_gather", "make_optimizer", "make_train_step", "train"]
