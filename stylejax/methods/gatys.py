"""Gatys neural style transfer and the ultrasound thesis' variants, jit-compiled.

Variants (thesis section 3.2):

* ``basic`` - Gatys et al.: optimise the image so its content features (default relu5_2)
  match the content image and its Gram matrices (default relu1_1, relu2_1, relu3_1,
  relu5_1) match the style image's (Eq. 2.1-2.4).
* ``augmented`` - per-label style loss on tissue masks from a label map (e.g. the phantom
  labels), masks carried through the network by ``fake_conv``/``fake_pool``; with style
  labels it is Eq. 2.5 (style masked by its own labels), without them Eq. 3.1 (style
  masked by the content's masks, so style and content must have the same size).
* ``local`` - masking in image space: one basic NST per label on ``content * M_d``; the
  result is ``sum_d M_d * out_d`` (pixels in no kept label keep the content).
* ``average`` - several style images; the target is the mean of their Grams (``gram``) or
  the Gram of their mean feature map (``features``).

The optimisation starts from the content image and uses :mod:`stylejax.methods.engine`
(including its loss normalisation, on by default). :class:`GatysLoss` and
:func:`masks_from_labels` are reused by other methods.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from stylejax._checks import check_range
from stylejax.losses import style as style_losses
from stylejax.methods import engine
from stylejax.methods.base import MethodInput, TransferResult, check_choice, option

VARIANTS = ("basic", "augmented", "local", "average")
AVERAGES = ("gram", "features")


@dataclasses.dataclass(frozen=True)
class GatysConfig(engine.OptimizationConfig):
    """Gatys settings: :class:`stylejax.methods.engine.OptimizationConfig` plus

    Attributes:
      variant: ``"basic"``, ``"augmented"``, ``"local"`` or ``"average"``.
      average: ``"gram"`` or ``"features"`` for ``variant="average"``.
      labels: label values to use for ``augmented``/``local`` (default: every label
        covering more than ``min_label_fraction`` of the image).
      min_label_fraction: smallest area fraction of a kept label (thesis: 0.25 %).
    """

    variant: str = option("basic", "Gatys variant (thesis 3.2)", choices=VARIANTS)
    average: str = option("gram", "average variant: mean of Grams or Gram of mean features",
                          choices=AVERAGES)
    labels: tuple[int, ...] | None = option(
        None, "label values for augmented/local, comma-separated (default: all significant)")
    min_label_fraction: float = option(0.0025, "smallest area fraction of a kept label")

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.variant, "variant", VARIANTS)
        check_choice(self.average, "average", AVERAGES)
        if not 0.0 <= self.min_label_fraction < 1.0:
            raise ValueError(f"min_label_fraction must lie in [0, 1) (got "
                             f"{self.min_label_fraction})")


@dataclasses.dataclass(frozen=True)
class GatysLoss:
    """Pure, hashable Eq. 2.1 loss ``loss(image, aux)`` for the jitted step.

    ``aux`` holds everything that varies between runs without recompiling: the extractor
    ``state``, ``content`` ({tap: F}), ``style`` ({tap: G}, or per-label ``[D, C, C]``),
    ``masks`` ({tap: [D, h, w]} or None), ``content_weights`` and ``style_weights``
    ({tap: weight}, from :func:`stylejax.methods.engine.loss_weights`).
    """

    extraction: engine.Extraction
    content_taps: tuple[str, ...]
    style_taps: tuple[str, ...]

    def terms(self, image, aux) -> tuple[dict, dict]:
        """The raw per-layer terms ``({tap: Eq. 2.2}, {tap: Eq. 2.4 / 2.5})`` of ``image``."""
        taps = tuple(dict.fromkeys(self.style_taps + self.content_taps))
        feats = self.extraction(aux["state"], image[None], taps)
        return ({t: style_losses.content_loss(feats[t], aux["content"][t])
                 for t in self.content_taps},
                style_terms(feats, aux["style"], aux["masks"], self.style_taps))

    def __call__(self, image, aux):
        content, style = self.terms(image, aux)
        return (sum(aux["content_weights"][t] * v for t, v in content.items())
                + sum(aux["style_weights"][t] * v for t, v in style.items()))


def style_terms(features, targets, masks, taps) -> dict:
    """``{tap: sum_ij (G - G_target)^2 / (2 C^2)}`` for one image's ``features``
    (``[1, h, w, C]``), per label and summed when ``masks`` ({tap: [D, h, w]}) are given."""
    out = {}
    for t in taps:
        f = features[t]
        g = style_losses.gram(f[:, None], masks[t]) if masks is not None else style_losses.gram(f)
        out[t] = style_losses.style_layer_loss(g, targets[t])
    return out


# ----------------------------------------------------------------- input checks


def as_image(x, name: str) -> np.ndarray:
    """``x`` as float32 ``[H, W]`` or ``[H, W, 3]`` in [0, 1]; ValueError naming ``name``."""
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array (got dtype {arr.dtype})")
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(f"{name} must be [H, W] grayscale or [H, W, 3] RGB "
                         f"(got shape {arr.shape})")
    if min(arr.shape[:2]) < 2:
        raise ValueError(f"{name} is too small ({arr.shape[0]}x{arr.shape[1]} pixels)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    check_range(arr, name, 0.0, 1.0)
    return arr


def as_styles(style, content: np.ndarray) -> list[np.ndarray]:
    """One style image, a list, or a stack ``[S, H, W(, 3)]`` as a list matching
    ``content``'s rank."""
    if isinstance(style, (list, tuple)):
        items = list(style)
    else:
        arr = np.asarray(style)
        # a stack [S, H, W(, 3)]; a 3-D array ending in 3 channels is one RGB image
        stacked = arr.ndim == content.ndim + 1 and not (arr.ndim == 3 and arr.shape[-1] == 3)
        items = list(arr) if stacked else [arr]
    if not items:
        raise ValueError("at least one style image is needed")
    styles = [as_image(s, f"style[{i}]") for i, s in enumerate(items)]
    for i, s in enumerate(styles):
        if s.ndim != content.ndim:
            kind = {2: "grayscale [H, W]", 3: "RGB [H, W, 3]"}
            raise ValueError(f"content is {kind[content.ndim]} but style[{i}] is "
                             f"{kind[s.ndim]}: rank/channel counts must match")
    return styles


