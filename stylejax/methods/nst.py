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

Building blocks reused by other methods (mr2NST): :func:`optimize` drives any pure
``loss_fn(image, aux)`` with Adam or L-BFGS, :class:`Extraction` wraps an extractor so that
its weights are a jit argument, :func:`style_grams` stacks per-reference Grams (reduce
them, e.g. with ``multi_reference_gram``, and pass them as ``aux["style"]`` to
:class:`GatysLoss`), and :func:`masks_from_labels`.

Loop driving (measured with ``experiments/benchmarks/nst_loop.py``, jax 0.10, 2-core CPU,
128x128): ``lax.fori_loop`` and rolled ``lax.scan`` ran the step 2.6x and 2.8x slower
than a jitted step called from Python, ``scan(unroll=True)`` 0.92x (the same within
noise) but compiling one copy per unrolled step. The Python driver is therefore the
default; ``driver="scan"`` runs ``chunk`` unrolled steps per call.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stylejax._checks import check_range
from stylejax.losses import style as style_losses

VARIANTS = ("basic", "augmented", "local", "average")
# Thesis Table 4.1 (LQ -> HQ): content 1e5, style 1e-2 on Keras VGG19, whose inputs are
# 0-255 caffe-normalised. Here inputs are [0, 1] / ImageNet std, i.e. features about
# 255 * 0.226 = 57.6 times smaller; the style term (4th power) then shrinks 57.6^2 times
# more than the content term (2nd power), so the style weight is scaled by 57.6^2.
THESIS_CONTENT_WEIGHT = 1e5
THESIS_STYLE_WEIGHT = 1e-2 * (255 * 0.226) ** 2


@dataclasses.dataclass(frozen=True)
class NSTConfig:
    """Optimisation settings.

    Attributes:
      steps: optimiser iterations (the thesis ran 3000; 1500 were "the least necessary").
      optimizer: ``"adam"`` or ``"lbfgs"`` (optax, zoom line search; ``learning_rate``
        is then unused and the image is clipped to [0, 1] only at the end, since a
        projection between iterations corrupts the curvature pairs).
      learning_rate: Adam step size (thesis 5e-3, images in [0, 1]).
      content_weight / style_weight: alpha and beta of Eq. 2.1 (see module constants).
      style_weights: optional per-tap betas overriding ``style_weight``.
      content_taps / style_taps: layer names (default: the extractor's ``content_taps`` /
        ``style_taps`` attributes).
      remat: ``jax.checkpoint`` the extractor's blocks (extractor must accept ``remat=``).
        For VGG19 NST on XLA CPU it did not lower the peak (the full-resolution first
        block dominates; ``experiments/benchmarks/nst_memory.py``).
      driver: ``"auto"`` / ``"python"`` (jitted step per iteration) / ``"scan"``.
      chunk: steps per compiled call with ``driver="scan"`` (all unrolled).
    """

    steps: int = 300
    optimizer: str = "adam"
    learning_rate: float = 5e-3
    content_weight: float = THESIS_CONTENT_WEIGHT
    style_weight: float = THESIS_STYLE_WEIGHT
    style_weights: tuple[tuple[str, float], ...] | None = None
    content_taps: tuple[str, ...] | None = None
    style_taps: tuple[str, ...] | None = None
    remat: bool = False
    driver: str = "auto"
    chunk: int = 10

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0 (got {self.steps})")
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs' (got {self.optimizer!r})")
        if self.driver not in ("auto", "python", "scan"):
            raise ValueError(f"driver must be 'auto', 'python' or 'scan' (got {self.driver!r})")
        if not self.learning_rate > 0 or self.chunk < 1:
            raise ValueError("learning_rate must be > 0 and chunk >= 1")


