"""AdaIN decoders for CT reconstruction-kernel transfer (``stylejax train adain``).

The network is :class:`stylejax.models.adain.AdaINNet`: a frozen encoder, AdaIN on its
content tap, a trained mirrored decoder. This module holds what is specific to CT:

* **Intensity mapping** (:func:`to_unit`, :func:`from_unit`): CT in Hounsfield units
  enters the encoder through the fixed linear window ``[-1000, 1000] HU -> [0, 1]``
  (air 0, water 0.5, dense bone above 1; not clipped, so it inverts exactly).
  Images already in [0, 1] (PNG, or DICOM normalised by ``stylejax nst``) are
  stretched by their own *smoothed* range (Gaussian sigma 2 px, so the kernel's noise
  does not move it) to [0, 1]; that only approximates the HU window.
* **Encoder** (:func:`build_encoder`): described by a small dict saved with the
  decoder, ``{"name": "vgg19-random", "seed": 0}`` (He-normal VGG19 drawn with numpy:
  the same weights on every machine), ``{"name": "vgg19", "weights": PATH}`` (user
  VGG19 weights) or ``{"name": "stylex"}`` (the shipped StyleX encoder), cut at
  ``content_tap``. The export stores a fingerprint (feature statistics of a fixed
  test image) so a decoder loaded against another encoder is refused.
* **Data**: a pool of synthetic slices (:func:`stylejax.data.ct.ct_slices`, seeds
  ``0 .. pool_seeds - 1``, all kernels, cached in ``WORKDIR/cache``) replicated on the
  devices. Each step draws, per sample, a content slice of one kernel and a style
  slice of *another* seed with another kernel (random kernel pairs), and random crops.
* **Variants** (:data:`stylejax.models.adain.VARIANTS`): ``adain`` (Huang: MSE to the
  AdaIN target + mean/std style loss), ``contextual`` (Mechrez: contextual loss to
  content and to style), ``context-aware`` (contextual content loss + mean/std style
  loss), via :func:`stylejax.models.adain.variant_loss`; Adam on the decoder only.
  ``lowpass_weight > 0`` adds a low-frequency pixel term (not in the papers; the shipped
  context-aware decoder's config ``default-context-aware-lowpass`` uses it).
* **Export** (:func:`save`, :func:`load`): ``decoder.safetensors`` (float16) and
  ``adain.json`` (variant, encoder, taps, decoder stages, fingerprint, config).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.ndimage
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.data.ct import ct_slices
from stylejax.models import export_files, features
from stylejax.models import weights as weight_io
from stylejax.models.adain import VARIANTS, AdaINNet, Decoder, stages_from_plan, variant_loss
from stylejax.train import loop
from stylejax.train.config import TrainConfig

HU_WINDOW = (-1000.0, 1000.0)
ENCODERS = ("vgg19-random", "vgg19", "stylex")
DECODER_FILE = "decoder.safetensors"
META_FILE = "adain.json"
_FINGERPRINT_SIZE = 64


# ------------------------------------------------------------------ intensity mapping

def _smoothed_range(image) -> tuple[float, float]:
    sm = scipy.ndimage.gaussian_filter(np.asarray(image, np.float64), 2.0)
    return float(sm.min()), float(sm.max())


def to_unit(image, intensity: str = "auto") -> tuple[np.ndarray, tuple[float, float]]:
    """Map a CT image to the encoder's [0, 1] scale.

    Args:
      image: ``[H, W]`` (or ``[N, H, W]``) finite values.
      intensity: ``"hu"`` (Hounsfield units: window ``[-1000, 1000] -> [0, 1]``),
        ``"unit"`` (stretch the image's smoothed range to [0, 1]) or ``"auto"`` (``"hu"``
        when any value lies outside [0, 1], else ``"unit"``).
    Returns:
      ``(mapped float32, (lo, hi))`` with ``mapped = (image - lo) / (hi - lo)``.
    Raises:
      ValueError: non-finite values, a constant image (``"unit"``), unknown ``intensity``.
    """
    x = np.asarray(image, np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("CT image contains non-finite values (NaN or inf)")
    if intensity not in ("auto", "hu", "unit"):
        raise ValueError(f"intensity must be 'auto', 'hu' or 'unit' (got {intensity!r})")
    if intensity == "auto":
        intensity = "hu" if (x.min() < 0.0 or x.max() > 1.0) else "unit"
    if intensity == "hu":
        lo, hi = HU_WINDOW
    else:
        lo, hi = _smoothed_range(x)
        if not hi - lo > 1e-6:
            raise ValueError("CT image is constant: no intensity range to map to [0, 1]")
    return ((x - lo) / (hi - lo)).astype(np.float32), (lo, hi)


def from_unit(x, lo_hi: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`to_unit` for the ``(lo, hi)`` it returned."""
    lo, hi = lo_hi
    return (np.asarray(x, np.float32) * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)


