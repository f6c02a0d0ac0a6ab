"""Feed-forward AdaIN style transfer for CT (``stylejax nst --method adain``).

One forward pass of a trained :class:`stylejax.models.adain.AdaINNet`: the frozen
encoder named in the decoder's ``adain.json``, AdaIN with the style image's feature
statistics, ``alpha`` interpolation with the content features, the trained decoder.
Four decoders ship with the package (``stylejax/assets/adain_ct/<variant>/``, trained
on synthetic CT kernel pairs with ``stylejax train adain``, :data:`DECODERS`): the
papers' three, ``adain`` (Huang: MSE content + mean/std style loss), ``contextual``
(Mechrez: contextual loss to content and style) and ``context-aware`` (contextual content
+ mean/std style loss), and ``context-aware-lowpass``: the context-aware losses plus a
low-frequency pixel term that is not in the papers (config
``default-context-aware-lowpass``; it keeps the content's anatomy and contrast closer).

Borders: content and style are reflect-padded by the network's border margin (its
receptive field) before encoding, the AdaIN statistics come from the unpadded images
and the output is cropped back (:meth:`stylejax.models.adain.AdaINNet.__call__` with
``margin``). Without it the encoder's zero padding puts edge responses into the features
at the image border, AdaIN rescales them and the decoder draws them as bright or dark
lines along the border.

Intensities (:func:`stylejax.train.adain.to_unit`): ``intensity="auto"`` treats an image
with values outside [0, 1] as Hounsfield units (window ``[-1000, 1000] HU -> [0, 1]``,
the training mapping; the result is returned in HU) and an image within [0, 1] (a PNG)
as a display image stretched by its smoothed range (result in the content's [0, 1]
scale, clipped to [0, 1]). ``stylejax nst`` reads DICOM (modality LUT: HU for CT) and
float files in their own units, as this API takes them, and writes HU back to
.dcm/.npy/.tif (:attr:`AdaIN.native_units`).

Multi-style: any one style image per call (any kernel, or a real scan). The style image
must have the content's size unless ``any_style_size`` is set: the kernels' noise
texture is defined per pixel, so a style image at another size (pixel spacing) carries
a texture of another scale.

:func:`adain` (the layer) is re-exported from :mod:`stylejax.models.adain`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax.methods.base import TransferResult, check_choice, check_real_finite, option
from stylejax.models.adain import VARIANTS, adain
from stylejax.train import adain as adain_train

__all__ = ["adain", "AdaINConfig", "AdaIN", "transfer", "load_network", "shipped_decoder",
           "DECODERS", "INTENSITIES"]

INTENSITIES = ("auto", "hu", "unit")
#: Shipped decoders: the training variants plus the context-aware model with a low-pass term.
DECODERS = VARIANTS + ("context-aware-lowpass",)
_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                       "adain_ct")


def shipped_decoder(variant: str) -> str:
    """Directory of the decoder shipped for ``variant``."""
    check_choice(variant, "AdaIN variant", DECODERS)
    return os.path.join(_ASSETS, variant)


@dataclasses.dataclass(frozen=True)
class AdaINConfig:
    """Settings of the feed-forward AdaIN transfer.

    Attributes:
      variant: which shipped decoder (:data:`DECODERS`).
      alpha: 1 = full style, 0 = the content's own features (decoded).
      decoder: directory of an exported decoder (``stylejax train adain --export DIR``);
        None = the shipped decoder of ``variant``.
      intensity: ``auto``, ``hu`` or ``unit`` (see the module docstring).
      any_style_size: accept a style image whose size differs from the content's.
    """

    variant: str = option("context-aware", "shipped AdaIN decoder: Huang (adain), Mechrez "
                          "(contextual), the context-aware model, or it with a low-pass "
                          "pixel term (context-aware-lowpass)", choices=DECODERS)
    alpha: float = option(1.0, "content/style interpolation: 1 = full style, 0 = content")
    decoder: str | None = option(None, "exported decoder directory (default: the shipped one "
                                 "of --variant)")
    intensity: str = option("auto", "intensity mapping: hu (window -1000..1000 HU), unit "
                            "(own range of a [0, 1] image) or auto", choices=INTENSITIES)
    any_style_size: bool = option(False, "accept a style image of another size than the "
                                  "content")

    def __post_init__(self):
        check_choice(self.variant, "variant", DECODERS)
        check_choice(self.intensity, "intensity", INTENSITIES)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (
                0.0 <= float(self.alpha) <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1] (got {self.alpha!r})")


@functools.lru_cache(maxsize=8)
def load_network(path: str):
    """``(net, meta)`` of an exported decoder directory (cached; see
    :func:`stylejax.train.adain.load`)."""
    return adain_train.load(path)


@functools.lru_cache(maxsize=8)
def _forward(graph, margin: int):
    @jax.jit
    def fwd(state, content, style, alpha):
        net = nnx.merge(graph, state)
        return net(content, style, alpha=alpha, margin=margin)[..., 0]
    return fwd


def _check_image(x, name):
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grayscale image [H, W] (got shape {a.shape})")
    check_real_finite(a, name)
    if min(a.shape) < 16:
        raise ValueError(f"{name} is too small ({a.shape}); AdaIN needs at least 16x16")
    return a.astype(np.float32)


def transfer(content, style, *, variant: str = "context-aware", alpha: float = 1.0,
             decoder: str | None = None, intensity: str = "auto",
             any_style_size: bool = False) -> np.ndarray:
    """Restyle one CT image with one style image (see the module docstring).

    Args:
      content: ``[H, W]`` in HU (or in [0, 1]).
      style: ``[H, W]`` in the same kind of units (other sizes need ``any_style_size``).
      variant, alpha, decoder, intensity, any_style_size: as :class:`AdaINConfig`.
    Returns:
      ``[H, W]`` float32 in the content's units (HU in, HU out).
    Raises:
      ValueError: wrong rank, NaN/inf, a constant image, a style image of another size,
        a decoder that does not match its encoder.
    """
    cfg = AdaINConfig(variant=variant, alpha=alpha, decoder=decoder, intensity=intensity,
                      any_style_size=any_style_size)
    return _transfer(content, style, cfg)


def _transfer(content, style, cfg: AdaINConfig) -> np.ndarray:
    c = _check_image(content, "content image")
    s = _check_image(style, "style image")
    if s.shape != c.shape and not cfg.any_style_size:
        raise ValueError(f"style image {s.shape} has another size than the content {c.shape}: "
                         "the kernel texture is defined per pixel, so resample it to the "
                         "content's pixel spacing (or set any_style_size)")
    path = cfg.decoder or shipped_decoder(cfg.variant)
    if not os.path.isdir(path):
        raise ValueError(f"AdaIN decoder {path!r} not found (export one with 'stylejax train "
                         "adain --export DIR')")
    net, meta = load_network(os.path.abspath(path))
    mode = cfg.intensity
    if mode == "auto":
        mode = "unit" if (c.min() >= 0.0 and c.max() <= 1.0) else "hu"
    cu, c_range = adain_train.to_unit(c, mode)
    su, _ = adain_train.to_unit(s, mode)
    margin = net.border_margin()
    if margin >= min(min(c.shape), min(s.shape)):
        raise ValueError(f"images {c.shape} / {s.shape} are too small for this decoder: "
                         f"they must be larger than its border margin of {margin} pixels")
    graph, state = nnx.split(net)
    out = _forward(graph, margin)(state, jnp.asarray(cu)[None], jnp.asarray(su)[None],
                                  jnp.float32(cfg.alpha))
    out = adain_train.from_unit(np.asarray(out)[0], c_range)
    if mode == "unit" and c.min() >= 0.0 and c.max() <= 1.0:
        out = np.clip(out, 0.0, 1.0)  # a display image stays one
    return out.astype(np.float32)


class AdaIN:
    """Feed-forward AdaIN as a :class:`stylejax.methods.base.Method` (see the module doc)."""

    name = "adain"
    help = "feed-forward AdaIN for CT kernels (Huang, Mechrez contextual, context-aware)"
    config_class = AdaINConfig
    inputs = ()
    json_extra = ("variant", "alpha")
    #: ``stylejax nst`` passes DICOM and float images in their own units (HU for CT, as
    #: ``stylejax.data.io.read_image`` gives them) instead of normalising them to [0, 1].
    native_units = True

    def needs_extractor(self, config: AdaINConfig) -> bool:
        return False  # the decoder's own encoder (named in its adain.json)

    def run(self, content, styles, *, extractor=None, config: AdaINConfig,
            progress: bool = False) -> TransferResult:
        """Restyle ``content`` with the one image in ``styles``.

        Returns:
          :class:`TransferResult` with ``steps=0``, ``history=[nan, nan]`` and
          ``extra={"variant", "alpha"}``; ``image`` in the content's units.
        """
        if isinstance(styles, np.ndarray) and styles.ndim == 2:
            styles = [styles]
        styles = list(styles)
        if len(styles) != 1:
            raise ValueError(f"AdaIN takes exactly one style image per call (got "
                             f"{len(styles)}); run it once per style")
        t0 = time.perf_counter()
        out = _transfer(content, styles[0], config)
        nan = float("nan")
        return TransferResult(image=out, steps=0, seconds=time.perf_counter() - t0,
                              loss_initial=nan, loss_final=nan, history=np.array([nan, nan]),
                              extra={"variant": config.variant, "alpha": float(config.alpha)})
