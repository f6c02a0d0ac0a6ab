"""The base configuration every training task's config extends, and config loading.

A task's config is a frozen dataclass that subclasses :class:`TrainConfig` and adds
its own fields (all with defaults). The loop (:mod:`stylejax.train.loop`) reads only
the fields defined here; the task reads the rest. Example::

    @dataclasses.dataclass(frozen=True)
    class MyConfig(TrainConfig):
        lr: float = 1e-3

        def validate(self):
            super().validate()
            self.need(self.lr > 0, f"lr must be > 0 (got {self.lr})")
            return self

A config is chosen on the command line by name (``task.configs``) or as a Python file
defining ``get_config()`` (:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import ClassVar

#: Random-number generator implementations a run may use (``jax.random.key(seed, impl=...)``).
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings the generic training loop uses.

    Attributes:
      name: the config's name (shown in logs; not part of the computation).
      steps: total training steps.
      batch_size: global batch; must be divisible by the number of devices (the
        batch is sharded on the mesh axis ``data``).
      seed: seed of the loop's base key; step ``i`` gets
        ``jax.random.fold_in(jax.random.key(seed, impl=rng_impl), i)``. Tasks may
        also use it for their initialisation.
      rng_impl: the key's implementation, one of :data:`RNG_IMPLS`.
      log_every: metrics are copied to the host, checked for NaN/inf and appended
        to ``metrics.jsonl`` every this many steps (and at every checkpoint).
      plot_every: ``loss.png`` is redrawn every this many steps (and at the end).
      checkpoint_every: a checkpoint is saved every this many steps (and at the end).
      keep_checkpoints: how many recent checkpoints orbax keeps.
      distributed: call ``jax.distributed.initialize()`` first (multi-host runs).
    """

    #: Fields that may differ between a run's saved config and the config that
    #: resumes it (everything else must match, or resuming raises). Subclasses may
    #: extend it for fields that do not change the computation.
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = (
        "name", "steps", "log_every", "plot_every", "checkpoint_every", "keep_checkpoints",
        "distributed")

    name: str = "custom"
    steps: int = 1000
    batch_size: int = 64
    seed: int = 0
    rng_impl: str = "threefry2x32"
    log_every: int = 10
    plot_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    distributed: bool = False

    def need(self, ok: bool, message: str):
        """Raise ``ValueError("config NAME: message")`` unless ``ok``."""
        if not ok:
            raise ValueError(f"config {self.name!r}: {message}")

    def validate(self):
        """Raise ValueError naming the first inconsistent setting; return ``self``.

        Subclasses call ``super().validate()`` and then check their own fields.
        """
        self.need(self.batch_size >= 1 and self.steps >= 1, "batch_size and steps must be >= 1")
        self.need(min(self.log_every, self.plot_every, self.checkpoint_every,
                      self.keep_checkpoints) >= 1,
                  "log/plot/checkpoint intervals and keep_checkpoints must be >= 1")
        self.need(self.rng_impl in RNG_IMPLS,
                  f"rng_impl must be one of {', '.join(RNG_IMPLS)} (got {self.rng_impl!r})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """Inverse of :meth:`to_dict` (JSON lists become the tuples the defaults are);
        unknown keys raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        defaults = cls()
        out = {}
        for key, value in values.items():
            default = getattr(defaults, key)
            if isinstance(default, tuple) and isinstance(value, (list, tuple)):
                kinds = {type(v) for v in default}
                value = tuple(float(v) for v in value) if kinds == {float} else tuple(value)
            out[key] = value
        return cls(**out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def computation_key(self):
        """This config with the :attr:`RESUMABLE_CHANGES` fields except ``steps`` reset
        to their defaults: equal keys mean equal computations (a cache key for
        compiled steps)."""
        defaults = type(self)()
        return dataclasses.replace(self, **{
            name: getattr(defaults, name) for name in self.RESUMABLE_CHANGES if name != "steps"})


def config_class(task) -> type:
    """The config class of ``task`` (the type its ``"default"`` config returns)."""
    return type(task.configs["default"]())


def load_config(task, name_or_file: str):
    """A named config of ``task`` or a Python file defining ``get_config()``, validated.

    Args:
      task: a :class:`~stylejax.train.loop.Task`.
      name_or_file: a key of ``task.configs`` or a path ending in ``.py`` whose
        ``get_config()`` returns an instance of the task's config class.
    Raises:
      ValueError: unknown name, or a file without ``get_config`` returning such a config.
      FileNotFoundError: a ``.py`` path that does not exist.
    """
    if name_or_file in task.configs:
        return task.configs[name_or_file]().validate()
    if not str(name_or_file).endswith(".py"):
        raise ValueError(f"unknown config {name_or_file!r} for task {task.name!r}: use one of "
                         f"{', '.join(task.configs)} or a .py file defining get_config()")
    if not os.path.isfile(name_or_file):
        raise FileNotFoundError(f"config file not found: {name_or_file}")
    spec = importlib.util.spec_from_file_location("stylejax_user_config", name_or_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{name_or_file} does not define get_config()")
    cfg = module.get_config()
    cls = config_class(task)
    if not isinstance(cfg, cls):
        raise ValueError(f"{name_or_file}: get_config() must return a {cls.__module__}."
                         f"{cls.__qualname__} (got {type(cfg).__name__})")
    return cfg.validate()
