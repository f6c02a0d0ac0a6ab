"""mr2NST: multi-resolution, multi-reference neural style transfer (mammography paper).

The pipeline of the paper's Fig. 2:

1. **Multi-reference style target** (Eq. 4-5): per style layer, the Gram matrices of the
   ``n`` reference images are combined by an element-wise max, then histogram-specified
   against the stacked ``[n, C, C]`` reference Grams
   (:func:`stylejax.losses.style.multi_reference_gram`).
2. **Multi-resolution**: scale ``k`` (``levels``, paper 0, 1, 2) cuts the content into
   ``2^k x 2^k`` overlapping patches (scale 0 is the whole image), resizes every patch to
   the working size (paper: 512) and optimises it for its content (Eq. 2) and the
   multi-reference style (Eq. 4). The results are resized back and their overlaps
   blended with a tent window, giving ``S_k`` at the original size.
3. **Refiner** (Eq. 6-7): ``r(sum_k w_k S_k)`` (:class:`stylejax.models.refiner.Refiner`)
   trained as a GAN generator against a ResNet-18 discriminator that sees crops of the
   references (real) and of the refined image (fake).

Baseline: exact histogram matching (EHM, Coltuc et al. 2006) of the content to the
pooled reference pixels, :func:`exact_histogram_matching`.

Choices the paper leaves open (documented here, not in it):

* Gram statistics depend on the pixel spacing, so every scale gets its own target: the
  references (assumed to share the content's pixel spacing) are resized by the factor
  that takes that scale's patches to the working size before their Grams are taken.
* All patches of all scales share one working shape and are optimised as one batch
  whose loss is the *mean* of the per-patch losses. Adam's update is per coordinate, so
  this equals optimising every patch on its own, with one compilation instead of three.
  ``patch_batch`` bounds the batch when memory is short.
* A patch's loss is the Gatys loss with the thesis' terms (``stylejax.losses.style``; the
  paper's 1/(4N^2) in Eq. 3 and missing 1/2 in Eq. 2 are constant factors absorbed into
  the weights), normalised per patch as in :mod:`stylejax.methods.engine` (each style
  layer by its value at the patch's start, each content layer by its target's energy),
  so ``content_weight``/``style_weight`` mean the same as for :mod:`stylejax.methods.gatys`.
* The generator minimises the non-saturating ``-log D(R(S))`` instead of
  ``log(1 - D(R(S)))`` (Goodfellow et al. 2014: same fixed point, usable early gradients).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax._checks import check_image
from stylejax.losses import style as style_losses
from stylejax.methods import engine
from stylejax.methods.base import TransferResult, check_choice, option
from stylejax.models.refiner import Refiner
from stylejax.models.resnet import TOTAL_STRIDE, ResNet18
from stylejax.train.refiner import train_refiner

LEVELS = (0, 1, 2)
VARIANTS = ("full", "no-refiner", "ehm")


# ----------------------------------------------------------------------------- EHM


def _box_mean(x: jax.Array, radius: int) -> jax.Array:
    """Mean over a ``(2r+1)^2`` window, reflect padding, ``[H, W] -> [H, W]``."""
    h, w = x.shape
    p = jnp.pad(x, radius, mode="reflect" if min(h, w) > radius else "edge")
    k = 2 * radius + 1
    rows = sum(p[i:i + h, :] for i in range(k))
    return sum(rows[:, j:j + w] for j in range(k)) / (k * k)


def exact_histogram_matching(image, reference, *, tie_break: int = 2) -> jax.Array:
    """Exact histogram matching: the output takes the reference's sorted values, rank by rank.

    Pixels are strictly ordered by value, ties broken by the means of growing windows
    (3x3, 5x5, ...; Coltuc, Bolon & Chassery 2006) and then by position. The pixel of rank
    ``k`` (of ``n``) receives the reference value of rank ``floor((k + 1/2) m / n)`` (of
    ``m``). So when ``n == m`` the output's sorted values *are* the reference's sorted
    values, and when ``n`` is a multiple of ``m`` every reference value appears equally often.

    Args:
      image: ``[H, W]`` (any other shape: ties broken by position only).
      reference: any shape, ``m`` values (e.g. several reference images, pooled).
      tie_break: number of window means used to break ties (2-D images only).
    Returns:
      array shaped like ``image``, float32, values drawn from ``reference``.
    """
    if np.size(image) == 0 or np.size(reference) == 0:
        raise ValueError("exact histogram matching needs a non-empty image and reference")
    return _ehm(jnp.asarray(image, jnp.float32), jnp.asarray(reference, jnp.float32),
                int(tie_break))


@functools.partial(jax.jit, static_argnums=2)
def _ehm(x, reference, tie_break: int):
    ref = jnp.sort(jnp.ravel(reference))
    n, m = x.size, ref.size
    keys = [x.ravel()]
    if x.ndim == 2:
        keys += [_box_mean(x, r).ravel() for r in range(1, tie_break + 1)]
    order = jnp.lexsort(tuple(reversed(keys)))  # lexsort: the last key is the primary one
    # Ranks -> reference ranks in exact integer arithmetic (n, m are static).
    index = (2 * np.arange(n, dtype=np.int64) + 1) * m // (2 * n)
    out = jnp.zeros((n,), jnp.float32).at[order].set(ref[jnp.asarray(index, jnp.int32)])
    return out.reshape(x.shape)


def wasserstein1(values, reference) -> float:
    """1-D Wasserstein distance between two value distributions (mean |quantile difference|)."""
    a = np.sort(np.ravel(np.asarray(values, np.float64)))
    b = np.sort(np.ravel(np.asarray(reference, np.float64)))
    q = (np.arange(a.size) + 0.5) / a.size
    return float(np.mean(np.abs(a - np.quantile(b, q))))


# ------------------------------------------------------------------------ tiling


def patch_starts(length: int, count: int, overlap: float) -> tuple[tuple[int, ...], int]:
    """``count`` overlapping windows covering ``[0, length)``.

    Args:
      length: image side in pixels.
      count: number of windows along the side.
      overlap: extra size as a fraction of ``length / count`` (0 = abutting windows).
    Returns:
      ``(starts, size)``: evenly spaced start offsets (first 0, last ``length - size``) and
      the common window size ``min(length, ceil(length / count * (1 + overlap)))``.
    """
    if count < 1 or count > length:
        raise ValueError(f"cannot cut {length} pixels into {count} patches")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1) (got {overlap})")
    if count == 1:
        return (0,), length
    size = min(length, int(math.ceil(length / count * (1.0 + overlap))))
    starts = tuple(int(round(i * (length - size) / (count - 1))) for i in range(count))
    return starts, size


def tile_boxes(shape: tuple[int, int], level: int, overlap: float
               ) -> list[tuple[int, int, int, int]]:
    """Boxes ``(y0, x0, h, w)`` of the ``2^level x 2^level`` patches of scale ``level``."""
    count = 2 ** int(level)
    ys, h = patch_starts(shape[0], count, overlap)
    xs, w = patch_starts(shape[1], count, overlap)
    return [(y, x, h, w) for y in ys for x in xs]


def tile(image, boxes) -> np.ndarray:
    """Cut ``[H, W]`` into patches ``[P, h, w]`` (all boxes of one scale share ``h, w``)."""
    img = np.asarray(image)
    return np.stack([img[y:y + h, x:x + w] for y, x, h, w in boxes])


def blend_window(h: int, w: int) -> np.ndarray:
    """Tent weights ``[h, w]``, largest at the centre, strictly positive at the edges."""
    wy = np.minimum(np.arange(h) + 1.0, h - np.arange(h))
    wx = np.minimum(np.arange(w) + 1.0, w - np.arange(w))
    return np.outer(wy, wx)


def blend(patches, boxes, shape: tuple[int, int]) -> np.ndarray:
    """Reassemble patches: ``sum_p win_p x_p / sum_p win_p`` (float64 accumulation).

    Args:
      patches: ``[P, h, w]``; boxes: their ``(y0, x0, h, w)``; shape: ``(H, W)`` covered by
        the boxes.
    Returns:
      ``[H, W]`` float32; exactly the image when the patches were cut from it unchanged.
    """
    num = np.zeros(shape, np.float64)
    den = np.zeros(shape, np.float64)
    for p, (y, x, h, w) in zip(np.asarray(patches, np.float64), boxes):
        win = blend_window(h, w)
        num[y:y + h, x:x + w] += win * p
        den[y:y + h, x:x + w] += win
    if np.any(den == 0):
        raise ValueError("the patches do not cover the whole image")
    return (num / den).astype(np.float32)


def work_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Working shape: longer side ``size``, the image's aspect ratio kept."""
    h, w = shape
    s = size / max(h, w)
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