# ------------------------------------------------------------------------- encoder

def build_encoder(spec: dict):
    """The frozen extractor a spec describes (see the module docstring)."""
    name = spec.get("name")
    if name == "vgg19-random":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "random weights" is the point here
            return features.vgg19_features("random", seed=int(spec.get("seed", 0)))
    if name == "vgg19":
        path = spec.get("weights")
        if not path:
            raise ValueError("encoder vgg19 needs encoder_weights=PATH (a torchvision-keyed "
                             ".safetensors or .h5 file); use vgg19-random or stylex offline")
        return features.vgg19_features(path)
    if name == "stylex":
        from stylejax.metrics.stylex import load, load_pretrained
        path = spec.get("weights")
        model = load(path) if path else load_pretrained()
        return features.StyleXFeatures(model.encoder())
    raise ValueError(f"unknown AdaIN encoder {name!r}; choose one of {', '.join(ENCODERS)}")


def encoder_stages(spec: dict, content_tap: str, widths=None, convs=None):
    """Decoder stages mirroring the encoder ``spec`` up to ``content_tap`` (no weights needed).

    ``widths`` (optional) replaces the channel counts of all stages but the deepest (whose
    width is the encoder's); the deepest stage's width is always the encoder's. ``convs``
    (optional) replaces the number of convolutions of every stage (shallow to deep).
    """
    if spec["name"] == "stylex":
        order = ("stem", "stage1", "stage2", "stage3", "stage4")
        chans = {"stem": 64, "stage1": 64, "stage2": 128, "stage3": 256, "stage4": 512}
        if content_tap not in order:
            raise ValueError(f"StyleX content tap must be one of {order} (got {content_tap!r})")
        k = order.index(content_tap)
        # stem is 1/2, stage1 1/4: one more 2x step than the taps before it.
        stages = [(32, 1)] + [(chans[t], 1) for t in order[:k + 1]]
        stages[-1] = (chans[content_tap], 2)
        stages = tuple(stages)
    else:
        plan = tuple((kind, name) for kind, name, _ in weight_io.layer_plan("vgg19"))
        stages = stages_from_plan(plan, content_tap)
    if widths:
        widths = tuple(int(w) for w in widths)
        if len(widths) != len(stages) - 1:
            raise ValueError(f"decoder_widths needs {len(stages) - 1} values for tap "
                             f"{content_tap!r} (got {len(widths)})")
        stages = tuple((w, n) for w, (_, n) in zip(widths, stages[:-1])) + (stages[-1],)
    if convs:
        convs = tuple(int(n) for n in convs)
        if len(convs) != len(stages) or min(convs) < 1:
            raise ValueError(f"decoder_convs needs {len(stages)} values >= 1 for tap "
                             f"{content_tap!r} (got {convs})")
        stages = tuple((w, n) for (w, _), n in zip(stages, convs))
    return stages


def fingerprint(extractor, content_tap: str, *, with_width: bool = False):
    """Mean and std of the content-tap features of a fixed ramp image (an encoder's id);
    with ``with_width`` also the tap's channel count."""
    s = _FINGERPRINT_SIZE
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1)
    img = (0.5 + 0.25 * np.sin(7 * xx) * np.cos(5 * yy) + 0.2 * xx * yy)[None].astype(np.float32)
    f = np.asarray(extractor(img, (content_tap,))[content_tap], np.float64)
    fp = [float(f.mean()), float(f.std())]
    return (fp, int(f.shape[-1])) if with_width else fp


