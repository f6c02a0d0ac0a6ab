"""One training loop for every trained network in stylejax.

A *task* (:class:`Task`) says what is trained: its state, its batches and its step.
:func:`run` does the rest, the same way for every task:

* **Parallelism**: a 1-D mesh with axis ``data`` over the devices
  (:func:`make_mesh`); the task's batches are sharded on ``data`` and its state is
  replicated, so under ``jit`` XLA runs the step data parallel and reduces over the
  global batch (BatchNorm statistics included). Multi-host: with
  ``cfg.distributed`` every process calls ``jax.distributed.initialize()``, builds its
  own rows of each batch (:func:`shard_batch`); only process 0 writes files.
* **Step**: the task's pure ``step(state, batch, key) -> (state, metrics)`` is jitted
  with the state donated; the loop hands it ``jax.random.fold_in(base_key, i)`` for
  step ``i`` (``base_key = jax.random.key(cfg.seed, impl=cfg.rng_impl)``), so a
  resumed run continues exactly as an uninterrupted one when ``batches`` depends
  only on the step. Compiled steps are cached per step function and mesh: a task
  that returns the same function object for equal settings compiles once per process.
* **Checkpoints**: orbax ``CheckpointManager`` in ``WORKDIR/checkpoints`` every
  ``checkpoint_every`` steps and at the end; a checkpoint becomes visible only once
  complete, and a run started on a workdir that holds one resumes from the latest.
  The saved ``config.json`` must match the new config except in
  ``cfg.RESUMABLE_CHANGES``.
* **NaN guard**: metrics are copied to the host every ``log_every`` steps and before
  every save, and the state's floats are checked before every save (and at the end
  of an in-memory run); a non-finite value stops the run with
  :class:`TrainingDiverged` (naming the last good checkpoint) before anything
  non-finite is saved or returned.
* **Logs**: ``WORKDIR/config.json``, ``metrics.jsonl`` (one JSON object per step),
  ``loss.png``, ``checkpoint_digests.json`` (a SHA-256 per checkpoint, checked on
  restore: a damaged checkpoint is skipped for the previous one) and a tqdm progress
  bar on stderr. All files go through ``etils.epath``, so ``gs://`` workdirs hold
  them too.
* ``workdir=None``: an in-memory run (no files, no checkpoints, no resume) for short
  trainings inside a library call.

Writing a task::

    class Task(Protocol):
        name: str                                   # `stylejax train NAME`
        configs: Mapping[str, Callable[[], TrainConfig]]  # at least "smoke", "default"
        def init(self, cfg, mesh) -> state          # pytree of jax arrays, replicated
        def batches(self, cfg, mesh, workdir) -> Callable[[int], batch]
        def step(self, cfg, mesh) -> Callable[[state, batch, key], tuple[state, dict]]
        # optional:
        def export(self, cfg, state, out_dir, *, progress=True) -> None
        monitor: tuple[str, ...]                    # metrics shown next to the loss

See :class:`Task` for the contract of each member and ``tests/train/test_loop.py`` for
a complete small task. Several networks and optimisers (a GAN) are one state pytree,
e.g. ``{"gen": ..., "disc": ..., "opt_gen": ..., "opt_disc": ...}``
(:mod:`stylejax.train.refiner`). Constants the step reads (frozen networks' weights,
data pools) are best returned by ``batches`` as replicated arrays, the same objects
every step: they are neither donated nor checkpointed, and not baked into the
compiled program as closure constants.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import io
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.train.config import TrainConfig, config_class

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
DIGEST_FILE = "checkpoint_digests.json"


class TrainingDiverged(RuntimeError):
    """A metric became NaN/inf; nothing non-finite was saved."""


@runtime_checkable
class Task(Protocol):
    """What :func:`run` trains.

    Attributes:
      name: the task's name (``stylejax train NAME``).
      configs: named config factories (``"smoke"``: seconds on a CPU, used by tests;
        ``"default"``: the recommended run), each returning an instance of one
        :class:`~stylejax.train.config.TrainConfig` subclass.
      monitor: (optional) metric names shown in the progress bar and on the plot's
        second axis.

    Optional method ``export(cfg, state, out_dir, *, progress=True)``: write the
    shipped artefact of a finished run (e.g. safetensors + JSON) to ``out_dir``
    (``stylejax train TASK --export DIR``; called on process 0 only).
    """

    name: str
    configs: Mapping[str, Callable[[], TrainConfig]]

    def init(self, cfg, mesh):
        """The initial state: a pytree of jax arrays replicated over ``mesh``
        (``NamedSharding(mesh, P())``), e.g. ``nnx.split`` states and optax states
        of any number of networks and optimisers. It is what checkpoints hold. The
        loop donates it to the first step: return arrays nobody else holds (copy a
        module's arrays you keep); a buffer used by two leaves is copied."""

    def batches(self, cfg, mesh, workdir) -> Callable[[int], Any]:
        """A function ``step -> batch`` (a pytree of jax arrays, batch axis sharded on
        ``data``, e.g. with :func:`shard_batch`; constants may be replicated). For
        exact resumption it must depend only on ``(cfg, step)``. ``workdir`` (None
        for in-memory runs) may hold caches."""

    def step(self, cfg, mesh) -> Callable:
        """The pure step ``(state, batch, key) -> (state, metrics)``; ``key`` is this
        step's key, ``metrics`` a dict of scalars with at least ``"loss"`` (every
        metric must stay finite: the NaN guard checks them all). Return
        the same function object for equal settings (e.g. via
        ``functools.lru_cache``) so repeated runs reuse the compilation."""


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

    Attributes:
      state: the final state (replicated on the mesh).
      step: the last completed step (``config.steps``).
      config: the config the run used (``steps`` overridden if asked).
      workdir: the run directory, or None for an in-memory run.
      last_metrics: the last step's metrics (Python floats).
      history: ``{"step": i, **metrics}`` for every step this call ran.
    """

    state: Any
    step: int
    config: TrainConfig
    workdir: str | None
    last_metrics: dict
    history: list


# ----------------------------------------------------------------------- placement


def make_mesh(devices=None):
    """A 1-D mesh with axis ``data`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def shard_batch(local, mesh, global_batch: int):
    """This process's rows (a pytree of ``[rows, ...]`` numpy arrays) -> global arrays
    ``[global_batch, ...]`` sharded on ``data``."""
    sharding = NamedSharding(mesh, P("data"))
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(
        sharding, np.asarray(v), (global_batch,) + np.shape(v)[1:]), local)


def replicate(tree, mesh):
    """Host arrays (identical on every process) -> arrays replicated over ``mesh``
    (multi-host safe: each process fills its own devices)."""
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda v: jax.make_array_from_callback(
        np.shape(v), sharding, lambda index, v=np.asarray(v): v[index]), tree)


def host_copy(tree):
    """Numpy copies of (replicated) arrays from this process's first local shard.

    Works on multi-host meshes, where ``jax.device_get`` of a replicated global
    array is not allowed because not all of its shards are addressable.
    """
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))
                        if isinstance(x, jax.Array) else x, tree)


def _private(tree):
    """``tree`` with every array whose buffers another leaf already uses copied: the
    state is donated, and XLA refuses to donate one buffer twice."""
    seen = set()

    def pointers(x):
        try:
            return tuple(shard.data.unsafe_buffer_pointer() for shard in x.addressable_shards)
        except Exception:  # e.g. typed PRNG keys: left as they are
            return ()

    def one(x):
        if not isinstance(x, jax.Array):
            return x
        buffers = pointers(x)
        if seen.intersection(buffers):
            x = jax.device_put(x, x.sharding, may_alias=False)
            buffers = pointers(x)
        seen.update(buffers)
        return x

    return jax.tree.map(one, tree)


@jax.jit
def _all_finite(tree):
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


@functools.lru_cache(maxsize=16)
def jit_step(step_fn: Callable, mesh) -> Callable:
    """The compiled ``(state, batch, base_key, i) -> (state, metrics)`` that :func:`run`
    calls: ``step_fn(state, batch, jax.random.fold_in(base_key, i))`` with the state
    donated and state and metrics replicated over ``mesh``. Input shardings are the
    arguments' own: :func:`run` passes the key replicated over ``mesh`` and ``i`` as
    ``np.int32`` (calls placed the same way share its compilation)."""
    replicated = NamedSharding(mesh, P())

    def step(state, batch, base_key, i):
        return step_fn(state, batch, jax.random.fold_in(base_key, i))

    return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=(0,))


# --------------------------------------------------------------------- run folders


def _path(path: str):
    """``path`` as an ``etils.epath.Path`` (local, ``gs://``, ...)."""
    from etils import epath
    return epath.Path(path)


def join(workdir: str, name: str) -> str:
    """``workdir/name`` for local paths and URLs (``gs://...``)."""
    return f"{workdir.rstrip('/')}/{name}" if "://" in workdir else os.path.join(
        os.path.abspath(workdir), name)


def checkpoint_manager(workdir: str, keep: int):
    """An orbax ``CheckpointManager`` for ``WORKDIR/checkpoints`` keeping ``keep``.

    The single-item (``default``) layout is fixed here rather than guessed by orbax from
    the first step it reads, so a damaged step folder cannot make it refuse the others.
    """
    import orbax.checkpoint as ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(join(workdir, CHECKPOINT_DIR), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def restore(manager, abstract_state, step: int | None = None):
    """Restore ``step`` (default: the latest) with the shapes, dtypes and shardings of
    ``abstract_state`` (concrete arrays or ``jax.ShapeDtypeStruct``); no verification
    (see :func:`restore_verified`)."""
    import orbax.checkpoint as ocp
    step = manager.latest_step() if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return manager.restore(step, args=ocp.args.StandardRestore(target))


def state_digest(tree) -> str:
    """SHA-256 of a (replicated) state's values, dtypes, shapes and tree structure,
    from this process's copy (the same on every process)."""
    import hashlib
    h = hashlib.sha256(str(jax.tree.structure(tree)).encode())
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        value = np.ascontiguousarray(host_copy(leaf))
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _read_digests(workdir: str) -> dict:
    path = join(workdir, DIGEST_FILE)
    if not _path(path).exists():
        return {}
    try:
        digests = _read_json(path)  # size-limited: never read to the end of /dev/zero
    except (OSError, ValueError):
        warnings.warn(f"{path} is unreadable; checkpoints are restored unverified",
                      RuntimeWarning, stacklevel=3)
        return {}
    if not isinstance(digests, dict):
        return {}
    return {k: v for k, v in digests.items() if k.isascii() and k.isdigit()}


def restore_verified(manager, abstract_state, workdir: str, step: int | None = None, *,
                     delete_bad: bool = False):
    """Restore the newest checkpoint (or ``step``) that reads back whole.

    Each checkpoint's :func:`state_digest` is written to ``WORKDIR/checkpoint_digests.json``
    when it is saved; a checkpoint that fails to restore (truncated, missing files)
    or whose restored state has another digest (bit flips) is skipped with a
    ``RuntimeWarning`` naming it, and the previous one is tried. Checkpoints saved
    without a digest are restored unverified.

    Args:
      manager, abstract_state: as for :func:`restore`.
      workdir: the run folder.
      step: restore this step only (no fallback).
      delete_bad: delete the checkpoints that failed (so training may save those
        steps again).
    Returns:
      ``(step, state)``.
    Raises:
      ValueError: no checkpoint (or not ``step``) reads back whole.
    """
    steps = sorted(manager.all_steps(), reverse=True) if step is None else [int(step)]
    digests = _read_digests(workdir)
    where = join(workdir, CHECKPOINT_DIR)
    bad = []
    for s in steps:
        problem = None
        try:
            state = restore(manager, abstract_state, s)
        except Exception as err:  # orbax/tensorstore errors of a damaged checkpoint
            problem = f"it cannot be read ({type(err).__name__}: {str(err)[:200]})"
        if problem is not None:
            _collect_abandoned_coroutines()
        else:
            want = digests.get(str(s))
            if want is None or state_digest(state) == want:
                if bad and delete_bad:
                    for b in bad:
                        manager.delete(b)
                return s, state
            problem = "its contents differ from what was saved (checksum mismatch)"
        bad.append(s)
        warnings.warn(f"checkpoint {s} in {where} is damaged: {problem}; "
                      + ("trying the previous one" if s != steps[-1] else "none left"),
                      RuntimeWarning, stacklevel=2)
    raise ValueError(f"no usable checkpoint in {where} (damaged: {bad})")


def _collect_abandoned_coroutines():
    """A failed orbax restore can leave an un-awaited coroutine behind, which Python
    reports with a ``RuntimeWarning`` whenever the garbage collector happens to free
    it; free it here, silently."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                                category=RuntimeWarning)
        gc.collect()


def is_run(workdir: str) -> bool:
    """Whether ``workdir`` looks like a run folder (``config.json`` + ``checkpoints/``)."""
    return _path(join(workdir, CONFIG_FILE)).exists() and _path(
        join(workdir, CHECKPOINT_DIR)).is_dir()


def _read_json(path: str, limit: int = 1 << 20):
    """A small JSON file; ValueError naming ``path`` when it is garbled or too big."""
    try:
        with _path(path).open("rb") as f:
            text = f.read(limit + 1)
        if len(text) > limit:
            raise ValueError(f"larger than {limit} bytes")
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from None


def read_config(task, workdir: str):
    """The config saved in ``WORKDIR/config.json``, as the task's config class.

    Raises:
      ValueError: the file is garbled or holds fields the task's config lacks.
    """
    path = join(workdir, CONFIG_FILE)
    values = _read_json(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object")
    try:
        return config_class(task).from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def load_run(task, workdir: str, step: int | None = None, *, devices=None):
    """A run's config and state (on ``devices``, default the first device).

    Returns:
      ``(cfg, state, step)``.
    Raises:
      ValueError: ``workdir`` is not a run folder or has no complete checkpoint.
    """
    if not is_run(workdir):
        raise ValueError(f"{workdir} is not a {task.name} training run (no {CONFIG_FILE} and "
                         f"{CHECKPOINT_DIR}/ there)")
    cfg = read_config(task, workdir)
    manager = checkpoint_manager(workdir, cfg.keep_checkpoints)
    try:
        if manager.latest_step() is None:
            raise ValueError(f"{workdir} has no complete checkpoint yet")
        mesh = make_mesh(jax.devices()[:1] if devices is None else devices)
        abstract = jax.eval_shape(lambda: task.init(cfg, mesh))
        step, state = restore_verified(manager, abstract, workdir, step)
        return cfg, state, step
    finally:
        manager.close()


def _check_resume_config(workdir: str, cfg: TrainConfig):
    path = join(workdir, CONFIG_FILE)
    if not _path(path).exists():
        return
    saved = _read_json(path)
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object")
    now, defaults = cfg.to_dict(), type(cfg)().to_dict()
    # A field the saved config lacks (added to the class later) held its default.
    diff = [k for k in now if k not in cfg.RESUMABLE_CHANGES
            and json.dumps(saved.get(k, defaults[k])) != json.dumps(now[k])]
    if diff:
        raise ValueError(f"{workdir} holds a run with a different config "
                         f"({', '.join(f'{k}: {saved.get(k)!r} -> {now[k]!r}' for k in diff)}); "
                         "use a new --workdir or the same config")


def _write_atomic(path: str, text: str):
    tmp = _path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(_path(path))


def _truncate_metrics(path: str, last_step: int):
    """Drop metric lines past ``last_step`` (written after the checkpoint we resume from)
    and a half-written last line (a run killed while appending; with a warning)."""
    if not _path(path).exists():
        return
    lines = [line for line in _path(path).read_text().splitlines(keepends=True) if line.strip()]
    keep = []
    for n, line in enumerate(lines):
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError) as err:
            if n == len(lines) - 1:
                warnings.warn(f"{path}: dropped a half-written last line ({err})",
                              RuntimeWarning, stacklevel=3)
                break
            raise ValueError(f"{path}: line {n + 1} is not a metrics record ({err})") from None
        if step <= last_step:
            keep.append(line if line.endswith("\n") else line + "\n")
    _write_atomic(path, "".join(keep))


def _log_scale_if_wide(ax, values):
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size and v.min() > 0 and v.max() > 10 * v.min():
        ax.set_yscale("log")


def plot_metrics(metrics_path: str, out_path: str, *, title: str = "training",
                 monitor: tuple[str, ...] = ()):
    """Loss (with a running mean) and the ``monitor`` metrics versus step, as a PNG.

    An axis whose values are all positive and span more than a decade is logarithmic, so
    the first steps' large losses do not flatten the rest of the curve.
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is
    rows = [json.loads(line) for line in _path(metrics_path).read_text().splitlines()
            if line.strip()]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(steps, loss, lw=0.8, color="tab:blue", label="loss")
    if len(rows) >= 20:
        k = max(len(rows) // 20, 2)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=2, color="navy", label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    _log_scale_if_wide(ax, loss)
    shown = [m for m in monitor if m in rows[0]]
    if shown:
        ax2 = ax.twinx()
        values = []
        for name, color in zip(shown, ("tab:orange", "tab:green", "tab:red", "tab:purple")):
            values += [r[name] for r in rows]
            ax2.plot(steps, [r[name] for r in rows], lw=0.8, color=color, label=name)
        ax2.set_ylabel(", ".join(shown))
        _log_scale_if_wide(ax2, values)
        ax.set_zorder(ax2.get_zorder() + 1)  # the loss and its running mean on top
        ax.patch.set_visible(False)
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    tmp = _path(f"{out_path}.tmp{os.getpid()}.png")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(_path(out_path))


# ------------------------------------------------------------------------- the loop


def run(task: Task, cfg: TrainConfig, workdir: str | None, *, steps: int | None = None,
        devices=None, progress: bool = True,
        callback: Callable[[int, Any], None] | None = None) -> RunResult:
    """Train (or resume) ``task`` with ``cfg`` in ``workdir``.

    Args:
      task: the :class:`Task`.
      cfg: its config (validated here).
      workdir: run directory (created; resumed from when it holds checkpoints), local
        or a URL ``etils.epath`` and orbax open (``gs://...``: every file goes there;
        ``metrics.jsonl`` is then rewritten at each save and plot instead of appended
        to), or None for an in-memory run (no files).
      steps: total number of steps (overrides ``cfg.steps``).
      devices: devices of the data mesh (default: all).
      progress: show a tqdm progress bar on stderr (process 0 only).
      callback: called as ``callback(step, state)`` after each step is dispatched
        (``step`` counts completed steps; tests use it to interrupt a run).
    Returns:
      :class:`RunResult`.
    Raises:
      TrainingDiverged: a non-finite metric or state; the workdir keeps the last good
        checkpoint.
      ValueError: invalid config, a batch not divisible by the devices, or a workdir
        holding a run with another config.
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
    # Every file goes through etils.epath: local folders and gs:// alike. Object stores
    # cannot append, so there metrics.jsonl is rewritten whole at saves and plots.
    local = workdir is not None
    remote = local and "://" in workdir
    if local:
        if lead:
            _path(workdir).mkdir(parents=True, exist_ok=True)
        _check_resume_config(workdir, cfg)

    batch = task.batches(cfg, mesh, workdir)
    state = _private(task.init(cfg, mesh))
    step_fn = jit_step(task.step(cfg, mesh), mesh)
    # The base key replicated over the mesh (multi-host safe: each process fills its own
    # devices; jax.device_put cannot target other processes' devices).
    key = jax.random.wrap_key_data(replicate(np.asarray(jax.random.key_data(
        jax.random.key(cfg.seed, impl=cfg.rng_impl))), mesh), impl=cfg.rng_impl)
    manager = checkpoint_manager(workdir, cfg.keep_checkpoints) if workdir is not None else None
    metrics_path = join(workdir, METRICS_FILE) if local else None
    start = 0
    digests = {}
    try:
        if manager is not None and manager.latest_step() is not None:
            if int(manager.latest_step()) > cfg.steps:
                raise ValueError(
                    f"steps={cfg.steps} is below the step already saved in {workdir} "
                    f"({manager.latest_step()}); give at least that many steps or a new "
                    "--workdir")
            start, state = restore_verified(manager, state, workdir, delete_bad=True)
            if local:
                digests = {k: v for k, v in _read_digests(workdir).items()
                           if int(k) in manager.all_steps()}
    except BaseException:
        if manager is not None:
            manager.close()
        raise
    if lead and local:  # only once the resume worked
        _write_atomic(join(workdir, CONFIG_FILE), cfg.to_json())
        _truncate_metrics(metrics_path, start)

    monitor = tuple(getattr(task, "monitor", ()))
    pending: list[tuple[int, dict]] = []
    unsent: list[str] = []  # metric lines not yet in a remote metrics.jsonl

    def send():
        nonlocal unsent
        if unsent:
            old = _path(metrics_path).read_text() if _path(metrics_path).exists() else ""
            _write_atomic(metrics_path, old + "\n".join(unsent) + "\n")
            unsent = []
    history: list[dict] = []
    last: dict = {}
    last_good = start if start else None
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and lead),
               desc=f"{task.name} {cfg.name}", unit="step", dynamic_ncols=True, file=sys.stderr)
    t_flush, n_flush = time.perf_counter(), 0

    def where():
        if workdir is None:
            return "none (in-memory run)"
        if last_good is None:
            return "none (no checkpoint was saved yet)"
        return f"step {last_good} in {join(workdir, CHECKPOINT_DIR)}"

    def flush():
        nonlocal pending, last, t_flush, n_flush
        if not pending:
            return
        rows = host_copy([m for _, m in pending])
        elapsed = time.perf_counter() - t_flush
        rate = n_flush * cfg.batch_size / elapsed if elapsed > 0 else float("nan")
        lines = []
        for (s, _), m in zip(pending, rows):
            m = {k: float(v) for k, v in m.items()}
            bad = {k: v for k, v in m.items() if not math.isfinite(v)}
            if bad:
                raise TrainingDiverged(
                    f"non-finite {', '.join(f'{k} ({v})' for k, v in bad.items())} at step {s}; "
                    f"stopped without saving. Last good checkpoint: {where()}. "
                    "Lower the learning rate or check the data.")
            history.append(dict(step=s, **m))
            lines.append(json.dumps(history[-1]))
            last = m
        pending = []
        if lead and local:
            if remote:
                unsent.extend(lines)
            else:
                with open(metrics_path, "a") as f:
                    f.write("\n".join(lines) + "\n")
        bar.set_postfix(loss=f"{last['loss']:.4f}",
                        **{k: f"{last[k]:.4f}" for k in monitor if k in last},
                        samples_s=f"{rate:.1f}")
        t_flush, n_flush = time.perf_counter(), 0

    try:
        for i in range(start, cfg.steps):
            state, metrics = step_fn(state, batch(i), key, np.int32(i))
            done = i + 1
            pending.append((done, metrics))
            n_flush += 1
            bar.update(1)
            if callback is not None:
                callback(done, state)
            save = manager is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps)
            if save or done % cfg.log_every == 0 or done == start + 1:
                flush()
            if save:
                import orbax.checkpoint as ocp
                if not bool(host_copy(_all_finite(state))):
                    raise TrainingDiverged(
                        f"the state holds NaN/inf after step {done}; stopped without saving. "
                        f"Last good checkpoint: {where()}. Lower the learning rate or check "
                        "the data.")
                if local:  # the digest first: a checkpoint never exists without it
                    digests = {k: v for k, v in digests.items()
                               if int(k) in manager.all_steps()}
                    digests[str(done)] = state_digest(state)
                    if lead:
                        _write_atomic(join(workdir, DIGEST_FILE),
                                      json.dumps(digests, indent=1, sort_keys=True))
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                last_good = done
            if remote and lead and (save or done % cfg.plot_every == 0 or done == cfg.steps):
                send()
            if lead and local and (done % cfg.plot_every == 0 or done == cfg.steps):
                plot_metrics(metrics_path, join(workdir, PLOT_FILE), monitor=monitor,
                             title=f"{task.name} training ({cfg.name})")
        flush()
        if remote and lead:
            send()
        if manager is None and start < cfg.steps and not bool(host_copy(_all_finite(state))):
            raise TrainingDiverged(f"the state holds NaN/inf after step {cfg.steps} (in-memory "
                                   "run). Lower the learning rate or check the data.")
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return RunResult(state=state, step=max(start, cfg.steps), config=cfg, workdir=workdir,
                     last_metrics=last, history=history)