@functools.partial(jax.jit, static_argnums=1)
def _resize(images, shape: tuple[int, int]) -> jax.Array:
    """Linear, anti-aliased resize of ``[..., h, w]`` to ``[..., *shape]`` (identity if equal)."""
    x = jnp.asarray(images, jnp.float32)
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return jax.image.resize(x, x.shape[:-2] + tuple(shape), "linear", antialias=True)


# ------------------------------------------------------------------- style target


def reference_grams(extraction: engine.Extraction, state, references: Sequence[np.ndarray],
                    factor: tuple[float, float], taps: tuple[str, ...]) -> dict:
    """Gram matrices of the references resized by ``factor``: ``{tap: [n, C, C]}``.

    References of equal resized shape go through the extractor as one batch.
    """
    shapes = [(max(1, int(round(r.shape[0] * factor[0]))),
               max(1, int(round(r.shape[1] * factor[1])))) for r in references]
    groups = list(dict.fromkeys(shapes))
    if len(groups) == 1:
        return _resized_grams(extraction, state, jnp.asarray(np.stack(references)),
                              groups[0], tuple(taps))
    out = [None] * len(references)
    for shp in groups:
        idx = [i for i, s in enumerate(shapes) if s == shp]
        batch = _resized_grams(extraction, state, jnp.asarray(np.stack(
            [references[i] for i in idx])), shp, tuple(taps))
        batch = {t: np.asarray(v) for t, v in batch.items()}
        for j, i in enumerate(idx):
            out[i] = {t: batch[t][j] for t in taps}
    return {t: jnp.asarray(np.stack([g[t] for g in out])) for t in taps}


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _resized_grams(extraction, state, images, shape, taps):
    feats = extraction(state, _resize(images, shape), taps)
    return {t: style_losses.gram(feats[t]) for t in taps}


