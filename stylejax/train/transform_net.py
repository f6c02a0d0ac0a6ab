"""Training the Johnson transform network for ultrasound (``stylejax train transform-net``).

The task of the ultrasound thesis (3.3): a :class:`stylejax.models.transform_net.TransformNet`
maps a simulated **low-quality** B-mode image to the **high-quality** image of the same
anatomy and scatterers (:func:`stylejax.data.ultrasound.ultrasounds` with ``quality="lq"``
and ``"hq"`` give such pairs), trained with the perceptual loss of Johnson et al.:

* **content**: ``content_loss(phi_c(net(x_lq)), phi_c(x_hq))`` at one tap ``c`` of a frozen
  feature extractor, against the paired HQ image (not the input: the task has ground truth);
* **style**: ``sum_t style_layer_loss(gram(phi_t(net(x_lq))), G_t)`` over several taps, with
  ``G_t`` the Gram of one HQ image (``style="single"``) or the **average style** over
  ``style_images`` HQ images (``style="average"``, :func:`average_style_target`; the mean of
  the per-image Grams by default, ``average_mode="features"`` for the Gram of the mean
  feature map).

Weights are normalised as :mod:`stylejax.methods.engine` normalises NST: the content term is
divided by the target's feature energy ``mean F^2 / 2`` (per sample), each style term by the
target Gram's energy ``sum G^2 / (2 C^2)`` and by the number of style taps, so
``content_weight`` and ``style_weight`` are relative weights of terms that are ~1 for a
blank output.

Data: training pairs from seeds ``0 .. pool_seeds - 1`` (images of ``pool_size`` px, random
``crop`` px crops with the same offset for LQ and HQ, random left-right flips; the style
images are the HQ images of the first seeds); evaluation uses seeds from
:data:`HELDOUT_SEED0` on, which training never sees.

Extractors (``extractor``): ``"stylex"`` (the shipped StyleX ResNet-18 encoder, trained on
medical-style images, offline; taps ``stem``, ``stage1`` .. ``stage4``) or
``"vgg19-random"`` (VGG19 with He-normal random weights; ``relu*`` taps).

Export (``--export DIR``): ``transform_net.safetensors`` (float16) and
``transform_net.json`` (architecture, task, config); :func:`load` reads it back and raises
ValueError for a file of another architecture.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.data.ultrasound import (ultrasound_label_map, ultrasound_labels,
                                     ultrasound_qualities, ultrasounds)
from stylejax.losses import style as style_losses
from stylejax.models import export_files, features
from stylejax.models.transform_net import TransformNet, average_style_target
from stylejax.train import loop
from stylejax.train.config import TrainConfig

__all__ = ["TransformConfig", "TransformTask", "TASK", "smoke", "default", "save", "load",
           "build_extractor", "perceptual_loss", "HELDOUT_SEED0", "WEIGHTS_FILE", "META_FILE",
           "EXTRACTORS", "STYLES", "SOURCES", "source_images"]

#: First seed of the held-out evaluation images (training uses seeds below ``pool_seeds``).
HELDOUT_SEED0 = 100_000
WEIGHTS_FILE = "transform_net.safetensors"
META_FILE = "transform_net.json"
EXTRACTORS = ("stylex", "vgg19-random")
STYLES = ("single", "average")
#: Network inputs a config may train on: the quality levels and the label map.
SOURCES = (*ultrasound_qualities(), "labels")
ARCHITECTURE = "johnson-transform-net"


@dataclasses.dataclass(frozen=True)
class TransformConfig(TrainConfig):
    """Settings of a transform-network training.

    Attributes:
      source / target: simulator quality levels of input and target (``lq`` -> ``hq``);
        ``source="labels"`` feeds the tissue label map instead (:func:`source_images`).
      extractor: loss network, ``"stylex"`` or ``"vgg19-random"``; extractor_seed: seed
        of the random VGG19.
      content_tap / style_taps: the content tap and the style (Gram) taps.
      style: ``"single"`` (the Gram of the HQ image of seed ``style_seed``) or
        ``"average"`` (over the HQ images of seeds ``0 .. style_images - 1``).
      average_mode: ``"gram"`` (mean of Grams) or ``"features"`` (Gram of the mean map).
      noise_injection: build the network with its three noise layers (trained with noise).
      widths / num_residual: network size (thesis: (32, 64, 128), 5).
      crop / pool_seeds / pool_size: training crops, number of training seeds, image side.
      lr: Adam step size; content_weight / style_weight: relative loss weights.
    """

    name: str = "default"
    steps: int = 600
    batch_size: int = 4
    rng_impl: str = "rbg"
    log_every: int = 20
    checkpoint_every: int = 100
    plot_every: int = 100
    source: str = "lq"
    target: str = "hq"
    extractor: str = "stylex"
    extractor_seed: int = 0
    content_tap: str = "stem"
    style_taps: tuple[str, ...] = ("stem", "stage1", "stage2")
    style: str = "average"
    average_mode: str = "gram"
    style_images: int = 16
    style_seed: int = 0
    noise_injection: bool = True
    widths: tuple[int, ...] = (16, 32, 64)
    num_residual: int = 3
    crop: int = 64
    pool_seeds: int = 96
    pool_size: int = 128
    lr: float = 2e-3
    content_weight: float = 1.0
    style_weight: float = 1.0

    def validate(self):
        super().validate()
        q = ultrasound_qualities()
        self.need(self.source in SOURCES and self.target in q,
                  f"source must be one of {SOURCES} and target one of {q} "
                  f"(got {self.source!r}, {self.target!r})")
        self.need(self.extractor in EXTRACTORS, f"extractor must be one of {EXTRACTORS} "
                  f"(got {self.extractor!r})")
        self.need(self.style in STYLES, f"style must be one of {STYLES} (got {self.style!r})")
        self.need(self.average_mode in ("gram", "features"),
                  f"average_mode must be 'gram' or 'features' (got {self.average_mode!r})")
        self.need(len(self.widths) == 3 and min(self.widths) >= 1,
                  "widths must be three positive channel counts")
        self.need(self.num_residual >= 0, "num_residual must be >= 0")
        self.need(16 <= self.crop <= self.pool_size, "crop must lie in [16, pool_size]")
        self.need(self.pool_seeds >= 1 and self.pool_seeds <= HELDOUT_SEED0,
                  f"pool_seeds must be in [1, {HELDOUT_SEED0}] (held-out seeds start there)")
        self.need(1 <= self.style_images <= self.pool_seeds,
                  "style_images must lie in [1, pool_seeds]")
        self.need(0 <= self.style_seed < self.pool_seeds, "style_seed must be a training seed")
        self.need(self.lr > 0 and self.content_weight >= 0 and self.style_weight >= 0,
                  "lr must be > 0 and the loss weights >= 0")
        self.need(len(self.style_taps) > 0, "style_taps is empty")
        valid = (features.STYLEX_TAPS if self.extractor == "stylex"
                 else features.vgg_taps("vgg19"))
        for tap in (self.content_tap, *self.style_taps):
            self.need(tap in valid, f"tap {tap!r} is not a {self.extractor} tap ({valid})")
        return self


def smoke() -> TransformConfig:
    """Three steps of a tiny network on 32 px crops (tests)."""
    return TransformConfig(name="smoke", steps=3, batch_size=2, crop=32, pool_seeds=3,
                           pool_size=48, style_images=2, widths=(4, 8, 8), num_residual=1,
                           log_every=1, checkpoint_every=3, plot_every=3)


def default() -> TransformConfig:
    """The shipped LQ -> HQ network: noise injection, average style, StyleX loss network."""
    return TransformConfig(name="default")


def labels_to_hq() -> TransformConfig:
    """Thesis task 2: tissue label map -> HQ B-mode image (otherwise as ``default``)."""
    return dataclasses.replace(default(), name="labels-to-hq", source="labels")


def hq_to_clinical() -> TransformConfig:
    """Thesis task 3: simulated (``hq``) -> the ``clinical`` look (otherwise as ``default``)."""
    return dataclasses.replace(default(), name="hq-to-clinical", source="hq",
                               target="clinical")


def no_noise() -> TransformConfig:
    """Ablation of ``default`` without noise injection."""
    return dataclasses.replace(default(), name="no-noise", noise_injection=False)


def single_style() -> TransformConfig:
    """Ablation of ``default`` with one HQ style image instead of the average style."""
    return dataclasses.replace(default(), name="single-style", style="single")


# --------------------------------------------------------------------- extractor

@functools.lru_cache(maxsize=4)
def build_extractor(name: str, seed: int = 0):
    """The frozen loss network ``name`` (one of :data:`EXTRACTORS`), cached."""
    if name == "stylex":
        from stylejax.metrics.stylex import load_pretrained
        return features.StyleXFeatures(load_pretrained().encoder())
    if name == "vgg19-random":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # random weights are the point
            return features.vgg19_features("random", seed=int(seed))
    raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")


def _extractor(cfg: TransformConfig):
    return build_extractor(cfg.extractor, int(cfg.extractor_seed))


def perceptual_loss(extractor, output, target, style_grams, *, content_tap: str,
                    style_taps, content_weight: float = 1.0, style_weight: float = 1.0):
    """The normalised perceptual loss (module docstring).

    Args:
      extractor: ``extractor(images, taps) -> {tap: [N, h, w, C]}``.
      output, target: ``[N, H, W]`` network output and paired target image.
      style_grams: ``{tap: [C, C]}`` style target.
      content_tap, style_taps, content_weight, style_weight: see :class:`TransformConfig`.
    Returns:
      ``(loss, content, style)`` scalars (content and style already weighted).
    """
    taps = tuple(dict.fromkeys((content_tap, *style_taps)))
    fo = extractor(output, taps)
    ft = jax.lax.stop_gradient(extractor(target, (content_tap,))[content_tap])
    tiny = jnp.float32(np.finfo(np.float32).tiny)
    energy = jnp.maximum(0.5 * jnp.mean(jnp.square(ft), axis=(1, 2, 3)), tiny)       # [N]
    per_sample = 0.5 * jnp.mean(jnp.square(fo[content_tap] - ft), axis=(1, 2, 3))
    content = content_weight * jnp.mean(per_sample / energy)
    style = jnp.zeros((), jnp.float32)
    n = output.shape[0]
    for t in style_taps:
        g_t = style_grams[t]
        e = jnp.maximum(jnp.sum(jnp.square(g_t)) / (2.0 * g_t.shape[-1] ** 2), tiny)
        layer = style_losses.style_layer_loss(style_losses.gram(fo[t]), g_t) / n
        style = style + style_weight / len(style_taps) * layer / e
    return content + style, content, style


# ------------------------------------------------------------------------- data

def _pool(cfg: TransformConfig, workdir) -> np.ndarray:
    """``[pool_seeds, 2, S, S]`` (source, target) pairs, cached in ``WORKDIR/cache``."""
    path = None
    key = f"us_pool_{cfg.source}_{cfg.target}_{cfg.pool_seeds}_{cfg.pool_size}.npy"
    if workdir is not None and "://" not in workdir:
        path = os.path.join(workdir, "cache", key)
        if os.path.exists(path):
            return np.load(path)
    s = (int(cfg.pool_size),) * 2
    src = source_images(range(cfg.pool_seeds), s, cfg.source)
    tgt = ultrasounds(range(cfg.pool_seeds), s, cfg.target).images
    pool = np.stack([src, tgt], axis=1).astype(np.float32)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, pool)
    return pool


def source_images(seeds, size, source: str) -> np.ndarray:
    """Network inputs ``[N, H, W]`` float32 in [0, 1] for the simulator seeds.

    Args:
      seeds: simulator seeds; size: ``(H, W)``.
      source: a quality level (the B-mode image) or ``"labels"``: the tissue label map as
        grey levels ``label / (L - 1)`` with ``L = len(ultrasound_labels())``.
    """
    if source == "labels":
        labels = np.stack([ultrasound_label_map(int(s), tuple(size)) for s in seeds])
        return (labels / np.float32(len(ultrasound_labels()) - 1)).astype(np.float32)
    return ultrasounds(seeds, size, source).images


def style_images(cfg: TransformConfig, pool: np.ndarray) -> np.ndarray:
    """The HQ style images ``[S, pool_size, pool_size]`` of the config."""
    if cfg.style == "single":
        return pool[cfg.style_seed:cfg.style_seed + 1, 1]
    return pool[:cfg.style_images, 1]


def style_grams(cfg: TransformConfig, pool: np.ndarray) -> dict:
    """The style target ``{tap: [C, C]}`` (single image or average style)."""
    ext = _extractor(cfg)
    styles = style_images(cfg, pool)
    mode = "gram" if cfg.style == "single" else cfg.average_mode
    return {t: jnp.asarray(g) for t, g in average_style_target(
        ext, styles, tuple(cfg.style_taps), mode=mode).items()}


def sample(key, pool, batch: int, crop: int):
    """Paired ``[batch, crop, crop]`` (source, target) crops with random flips."""
    n, s = pool.shape[0], pool.shape[2]
    ki, ky, kx, kf = jax.random.split(key, 4)
    idx = jax.random.randint(ki, (batch,), 0, n)
    oy = jax.random.randint(ky, (batch,), 0, s - crop + 1)
    ox = jax.random.randint(kx, (batch,), 0, s - crop + 1)
    pairs = jax.vmap(lambda i, y, x: jax.lax.dynamic_slice(
        pool[i], (0, y, x), (2, crop, crop)))(idx, oy, ox)
    flip = jax.random.bernoulli(kf, 0.5, (batch, 1, 1, 1))
    pairs = jnp.where(flip, pairs[..., ::-1], pairs)
    return pairs[:, 0], pairs[:, 1]


# ------------------------------------------------------------------------- task

def _net(cfg: TransformConfig, seed: int = 0) -> TransformNet:
    return TransformNet(widths=tuple(cfg.widths), num_residual=int(cfg.num_residual),
                        noise=bool(cfg.noise_injection), rngs=nnx.Rngs(seed))


class TransformTask:
    """The ultrasound transform-net :class:`~stylejax.train.loop.Task` (module docstring)."""

    name = "transform-net"
    configs = {"smoke": smoke, "default": default, "no-noise": no_noise,
               "single-style": single_style, "labels-to-hq": labels_to_hq,
               "hq-to-clinical": hq_to_clinical}
    monitor = ("content", "style")

    def init(self, cfg: TransformConfig, mesh):
        params = nnx.state(_net(cfg, cfg.seed), nnx.Param)
        opt = optax.adam(cfg.lr).init(params)
        return jax.device_put({"net": params, "opt": opt}, NamedSharding(mesh, P()))

    def batches(self, cfg: TransformConfig, mesh, workdir):
        pool = _pool(cfg, workdir)
        consts = loop.replicate({"pool": pool, "extractor": nnx.state(_extractor(cfg)),
                                 "grams": style_grams(cfg, pool)}, mesh)
        return lambda step: consts

    def step(self, cfg: TransformConfig, mesh):
        return _make_step(nnx.graphdef(_extractor(cfg)), nnx.graphdef(_net(cfg)),
                          cfg.content_tap, tuple(cfg.style_taps), float(cfg.lr),
                          int(cfg.batch_size), int(cfg.crop), bool(cfg.noise_injection),
                          float(cfg.content_weight), float(cfg.style_weight))

    def export(self, cfg: TransformConfig, state, out_dir: str, *, progress: bool = True):
        net = _net(cfg)
        nnx.update(net, loop.host_copy(state["net"]))
        save(out_dir, net, cfg)
        if progress:
            print(f"exported the transform network to {out_dir}")


@functools.lru_cache(maxsize=8)
def _make_step(ext_graph, net_graph, content_tap, style_taps, lr, batch, crop, noise,
               content_weight, style_weight):
    tx = optax.adam(lr)

    def step(state, consts, key):
        k_data, k_noise = jax.random.split(key)
        src, tgt = sample(k_data, consts["pool"], batch, crop)
        ext = nnx.merge(ext_graph, consts["extractor"])

        def loss_fn(params):
            net = nnx.merge(net_graph, params)
            out = net(src, key=k_noise if noise else None)
            loss, c, s = perceptual_loss(ext, out, tgt, consts["grams"],
                                         content_tap=content_tap, style_taps=style_taps,
                                         content_weight=content_weight,
                                         style_weight=style_weight)
            return loss, (c, s)

        (loss, (c, s)), grad = jax.value_and_grad(loss_fn, has_aux=True)(state["net"])
        updates, opt = tx.update(grad, state["opt"], state["net"])
        return ({"net": optax.apply_updates(state["net"], updates), "opt": opt},
                {"loss": loss, "content": c, "style": s})

    return step


TASK = TransformTask()


# ------------------------------------------------------------------ save and load

def _flat_params(net: TransformNet) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(net, nnx.Param))
    return {".".join(str(k) for k in path): np.asarray(v.get_value() if hasattr(v, "get_value")
                                                        else v.value)
            for path, v in flat}


def save(out_dir: str, net: TransformNet, cfg: TransformConfig | None = None) -> None:
    """Write ``transform_net.safetensors`` (float16) and ``transform_net.json``."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: v.astype(np.float16) for k, v in _flat_params(net).items()}
    save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE))
    meta = {"architecture": ARCHITECTURE, "widths": list(net.widths),
            "num_residual": net.num_residual, "noise": net.noise,
            "config": dataclasses.asdict(cfg) if cfg is not None else None}
    if cfg is not None:
        meta["task"] = {"source": cfg.source, "target": cfg.target, "style": cfg.style,
                        "extractor": cfg.extractor}
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def load(path: str) -> tuple[TransformNet, dict]:
    """An exported transform network: ``(net, meta)``.

    Args:
      path: directory holding ``transform_net.json`` and ``transform_net.safetensors``.
    Raises:
      ValueError: missing files, malformed metadata, or weights of another architecture
        (tensor names or shapes differ from the network the json describes).
    """
    meta_path, w_path = os.path.join(path, META_FILE), os.path.join(path, WEIGHTS_FILE)
    if not (os.path.isfile(meta_path) and os.path.isfile(w_path)):
        raise ValueError(f"{path}: not an exported transform network (needs {META_FILE} "
                         f"and {WEIGHTS_FILE})")
    meta = export_files.read_json(meta_path)
    try:
        if meta.get("architecture") != ARCHITECTURE:
            raise ValueError(f"architecture {meta.get('architecture')!r} is not "
                             f"{ARCHITECTURE!r}")
        net = TransformNet(widths=tuple(int(w) for w in meta["widths"]),
                           num_residual=int(meta["num_residual"]), noise=bool(meta["noise"]),
                           rngs=nnx.Rngs(0))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{meta_path}: not a transform-network description ({e})") from None
    tensors = export_files.read_weights(w_path)
    expected = {k: v.shape for k, v in _flat_params(net).items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = [k for k in expected if k in got and got[k] != expected[k]][:3]
        raise ValueError(f"{w_path} does not fit the transform network of {META_FILE} "
                         f"(another architecture): missing {missing}, unexpected {extra}, "
                         f"shape mismatch {wrong}")
    state = nnx.state(net, nnx.Param)
    flat = nnx.to_flat_state(state)
    for pth, var in flat:
        var.set_value(jnp.asarray(tensors[".".join(str(k) for k in pth)], jnp.float32))
    nnx.update(net, nnx.from_flat_state(flat))
    return net, meta