def as_labels(labels, image: np.ndarray, name: str) -> np.ndarray:
    """An integer label map of ``image``'s size; ValueError naming ``name`` otherwise."""
    lab = np.asarray(labels)
    if lab.shape != image.shape[:2]:
        raise ValueError(f"{name} shape {lab.shape} does not match the image size "
                         f"{image.shape[:2]}")
    if not (np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.bool_)):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise ValueError(f"{name} must hold integer label values")
        lab = lab.astype(np.int64)
    return lab


def masks_from_labels(content_labels, style_labels=None, *, labels: Sequence[int] | None = None,
                      min_fraction: float = 0.0025):
    """Binary tissue masks from label maps (thesis 3.2: labels covering > 0.25 % of the image).

    Args:
      content_labels: ``[H, W]`` integer label map of the content image.
      style_labels: optional ``[Hs, Ws]`` label map of the style image; then only labels
        significant in both maps are kept ("only the ones in common").
      labels: candidate label values (default: all values in ``content_labels``).
      min_fraction: minimum area fraction for a label to be kept.
    Returns:
      ``(values, content_masks [D, H, W], style_masks [D, Hs, Ws] or None)`` float32.
    """
    c = np.asarray(content_labels)
    s = None if style_labels is None else np.asarray(style_labels)
    candidates = np.unique(c) if labels is None else np.asarray(list(labels))
    keep = [v for v in candidates.tolist()
            if (c == v).mean() > min_fraction and (s is None or (s == v).mean() > min_fraction)]
    if not keep:
        raise ValueError(f"no label covers more than {min_fraction:.2%} of the "
                         f"{'content and style' if s is not None else 'content'} image")
    cm = np.stack([(c == v) for v in keep]).astype(np.float32)
    sm = None if s is None else np.stack([(s == v) for v in keep]).astype(np.float32)
    return tuple(keep), cm, sm


# ------------------------------------------------------------------- the method


def _aux(loss_fn: GatysLoss, start_image, targets, masks, features, config):
    """The step's ``aux`` for a run from ``start_image`` and the raw style terms there."""
    taps = loss_fn.content_taps + loss_fn.style_taps
    feats = features(start_image[None], tuple(dict.fromkeys(taps)))
    content = {t: feats[t] for t in loss_fn.content_taps}
    initial = style_terms(feats, targets, masks, loss_fn.style_taps)
    alphas, betas = engine.loss_weights(
        config, loss_fn.content_taps, loss_fn.style_taps,
        content_energies={t: engine.content_energy(content[t])[0] for t in content},
        style_initial=initial,
        style_energies={t: engine.gram_energy(targets[t]).sum() for t in loss_fn.style_taps})
    aux = {"state": features.state, "content": content, "style": targets, "masks": masks,
           "content_weights": alphas, "style_weights": betas}
    return aux, {t: float(v) for t, v in initial.items()}