def multi_reference_target(grams, *, histogram: bool = True) -> jax.Array:
    """``[n, C, C] -> [C, C]``: Eq. 5 max over references, then (``histogram``) the
    specification H against the stacked Grams (Eq. 4)."""
    return style_losses.multi_reference_gram(grams) if histogram else \
        style_losses.max_gram(grams)


@functools.partial(jax.jit, static_argnames="histogram")
def _targets(grams: dict, histogram: bool) -> dict:
    return {t: multi_reference_target(g, histogram=histogram) for t, g in grams.items()}


@dataclasses.dataclass(frozen=True)
class PatchLoss:
    """Pure, hashable batch loss: Eq. 2 content + Eq. 4 style terms, weighted per patch.

    ``aux``: ``state`` (extractor), ``content`` ({tap: [B, h, w, C]}), ``style``
    ({tap: [L, C, C]}, one target per scale), ``level`` (``[B]`` int, each patch's
    scale), ``content_weights`` and ``style_weights`` ({tap: [B]} or scalars, from
    :func:`stylejax.methods.engine.loss_weights`).
    """

    extraction: engine.Extraction
    content_taps: tuple[str, ...]
    style_taps: tuple[str, ...]

    def terms(self, patches, aux) -> tuple[dict, dict]:
        """Raw per-patch terms ``({tap: [B]}, {tap: [B]})`` (Eq. 2.2 and Eq. 2.4 each)."""
        taps = tuple(dict.fromkeys(self.style_taps + self.content_taps))
        feats = self.extraction(aux["state"], patches, taps)
        return ({t: engine.content_energy(feats[t] - aux["content"][t])
                 for t in self.content_taps},
                {t: patch_style_terms(feats[t], aux["style"][t][aux["level"]])
                 for t in self.style_taps})

    def __call__(self, patches, aux):
        content, style = self.terms(patches, aux)
        return (sum(jnp.sum(aux["content_weights"][t] * v) for t, v in content.items())
                + sum(jnp.sum(aux["style_weights"][t] * v) for t, v in style.items()))


def patch_style_terms(features, targets) -> jax.Array:
    """Eq. 2.4 per patch: ``[B, h, w, C]`` features, ``[B, C, C]`` targets -> ``[B]``."""
    return engine.gram_energy(style_losses.gram(features) - targets)


# --------------------------------------------------------------------- the method
# (the refiner GAN is trained by stylejax.train.refiner.train_refiner)


