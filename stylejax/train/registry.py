"""The training tasks ``stylejax train TASK`` knows.

Each entry names the module and attribute of a :class:`~stylejax.train.loop.Task`
instance and says in one line what it trains; modules are imported only when the
task is used, so ``stylejax --help`` stays fast. To add a task: write it (see
:mod:`stylejax.train.loop`), then add one line here.

Tasks that train on data handed over in memory and only inside a library call
(the mr2NST refiner GAN, :mod:`stylejax.train.refiner`) are not listed: they have
nothing to read from the command line.
"""

from __future__ import annotations

import importlib

#: name -> (module, attribute, one-line summary)
TASKS: dict[str, tuple[str, str, str]] = {
    "simsiam": ("stylejax.train.simsiam", "TASK",
                "the StyleX style encoder (SimSiam on LAP/vendor style pairs of phantoms)"),
    "adain": ("stylejax.train.adain", "TASK",
              "AdaIN decoders for CT kernel transfer (adain, contextual, context-aware)"),
    "dce": ("stylejax.train.dce", "TASK",
            "DCE-MRI CE <-> non-CE translation (MUNIT, AdaConv, ConvLSTM)"),
    "transform-net": ("stylejax.train.transform_net", "TASK",
                      "Johnson transform net for ultrasound LQ -> HQ (noise injection, avg style)"),
}


def names() -> list[str]:
    """The registered task names."""
    return list(TASKS)


def get(name: str):
    """The registered task ``name`` (imports its module).

    Raises:
      ValueError: unknown task.
    """
    if name not in TASKS:
        raise ValueError(f"unknown training task {name!r}: choose one of {', '.join(TASKS)}")
    module, attr, _ = TASKS[name]
    return getattr(importlib.import_module(module), attr)