def _run_one(loss_fn: GatysLoss, start_image, targets, masks, features, config, *,
             progress: bool, desc: str):
    """Optimise from ``start_image``; returns ``(image, history, seconds, first, L0)``."""
    aux, initial = _aux(loss_fn, start_image, targets, masks, features, config)
    image, history, seconds, first = engine.optimize(loss_fn, start_image, aux, config,
                                                     progress=progress, desc=desc)
    return image, history, seconds, first, initial


class _Features:
    """Jitted feature extraction bound to one extractor state."""

    def __init__(self, extraction, state):
        self.extraction, self.state = extraction, state

    def __call__(self, images, taps):
        return engine.extract_features(self.extraction, self.state, jnp.asarray(images),
                                       tuple(taps))


def gatys(content, style, *, extractor, config: GatysConfig = GatysConfig(),
          content_labels=None, style_labels=None, progress: bool = False) -> TransferResult:
    """Gatys NST and the thesis' variants.

    Args:
      content: ``[H, W]`` grayscale or ``[H, W, 3]`` RGB in [0, 1].
      style: one image like ``content`` (any size) or, for ``average``, a list / stack.
      extractor: a :class:`stylejax.models.features.FeatureExtractor` (or any callable
        ``(images, taps=...) -> {tap: [N, h, w, C]}`` when the config names the taps);
        ``augmented`` also needs its ``plan``.
      config: :class:`GatysConfig` (variant, weights, optimiser).
      content_labels: ``[H, W]`` label map (``augmented`` and ``local``).
      style_labels: optional label map of the style image (``augmented``: Eq. 2.5).
      progress: tqdm progress bar on stderr.
    Returns:
      :class:`stylejax.methods.base.TransferResult`; ``extra``: ``variant``, ``labels``
      (label values used, or None), ``first_step_seconds`` (first call, compilation
      included) and ``style_initial`` ({tap: raw style term at the start}; a list of
      them per label for ``local``). For ``local`` the history concatenates the
      per-label runs and the initial/final losses are sums over labels.
    """
    variant = config.variant
    content = as_image(content, "content")
    styles = as_styles(style, content)
    if variant != "average" and len(styles) != 1:
        raise ValueError(f"variant {variant!r} takes one style image (got {len(styles)}); "
                         "use variant='average' for several")
    if content.ndim == 3 and getattr(extractor, "grayscale_only", False):
        raise ValueError("this extractor takes grayscale images; content is RGB [H, W, 3]")
    content_taps, style_taps = config.taps(extractor)
    extraction, state = engine.Extraction.of(extractor)
    loss_fn = GatysLoss(extraction, content_taps, style_taps)
    features = _Features(extraction, state)

    # Every extraction asks for all taps, so images of one shape share one compilation.
    all_taps = tuple(dict.fromkeys(content_taps + style_taps))
    used_labels, masks, targets = None, None, None
    if variant in ("basic", "local"):
        sf = features(styles[0][None], all_taps)
        targets = {t: style_losses.gram(sf[t])[0] for t in style_taps}
    elif variant == "average":
        if config.average == "features" and len({s.shape for s in styles}) > 1:
            raise ValueError("average='features' needs style images of one size (got "
                             f"{sorted({s.shape for s in styles})}); use average='gram'")
        if config.average == "features":
            sf = features(np.stack(styles), style_taps)
            targets = {t: style_losses.average_style_grams(sf[t], "features")
                       for t in style_taps}
        else:
            grams = engine.style_grams(extraction, state, styles, style_taps)
            targets = {t: g.mean(axis=0) for t, g in grams.items()}
    if variant in ("augmented", "local"):
        if content_labels is None:
            raise ValueError(f"variant {variant!r} needs content_labels (a [H, W] label map)")
        c_lab = as_labels(content_labels, content, "content_labels")
        s_lab = None if style_labels is None else as_labels(style_labels, styles[0],
                                                            "style_labels")
        used_labels, cmasks, smasks = masks_from_labels(
            c_lab, s_lab, labels=config.labels, min_fraction=config.min_label_fraction)

    if variant == "augmented":
        plan = getattr(extractor, "plan", None)
        if plan is None:
            raise ValueError("the augmented variant needs an extractor with a layer `plan` "
                             "to propagate the masks (VGG has one)")
        if smasks is None and styles[0].shape[:2] != content.shape[:2]:
            raise ValueError(f"without style_labels the content masks are applied to the "
                             f"style (Eq. 3.1), so style {styles[0].shape[:2]} and content "
                             f"{content.shape[:2]} must have the same size")
        masks = style_losses.propagate_masks(cmasks, plan, style_taps)
        style_masks = masks if smasks is None else style_losses.propagate_masks(
            smasks, plan, style_taps)
        sf = features(styles[0][None], all_taps)
        targets = {t: style_losses.gram(sf[t][:, None], style_masks[t])[0] for t in style_taps}

    extra = {"variant": variant, "labels": used_labels}
    if variant != "local":
        image, history, seconds, first, initial = _run_one(
            loss_fn, content, targets, masks, features, config, progress=progress,
            desc=f"gatys-{variant}")
        extra.update(first_step_seconds=first, style_initial=initial)
        return TransferResult(image, config.steps, seconds, float(history[0]),
                              float(history[-1]), history, extra)

    start = time.perf_counter()
    channel = (lambda m: m[..., None]) if content.ndim == 3 else (lambda m: m)
    out = np.zeros_like(content)
    histories, initials, first = [], [], None
    for value, m in zip(used_labels, cmasks):
        local = content * channel(m)
        image, history, _, first_d, initial = _run_one(
            loss_fn, local, targets, None, features, config, progress=progress,
            desc=f"gatys-local[{value}]")
        first = first if first is not None else first_d
        out += channel(m) * image
        histories.append(history)
        initials.append(initial)
    covered = np.clip(cmasks.sum(axis=0), 0.0, 1.0)
    out += channel(1.0 - covered) * content
    extra.update(first_step_seconds=first, style_initial=initials)
    return TransferResult(np.clip(out, 0.0, 1.0).astype(np.float32), config.steps,
                          time.perf_counter() - start, float(sum(h[0] for h in histories)),
                          float(sum(h[-1] for h in histories)), np.concatenate(histories),
                          extra)