# --------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class AdaINConfig(TrainConfig):
    """Settings of an AdaIN decoder for CT kernel transfer.

    Attributes:
      variant: ``adain``, ``contextual`` or ``context-aware``.
      encoder: ``vgg19-random``, ``vgg19`` (needs ``encoder_weights``) or ``stylex``.
      encoder_weights: VGG19 weights file or StyleX model directory ("" = default).
      encoder_seed: seed of ``vgg19-random``.
      content_tap / style_taps: AdaIN tap (decoder input) and mean/std style taps.
      decoder_widths: channel counts of the decoder's shallower stages (() = the
        encoder's own widths).
      decoder_convs: convolutions per decoder stage, shallow to deep (() = the
        mirror's counts). The default taps AdaIN at ``relu1_1`` (full resolution), so the
        decoder is one stage of three reflect-padded convolutions without upsampling:
        a kernel's texture is pixel-scale, and a decoder fed sub-sampled features has to
        invent it (it draws grid-aligned stripes), while at full resolution it rescales
        the content's own noise.
      crop: side of the square training crops; pool_seeds / pool_size: the slice pool.
      lr: Adam step size; content_weight / style_weight: loss weights.
      band_width / max_positions: contextual loss settings (None = all positions).
      lowpass_weight / lowpass_sigma: weight and blur (pixels) of an optional
        low-frequency pixel term (:func:`stylejax.models.adain.lowpass_mse` of output and
        content on the [0, 1] scale); 0 = off, as in the papers.
    """

    name: str = "default"
    steps: int = 1200
    batch_size: int = 4
    rng_impl: str = "rbg"
    log_every: int = 25
    checkpoint_every: int = 100
    plot_every: int = 250
    variant: str = "context-aware"
    encoder: str = "vgg19-random"
    encoder_weights: str = ""
    encoder_seed: int = 0
    content_tap: str = "relu1_1"
    style_taps: tuple[str, ...] = ("relu1_1", "relu2_1")
    decoder_widths: tuple[int, ...] = ()
    decoder_convs: tuple[int, ...] = (3,)
    crop: int = 64
    pool_seeds: int = 96
    pool_size: int = 128
    lr: float = 3e-4
    content_weight: float = 1.0
    style_weight: float = 10.0
    band_width: float = 0.5
    max_positions: int | None = 1024
    lowpass_weight: float = 0.0
    lowpass_sigma: float = 2.0

    def validate(self):
        super().validate()
        self.need(self.variant in VARIANTS, f"variant must be one of {VARIANTS} "
                  f"(got {self.variant!r})")
        self.need(self.encoder in ENCODERS, f"encoder must be one of {ENCODERS} "
                  f"(got {self.encoder!r})")
        self.need(8 <= self.crop <= self.pool_size, "crop must lie in [8, pool_size]")
        self.need(self.pool_seeds >= 2, "pool_seeds must be >= 2")
        self.need(self.pool_size >= 64, "pool_size must be >= 64 (CT phantom minimum)")
        self.need(self.lr > 0 and self.content_weight >= 0 and self.style_weight >= 0
                  and self.lowpass_weight >= 0, "lr must be > 0 and the loss weights >= 0")
        self.need(self.lowpass_sigma > 0, "lowpass_sigma must be > 0")
        self.need(len(self.style_taps) > 0, "style_taps is empty")
        return self

    def encoder_spec(self) -> dict:
        spec = {"name": self.encoder}
        if self.encoder == "vgg19-random":
            spec["seed"] = int(self.encoder_seed)
        elif self.encoder_weights:
            spec["weights"] = self.encoder_weights
        return spec


def smoke() -> AdaINConfig:
    """Three steps on 32 px crops (tests)."""
    return AdaINConfig(name="smoke", steps=3, batch_size=2, crop=32, pool_seeds=3,
                       pool_size=64, decoder_convs=(2,), log_every=1, checkpoint_every=3,
                       plot_every=3)