@dataclasses.dataclass
class NSTResult:
    """Outcome of a style transfer.

    Attributes:
      image: ``[H, W]`` (or ``[H, W, 3]``) float32 in [0, 1].
      history: loss before every iteration plus the loss of the returned image
        (``steps + 1`` values; for ``local`` the per-label runs are concatenated).
      seconds: wall-clock time including compilation; first_step_seconds: its first call.
      loss_initial / loss_final: first and last ``history`` value (sums over labels for
        ``local``).
      variant, steps, labels: what ran (``labels`` = label values used, or None).
    """

    image: np.ndarray
    history: np.ndarray
    seconds: float
    first_step_seconds: float
    loss_initial: float
    loss_final: float
    variant: str
    steps: int
    labels: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Extraction:
    """Hashable wrapper making an extractor's weights an explicit (jit) argument.

    ``Extraction.of(extractor)`` returns ``(extraction, state)``; then
    ``extraction(state, images, taps)`` equals ``extractor(images, taps=taps)``. NNX
    modules are split into graph definition (static) and state (traced); any other
    callable is treated as a pure function with ``state=None``.
    """

    graphdef: Any = None
    fn: Callable | None = None
    remat: bool = False

    @staticmethod
    def of(extractor, *, remat: bool = False):
        if isinstance(extractor, nnx.Module):
            graphdef, state = nnx.split(extractor)
            return Extraction(graphdef=graphdef, remat=remat), state
        if not callable(extractor):
            raise ValueError(f"extractor must be callable images -> {{tap: features}} "
                             f"(got {type(extractor).__name__})")
        return Extraction(fn=extractor, remat=remat), None

    def __call__(self, state, images, taps):
        fn = nnx.merge(self.graphdef, state) if self.graphdef is not None else self.fn
        kwargs = {"remat": True} if self.remat else {}
        return fn(images, taps=tuple(taps), **kwargs)


@functools.partial(jax.jit, static_argnames=("extraction", "taps"))
def extract_features(extraction: Extraction, state, images, taps: tuple[str, ...]):
    """Jitted ``extraction(state, images, taps)`` (targets are computed once, outside the loop)."""
    return extraction(state, images, taps)


def style_grams(extraction: Extraction, state, styles: Sequence, taps: Sequence[str]
                ) -> dict[str, jax.Array]:
    """Gram matrices of each style image: ``{tap: [n, C, C]}`` (images may differ in size).

    The per-reference stack that average style (mean over axis 0) and mr2NST
    (``stylejax.losses.style.multi_reference_gram``) reduce to one target.
    """
    per = [extract_features(extraction, state, jnp.asarray(s)[None], tuple(taps)) for s in styles]
    return {t: jnp.stack([style_losses.gram(p[t])[0] for p in per]) for t in taps}


@dataclasses.dataclass(frozen=True)
class GatysLoss:
    """Pure, hashable Eq. 2.1 loss ``loss(image, aux)`` for the jitted step.

    ``aux`` holds everything that varies between runs without recompiling: the extractor
    state, ``content`` ({tap: F}), ``style`` ({tap: G} or per-label ``[D, C, C]``),
    ``masks`` ({tap: [D, h, w]} or None), ``content_weight`` and ``style_weights``.
    """

    extraction: Extraction
    content_taps: tuple[str, ...]
    style_taps: tuple[str, ...]

    def __call__(self, image, aux):
        taps = tuple(dict.fromkeys(self.style_taps + self.content_taps))
        feats = self.extraction(aux["state"], image[None], taps)
        content = sum(style_losses.content_loss(feats[t], aux["content"][t])
                      for t in self.content_taps)
        style = style_losses.style_loss({t: feats[t] for t in self.style_taps}, aux["style"],
                                        aux["style_weights"], aux["masks"])
        return aux["content_weight"] * content + style


def _optimizer(config: NSTConfig) -> optax.GradientTransformation:
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate)
    return optax.lbfgs()


def raw_step(loss_fn: Callable, config: NSTConfig, clip: bool = True):
    """Un-jitted ``(step(image, opt_state, aux) -> (image, opt_state, loss), init)``, for
    callers that place the step inside their own jitted loop (see :func:`make_chunk`)."""
    opt = _optimizer(config)

    def step(image, opt_state, aux):
        if config.optimizer == "adam":
            value, grad = jax.value_and_grad(loss_fn)(image, aux)
            updates, opt_state = opt.update(grad, opt_state, image)
            image = optax.apply_updates(image, updates)
            if clip:
                image = jnp.clip(image, 0.0, 1.0)
            return image, opt_state, value

        def value_fn(x):
            return loss_fn(x, aux)

        value, grad = optax.value_and_grad_from_state(value_fn)(image, state=opt_state)
        updates, opt_state = opt.update(grad, opt_state, image, value=value, grad=grad,
                                        value_fn=value_fn)
        return optax.apply_updates(image, updates), opt_state, value

    return step, opt.init


