"""Named tunable pipelines: what ``stylejax tune --pipeline NAME`` and
``stylejax.tune.fit(..., pipeline=NAME)`` choose from.

An entry is either a :class:`~stylejax.pipeline.tunable.Pipeline` or a factory
``(image_shape (H, W)) -> Pipeline`` for pipelines whose parameters depend on the
image size (the extended LAP has one parameter per pyramid band). Built in:

* ``"lap"``: :data:`stylejax.pipeline.tunable.LAP` (w, l, h);
* ``"extended-lap"``: :func:`stylejax.pipeline.extended_lap.for_shape` (w and one
  gain per band, LAP's default number of bands for the image size).

Users add their own with :func:`register` (see :mod:`stylejax.pipeline.tunable` for
an example); the registry lives for the Python process.
"""

from __future__ import annotations

import re
from typing import Callable, Union

from stylejax.pipeline import extended_lap as _extended_lap
from stylejax.pipeline.tunable import LAP, Pipeline

Factory = Callable[[tuple], Pipeline]
Entry = Union[Pipeline, Factory]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_BUILTIN = ("lap", "extended-lap")
_REGISTRY: dict[str, Entry] = {"lap": LAP, "extended-lap": _extended_lap.for_shape}


def register(name: str, pipeline: Entry, *, replace: bool = False) -> None:
    """Add a pipeline under ``name``.

    Args:
      name: lower-case letters, digits, ``-``, ``_``, ``.`` (a CLI value), starting
        with a letter or digit.
      pipeline: a :class:`Pipeline`, or a factory ``(image_shape) -> Pipeline``
        called with the ``(H, W)`` of the smallest raw image.
      replace: allow replacing a user entry of the same name (built-in entries
        cannot be replaced).
    Raises:
      ValueError: a bad name, a name already taken (without ``replace``), a
        built-in name, or ``pipeline`` neither a Pipeline nor callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"pipeline name must be lower-case letters, digits, '-', '_' or '.' "
                         f"(got {name!r})")
    if name in _BUILTIN:
        raise ValueError(f"pipeline name {name!r} is built in and cannot be replaced")
    if name in _REGISTRY and not replace:
        raise ValueError(f"a pipeline named {name!r} is already registered "
                         f"(pass replace=True to replace it)")
    if not isinstance(pipeline, Pipeline) and not callable(pipeline):
        raise ValueError(f"pipeline must be a Pipeline or a factory (image_shape) -> Pipeline "
                         f"(got {type(pipeline).__name__})")
    _REGISTRY[name] = pipeline


def unregister(name: str) -> None:
    """Remove a user pipeline.

    Raises:
      ValueError: ``name`` is built in or not registered.
    """
    if name in _BUILTIN:
        raise ValueError(f"pipeline {name!r} is built in and cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"no pipeline named {name!r}; registered: {', '.join(names())}")
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered names, the built-in ones first, then the user ones in order of
    registration."""
    return tuple(_REGISTRY)


def get(name: str, image_shape=None) -> Pipeline:
    """The pipeline registered as ``name``.

    Args:
      name: a registered name (:func:`names`).
      image_shape: ``(H, W)`` (or ``(..., H, W)``) of the smallest raw image; needed
        by factory entries such as ``"extended-lap"``, ignored by fixed pipelines.
    Returns:
      a :class:`Pipeline`.
    Raises:
      ValueError: an unknown name (the message lists the registered ones), a factory
        entry without ``image_shape``, or a factory that does not return a Pipeline.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown pipeline {name!r}; registered: {', '.join(names())}")
    entry = _REGISTRY[name]
    if isinstance(entry, Pipeline):
        return entry
    if image_shape is None:
        raise ValueError(f"pipeline {name!r} depends on the image size: pass image_shape=(H, W)")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) < 2 or min(shape[-2:]) < 1:
        raise ValueError(f"image_shape must end with (H, W) >= 1 (got {tuple(image_shape)})")
    pipeline = entry(shape[-2:])
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"the factory of pipeline {name!r} returned a "
                         f"{type(pipeline).__name__}, not a Pipeline")
    return pipeline