def default() -> AdaINConfig:
    """The shipped decoders: 1200 steps of 4 crops of 64 px; random VGG19 to relu1_1 (AdaIN
    at full resolution) and a three-convolution decoder."""
    return AdaINConfig(name="default")


def default_for(variant: str) -> AdaINConfig:
    """``default`` with the variant's loss weights (contextual: style weight 1)."""
    cfg = dataclasses.replace(default(), variant=variant)
    if variant == "contextual":
        cfg = dataclasses.replace(cfg, style_weight=1.0)
    return cfg


def context_aware_lowpass() -> AdaINConfig:
    """The shipped ``context-aware-lowpass`` decoder: the paper's losses plus a low-frequency pixel
    term (weight 1000, sigma 2 px), 300 steps (chosen on validation seeds; docs/ct.md)."""
    return dataclasses.replace(default_for("context-aware"),
                               name="default-context-aware-lowpass", steps=300,
                               lowpass_weight=1000.0, lowpass_sigma=2.0)


def large_for(variant: str) -> AdaINConfig:
    """For a GPU or TPU host: the ``default_for(variant)`` network and losses on a pool of
    512 seeds at 256 px, 128 px crops, batch 16, 4096 contextual positions, 20000 steps
    (seeds 0..511, below the evaluation seeds 100000+)."""
    return dataclasses.replace(default_for(variant), name=f"large-{variant}", steps=20000,
                               batch_size=16, crop=128, pool_seeds=512, pool_size=256,
                               max_positions=4096, log_every=100, checkpoint_every=1000,
                               plot_every=1000)


# ------------------------------------------------------------------------- the task

def _pool(cfg: AdaINConfig, workdir) -> np.ndarray:
    """``[pool_seeds, K, S, S]`` unit-mapped slices (cached in ``WORKDIR/cache``)."""
    path = None
    if workdir is not None and "://" not in workdir:
        path = os.path.join(workdir, "cache", f"ct_pool_{cfg.pool_seeds}_{cfg.pool_size}.npy")
        if os.path.exists(path):
            return np.load(path)
    s = int(cfg.pool_size)
    pool = ct_slices(range(cfg.pool_seeds), (s, s)).images
    pool = ((pool - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])).astype(np.float32)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, pool)
    return pool


def sample(key, pool, batch: int, crop: int):
    """Content and style crops ``[batch, crop, crop]`` from ``pool [N, K, S, S]``: per sample
    a content seed and kernel, and a style from another seed with another kernel."""
    n, k, s = pool.shape[0], pool.shape[1], pool.shape[2]
    ks = jax.random.split(key, 8)
    ic = jax.random.randint(ks[0], (batch,), 0, n)
    is_ = (ic + jax.random.randint(ks[1], (batch,), 1, n)) % n
    kc = jax.random.randint(ks[2], (batch,), 0, k)
    kst = (kc + jax.random.randint(ks[3], (batch,), 1, k)) % k

    def crops(kk, idx, kern):
        ky, kx = jax.random.split(kk)
        oy = jax.random.randint(ky, (batch,), 0, s - crop + 1)
        ox = jax.random.randint(kx, (batch,), 0, s - crop + 1)
        return jax.vmap(lambda i, j, y, x: jax.lax.dynamic_slice(
            pool[i, j], (y, x), (crop, crop)))(idx, kern, oy, ox)

    return crops(ks[4], ic, kc), crops(ks[5], is_, kst)


