"""Feature extractors behind one interface: VGG16/VGG19 and the StyleX ResNet-18 encoder.

A *feature extractor* is anything that satisfies :class:`FeatureExtractor`::

    feats = extractor(images, taps=("relu1_1", "relu5_2"))   # {tap: [N, h, w, C]}
    extractor.valid_taps      # every tap name, in network order
    extractor.style_taps      # default style layers
    extractor.content_taps    # default content layers

Optional attributes: ``plan`` (``((kind, name), ...)`` with kind ``conv``/``relu``/
``pool``, used to carry tissue masks through the network, see
:func:`stylejax.losses.style.propagate_masks`) and ``grayscale_only`` (True when RGB
input is refused). Style-transfer methods (``stylejax.methods``) and the perceptual losses
of feed-forward methods take their features from this interface only.

Tap names:

* VGG (:class:`VGGFeatures`, :func:`vgg_taps`): ``conv{b}_{l}``, ``relu{b}_{l}``,
  ``pool{b}`` in torchvision order; style ``relu1_1, relu2_1, relu3_1, relu5_1`` and
  content ``relu5_2`` (ultrasound thesis, section 4.2).
* StyleX encoder (:class:`StyleXFeatures`, :data:`STYLEX_TAPS`): ``stem`` (after the
  7x7/2 convolution, BatchNorm and ReLU, 1/2 resolution), ``pool`` (3x3/2 max pool,
  1/4), ``stage1`` .. ``stage4`` (outputs of the four residual stages, 1/4, 1/8, 1/16,
  1/32); style ``stem, stage1, stage2, stage3`` and content ``stage3`` (1/16 resolution,
  like VGG's relu5_2).

Images are ``[N, H, W]`` grayscale (or ``[N, H, W, 1]``; VGG also ``[N, H, W, 3]`` RGB) in
[0, 1], at their own pixel scale: unlike ``StyleX.embed`` the StyleX extractor does not
resize or tile, so feature maps keep the image's geometry.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax._checks import is_concrete
from stylejax.models import resnet
from stylejax.models import vgg as vgg_lib
from stylejax.models import weights as weight_io

#: Every StyleX encoder tap, in network order.
STYLEX_TAPS = ("stem", "pool", "stage1", "stage2", "stage3", "stage4")
STYLEX_STYLE_TAPS = ("stem", "stage1", "stage2", "stage3")
STYLEX_CONTENT_TAPS = ("stage3",)


@runtime_checkable
class FeatureExtractor(Protocol):
    """The contract every feature extractor meets (see the module docstring)."""

    style_taps: tuple[str, ...]
    content_taps: tuple[str, ...]
    valid_taps: tuple[str, ...]

    def __call__(self, images, taps: Sequence[str]) -> Mapping[str, jax.Array]:
        """``images [N, H, W(, C)]`` in [0, 1] -> ``{tap: [N, h, w, C]}`` float32."""
        ...


def check_taps(taps, valid: Sequence[str], what: str) -> tuple[str, ...]:
    """``taps`` as a non-empty tuple of names from ``valid``; ValueError naming bad ones."""
    if isinstance(taps, str):
        taps = (taps,)
    taps = tuple(taps)
    if not taps:
        raise ValueError(f"taps is empty: name at least one {what} layer, e.g. {valid[0]!r}")
    bad = [t for t in taps if t not in valid]
    if bad:
        raise ValueError(f"unknown {what} tap(s) {bad}; valid taps: {', '.join(valid)}")
    return taps


def vgg_taps(arch: str = "vgg19") -> tuple[str, ...]:
    """Every tap name of ``"vgg16"`` or ``"vgg19"``, in network order (no weights needed)."""
    if arch not in ("vgg16", "vgg19"):
        raise ValueError(f"arch must be 'vgg16' or 'vgg19' (got {arch!r})")
    return tuple(name for _, name, _ in weight_io.layer_plan(arch))


class VGGFeatures(nnx.Module):
    """A :class:`stylejax.models.vgg.VGG` trunk as a :class:`FeatureExtractor`.

    Args:
      net: the VGG module (its weights are this module's state).
    Attributes:
      valid_taps, style_taps, content_taps, plan: see the module docstring.
    """

    grayscale_only = False

    def __init__(self, net: vgg_lib.VGG):
        if not isinstance(net, vgg_lib.VGG):
            raise ValueError(f"VGGFeatures wraps a stylejax.models.vgg.VGG (got "
                             f"{type(net).__name__})")
        self.net = net
        self.arch = net.arch
        self.plan = net.plan
        self.valid_taps = net.taps
        self.style_taps = tuple(vgg_lib.STYLE_TAPS)
        self.content_taps = tuple(vgg_lib.CONTENT_TAPS)

    def __call__(self, images, taps: Sequence[str] | None = None) -> dict[str, jax.Array]:
        """Feature maps at ``taps`` (default: style + content taps).

        Args:
          images: ``[N, H, W]`` grayscale or ``[N, H, W, 3]`` RGB in [0, 1].
          taps: tap names from :attr:`valid_taps`.
        Returns:
          ``{tap: [N, h, w, C]}`` float32.
        """
        taps = self.style_taps + self.content_taps if taps is None else taps
        taps = check_taps(taps, self.valid_taps, self.arch)
        return self.net(images, taps=taps)


def vgg19_features(weights, *, seed: int = 0) -> VGGFeatures:
    """VGG19 extractor; ``weights`` as :func:`stylejax.models.vgg.vgg19` (a path,
    ``"imagenet"``, ``"random"`` (warns) or a tensor dict)."""
    return VGGFeatures(vgg_lib.vgg19(weights, seed=seed))


def vgg16_features(weights, *, seed: int = 0) -> VGGFeatures:
    """VGG16 extractor; arguments as :func:`vgg19_features`."""
    return VGGFeatures(vgg_lib.vgg16(weights, seed=seed))


class StyleXFeatures(nnx.Module):
    """Feature maps of a StyleX ResNet-18 encoder as a :class:`FeatureExtractor`.

    BatchNorm always runs in inference mode (running statistics): the features of an
    image never depend on the rest of its batch, which an optimisation of one image
    needs. Images enter in [0, 1] and are mapped to [-1, 1] as the encoder does.

    Args:
      encoder: a :class:`stylejax.models.simsiam.StyleEncoder` (its projector is unused)
        or a :class:`stylejax.models.resnet.ResNet18` backbone with one input channel.
    Attributes:
      valid_taps, style_taps, content_taps, plan: see the module docstring; ``plan``
        approximates the stem and the strided convolutions by a 3x3 average and a
        halving, so tissue masks need image sides that are multiples of 32.
    """

    grayscale_only = True
    valid_taps = STYLEX_TAPS
    style_taps = STYLEX_STYLE_TAPS
    content_taps = STYLEX_CONTENT_TAPS

    def __init__(self, encoder):
        backbone = getattr(encoder, "backbone", encoder)
        if not isinstance(backbone, resnet.ResNet18):
            raise ValueError("StyleXFeatures needs a StyleEncoder or a ResNet18 backbone "
                             f"(got {type(encoder).__name__})")
        if backbone.in_channels != 1:
            raise ValueError(f"the StyleX encoder takes one channel (got {backbone.in_channels})")
        self.backbone = nnx.view(backbone, use_running_average=True)
        n_blocks = len(backbone.blocks)
        per_stage = n_blocks // len(resnet.BLOCKS_PER_STAGE)
        self.stage_ends = tuple((i + 1) * per_stage - 1 for i in range(4))
        plan = [("conv", "_stem_conv"), ("pool", "_stem_stride"), ("relu", "stem"),
                ("conv", "_maxpool_window"), ("pool", "pool")]
        for i in range(n_blocks):
            if i > 0 and i % per_stage == 0:
                plan.append(("pool", f"_block{i}_stride"))
            plan += [("conv", f"_block{i}_a"), ("conv", f"_block{i}_b")]
            if i in self.stage_ends:
                plan.append(("relu", f"stage{self.stage_ends.index(i) + 1}"))
        self.plan = tuple(plan)

    def __call__(self, images, taps: Sequence[str] | None = None) -> dict[str, jax.Array]:
        """Feature maps at ``taps`` (default: style + content taps).

        Args:
          images: ``[N, H, W]`` (or ``[N, H, W, 1]``) grayscale in [0, 1], H, W >= 2.
          taps: names from :data:`STYLEX_TAPS`; the network runs only to the deepest one.
        Returns:
          ``{tap: [N, h, w, C]}`` float32.
        """
        taps = STYLEX_STYLE_TAPS + STYLEX_CONTENT_TAPS if taps is None else taps
        taps = check_taps(taps, STYLEX_TAPS, "StyleX")
        x = jnp.asarray(images, jnp.float32)
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3:
            raise ValueError("the StyleX encoder takes grayscale images [N, H, W] (got shape "
                             f"{tuple(np.shape(images))})")
        if is_concrete(images) and not np.all(np.isfinite(np.asarray(images))):
            raise ValueError("images contain non-finite values (NaN or inf)")
        b = self.backbone
        if b.dtype is not None:
            x = x.astype(b.dtype)
        x = nnx.relu(b.stem_bn(b.stem_conv((2.0 * x - 1.0)[..., None])))
        out = {"stem": x}
        if not all(t in out for t in taps):
            x = resnet.max_pool_3x3_s2(x)
            out["pool"] = x
        for i, block in enumerate(b.blocks):
            if all(t in out for t in taps):
                break
            x = block(x)
            if i in self.stage_ends:
                out[f"stage{self.stage_ends.index(i) + 1}"] = x
        return {t: out[t].astype(jnp.float32) for t in taps}