@functools.lru_cache(maxsize=32)
def make_step(loss_fn: Callable, config: NSTConfig, clip: bool = True):
    """Jitted ``step(image, opt_state, aux) -> (image, opt_state, loss_before_step)`` and
    the optimiser's ``init``.

    Cached on ``(loss_fn, config, clip)`` so repeated runs with equal settings and shapes
    reuse one compilation. ``image`` and ``opt_state`` are donated.
    """
    step, init = raw_step(loss_fn, config, clip)
    return jax.jit(step, donate_argnums=(0, 1)), init


@functools.lru_cache(maxsize=32)
def make_chunk(loss_fn: Callable, config: NSTConfig, clip: bool = True):
    """Jitted ``chunk(image, opt_state, aux) -> (image, opt_state, losses[config.chunk])``
    running ``config.chunk`` steps in one ``lax.scan(unroll=True)``."""
    step, _ = raw_step(loss_fn, config, clip)

    def chunk(image, opt_state, aux):
        def body(carry, _):
            img, st = carry
            img, st, value = step(img, st, aux)
            return (img, st), value

        (image, opt_state), values = jax.lax.scan(body, (image, opt_state), None,
                                                  length=config.chunk, unroll=True)
        return image, opt_state, values

    return jax.jit(chunk, donate_argnums=(0, 1))


def default_driver(backend: str | None = None) -> str:
    """The measured loop style for ``backend`` (default: JAX's default backend).

    CPU (measured): a Python-driven jitted step - ``fori_loop``/rolled ``scan`` bodies ran
    the VGG step 2.6-2.8x slower, unrolled ``scan`` only matched it. GPU/TPU (not
    measured here, no accelerator was available): also the Python driver, since one
    step at NST image sizes takes milliseconds or more, so per-step dispatch is small,
    and it keeps one compilation and a live progress bar; rerun
    ``experiments/benchmarks/nst_loop.py`` on the accelerator to revisit.
    """
    del backend
    return "python"


def fresh_state(init, image):
    """``init(image)`` with a private, strongly typed copy of every leaf.

    Optimiser states may alias the params or share one zeros buffer between leaves
    (donating an aliased buffer twice is an error), and optax's line-search state starts
    with weakly typed scalars that become strong after one step, which would compile the
    step a second time.
    """
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.asarray(x).dtype), init(image))


def optimize(loss_fn: Callable, image0, aux, config: NSTConfig, *, progress: bool = False,
             desc: str = "nst", clip: bool = True) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Minimise ``loss_fn(image, aux)`` over the image.

    Args:
      loss_fn: pure, hashable callable (e.g. :class:`GatysLoss`); equal ``loss_fn`` and
        ``config`` reuse the compiled step.
      image0: initial image (any shape the loss accepts), values in [0, 1].
      aux: pytree of arrays passed to every step (targets, extractor state, weights).
      config: :class:`NSTConfig` (steps, optimizer, driver).
      progress: show a tqdm bar on stderr.
      desc: progress-bar label.
      clip: project to [0, 1] after every Adam step (always clipped at the end).
    Returns:
      ``(image, history, seconds, first_step_seconds)``; history has ``steps + 1`` losses
      (before each step, then of the returned image).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    step, init = make_step(loss_fn, config, clip)
    driver = default_driver() if config.driver == "auto" else config.driver
    image = jnp.array(image0, jnp.float32)  # a fresh buffer: it is donated
    opt_state = fresh_state(init, image)
    losses, first = [], None
    with tqdm(total=config.steps, desc=desc, disable=not progress, file=sys.stderr,
              leave=False) as bar:
        done = 0
        if driver == "scan" and config.steps >= config.chunk:
            chunk = make_chunk(loss_fn, config, clip)
            while config.steps - done >= config.chunk:
                image, opt_state, values = chunk(image, opt_state, aux)
                values = np.asarray(values)
                first = first if first is not None else time.perf_counter() - start
                losses.extend(values.tolist())
                done += config.chunk
                bar.update(config.chunk)
                bar.set_postfix(loss=f"{values[-1]:.4g}")
        while done < config.steps:
            image, opt_state, value = step(image, opt_state, aux)
            value = float(value)  # also paces the bar to real progress
            first = first if first is not None else time.perf_counter() - start
            losses.append(value)
            done += 1
            bar.update(1)
            if done % 10 == 0 or done == config.steps:
                bar.set_postfix(loss=f"{value:.4g}")
    result = np.clip(np.asarray(image), 0.0, 1.0).astype(np.float32)
    _, _, final = step(jnp.asarray(result), fresh_state(init, jnp.asarray(result)), aux)
    losses.append(float(final))
    seconds = time.perf_counter() - start
    return result, np.asarray(losses, np.float64), seconds, first if first is not None else seconds


