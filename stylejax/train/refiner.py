"""The mr2NST refiner GAN (mammography paper, Eq. 7) as a task on the generic loop.

The refiner ``R`` (:class:`stylejax.models.refiner.Refiner`) blends the K
style-transferred scales of one image and is trained as the generator of a GAN whose
discriminator ``D`` (a ResNet-18 in mr2NST) sees random crops of the style references
(real) and of the refined image (fake). Each step:

1. ``D`` minimises ``softplus(-D(real)) + softplus(D(fake))`` (= ``-log D(real) -
   log(1 - D(fake))`` on logits);
2. ``R`` minimises the non-saturating ``softplus(-D(R(S)))`` against the updated ``D``.

Real and fake crops share one discriminator batch, so BatchNorm statistics never tell
them apart; the statistics of ``R``'s pass are discarded. Both use Adam with beta1 0.5
(the usual GAN setting). The state holds two networks and two optimisers::

    {"refiner": R params, "disc": D params, "disc_stats": D BatchNorm statistics,
     "opt_refiner": Adam state, "opt_disc": Adam state}

The data (the scales and references of one mr2NST call) are handed over in memory, so
the task trains inside a library call with ``workdir=None`` (:func:`train_refiner`)
and is not registered for ``stylejax train``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.models.refiner import Refiner
from stylejax.models.resnet import TOTAL_STRIDE
from stylejax.train import loop
from stylejax.train.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class RefinerConfig(TrainConfig):
    """Settings of the refiner GAN.

    Attributes:
      crop: side of the square crops both networks see (>= 32 for a ResNet-18
        discriminator, at most the smallest image side).
      refiner_lr, disc_lr: Adam step sizes of ``R`` and ``D`` (beta1 0.5).
      batch_size: crops per side (real and fake) per step.
      rng_impl: ``"rbg"`` (crop sampling; compiles faster than threefry on XLA's CPU).
      Other fields: :class:`~stylejax.train.config.TrainConfig`.
    """

    name: str = "refiner"
    steps: int = 200
    batch_size: int = 4
    rng_impl: str = "rbg"
    crop: int = 512
    refiner_lr: float = 1e-3
    disc_lr: float = 2e-4

    def validate(self):
        super().validate()
        self.need(self.crop >= 1, f"crop must be >= 1 (got {self.crop})")
        self.need(self.refiner_lr > 0 and self.disc_lr > 0, "refiner_lr and disc_lr must be > 0")
        return self


def smoke() -> RefinerConfig:
    """Three steps on 32 px crops, two per side (tests)."""
    return RefinerConfig(name="smoke", steps=3, batch_size=2, crop=32, log_every=1)


def default() -> RefinerConfig:
    """mr2NST's defaults: 200 steps, 4 crops of 512 px per side, Adam 1e-3 / 2e-4."""
    return RefinerConfig(name="default")


def random_crops(key, pool, sizes, count: int, crop: int) -> jax.Array:
    """``count`` random ``crop x crop`` windows from ``pool [n, Hmax, Wmax, ...]`` whose
    item ``i`` is valid on ``sizes[i] = (h_i, w_i)`` (item and position uniform).

    Returns:
      ``[count, crop, crop, ...]``.
    """
    k_item, k_y, k_x = jax.random.split(key, 3)
    item = jax.random.randint(k_item, (count,), 0, pool.shape[0])
    oy = jax.random.randint(k_y, (count,), 0, sizes[item, 0] - crop + 1)
    ox = jax.random.randint(k_x, (count,), 0, sizes[item, 1] - crop + 1)
    trailing = pool.shape[3:]

    def one(i, y, x):
        start = (y, x) + (0,) * len(trailing)
        return jax.lax.dynamic_slice(pool[i], start, (crop, crop) + trailing)

    return jax.vmap(one)(item, oy, ox)


def pad_pool(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad images ``[h_i, w_i, ...]`` into one array.

    Returns:
      ``(pool [n, Hmax, Wmax, ...] float32, sizes [n, 2] int32)``.
    """
    hmax = max(im.shape[0] for im in images)
    wmax = max(im.shape[1] for im in images)
    pool = np.zeros((len(images), hmax, wmax) + images[0].shape[2:], np.float32)
    for i, im in enumerate(images):
        pool[i, :im.shape[0], :im.shape[1]] = im
    sizes = np.array([im.shape[:2] for im in images], np.int32)
    return pool, sizes


@functools.lru_cache(maxsize=8)
def gan_step(r_graph, d_graph, refiner_lr: float, disc_lr: float, crop: int, batch: int):
    """``(step, init_refiner, init_disc)``: the pure GAN step (see the module doc)
    ``(state, batch, key) -> (state, {"loss": generator loss, "d_loss": discriminator
    loss})`` with ``batch = {"real", "real_sizes", "fake", "fake_sizes"}`` (pools of
    :func:`pad_pool`), and the initialisers of the two Adam states. Cached, so equal
    architectures and settings share one function (and one compilation)."""
    tx_r, tx_d = optax.adam(refiner_lr, b1=0.5), optax.adam(disc_lr, b1=0.5)

    def logits(d_params, d_stats, real, fake):
        d = nnx.merge(d_graph, d_params, d_stats, copy=True)
        out = d(jnp.concatenate([real, fake])[..., None])[:, 0]
        return out[:batch], out[batch:], nnx.state(d, nnx.BatchStat)

    def step(state, pools, key):
        r_params, d_params, d_stats = state["refiner"], state["disc"], state["disc_stats"]
        k_real, k_fake = jax.random.split(key)
        real = random_crops(k_real, pools["real"], pools["real_sizes"], batch, crop)
        fake_in = random_crops(k_fake, pools["fake"], pools["fake_sizes"], batch, crop)
        fake = jax.lax.stop_gradient(nnx.merge(r_graph, r_params, copy=True)(fake_in))

        def d_loss_fn(dp):
            lr, lf, stats = logits(dp, d_stats, real, fake)
            return jnp.mean(jax.nn.softplus(-lr)) + jnp.mean(jax.nn.softplus(lf)), stats

        (d_loss, d_stats), grad = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
        updates, opt_d = tx_d.update(grad, state["opt_disc"], d_params)
        d_params = optax.apply_updates(d_params, updates)

        def g_loss_fn(rp):
            refined = nnx.merge(r_graph, rp, copy=True)(fake_in)
            _, lf, _ = logits(d_params, d_stats, real, refined)
            return jnp.mean(jax.nn.softplus(-lf))

        g_loss, grad = jax.value_and_grad(g_loss_fn)(r_params)
        updates, opt_r = tx_r.update(grad, state["opt_refiner"], r_params)
        r_params = optax.apply_updates(r_params, updates)
        new = dict(refiner=r_params, disc=d_params, disc_stats=d_stats, opt_refiner=opt_r,
                   opt_disc=opt_d)
        return new, dict(loss=g_loss, d_loss=d_loss)

    return step, tx_r.init, tx_d.init


class RefinerTask:
    """The refiner GAN :class:`~stylejax.train.loop.Task` for one set of images.

    Args:
      refiner: :class:`~stylejax.models.refiner.Refiner` with ``K`` scales (its
        parameters are the starting point; not modified by training).
      discriminator: ``[B, c, c, 1] -> [B, 1]`` logits in training mode (parameters
        and BatchNorm statistics are the starting point).
      scales: ``[N, H, W, K]`` multi-scale transfers (the fake inputs).
      references: ``[h, w]`` images in the target style (the real examples).
    """

    name = "refiner"
    configs = {"smoke": smoke, "default": default}
    monitor = ("d_loss",)

    def __init__(self, refiner: Refiner, discriminator: nnx.Module, scales, references):
        self.r_graph, self.r_params = nnx.split(refiner)
        self.d_graph, self.d_params, self.d_stats = nnx.split(discriminator, nnx.Param,
                                                              nnx.BatchStat)
        self.real = pad_pool([np.asarray(r, np.float32) for r in references])
        self.fake = pad_pool(list(np.asarray(scales, np.float32)))

    def _parts(self, cfg: RefinerConfig):
        return gan_step(self.r_graph, self.d_graph, float(cfg.refiner_lr), float(cfg.disc_lr),
                        int(cfg.crop), int(cfg.batch_size))

    def init(self, cfg: RefinerConfig, mesh):
        _, init_r, init_d = self._parts(cfg)
        copy = functools.partial(jax.tree.map, jnp.copy)  # donated buffers must be private
        r_params, d_params, d_stats = copy(self.r_params), copy(self.d_params), copy(self.d_stats)
        state = dict(refiner=r_params, disc=d_params, disc_stats=d_stats,
                     opt_refiner=copy(init_r(r_params)), opt_disc=copy(init_d(d_params)))
        return jax.device_put(state, NamedSharding(mesh, P()))

    def batches(self, cfg: RefinerConfig, mesh, workdir):
        pools = loop.replicate(dict(real=self.real[0], real_sizes=self.real[1],
                                    fake=self.fake[0], fake_sizes=self.fake[1]), mesh)
        return lambda step: pools

    def step(self, cfg: RefinerConfig, mesh):
        return self._parts(cfg)[0]


def train_refiner(refiner: Refiner, discriminator: nnx.Module, scales, references, *,
                  steps: int, crop: int, batch: int = 4, refiner_lr: float = 1e-3,
                  disc_lr: float = 2e-4, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Train the refiner as a GAN generator (Eq. 7) on random crops; updates both in place.

    Runs :class:`RefinerTask` in memory (``workdir=None``) on one device.

    Args:
      refiner: :class:`Refiner` with ``K`` scales.
      discriminator: ``[B, c, c, 1] -> [B, 1]`` logits, e.g. ``ResNet18(num_outputs=1,
        in_channels=1, ...)`` in training mode.
      scales: ``[N, H, W, K]`` multi-scale transfers (the fake inputs).
      references: list of ``[h, w]`` images in the target style (the real examples).
      steps: GAN iterations; crop: crop side (>= 32 for a ResNet-18); batch: crops per
        side per step.
      refiner_lr / disc_lr: Adam step sizes (beta1 0.5, the usual GAN setting).
      seed: crop sampling (``jax.random.fold_in(jax.random.key(seed, impl="rbg"), step)``).
      progress: tqdm bar on stderr.
    Returns:
      ``[steps, 2]`` float64: discriminator and generator loss per step.
    Raises:
      ValueError: bad shapes, crop, steps or batch.
      TrainingDiverged: a loss became NaN/inf (the modules are left unchanged).
    """
    scales = np.asarray(scales, np.float32)
    if scales.ndim != 4 or scales.shape[-1] != refiner.num_scales:
        raise ValueError(f"scales must be [N, H, W, {refiner.num_scales}] (got "
                         f"{scales.shape})")
    refs = [np.asarray(r, np.float32) for r in references]
    smallest = min([min(scales.shape[1:3])] + [min(r.shape[:2]) for r in refs])
    if not TOTAL_STRIDE <= crop <= smallest:
        raise ValueError(f"GAN crop {crop} must lie in [{TOTAL_STRIDE}, {smallest}] (the "
                         "ResNet-18 minimum and the smallest image side)")
    if steps < 0 or batch < 1:
        raise ValueError(f"steps must be >= 0 and batch >= 1 (got {steps}, {batch})")
    if steps == 0:
        return np.zeros((0, 2))
    cfg = RefinerConfig(name="mr2nst", steps=int(steps), batch_size=int(batch), crop=int(crop),
                        refiner_lr=float(refiner_lr), disc_lr=float(disc_lr), seed=int(seed),
                        log_every=max(int(steps), 1))
    task = RefinerTask(refiner, discriminator, scales, refs)
    result = loop.run(task, cfg, None, devices=jax.devices()[:1], progress=progress)
    nnx.update(refiner, result.state["refiner"])
    nnx.update(discriminator, result.state["disc"], result.state["disc_stats"])
    return np.array([[row["d_loss"], row["loss"]] for row in result.history], np.float64)