def prepare(content, style, *, extractor, config: GatysConfig = GatysConfig()):
    """The basic variant's problem as :func:`gatys` builds it, for benchmarks and custom loops.

    Args:
      content, style, extractor, config: as :func:`gatys` (one style image).
    Returns:
      ``(loss_fn, aux)``: the :class:`GatysLoss` and the step argument ``aux`` (targets,
      extractor state, normalised weights); ``engine.make_step(loss_fn)`` then runs it
      from ``content``.
    """
    content = as_image(content, "content")
    style = as_styles(style, content)[0]
    content_taps, style_taps = config.taps(extractor)
    extraction, state = engine.Extraction.of(extractor)
    loss_fn = GatysLoss(extraction, content_taps, style_taps)
    features = _Features(extraction, state)
    sf = features(style[None], tuple(dict.fromkeys(content_taps + style_taps)))
    targets = {t: style_losses.gram(sf[t])[0] for t in style_taps}
    return loss_fn, _aux(loss_fn, content, targets, None, features, config)[0]


class Gatys:
    """Gatys NST as a :class:`stylejax.methods.base.Method` (see :func:`gatys`)."""

    name = "gatys"
    help = "Gatys NST (thesis: basic, augmented, local, average style)"
    config_class = GatysConfig
    inputs = (MethodInput("content_labels", "label map of the content image (augmented, "
                          "local), e.g. from 'stylejax phantoms'"),
              MethodInput("style_labels", "label map of the style image (augmented: Eq. 2.5; "
                          "without it the content masks are used, Eq. 3.1)"))
    json_extra = ("variant", "labels")

    def needs_extractor(self, config: GatysConfig) -> bool:
        return True

    def run(self, content, styles, *, extractor, config: GatysConfig, progress: bool = False,
            content_labels=None, style_labels=None) -> TransferResult:
        """:func:`gatys` (``styles``: one image, or several for ``average``)."""
        return gatys(content, styles, extractor=extractor, config=config,
                     content_labels=content_labels, style_labels=style_labels,
                     progress=progress)