def _as_image(x, name: str) -> np.ndarray:
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


def _as_styles(style, content: np.ndarray) -> list[np.ndarray]:
    if isinstance(style, (list, tuple)):
        items = list(style)
    else:
        arr = np.asarray(style)
        # a stack [S, H, W(, 3)]; a 3-D array ending in 3 channels is one RGB image
        stacked = arr.ndim == content.ndim + 1 and not (arr.ndim == 3 and arr.shape[-1] == 3)
        items = list(arr) if stacked else [arr]
    if not items:
        raise ValueError("at least one style image is needed")
    styles = [_as_image(s, f"style[{i}]") for i, s in enumerate(items)]
    for i, s in enumerate(styles):
        if s.ndim != content.ndim:
            kind = {2: "grayscale [H, W]", 3: "RGB [H, W, 3]"}
            raise ValueError(f"content is {kind[content.ndim]} but style[{i}] is "
                             f"{kind[s.ndim]}: rank/channel counts must match")
    return styles


def _as_labels(labels, image: np.ndarray, name: str) -> np.ndarray:
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


def _taps(extractor, config: NSTConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    content = config.content_taps or getattr(extractor, "content_taps", None)
    style = config.style_taps or getattr(extractor, "style_taps", None)
    if not content or not style:
        raise ValueError("the extractor has no default layers: set NSTConfig.content_taps "
                         "and NSTConfig.style_taps")
    return tuple(content), tuple(style)


def gatys(content, style, *, extractor, variant: str = "basic",
          config: NSTConfig = NSTConfig(), content_labels=None, style_labels=None,
          labels: Sequence[int] | None = None, average: str = "gram",
          progress: bool = False) -> NSTResult:
    """Gatys NST and the thesis' variants.

    Args:
      content: ``[H, W]`` grayscale or ``[H, W, 3]`` RGB in [0, 1].
      style: one image like ``content`` (any size) or, for ``average``, a list / stack.
      extractor: callable ``(images [N, H, W(, 3)], taps=...) -> {tap: [N, h, w, C]}``,
        e.g. ``stylejax.models.vgg.vgg19(...)``; ``augmented`` also needs its ``plan``.
      variant: ``"basic"``, ``"augmented"``, ``"local"`` or ``"average"``.
      config: :class:`NSTConfig`.
      content_labels: ``[H, W]`` label map (``augmented`` and ``local``).
      style_labels: optional label map of the style image (``augmented``: Eq. 2.5).
      labels: label values to use (default: all significant ones, see
        :func:`masks_from_labels`).
      average: ``"gram"`` or ``"features"`` for ``variant="average"``.
      progress: tqdm progress bar on stderr.
    Returns:
      :class:`NSTResult`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    content = _as_image(content, "content")
    styles = _as_styles(style, content)
    if variant != "average" and len(styles) != 1:
        raise ValueError(f"variant {variant!r} takes one style image (got {len(styles)}); "
                         "use variant='average' for several")
    content_taps, style_taps = _taps(extractor, config)
    extraction, state = Extraction.of(extractor, remat=config.remat)
    loss_fn = GatysLoss(extraction, content_taps, style_taps)
    betas = dict(config.style_weights or ())
    style_weights = {t: jnp.float32(betas.get(t, config.style_weight)) for t in style_taps}

    def feats(images, taps):
        return extract_features(extraction, state, jnp.asarray(images), tuple(taps))

    def aux_for(content_image, style_targets, masks):
        return {"state": state, "content": feats(content_image[None], content_taps),
                "style": style_targets, "masks": masks,
                "content_weight": jnp.float32(config.content_weight),
                "style_weights": style_weights}

    used_labels, masks = None, None
    if variant in ("basic", "local"):
        sf = feats(styles[0][None], style_taps)
        targets = {t: style_losses.gram(sf[t])[0] for t in style_taps}
    elif variant == "average":
        if average == "features" and len({s.shape for s in styles}) > 1:
            raise ValueError("average='features' needs style images of one size (got "
                             f"{sorted({s.shape for s in styles})}); use average='gram'")
        if average not in ("gram", "features"):
            raise ValueError(f"average must be 'gram' or 'features' (got {average!r})")
        if average == "features":
            sf = feats(np.stack(styles), style_taps)
            targets = {t: style_losses.average_style_grams(sf[t], "features") for t in style_taps}
        else:
            grams = style_grams(extraction, state, styles, style_taps)
            targets = {t: g.mean(axis=0) for t, g in grams.items()}
    if variant in ("augmented", "local"):
        if content_labels is None:
            raise ValueError(f"variant {variant!r} needs content_labels (a [H, W] label map)")
        c_lab = _as_labels(content_labels, content, "content_labels")
        s_lab = None if style_labels is None else _as_labels(style_labels, styles[0],
                                                              "style_labels")
        used_labels, cmasks, smasks = masks_from_labels(c_lab, s_lab, labels=labels)

    if variant == "augmented":
        plan = getattr(extractor, "plan", None)
        if plan is None:
            raise ValueError("the augmented variant needs an extractor with a layer `plan` "
                             "to propagate the masks (VGG has one)")
        masks = style_losses.propagate_masks(cmasks, plan, style_taps)
        if smasks is None and styles[0].shape[:2] != content.shape[:2]:
            raise ValueError(f"without style_labels the content masks are applied to the "
                             f"style (Eq. 3.1), so style {styles[0].shape[:2]} and content "
                             f"{content.shape[:2]} must have the same size")
        style_masks = masks if smasks is None else style_losses.propagate_masks(
            smasks, plan, style_taps)
        sf = feats(styles[0][None], style_taps)
        targets = {t: style_losses.gram(sf[t][:, None], style_masks[t])[0] for t in style_taps}

    if variant != "local":
        image, history, seconds, first = optimize(
            loss_fn, content, aux_for(content, targets, masks), config, progress=progress,
            desc=f"gatys-{variant}")
        return NSTResult(image, history, seconds, first, float(history[0]),
                         float(history[-1]), variant, config.steps, used_labels)

    start = time.perf_counter()
    channel = (lambda m: m[..., None]) if content.ndim == 3 else (lambda m: m)
    out = np.zeros_like(content)
    histories, initial, final, first = [], 0.0, 0.0, None
    for value, m in zip(used_labels, cmasks):
        local = content * channel(m)
        image, history, _, first_d = optimize(loss_fn, local, aux_for(local, targets, None),
                                              config, progress=progress,
                                              desc=f"gatys-local[{value}]")
        first = first if first is not None else first_d
        out += channel(m) * image
        histories.append(history)
        initial += float(history[0])
        final += float(history[-1])
    covered = np.clip(cmasks.sum(axis=0), 0.0, 1.0)
    out += channel(1.0 - covered) * content
    return NSTResult(np.clip(out, 0.0, 1.0).astype(np.float32), np.concatenate(histories),
                     time.perf_counter() - start, first, initial, final, variant,
                     config.steps, used_labels)