@dataclasses.dataclass(frozen=True)
class Mr2NSTConfig(engine.OptimizationConfig):
    """mr2NST settings (paper values where it gives them).

    The optimisation fields are :class:`stylejax.methods.engine.OptimizationConfig`'s
    (paper: Adam, 400 iterations per patch). With ``"lbfgs"`` a batch of patches shares
    one line search, so it is not the same as optimising each patch alone (with Adam it
    is).

    Attributes:
      variant: ``"full"`` (NST + refiner GAN), ``"no-refiner"`` (mean of the scales) or
        ``"ehm"`` (exact histogram matching to the pooled references, no extractor).
      work_size: longer side of the working images (paper 512).
      levels: scales; level ``k`` has ``2^k x 2^k`` patches (paper 0, 1, 2).
      overlap: patch enlargement as a fraction of ``side / 2^k``.
      histogram: histogram specification H of the max-Gram (Eq. 4); False = plain max.
      patch_batch: most patches optimised at once (None: all in one batch).
      refiner_steps, refiner_hidden, refiner_lr, disc_lr, disc_width, gan_crop, gan_batch:
        the refiner GAN (``gan_crop`` None: the working size, at least 32 and at most
        the smallest image side; ``disc_width`` 64 is the real ResNet-18).
      seed: initialisation and crop sampling.
    """

    steps: int = option(400, "NST iterations per patch (paper 400)")
    variant: str = option("full", "full: NST + refiner GAN, no-refiner: mean of the scales, "
                          "ehm: exact histogram matching baseline", choices=VARIANTS)
    work_size: int = option(512, "longer side of the working patches (paper 512)")
    levels: tuple[int, ...] = option(LEVELS, "scales, comma-separated: level k cuts 2^k x 2^k "
                                     "patches (paper 0,1,2)")
    overlap: float = option(0.125, "patch enlargement for overlap blending")
    histogram: bool = option(True, "histogram specification of the max-Gram (Eq. 4); "
                             "--no-histogram: plain max of the reference Grams")
    patch_batch: int | None = option(None, "most patches optimised at once (default: all)")
    refiner_steps: int = option(200, "refiner GAN iterations (0 = untrained refiner)")
    refiner_hidden: int = option(16, "hidden channels of the 1x1-conv refiner")
    refiner_lr: float = option(1e-3, "refiner (generator) Adam step size")
    disc_lr: float = option(2e-4, "discriminator Adam step size")
    disc_width: int = option(64, "ResNet-18 discriminator width (64 = ResNet-18)")
    gan_crop: int | None = option(None, "GAN crop side (default: the work size, >= 32, "
                                  "<= smallest image)")
    gan_batch: int = option(4, "GAN crops per step")
    seed: int = option(0, "random seed (refiner, discriminator, crops)")

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.variant, "variant", VARIANTS)
        if not self.levels or len(set(self.levels)) != len(self.levels) or \
                min(self.levels) < 0:
            raise ValueError(f"levels must be distinct non-negative ints (got {self.levels})")
        if self.work_size < 8:
            raise ValueError(f"work_size must be >= 8 pixels (got {self.work_size})")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1) (got {self.overlap})")
        if self.refiner_steps < 0 or self.gan_batch < 1 or self.refiner_hidden < 1:
            raise ValueError("refiner_steps must be >= 0, gan_batch and refiner_hidden >= 1")
        if self.patch_batch is not None and self.patch_batch < 1:
            raise ValueError(f"patch_batch must be None or >= 1 (got {self.patch_batch})")
        if self.gan_crop is not None and self.gan_crop < TOTAL_STRIDE:
            raise ValueError(f"gan_crop must be None or >= {TOTAL_STRIDE} (got {self.gan_crop})")


def _build(cls, *args, seed: int, **kwargs):
    """Construct an NNX module with ``rbg`` keys (XLA's CPU backend compiles the default
    threefry generator slowly for every parameter shape)."""
    return cls(*args, **kwargs, rngs=nnx.Rngs(params=jax.random.key(seed, impl="rbg")))


@nnx.jit
def _apply(module, x):
    return module(x)


