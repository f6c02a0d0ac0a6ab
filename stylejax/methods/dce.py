"""Feed-forward DCE-MRI contrast translation (``stylejax dce``; ``dce`` in the method table).

One forward pass of a trained :class:`stylejax.models.munit.MUNIT` (AdaConv decoders and a
bidirectional ConvLSTM over time, :mod:`stylejax.train.dce`): the source domain's content
encoder reads the whole series ``[T, H, W]``, the target domain's style encoder reads a
reference series of the target domain (one style code per frame), the target decoder
renders the series. ``direction="ce-to-non-ce"`` removes the contrast enhancement,
``"non-ce-to-ce"`` adds it. The reference may come from another patient: the style code
carries the frame's contrast, the content comes from the input.

The shipped model (``stylejax/assets/dce_munit/``, ``stylejax train dce --config default``)
was trained on synthetic 64x64 series of 5 frames (:func:`stylejax.data.dce.dce`); the
series must have the model's number of frames and frames whose sides are multiples of
``2^n_down`` (4). Intensities: a series within [0, 1] is used as is (the phantom's
magnitude scale, ~0..0.55); otherwise each series is divided by its maximum and multiplied
by 0.5, and the result is mapped back to the input's scale.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np
from flax import nnx

from stylejax._xla import cpu_convolution_options
from stylejax.methods.base import TransferResult, check_choice, check_real_finite, option
from stylejax.train import dce as dce_train

__all__ = ["DIRECTIONS", "DCEConfig", "DCE", "translate", "load_network", "shipped_model",
           "check_series"]

DIRECTIONS = ("ce-to-non-ce", "non-ce-to-ce")
_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                       "dce_munit")
_UNIT_PEAK = 0.5


def shipped_model() -> str:
    """Directory of the shipped model."""
    return _ASSETS


@dataclasses.dataclass(frozen=True)
class DCEConfig:
    """Settings of the DCE translation.

    Attributes:
      direction: ``ce-to-non-ce`` (remove enhancement) or ``non-ce-to-ce`` (add it).
      network: directory of an exported model (``stylejax train dce --export DIR``);
        None = the shipped one.
    """

    direction: str = option("ce-to-non-ce", "translation direction", choices=DIRECTIONS)
    network: str | None = option(None, "exported DCE model directory (default: the shipped "
                                 "one)")

    def __post_init__(self):
        check_choice(self.direction, "direction", DIRECTIONS)


@functools.lru_cache(maxsize=8)
def load_network(path: str):
    """``(MUNIT, meta)`` of an exported model directory (cached; :func:`dce_train.load`)."""
    return dce_train.load(path)


def check_series(series, name: str = "series", *, frames: int | None = None,
                 multiple: int = 1) -> np.ndarray:
    """A series ``[T, H, W]`` as float32, or ValueError.

    Raises:
      ValueError: not 3-D (e.g. a single frame), non-real dtype, NaN/inf, fewer than two
        frames, a frame count other than ``frames``, sides not multiples of ``multiple``,
        or a constant series.
    """
    if isinstance(series, (list, tuple)):
        shapes = {np.shape(f) for f in series}
        if len(shapes) > 1:
            raise ValueError(f"{name}: frames of different sizes {sorted(shapes)}")
    a = np.asarray(series)
    if a.ndim == 2:
        raise ValueError(f"{name} is a single frame {a.shape}; a DCE series is [T, H, W] with "
                         "T >= 2")
    if a.ndim != 3:
        raise ValueError(f"{name} must be a series [T, H, W] (got shape {a.shape})")
    check_real_finite(a, name)
    if a.shape[0] < 2:
        raise ValueError(f"{name} has {a.shape[0]} frame; a DCE series needs T >= 2")
    if frames is not None and a.shape[0] != frames:
        raise ValueError(f"{name} has {a.shape[0]} frames but the model was trained on "
                         f"{frames}")
    if a.shape[1] % multiple or a.shape[2] % multiple:
        raise ValueError(f"{name} frames of {a.shape[1]}x{a.shape[2]} must have sides that are "
                         f"multiples of {multiple}")
    if float(a.max()) == float(a.min()):
        raise ValueError(f"{name} is constant")
    return a.astype(np.float32)


def _to_unit(a: np.ndarray) -> tuple[np.ndarray, float]:
    if a.min() >= 0.0 and a.max() <= 1.0:
        return a, 1.0
    scale = float(np.abs(a).max()) / _UNIT_PEAK
    return a / scale, scale


@functools.lru_cache(maxsize=8)
def _forward(graph, to: str):
    # inference is a chain of dependent convolutions: on CPUs run each on all cores
    @functools.partial(jax.jit, compiler_options=cpu_convolution_options())
    def fwd(state, series, style):
        return nnx.merge(graph, state).translate(series, to=to, style_series=style)
    return fwd


def translate(series, reference, *, direction: str = "ce-to-non-ce",
              network: str | None = None) -> np.ndarray:
    """Translate one DCE series (see the module docstring).

    Args:
      series: ``[T, H, W]`` in the source domain.
      reference: ``[T, H, W]`` of the target domain (style per frame), same shape.
      direction, network: as :class:`DCEConfig`.
    Returns:
      ``[T, H, W]`` float32 in the input's intensity scale.
    Raises:
      ValueError: bad series (:func:`check_series`), a reference of another shape, a
        missing or mismatched model.
    """
    return _translate(series, reference, DCEConfig(direction=direction, network=network))


def _translate(series, reference, cfg: DCEConfig) -> np.ndarray:
    path = cfg.network or shipped_model()
    if not os.path.isdir(path):
        raise ValueError(f"DCE model {path!r} not found (export one with 'stylejax train dce "
                         "--export DIR')")
    net, meta = load_network(os.path.abspath(path))
    frames, multiple = int(meta["frames"]), 2 ** int(meta["architecture"]["n_down"])
    x = check_series(series, "series", frames=frames, multiple=multiple)
    r = check_series(reference, "style reference", frames=frames, multiple=multiple)
    if r.shape != x.shape:
        raise ValueError(f"style reference {r.shape} must have the series' shape {x.shape}")
    xu, scale = _to_unit(x)
    ru, _ = _to_unit(r)
    to = "non_ce" if cfg.direction == "ce-to-non-ce" else "ce"
    graph, state = nnx.split(net)
    out = np.asarray(_forward(graph, to)(state, xu[None], ru[None]))[0]
    return (out * scale).astype(np.float32)


class DCE:
    """DCE-MRI translation as a :class:`stylejax.methods.base.Method` (module docstring).

    ``content`` is the series ``[T, H, W]``; ``styles`` holds one reference series.
    """

    name = "dce"
    help = "DCE-MRI series CE <-> non-CE (MUNIT, AdaConv, ConvLSTM; series [T, H, W])"
    config_class = DCEConfig
    inputs = ()
    json_extra = ("direction",)

    def needs_extractor(self, config: DCEConfig) -> bool:
        return False  # the model's own encoders

    def run(self, content, styles, *, extractor=None, config: DCEConfig,
            progress: bool = False) -> TransferResult:
        """Translate ``content`` with the one reference series in ``styles``.

        Returns:
          :class:`TransferResult` with ``image`` ``[T, H, W]``, ``steps=0``,
          ``history=[nan, nan]``, ``extra={"direction"}``.
        """
        if isinstance(styles, np.ndarray) and styles.ndim == 3:
            styles = [styles]
        styles = list(styles)
        if len(styles) != 1:
            raise ValueError(f"dce takes exactly one reference series (got {len(styles)})")
        t0 = time.perf_counter()
        out = _translate(content, styles[0], config)
        nan = float("nan")
        return TransferResult(image=out, steps=0, seconds=time.perf_counter() - t0,
                              loss_initial=nan, loss_final=nan, history=np.array([nan, nan]),
                              extra={"direction": config.direction})
