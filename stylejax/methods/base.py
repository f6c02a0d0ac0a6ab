"""The style-transfer method protocol, its result type and typed config fields.

Every method in :data:`stylejax.methods.registry.METHODS` is an object with

* ``name`` (CLI ``--method`` value) and ``help`` (one line);
* ``config_class``: a frozen dataclass whose fields are the method's settings. Each field
  is declared with :func:`option`, whose help text, choices and flag name the
  ``stylejax nst`` command turns into a command-line flag (see :func:`options`);
* ``inputs``: extra per-run arrays (e.g. tissue label maps) as :class:`MethodInput`;
* ``json_extra``: keys of :attr:`TransferResult.extra` that ``--json`` reports;
* ``needs_extractor(config) -> bool``: whether ``run`` uses a feature extractor;
* ``run(content, styles, *, extractor, config, progress=False, **inputs) ->``
  :class:`TransferResult`.

Optimisation-based methods (Gatys, mr2NST) optimise the pixels with
:mod:`stylejax.methods.engine`; feed-forward methods load a trained network named in their
config and run one forward pass (see :mod:`stylejax.methods.registry`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclasses.dataclass
class TransferResult:
    """Outcome of one style transfer.

    Attributes:
      image: ``[H, W]`` (or ``[H, W, 3]``) float32 in [0, 1].
      steps: optimisation steps run (0 for a forward pass).
      seconds: wall-clock time, compilation included.
      loss_initial / loss_final: the method's objective before and after (first and last
        ``history`` value).
      history: ``[steps + 1]`` float64 losses (before every step, then of ``image``); a
        method may document another meaning.
      extra: method-specific outputs (each method documents its keys).
    """

    image: np.ndarray
    steps: int
    seconds: float
    loss_initial: float
    loss_final: float
    history: np.ndarray
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MethodInput:
    """An optional array a method's ``run`` accepts as a keyword argument.

    Attributes:
      name: keyword of ``run`` (the CLI flag is ``--`` + name with ``-`` for ``_``).
      help: one line for ``--help``.
      kind: ``"labels"`` (an integer label map ``[H, W]``) or ``"image"`` (in [0, 1]).
    """

    name: str
    help: str
    kind: str = "labels"


@runtime_checkable
class Method(Protocol):
    """A style-transfer method (see the module docstring)."""

    name: str
    help: str
    config_class: type
    inputs: tuple[MethodInput, ...]
    json_extra: tuple[str, ...]

    def needs_extractor(self, config) -> bool:
        ...

    def run(self, content, styles: Sequence, *, extractor, config, progress: bool = False,
            **inputs) -> TransferResult:
        ...


def option(default, help: str, *, choices: Sequence | None = None, flag: str | None = None):
    """A config dataclass field carrying its command-line description.

    Args:
      default: the field's default (immutable: tuples, not lists).
      help: one line for ``--help``.
      choices: allowed values (the config also checks them in ``__post_init__``).
      flag: the long flag when it is not ``--`` + the field name with dashes.
    Returns:
      a ``dataclasses.field``.
    """
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if flag is not None:
        metadata["flag"] = flag
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One config field as the CLI sees it.

    Attributes:
      name: field name; flag: ``--name-with-dashes`` unless set with :func:`option`.
      type: resolved annotation, e.g. ``int``, ``float | None``, ``tuple[str, ...] | None``.
      default, help, choices: from the field and its :func:`option` metadata.
    """

    name: str
    flag: str
    type: Any
    default: Any
    help: str
    choices: tuple | None = None

    @property
    def base_type(self):
        """The annotation without ``None``: ``tuple[str, ...] | None -> tuple[str, ...]``."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if typing.get_origin(self.type) in (typing.Union, types.UnionType):
            return args[0] if len(args) == 1 else self.type
        return self.type

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)


def options(config_class) -> list[OptionSpec]:
    """The fields of a config dataclass as :class:`OptionSpec`, in declaration order.

    Raises:
      ValueError: a field was declared without :func:`option` (no help text).
    """
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        if "help" not in f.metadata:
            raise ValueError(f"{config_class.__name__}.{f.name} has no help text: declare it "
                             "with stylejax.methods.base.option(...)")
        out.append(OptionSpec(name=f.name, flag=f.metadata.get("flag", "--" + f.name.replace(
            "_", "-")), type=hints[f.name], default=f.default, help=f.metadata["help"],
            choices=f.metadata.get("choices")))
    return out


def check_real_finite(a: np.ndarray, name: str) -> None:
    """ValueError naming ``name`` unless ``a`` is real-valued numbers, all finite."""
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{name} must be real-valued (got dtype {a.dtype})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def check_choice(value, name: str, choices: Sequence) -> None:
    """ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))} "
                         f"(got {value!r})")


def json_value(value):
    """``value`` as plain JSON types (numpy arrays and scalars become lists and floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value