def _as_gray(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 3:
        raise ValueError(f"{name} is RGB [H, W, 3]; mr2NST works on grayscale [H, W] images")
    check_image(arr, name, min_rank=2, max_rank=2, min_size=2, unit_range=True)
    return arr.astype(np.float32)


def _as_references(references) -> list[np.ndarray]:
    if isinstance(references, (list, tuple)):
        items = list(references)
    else:
        arr = np.asarray(references)
        items = list(arr) if arr.ndim == 3 and arr.shape[-1] not in (1, 3) else [arr]
    if not items:
        raise ValueError("references is empty: mr2NST needs at least one style reference")
    return [_as_gray(r, f"references[{i}]") for i, r in enumerate(items)]


def _patch_aux(config, loss_fn: PatchLoss, extraction, state, chunk, targets, level,
               total: int) -> dict:
    """The step's ``aux`` for a batch of patches, with per-patch normalised weights
    (each patch's loss is divided by ``total``, so the chunks' losses sum to the mean)."""
    taps = tuple(dict.fromkeys(loss_fn.content_taps + loss_fn.style_taps))
    feats = engine.extract_features(extraction, state, chunk, taps)
    patch_targets = {t: targets[t][level] for t in loss_fn.style_taps}
    alphas, betas = engine.loss_weights(
        config, loss_fn.content_taps, loss_fn.style_taps,
        content_energies={t: engine.content_energy(feats[t]) for t in loss_fn.content_taps},
        style_initial={t: patch_style_terms(feats[t], patch_targets[t])
                       for t in loss_fn.style_taps},
        style_energies={t: engine.gram_energy(patch_targets[t]) for t in loss_fn.style_taps})
    count = jnp.ones((chunk.shape[0],), jnp.float32) / total
    return {"state": state, "content": {t: feats[t] for t in loss_fn.content_taps},
            "style": targets, "level": level,
            "content_weights": {t: count * a for t, a in alphas.items()},
            "style_weights": {t: count * b for t, b in betas.items()}}


def mr2nst(content, references, *, extractor, config: Mr2NSTConfig = Mr2NSTConfig(),
           refiner: Refiner | None = None, discriminator: nnx.Module | None = None,
           progress: bool = False) -> TransferResult:
    """Multi-resolution, multi-reference NST with a GAN-trained refiner.

    Args:
      content: ``[H, W]`` grayscale in [0, 1].
      references: ``n >= 1`` grayscale style references (list or ``[n, h, w]``), in [0, 1],
        at the content's pixel spacing.
      extractor: a :class:`stylejax.models.features.FeatureExtractor` (or a callable
        ``(images [N, h, w], taps=...) -> {tap: [N, h', w', C]}`` when the config names
        the taps); unused (may be None) for ``variant="ehm"``.
      config: :class:`Mr2NSTConfig` (variant included).
      refiner: a (pre-trained) :class:`Refiner`; trained further for
        ``config.refiner_steps`` (0: used as is).
      discriminator: GAN discriminator (default: ResNet-18, ``config.disc_width``).
      progress: tqdm bars on stderr.
    Returns:
      :class:`stylejax.methods.base.TransferResult`. ``history``: the NST loss (mean over
      patches) before each step and of the result (``steps + 1``); for ``ehm`` the 1-D
      Wasserstein distance to the pooled references before and after. ``extra``:
      ``variant``, ``levels``, ``scales`` (``[K, H, W]`` per-scale transfers ``S_k``, None
      for ``ehm``), ``scale_weights`` (the refiner's ``w_k``, None for ``ehm``),
      ``gan_history`` (``[refiner_steps, 2]`` discriminator and generator losses),
      ``gan_seconds`` (the part of ``seconds`` spent on the GAN), ``first_step_seconds``.
    """
    variant = config.variant
    content = _as_gray(content, "content")
    refs = _as_references(references)
    start = time.perf_counter()
    if variant == "ehm":
        pooled = np.concatenate([r.ravel() for r in refs])
        image = np.asarray(exact_histogram_matching(content, pooled))
        history = np.array([wasserstein1(content, pooled), wasserstein1(image, pooled)])
        seconds = time.perf_counter() - start
        extra = {"variant": variant, "levels": (), "scales": None, "scale_weights": None,
                 "gan_history": np.zeros((0, 2)), "gan_seconds": 0.0,
                 "first_step_seconds": seconds}
        return TransferResult(image, 0, seconds, float(history[0]), float(history[-1]),
                              history, extra)

    if extractor is None:
        raise ValueError(f"mr2nst variant {variant!r} needs a feature extractor")
    content_taps, style_taps = config.taps(extractor)
    extraction, state = engine.Extraction.of(extractor)
    shape = content.shape
    work = work_shape(shape, config.work_size)
    patches, boxes_by_level, level_of, targets = [], {}, [], {t: [] for t in style_taps}
    for i, level in enumerate(config.levels):
        boxes = tile_boxes(shape, level, config.overlap)
        boxes_by_level[level] = boxes
        ph, pw = boxes[0][2:]
        patches.append(np.asarray(_resize(tile(content, boxes), work)))
        level_of += [i] * len(boxes)
        grams = reference_grams(extraction, state, refs, (work[0] / ph, work[1] / pw),
                                style_taps)
        for t, g in _targets(grams, config.histogram).items():
            targets[t].append(np.asarray(g))
    patches = np.concatenate(patches)
    targets = {t: jnp.asarray(np.stack(v)) for t, v in targets.items()}
    level_of = np.asarray(level_of, np.int32)

    loss_fn = PatchLoss(extraction, content_taps, style_taps)
    total = patches.shape[0]
    size = total if config.patch_batch is None else min(config.patch_batch, total)
    outputs, history, first = [], None, None
    for lo in range(0, total, size):
        chunk = jnp.asarray(patches[lo:lo + size])
        aux = _patch_aux(config, loss_fn, extraction, state, chunk, targets,
                         jnp.asarray(level_of[lo:lo + size]), total)
        out, hist, _, first_chunk = engine.optimize(
            loss_fn, chunk, aux, config, progress=progress,
            desc=f"mr2nst patches {lo + 1}-{lo + chunk.shape[0]}/{total}")
        first = first if first is not None else first_chunk
        outputs.append(out)
        history = hist if history is None else history + hist
    outputs = np.concatenate(outputs)

    scales, offset = [], 0
    for level in config.levels:
        boxes = boxes_by_level[level]
        back = _resize(outputs[offset:offset + len(boxes)], boxes[0][2:])
        scales.append(blend(np.asarray(back), boxes, shape))
        offset += len(boxes)
    scales = np.stack(scales, axis=-1)  # [H, W, K]

    gan_history, gan_start = np.zeros((0, 2)), time.perf_counter()
    if variant == "no-refiner":
        image = scales.mean(axis=-1)
        weights = np.full((len(config.levels),), 1.0 / len(config.levels), np.float32)
    else:
        if refiner is None:
            refiner = _build(Refiner, len(config.levels), config.refiner_hidden,
                             seed=config.seed)
        if config.refiner_steps > 0:
            if discriminator is None:
                discriminator = _build(ResNet18, 1, 1, width=config.disc_width,
                                       seed=config.seed + 1)
            smallest = min([min(shape)] + [min(r.shape) for r in refs])
            crop = config.gan_crop or min(smallest, max(config.work_size, TOTAL_STRIDE))
            gan_history = train_refiner(
                refiner, discriminator, scales[None], refs, steps=config.refiner_steps,
                crop=crop, batch=config.gan_batch, refiner_lr=config.refiner_lr,
                disc_lr=config.disc_lr, seed=config.seed, progress=progress)
        image = np.asarray(_apply(refiner, jnp.asarray(scales[None])))[0]
        weights = np.asarray(refiner.scale_weights[...])
    gan_seconds = time.perf_counter() - gan_start
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise FloatingPointError("mr2NST produced non-finite pixels (GAN diverged?); "
                                 "lower refiner_lr/disc_lr or refiner_steps")
    seconds = time.perf_counter() - start
    extra = {"variant": variant, "levels": tuple(config.levels),
             "scales": np.moveaxis(scales, -1, 0), "scale_weights": weights,
             "gan_history": gan_history, "gan_seconds": gan_seconds,
             "first_step_seconds": first}
    return TransferResult(image, config.steps, seconds, float(history[0]),
                          float(history[-1]), history, extra)


class Mr2NST:
    """mr2NST as a :class:`stylejax.methods.base.Method` (see :func:`mr2nst`)."""

    name = "mr2nst"
    help = ("mr2NST (mammography paper): n references (max-Gram + histogram specification), "
            "3 scales of overlapping patches, GAN-trained 1x1-conv refiner; variant ehm = "
            "exact histogram matching baseline")
    config_class = Mr2NSTConfig
    inputs = ()
    json_extra = ("variant", "scale_weights")

    def needs_extractor(self, config: Mr2NSTConfig) -> bool:
        return config.variant != "ehm"

    def run(self, content, styles, *, extractor, config: Mr2NSTConfig,
            progress: bool = False) -> TransferResult:
        """:func:`mr2nst` of ``content`` toward the references ``styles``."""
        return mr2nst(content, styles, extractor=extractor, config=config, progress=progress)
