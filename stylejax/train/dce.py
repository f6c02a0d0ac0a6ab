"""CE <-> non-CE translation of DCE-MRI series (MUNIT + AdaConv + ConvLSTM) on the generic loop.

The networks are :class:`stylejax.models.munit.MUNIT` (a CE and a non-CE generator) and one
:class:`stylejax.models.discriminator.MultiScaleDiscriminator` per domain. The data are the
synthetic series of :func:`stylejax.data.dce.dce_series` (``[B, T, H, W]``): a pool of
``pool_series`` training series with seeds ``0 .. pool_series - 1``, cached in
``WORKDIR/cache``. Evaluation seeds start at :data:`EVAL_SEED_START` (100000) and are never
used in training.

Each step draws ``batch_size`` series from the pool (CE ``a`` and its non-CE twin ``b``) and,
for each, a style reference: another series of the pool (another "patient", CE ``a'`` and
non-CE ``b'``), as at inference, where the reference never is the input's own twin. With
``(c_a, s_a) = G_ce.encode(a)``, ``(c_b, s_b) = G_non.encode(b)``,
``r_b = G_non.encode_style(b')``, ``r_a = G_ce.encode_style(a')``:

* cross translation with the other domain's style: ``ab = G_non.decode(c_a, r_b)``,
  ``ba = G_ce.decode(c_b, r_a)``;
* the generators (one Adam) minimise
  ``w_gan * LSGAN(D(ab), D(ba)) + w_x * |decode(c, s) - x|_1`` (within-domain
  reconstruction) ``+ w_c * |E^c(ab) - c_a|_1 + w_s * |E^s(ab) - r_b|_1`` (latent
  reconstruction, both directions) ``+ w_cyc * |G_ce.decode(E^c(ab), s_a) - a|_1``
  (MUNIT's cycle term) ``+ w_gram * ||Gram(E^c_b(ab)) - Gram(c_b)||_F^2`` (Gram loss on the
  target generator's own content features, standing in for the paper's VGG Gram loss: no
  pretrained VGG ships) ``+ w_pair * |ab - b|_1`` (the paired supervision the synthetic
  ground truth allows; ``paired=False`` switches it off for unpaired training);
* the discriminators (a second Adam) minimise the LSGAN loss on the frames of the real
  series against the (stopped) translations.

Adam step ``lr``, betas ``(0.5, 0.999)`` (the paper / MUNIT). State::

    {"gen": MUNIT params, "disc": discriminator params, "opt_gen", "opt_disc"}

Ablations: ``decoder="adain"`` (MUNIT's AdaIN decoder instead of AdaConv) and
``temporal="none"`` (no bidirectional ConvLSTM: frames are independent).

Export (:func:`save` / :func:`load`): ``munit.safetensors`` (float16 generator weights) and
``dce.json`` (architecture, data settings, training config).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.data.dce import dce_series
from stylejax.losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss
from stylejax.models import export_files
from stylejax.models.discriminator import MultiScaleDiscriminator
from stylejax.models.munit import MUNIT
from stylejax.train import loop
from stylejax.train.config import TrainConfig

__all__ = ["DCEConfig", "DCETask", "TASK", "EVAL_SEED_START", "DECODERS", "TEMPORALS",
           "build_munit", "save", "load", "munit_from_state", "train", "WEIGHTS_FILE",
           "META_FILE"]

#: First seed of the held-out evaluation series (training uses 0 .. pool_series - 1).
EVAL_SEED_START = 100000
DECODERS = ("adaconv", "adain")
TEMPORALS = ("convlstm", "none")
WEIGHTS_FILE = "munit.safetensors"
META_FILE = "dce.json"


@dataclasses.dataclass(frozen=True)
class DCEConfig(TrainConfig):
    """Settings of the DCE-MRI MUNIT task.

    Attributes:
      decoder: ``adaconv`` (the paper) or ``adain`` (ablation).
      temporal: ``convlstm`` (bidirectional ConvLSTM over the content codes) or ``none``.
      size: frame side ``H = W`` of the synthetic series; frames: ``T``.
      pool_series: training series (seeds ``0 .. pool_series - 1``).
      dim, n_down, n_res, style_dim, n_style_down, mlp_dim: generator widths/depths
        (:class:`stylejax.models.munit.Generator`).
      disc_dim, disc_layers, disc_scales: each domain's multi-scale PatchGAN.
      lr, beta1, beta2: Adam of both optimisers.
      w_gan, w_x, w_c, w_s, w_cyc, w_gram, w_pair: loss weights (module docstring).
      paired: use the paired L1 term (the synthetic twins are ground truth).
    """

    name: str = "default"
    steps: int = 400
    batch_size: int = 2
    rng_impl: str = "rbg"
    log_every: int = 10
    plot_every: int = 50
    checkpoint_every: int = 50
    decoder: str = "adaconv"
    temporal: str = "convlstm"
    size: int = 64
    frames: int = 5
    pool_series: int = 64
    dim: int = 8
    n_down: int = 2
    n_res: int = 2
    style_dim: int = 8
    n_style_down: int = 2
    mlp_dim: int = 32
    disc_dim: int = 8
    disc_layers: int = 3
    disc_scales: int = 2
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    w_gan: float = 1.0
    w_x: float = 10.0
    w_c: float = 1.0
    w_s: float = 1.0
    w_cyc: float = 1.0
    w_gram: float = 1.0
    w_pair: float = 10.0
    paired: bool = True

    def validate(self):
        super().validate()
        self.need(self.decoder in DECODERS, f"decoder must be one of {DECODERS} "
                  f"(got {self.decoder!r})")
        self.need(self.temporal in TEMPORALS, f"temporal must be one of {TEMPORALS} "
                  f"(got {self.temporal!r})")
        self.need(self.size >= 32 and self.size % 2 ** self.n_down == 0,
                  f"size must be >= 32 and divisible by 2^n_down (got {self.size})")
        self.need(self.frames >= 2, f"frames must be >= 2 (got {self.frames})")
        self.need(1 <= self.pool_series < EVAL_SEED_START,
                  f"pool_series must lie in [1, {EVAL_SEED_START})")
        self.need(self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
                  "lr must be > 0 and the betas in [0, 1)")
        self.need(min(self.w_gan, self.w_x, self.w_c, self.w_s, self.w_cyc, self.w_gram,
                      self.w_pair) >= 0, "loss weights must be >= 0")
        self.need(self.size >> (self.disc_layers + self.disc_scales - 1) >= 1,
                  "size too small for the discriminator's layers and scales")
        return self

    def generator_kwargs(self) -> dict:
        """Keyword arguments of :class:`~stylejax.models.munit.MUNIT` (architecture)."""
        return dict(dim=int(self.dim), n_down=int(self.n_down), n_res=int(self.n_res),
                    style_dim=int(self.style_dim), n_style_down=int(self.n_style_down),
                    modulation=self.decoder, temporal=self.temporal == "convlstm",
                    mlp_dim=int(self.mlp_dim))


def smoke() -> DCEConfig:
    """Two steps on 32 px, 3-frame series, tiny widths (tests)."""
    return DCEConfig(name="smoke", steps=2, batch_size=1, size=32, frames=3, pool_series=2,
                     dim=4, n_res=1, style_dim=4, mlp_dim=8, disc_dim=4, disc_layers=2,
                     disc_scales=2, log_every=1, checkpoint_every=2, plot_every=2)


def default() -> DCEConfig:
    """The shipped model: 64 px, 5 frames, small widths, Adam 3e-4 (tiny CPU budget)."""
    return DCEConfig(name="default", lr=3e-4)


def ablation(decoder: str = "adaconv", temporal: str = "convlstm") -> DCEConfig:
    """``default`` with another decoder or without the ConvLSTM."""
    return dataclasses.replace(default(), name=f"default-{decoder}-{temporal}",
                               decoder=decoder, temporal=temporal)


def _rngs(seed: int) -> nnx.Rngs:
    # "rbg" keys: the initialisers compile ~3x faster than with threefry (one compile per
    # parameter shape), which dominates building a small model
    return nnx.Rngs(jax.random.key(int(seed), impl="rbg"))


def _generator_kwargs(cfg_or_kwargs) -> dict:
    return cfg_or_kwargs.generator_kwargs() if isinstance(cfg_or_kwargs, DCEConfig) else dict(
        cfg_or_kwargs)


def build_munit(cfg_or_kwargs, seed: int = 0, *, abstract: bool = False) -> MUNIT:
    """The MUNIT of a config (or of generator keyword arguments), initialised from ``seed``.

    ``abstract=True`` skips the initialisation (parameters are shape placeholders, for
    filling with trained weights: :func:`load`, :func:`munit_from_state`).
    """
    kw = _generator_kwargs(cfg_or_kwargs)
    if abstract:
        return nnx.eval_shape(lambda: MUNIT(rngs=nnx.Rngs(0), **kw))
    return MUNIT(rngs=_rngs(seed), **kw)


class _Discriminators(nnx.Module):
    def __init__(self, cfg: DCEConfig, *, rngs):
        kw = dict(dim=cfg.disc_dim, n_layers=cfg.disc_layers, num_scales=cfg.disc_scales,
                  rngs=rngs)
        self.ce = MultiScaleDiscriminator(1, **kw)
        self.non_ce = MultiScaleDiscriminator(1, **kw)


def _pool(cfg: DCEConfig, workdir) -> dict:
    """``{"ce", "non_ce"}`` float32 ``[pool_series, T, S, S]`` (cached in ``WORKDIR/cache``)."""
    path = None
    if workdir is not None and "://" not in str(workdir):
        path = os.path.join(workdir, "cache",
                            f"dce_pool_{cfg.pool_series}_{cfg.size}_{cfg.frames}.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                return {"ce": z["ce"], "non_ce": z["non_ce"]}
    b = dce_series(range(cfg.pool_series), (cfg.size, cfg.size), cfg.frames)
    pool = {"ce": b.ce.astype(np.float32), "non_ce": b.non_ce.astype(np.float32)}
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path, **pool)
    return pool


def _gram(x):
    n, h, w, c = x.shape
    f = x.reshape(n, h * w, c)
    return jnp.einsum("npi,npj->nij", f, f) / (h * w)


def _frames(x):
    return x.reshape((-1,) + x.shape[2:])


@functools.lru_cache(maxsize=8)
def _make_step(g_graph, d_graph, batch, lr, b1, b2, weights, paired):
    tx = optax.adam(lr, b1=b1, b2=b2)
    w_gan, w_x, w_c, w_s, w_cyc, w_gram, w_pair = weights

    def step(state, pool, key):
        k_idx, k_ref = jax.random.split(key)
        n = pool["ce"].shape[0]
        idx = jax.random.randint(k_idx, (batch,), 0, n)
        a, b = pool["ce"][idx], pool["non_ce"][idx]
        # style references: other series of the pool (other "patients"), as at inference
        ref = (idx + jax.random.randint(k_ref, (batch,), 1, max(n, 2))) % n
        a_ref, b_ref = pool["ce"][ref], pool["non_ce"][ref]

        def g_loss_fn(gp):
            g = nnx.merge(g_graph, gp, copy=True)
            d = nnx.merge(d_graph, state["disc"], copy=True)
            c_a, s_a = g.ce.encode(a)
            c_b, s_b = g.non_ce.encode(b)
            rec = jnp.mean(jnp.abs(g.ce.decode(c_a, s_a) - a)) + jnp.mean(
                jnp.abs(g.non_ce.decode(c_b, s_b) - b))
            r_b = g.non_ce.encode_style(b_ref)
            r_a = g.ce.encode_style(a_ref)
            ab = g.non_ce.decode(c_a, r_b)
            ba = g.ce.decode(c_b, r_a)
            c_ab, s_ab = g.non_ce.encode(ab)
            c_ba, s_ba = g.ce.encode(ba)
            lat_c = jnp.mean(jnp.abs(c_ab - c_a)) + jnp.mean(jnp.abs(c_ba - c_b))
            lat_s = jnp.mean(jnp.abs(s_ab - r_b)) + jnp.mean(jnp.abs(s_ba - r_a))
            cyc = jnp.mean(jnp.abs(g.ce.decode(c_ab, s_a) - a)) + jnp.mean(
                jnp.abs(g.non_ce.decode(c_ba, s_b) - b))
            gram = jnp.mean(jnp.square(_gram(_frames(c_ab)) - _gram(_frames(c_b)))) + jnp.mean(
                jnp.square(_gram(_frames(c_ba)) - _gram(_frames(c_a))))
            pair = jnp.mean(jnp.abs(ab - b)) + jnp.mean(jnp.abs(ba - a))
            gan = lsgan_generator_loss(d.non_ce(_frames(ab))) + lsgan_generator_loss(
                d.ce(_frames(ba)))
            total = (w_gan * gan + w_x * rec + w_c * lat_c + w_s * lat_s + w_cyc * cyc
                     + w_gram * gram + (w_pair * pair if paired else 0.0))
            aux = dict(gan=gan, rec=rec, latent=lat_c + lat_s, cycle=cyc, gram=gram, pair=pair)
            return total, (aux, jax.lax.stop_gradient(ab), jax.lax.stop_gradient(ba))

        (g_loss, (aux, ab, ba)), grad = jax.value_and_grad(g_loss_fn, has_aux=True)(
            state["gen"])
        updates, opt_g = tx.update(grad, state["opt_gen"], state["gen"])
        gen = optax.apply_updates(state["gen"], updates)

        def d_loss_fn(dp):
            d = nnx.merge(d_graph, dp, copy=True)
            return (lsgan_discriminator_loss(d.non_ce(_frames(b)), d.non_ce(_frames(ab)))
                    + lsgan_discriminator_loss(d.ce(_frames(a)), d.ce(_frames(ba))))

        d_loss, grad = jax.value_and_grad(d_loss_fn)(state["disc"])
        updates, opt_d = tx.update(grad, state["opt_disc"], state["disc"])
        disc = optax.apply_updates(state["disc"], updates)
        new = dict(gen=gen, disc=disc, opt_gen=opt_g, opt_disc=opt_d)
        return new, dict(loss=g_loss, d_loss=d_loss, **aux)

    return step, tx.init


class DCETask:
    """The DCE-MRI MUNIT :class:`~stylejax.train.loop.Task` (see the module docstring)."""

    name = "dce"
    configs = {"smoke": smoke, "default": default,
               "default-adain": lambda: ablation(decoder="adain"),
               "default-no-convlstm": lambda: ablation(temporal="none")}
    monitor = ("d_loss", "pair")

    def _graphs(self, cfg: DCEConfig):
        return (nnx.graphdef(build_munit(cfg, abstract=True)),
                nnx.graphdef(nnx.eval_shape(lambda: _Discriminators(cfg, rngs=nnx.Rngs(0)))))

    def _parts(self, cfg: DCEConfig):
        g_graph, d_graph = self._graphs(cfg)
        weights = tuple(float(w) for w in (cfg.w_gan, cfg.w_x, cfg.w_c, cfg.w_s, cfg.w_cyc,
                                           cfg.w_gram, cfg.w_pair))
        return _make_step(g_graph, d_graph, int(cfg.batch_size), float(cfg.lr),
                          float(cfg.beta1), float(cfg.beta2), weights, bool(cfg.paired))

    def init(self, cfg: DCEConfig, mesh):
        _, init_opt = self._parts(cfg)
        gen = nnx.state(build_munit(cfg, seed=cfg.seed), nnx.Param)
        disc = nnx.state(_Discriminators(cfg, rngs=_rngs(cfg.seed + 1)), nnx.Param)
        copy = functools.partial(jax.tree.map, jnp.copy)
        state = dict(gen=gen, disc=disc, opt_gen=copy(init_opt(gen)),
                     opt_disc=copy(init_opt(disc)))
        return jax.device_put(state, NamedSharding(mesh, P()))

    def batches(self, cfg: DCEConfig, mesh, workdir):
        pool = loop.replicate(_pool(cfg, workdir), mesh)
        return lambda step: pool

    def step(self, cfg: DCEConfig, mesh):
        return self._parts(cfg)[0]

    def export(self, cfg: DCEConfig, state, out_dir: str, *, progress: bool = True):
        save(out_dir, munit_from_state(cfg, state), cfg)
        if progress:
            print(f"exported the DCE MUNIT ({cfg.decoder}, {cfg.temporal}) to {out_dir}")


TASK = DCETask()


def munit_from_state(cfg: DCEConfig, state) -> MUNIT:
    """The trained :class:`MUNIT` of a run's state."""
    net = build_munit(cfg, abstract=True)
    nnx.update(net, loop.host_copy(state["gen"]))
    return net