class AdaINTask:
    """The AdaIN CT :class:`~stylejax.train.loop.Task` (see the module docstring)."""

    name = "adain"
    configs = {"smoke": smoke, "default": default,
               "default-adain": lambda: default_for("adain"),
               "default-contextual": lambda: default_for("contextual"),
               "default-context-aware": lambda: default_for("context-aware"),
               "default-context-aware-lowpass": context_aware_lowpass,
               **{f"large-{v}": functools.partial(large_for, v) for v in VARIANTS}}
    monitor = ("content", "style")

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _encoder(spec_json: str):
        return build_encoder(json.loads(spec_json))

    def encoder(self, cfg: AdaINConfig):
        return self._encoder(json.dumps(cfg.encoder_spec(), sort_keys=True))

    def stages(self, cfg: AdaINConfig):
        return encoder_stages(cfg.encoder_spec(), cfg.content_tap, cfg.decoder_widths,
                              cfg.decoder_convs)

    def init(self, cfg: AdaINConfig, mesh):
        dec = Decoder(self.stages(cfg), 1, seed=cfg.seed)
        params = nnx.state(dec, nnx.Param)
        opt = optax.adam(cfg.lr).init(params)
        return jax.device_put({"decoder": params, "opt": opt}, NamedSharding(mesh, P()))

    def batches(self, cfg: AdaINConfig, mesh, workdir):
        enc_state = nnx.state(self.encoder(cfg))
        consts = loop.replicate({"pool": _pool(cfg, workdir), "encoder": enc_state}, mesh)
        return lambda step: consts

    def step(self, cfg: AdaINConfig, mesh):
        enc_graph = nnx.graphdef(self.encoder(cfg))
        dec_graph = nnx.graphdef(Decoder(self.stages(cfg), 1, seed=0))
        return _make_step(enc_graph, dec_graph, cfg.variant, cfg.content_tap,
                          tuple(cfg.style_taps), float(cfg.lr), int(cfg.batch_size),
                          int(cfg.crop), float(cfg.content_weight), float(cfg.style_weight),
                          float(cfg.band_width), cfg.max_positions,
                          float(cfg.lowpass_weight), float(cfg.lowpass_sigma))

    def export(self, cfg: AdaINConfig, state, out_dir: str, *, progress: bool = True):
        dec = Decoder(self.stages(cfg), 1, seed=0)
        nnx.update(dec, loop.host_copy(state["decoder"]))
        counts = [x for x in jax.tree.leaves(state["opt"]) if np.ndim(x) == 0
                  and jnp.issubdtype(x.dtype, jnp.integer)]
        save(out_dir, dec, cfg, trained_steps=int(loop.host_copy(counts[0])) if counts else None)
        if progress:
            print(f"exported the {cfg.variant} decoder to {out_dir}")


@functools.lru_cache(maxsize=8)
def _make_step(enc_graph, dec_graph, variant, content_tap, style_taps, lr, batch, crop,
               content_weight, style_weight, band_width, max_positions, lowpass_weight=0.0,
               lowpass_sigma=2.0):
    tx = optax.adam(lr)

    def step(state, consts, key):
        k_data, k_cx = jax.random.split(key)
        content, style = sample(k_data, consts["pool"], batch, crop)
        enc = nnx.merge(enc_graph, consts["encoder"])

        def loss_fn(params):
            dec = nnx.merge(dec_graph, params)
            net = AdaINNet(enc, content_tap=content_tap, style_taps=style_taps, decoder=dec)
            loss, aux = variant_loss(net, content, style, variant=variant,
                                     content_weight=content_weight, style_weight=style_weight,
                                     band_width=band_width, max_positions=max_positions,
                                     key=k_cx if max_positions else None,
                                     lowpass_weight=lowpass_weight,
                                     lowpass_sigma=lowpass_sigma)
            return loss, (aux["content"], aux["style"], aux["lowpass"])

        (loss, (c, s, lp)), grad = jax.value_and_grad(loss_fn, has_aux=True)(state["decoder"])
        updates, opt = tx.update(grad, state["opt"], state["decoder"])
        params = optax.apply_updates(state["decoder"], updates)
        metrics = {"loss": loss, "content": c, "style": s}
        if lowpass_weight:
            metrics["lowpass"] = lp
        return {"decoder": params, "opt": opt}, metrics

    return step


TASK = AdaINTask()


# ------------------------------------------------------------------- save and load

