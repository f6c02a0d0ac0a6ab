"""The optimisation engine shared by the optimisation-based methods (Gatys, mr2NST).

* :class:`OptimizationConfig` - the settings every such method has (steps, optimiser,
  loss weights, layers, loss normalisation, loop driver); method configs extend it.
* :class:`Extraction` - a hashable wrapper that makes an extractor's weights an explicit
  (jit) argument; :func:`extract_features`, :func:`style_grams`.
* :func:`optimize` - minimises any pure, hashable ``loss_fn(image, aux)`` over the image
  with Adam or L-BFGS (optax), as a jitted step driven from Python or as unrolled
  ``lax.scan`` chunks. The compiled step is cached on ``(loss_fn, optimizer,
  learning_rate, clip)``: runs that differ only in weights, targets or step count reuse it.
* :func:`loss_weights` - the per-layer weights that implement the loss normalisation.

Loss normalisation (``normalize=True``, the default). The raw Gatys terms (thesis Eq.
2.2, 2.4) scale with the extractor's feature magnitudes, which differ by orders of
magnitude between ImageNet VGG, random VGG and the StyleX encoder, so fixed weights
suit only one extractor. With normalisation every term is made dimensionless before
the weights apply:

* each style layer's term is divided by its value at the initial image (for Gatys the
  content image) and by the number of style layers, so the style part starts at
  ``style_weight`` (the mean of the per-layer weights) and 0 means "style matched"; a
  layer whose start value is below 1e-3 of the target Gram's own energy
  (``sum G^2 / (2 C^2)``) is divided by that floor instead;
* each content layer's term is divided by the energy of its target features
  (``mean F^2 / 2``, the term's value for an all-zero feature map) and by the number of
  content layers, i.e. it is the relative squared feature error.

``normalize=False`` uses the raw terms with the weights as given (e.g. the thesis'
:data:`THESIS_CONTENT_WEIGHT` / :data:`THESIS_STYLE_WEIGHT` for ImageNet VGG19).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stylejax.losses import style as style_losses
from stylejax.methods.base import check_choice, option

OPTIMIZERS = ("adam", "lbfgs")
DRIVERS = ("auto", "python", "scan")
# Thesis Table 4.1 (LQ -> HQ): content 1e5, style 1e-2 on Keras VGG19, whose inputs are
# 0-255 caffe-normalised. Here inputs are [0, 1] / ImageNet std, i.e. features about
# 255 * 0.226 = 57.6 times smaller; the style term (4th power) then shrinks 57.6^2 times
# more than the content term (2nd power), so the style weight is scaled by 57.6^2.
# They apply to the raw terms (normalize=False).
THESIS_CONTENT_WEIGHT = 1e5
THESIS_STYLE_WEIGHT = 1e-2 * (255 * 0.226) ** 2
#: Defaults for the normalised terms (see the module docstring).
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 1.0
#: Floor of a style layer's normaliser, relative to the target Gram's energy.
STYLE_FLOOR = 1e-3


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    """Settings shared by the optimisation-based methods.

    Attributes:
      steps: optimiser iterations.
      optimizer: ``"adam"`` or ``"lbfgs"`` (optax, zoom line search; ``learning_rate`` is
        then unused and the image is clipped to [0, 1] only at the end, since a
        projection between iterations corrupts the curvature pairs).
      learning_rate: Adam step size (thesis 5e-3, pixels in [0, 1]).
      content_weight / style_weight: alpha and beta of Eq. 2.1 (per style layer), applied
        to the normalised terms unless ``normalize`` is False.
      style_weights: optional ``((tap, beta), ...)`` overriding ``style_weight`` per layer.
      content_taps / style_taps: layer names (default: the extractor's).
      normalize: normalise every term (module docstring); False = the raw thesis terms.
      driver: ``"auto"`` / ``"python"`` (a jitted step per iteration) / ``"scan"``.
      chunk: steps per compiled call with ``driver="scan"`` (all unrolled).
    """

    steps: int = option(300, "optimiser iterations")
    optimizer: str = option("adam", "optimiser (L-BFGS clips to [0, 1] only at the end)",
                            choices=OPTIMIZERS)
    learning_rate: float = option(5e-3, "Adam step size, pixels in [0, 1] (thesis 5e-3)",
                                  flag="--lr")
    content_weight: float = option(DEFAULT_CONTENT_WEIGHT, "content weight alpha (of the "
                                   "normalised term; thesis 1e5 with --no-normalize)")
    style_weight: float = option(DEFAULT_STYLE_WEIGHT, "style weight beta per layer (of the "
                                 "normalised term; thesis 33.2 with --no-normalize)")
    style_weights: tuple[tuple[str, float], ...] | None = option(
        None, "per-layer style weights TAP=BETA,... overriding --style-weight")
    content_taps: tuple[str, ...] | None = option(
        None, "content layers, comma-separated (default: the extractor's, relu5_2 for VGG)")
    style_taps: tuple[str, ...] | None = option(
        None, "style layers, comma-separated (default: the extractor's, relu1_1,relu2_1,"
        "relu3_1,relu5_1 for VGG)")
    normalize: bool = option(True, "divide each style layer's term by its start value and "
                             "each content term by its target's energy")
    driver: str = option("auto", "optimisation loop: a jitted step per iteration (python) "
                         "or unrolled scan chunks", choices=DRIVERS)
    chunk: int = option(10, "steps per compiled call with --driver scan")

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0 (got {self.steps})")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.driver, "driver", DRIVERS)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1 (got {self.chunk})")
        for name in ("content_weight", "style_weight"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0 (got {value})")
        for tap, beta in self.style_weights or ():
            if not (np.isfinite(beta) and beta >= 0):
                raise ValueError(f"style weight of {tap!r} must be finite and >= 0 (got {beta})")
        for name in ("content_taps", "style_taps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, str) or not value):
                raise ValueError(f"{name} must be None or a non-empty tuple of layer names "
                                 f"(got {value!r})")

    def taps(self, extractor) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(content_taps, style_taps)``: the config's, else the extractor's defaults."""
        content = self.content_taps or getattr(extractor, "content_taps", None)
        style = self.style_taps or getattr(extractor, "style_taps", None)
        if not content or not style:
            raise ValueError("the extractor has no default layers: set content_taps and "
                             "style_taps in the config")
        valid = getattr(extractor, "valid_taps", None)
        if valid is not None:
            bad = [t for t in tuple(content) + tuple(style) if t not in valid]
            if bad:
                raise ValueError(f"unknown tap(s) {bad} for this extractor; valid taps: "
                                 f"{', '.join(valid)}")
        unknown = sorted(set(dict(self.style_weights or ())) - set(style))
        if unknown:
            raise ValueError(f"style_weights name layers that are not style taps: {unknown}")
        return tuple(content), tuple(style)

    def style_betas(self, style_taps: Sequence[str]) -> dict[str, float]:
        """``{tap: beta}``: ``style_weights`` where given, else ``style_weight``."""
        given = dict(self.style_weights or ())
        return {t: float(given.get(t, self.style_weight)) for t in style_taps}


# ------------------------------------------------------------------- extraction


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

    @staticmethod
    def of(extractor):
        if isinstance(extractor, nnx.Module):
            graphdef, state = nnx.split(extractor)
            return Extraction(graphdef=graphdef), state
        if not callable(extractor):
            raise ValueError(f"extractor must be callable images -> {{tap: features}} "
                             f"(got {type(extractor).__name__})")
        return Extraction(fn=extractor), None

    def __call__(self, state, images, taps):
        fn = nnx.merge(self.graphdef, state) if self.graphdef is not None else self.fn
        return fn(images, taps=tuple(taps))


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


# ------------------------------------------------------------ loss normalisation


def content_energy(target) -> jax.Array:
    """``mean F^2 / 2`` over ``[..., h, w, C]`` -> ``[...]``: Eq. 2.2 for a zero feature map."""
    f = jnp.asarray(target, jnp.float32)
    return 0.5 * jnp.mean(jnp.square(f), axis=(-3, -2, -1))


def gram_energy(gram) -> jax.Array:
    """``sum G^2 / (2 C^2)`` over ``[..., C, C]`` -> ``[...]``: Eq. 2.4 against a zero Gram."""
    g = jnp.asarray(gram, jnp.float32)
    c = g.shape[-1]
    return jnp.sum(jnp.square(g), axis=(-2, -1)) / (2.0 * c * c)


def loss_weights(config: OptimizationConfig, content_taps: Sequence[str],
                 style_taps: Sequence[str], *, content_energies: Mapping | None = None,
                 style_initial: Mapping | None = None, style_energies: Mapping | None = None
                 ) -> tuple[dict, dict]:
    """Per-layer weights ``({tap: alpha_t}, {tap: beta_t})`` that the losses multiply.

    Without normalisation: ``alpha_t = content_weight`` and ``beta_t`` from
    :meth:`OptimizationConfig.style_betas`. With it (module docstring):
    ``alpha_t = content_weight / (n_content * E_t)`` and
    ``beta_t = beta / (n_style * max(L0_t, STYLE_FLOOR * E^G_t))``.

    Args:
      config: the settings.
      content_taps, style_taps: the layers.
      content_energies: ``{tap: E_t}`` (:func:`content_energy` of the targets), arrays of
        any shape (e.g. ``[B]`` per patch); needed when normalising.
      style_initial: ``{tap: L0_t}``, the raw style terms at the initial image.
      style_energies: ``{tap: E^G_t}`` (:func:`gram_energy` of the targets).
    Returns:
      two dicts of float32 arrays (scalars, or shaped like the given statistics).
    """
    betas = config.style_betas(style_taps)
    if not config.normalize:
        return ({t: jnp.float32(config.content_weight) for t in content_taps},
                {t: jnp.float32(betas[t]) for t in style_taps})
    tiny = jnp.float32(np.finfo(np.float32).tiny)
    alphas = {t: jnp.float32(config.content_weight / len(content_taps))
              / jnp.maximum(jnp.asarray(content_energies[t], jnp.float32), tiny)
              for t in content_taps}
    out = {}
    for t in style_taps:
        floor = STYLE_FLOOR * jnp.asarray(style_energies[t], jnp.float32)
        start = jnp.maximum(jnp.asarray(style_initial[t], jnp.float32), floor)
        out[t] = jnp.float32(betas[t] / len(style_taps)) / jnp.maximum(start, tiny)
    return alphas, out


# -------------------------------------------------------------------- optimiser


def _optimizer(optimizer: str, learning_rate: float) -> optax.GradientTransformation:
    if optimizer == "adam":
        return optax.adam(learning_rate)
    return optax.lbfgs()


def raw_step(loss_fn: Callable, optimizer: str = "adam", learning_rate: float = 5e-3,
             clip: bool = True):
    """Un-jitted ``(step(image, opt_state, aux) -> (image, opt_state, loss), init)``, for
    callers that place the step inside their own jitted loop (see :func:`make_chunk`).

    ``loss`` is the value before the step. Adam steps are followed by a projection onto
    [0, 1] when ``clip``; L-BFGS steps never are.
    """
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    opt = _optimizer(optimizer, learning_rate)

    def step(image, opt_state, aux):
        if optimizer == "adam":
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
def make_step(loss_fn: Callable, optimizer: str = "adam", learning_rate: float = 5e-3,
              clip: bool = True):
    """Jitted ``step(image, opt_state, aux) -> (image, opt_state, loss_before_step)`` and
    the optimiser's ``init``.

    Cached on its arguments, so repeated runs with equal loss and optimiser reuse one
    compilation (per shape). ``image`` and ``opt_state`` are donated.
    """
    step, init = raw_step(loss_fn, optimizer, learning_rate, clip)
    return jax.jit(step, donate_argnums=(0, 1)), init


@functools.lru_cache(maxsize=32)
def make_chunk(loss_fn: Callable, optimizer: str = "adam", learning_rate: float = 5e-3,
               chunk: int = 10, clip: bool = True):
    """Jitted ``chunk(image, opt_state, aux) -> (image, opt_state, losses[chunk])``
    running ``chunk`` steps in one ``lax.scan(unroll=True)``."""
    step, _ = raw_step(loss_fn, optimizer, learning_rate, clip)

    def run(image, opt_state, aux):
        def body(carry, _):
            img, st = carry
            img, st, value = step(img, st, aux)
            return (img, st), value

        (image, opt_state), values = jax.lax.scan(body, (image, opt_state), None,
                                                  length=chunk, unroll=True)
        return image, opt_state, values

    return jax.jit(run, donate_argnums=(0, 1))


def default_driver(backend: str | None = None) -> str:
    """The loop style for ``backend`` (default: JAX's default backend): ``"python"``.

    On XLA CPU the step inside ``fori_loop``/rolled ``scan`` ran slower than a jitted
    step driven from Python and unrolled ``scan`` only matched it
    (``experiments/benchmarks/nst_loop.py``, results in ``docs/``). On GPU/TPU one step at
    NST image sizes takes milliseconds or more, so per-step dispatch is small; the Python
    driver also keeps one compilation and a live progress bar.
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


def optimize(loss_fn: Callable, image0, aux, config: OptimizationConfig, *,
             progress: bool = False, desc: str = "nst", clip: bool = True
             ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Minimise ``loss_fn(image, aux)`` over the image.

    Args:
      loss_fn: pure, hashable callable (e.g. ``stylejax.methods.gatys.GatysLoss``).
      image0: initial image (any shape the loss accepts), values in [0, 1].
      aux: pytree of arrays passed to every step (targets, extractor state, weights).
      config: uses ``steps``, ``optimizer``, ``learning_rate``, ``driver``, ``chunk``.
      progress: show a tqdm bar on stderr.
      desc: progress-bar label.
      clip: project to [0, 1] after every Adam step (always clipped at the end).
    Returns:
      ``(image, history, seconds, first_step_seconds)``; history has ``steps + 1`` losses
      (before each step, then of the returned image).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    step, init = make_step(loss_fn, config.optimizer, float(config.learning_rate), clip)
    driver = default_driver() if config.driver == "auto" else config.driver
    image = jnp.array(image0, jnp.float32)  # a fresh buffer: it is donated
    opt_state = fresh_state(init, image)
    losses, first = [], None
    with tqdm(total=config.steps, desc=desc, disable=not progress, file=sys.stderr,
              leave=False) as bar:
        done = 0
        if driver == "scan" and config.steps >= config.chunk:
            chunk = make_chunk(loss_fn, config.optimizer, float(config.learning_rate),
                               int(config.chunk), clip)
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