def train(cfg: DCEConfig, workdir: str | None, *, steps: int | None = None,
          progress: bool = True, devices=None) -> Any:
    """Run the task (:func:`stylejax.train.loop.run`); returns its ``RunResult``."""
    return loop.run(TASK, cfg, workdir, steps=steps, progress=progress, devices=devices)


# ------------------------------------------------------------------- save and load

def _flat(net: MUNIT) -> dict[str, Any]:
    out = {}
    for path, value in nnx.to_flat_state(nnx.state(net, nnx.Param)):
        out[".".join(str(p) for p in path)] = value
    return out


def save(out_dir: str, net: MUNIT, cfg: DCEConfig) -> None:
    """Write ``munit.safetensors`` (float16) and ``dce.json`` to ``out_dir``."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: np.asarray(v[...], np.float16) for k, v in _flat(net).items()}
    save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE))
    meta = {"architecture": cfg.generator_kwargs(), "size": int(cfg.size),
            "frames": int(cfg.frames), "decoder": cfg.decoder, "temporal": cfg.temporal,
            "train_seeds": [0, int(cfg.pool_series) - 1], "eval_seed_start": EVAL_SEED_START,
            "config": dataclasses.asdict(cfg)}
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def load(path: str) -> tuple[MUNIT, dict]:
    """An exported model: ``(MUNIT, meta)``.

    Raises:
      ValueError: missing files, malformed metadata, or weights whose names/shapes do not
        match the architecture in ``dce.json``.
    """
    meta_path, w_path = os.path.join(path, META_FILE), os.path.join(path, WEIGHTS_FILE)
    if not (os.path.isfile(meta_path) and os.path.isfile(w_path)):
        raise ValueError(f"{path}: not an exported DCE model (needs {META_FILE} and "
                         f"{WEIGHTS_FILE})")
    meta = export_files.read_json(meta_path)
    try:
        net = build_munit(meta["architecture"], abstract=True)
        int(meta["frames"]), int(meta["size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{meta_path}: malformed DCE model metadata ({e})") from None
    tensors = export_files.read_weights(w_path)
    flat = _flat(net)
    want = {k: tuple(v.shape) for k, v in flat.items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        bad = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:3]
        raise ValueError(f"{w_path}: weights do not match the architecture in {META_FILE} "
                         f"(missing {missing}, extra {sorted(set(got) - set(want))[:3]}, "
                         f"wrong shape {bad})")
    for k, v in flat.items():
        v.set_value(jnp.asarray(tensors[k], jnp.float32))
    return net, meta