def save(out_dir: str, decoder: Decoder, cfg: AdaINConfig, *,
         trained_steps: int | None = None) -> None:
    """Write ``decoder.safetensors`` (float16) and ``adain.json`` to ``out_dir``
    (``trained_steps``: the optimiser steps actually run, recorded in the json)."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for i, conv in enumerate(decoder.convs):
        tensors[f"conv{i}.kernel"] = np.asarray(conv.kernel[...], np.float16)
        tensors[f"conv{i}.bias"] = np.asarray(conv.bias[...], np.float16)
    save_file(tensors, os.path.join(out_dir, DECODER_FILE))
    spec = cfg.encoder_spec()
    meta = {"variant": cfg.variant, "encoder": spec, "content_tap": cfg.content_tap,
            "style_taps": list(cfg.style_taps), "stages": [list(s) for s in decoder.stages],
            "intensity": {"hu_window": list(HU_WINDOW)},
            "fingerprint": fingerprint(TASK._encoder(json.dumps(spec, sort_keys=True)),
                                       cfg.content_tap),
            "trained_steps": trained_steps, "config": dataclasses.asdict(cfg)}
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def load(path: str, extractor=None) -> tuple[AdaINNet, dict]:
    """An exported decoder with its encoder as an :class:`AdaINNet`.

    Args:
      path: directory holding ``adain.json`` and ``decoder.safetensors``.
      extractor: use this encoder instead of the one ``adain.json`` names (it must be
        the same network: its fingerprint is checked).
    Returns:
      ``(net, meta)``.
    Raises:
      ValueError: missing files, or a decoder that does not match the encoder (channel
        counts, tensor names/shapes, or the encoder's fingerprint).
    """
    meta_path, dec_path = os.path.join(path, META_FILE), os.path.join(path, DECODER_FILE)
    if not (os.path.exists(meta_path) and os.path.exists(dec_path)):
        raise ValueError(f"{path}: not an exported AdaIN decoder (needs {META_FILE} and "
                         f"{DECODER_FILE})")
    meta = export_files.read_json(meta_path)
    try:
        spec, tap = meta["encoder"], meta["content_tap"]
        stages = tuple(tuple(int(v) for v in s) for s in meta["stages"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{meta_path}: malformed AdaIN metadata ({e})") from None
    enc = extractor if extractor is not None else TASK._encoder(json.dumps(spec, sort_keys=True))
    dec = Decoder(stages, 1, seed=0)
    tensors = export_files.read_weights(dec_path)
    expected = {}
    for i, conv in enumerate(dec.convs):
        expected[f"conv{i}.kernel"] = conv.kernel[...].shape
        expected[f"conv{i}.bias"] = conv.bias[...].shape
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != {k: tuple(v) for k, v in expected.items()}:
        raise ValueError(f"{dec_path}: decoder tensors do not match the architecture in "
                         f"{META_FILE} (expected {len(expected)} tensors "
                         f"{sorted(expected)[:2]}..., got {sorted(got)[:2]}...)")
    fp, width = fingerprint(enc, tap, with_width=True)
    if width != stages[-1][0]:
        raise ValueError(f"{path}: the decoder takes {stages[-1][0]} channels but the encoder "
                         f"gives {width} at {tap}")
    if not np.allclose(fp, meta.get("fingerprint", [np.nan, np.nan]), rtol=2e-3, atol=1e-5):
        raise ValueError(f"{path}: the decoder does not match the encoder (fingerprint "
                         f"{fp} vs {meta.get('fingerprint')}): it was trained on another "
                         "encoder or other encoder weights")
    for i, conv in enumerate(dec.convs):
        conv.kernel[...] = jnp.asarray(tensors[f"conv{i}.kernel"], jnp.float32)
        conv.bias[...] = jnp.asarray(tensors[f"conv{i}.bias"], jnp.float32)
    net = AdaINNet(enc, content_tap=tap, style_taps=tuple(meta["style_taps"]), decoder=dec)
    return net, meta


def train(cfg: AdaINConfig, workdir: str | None, *, steps: int | None = None,
          progress: bool = True, devices=None) -> Any:
    """Run the task (:func:`stylejax.train.loop.run`); returns its ``RunResult``."""
    return loop.run(TASK, cfg, workdir, steps=steps, progress=progress, devices=devices)


def decoder_from_state(cfg: AdaINConfig, state) -> Callable:
    """The trained :class:`Decoder` of a run's state."""
    dec = Decoder(TASK.stages(cfg), 1, seed=0)
    nnx.update(dec, loop.host_copy(state["decoder"]))
    return dec
