"""Feed-forward Johnson transform network for ultrasound (``stylejax nst --method johnson``).

One forward pass of a trained :class:`stylejax.models.transform_net.TransformNet`
(ultrasound thesis 3.3). The network shipped in ``stylejax/assets/johnson_us/`` was trained
with ``stylejax train transform-net --config default`` to map simulated low-quality B-mode
images to the high-quality image of the same anatomy (perceptual loss on the StyleX
encoder, average HQ style, noise injection); ``network`` names another exported network
(``stylejax train transform-net --export DIR``).

The style is baked into the network, so the ``--style`` images the command requires are
**not used** by the transfer; they are only counted (``extra["styles_ignored"]``).

Intensities: a content image within [0, 1] is used as is; one outside (e.g. raw DICOM
values) is mapped to [0, 1] by its own minimum and maximum and the result is returned in
[0, 1]. ``noise_seed``: None runs the network deterministically (the injected noise at its
mean, zero); an int draws the injected noise from that seed (a network trained without
noise injection ignores it).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np

from stylejax.methods.base import TransferResult, check_real_finite, option
from stylejax.models.transform_net import MIN_SIZE, stylize
from stylejax.train import transform_net as tn_train

__all__ = ["JohnsonConfig", "Johnson", "transfer", "load_network", "shipped_network"]

_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                       "johnson_us")


def shipped_network() -> str:
    """Directory of the shipped LQ -> HQ ultrasound network."""
    return _ASSETS


@dataclasses.dataclass(frozen=True)
class JohnsonConfig:
    """Settings of the feed-forward transform network.

    Attributes:
      network: exported network directory; None = the shipped LQ -> HQ ultrasound network.
      noise_seed: seed of the injected noise; None = deterministic (no noise).
    """

    network: str | None = option(None, "exported transform-network directory (default: the "
                                 "shipped ultrasound LQ -> HQ network)")
    noise_seed: int | None = option(None, "seed of the injected noise (default: none, "
                                    "deterministic)")

    def __post_init__(self):
        if self.noise_seed is not None and (isinstance(self.noise_seed, bool) or not isinstance(
                self.noise_seed, (int, np.integer)) or self.noise_seed < 0):
            raise ValueError(f"noise_seed must be a non-negative int or None "
                             f"(got {self.noise_seed!r})")


@functools.lru_cache(maxsize=8)
def load_network(path: str):
    """``(net, meta)`` of an exported network directory (cached; see
    :func:`stylejax.train.transform_net.load`)."""
    return tn_train.load(path)


def _check_content(x) -> tuple[np.ndarray, bool]:
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"content image must be a 2-D grayscale image [H, W] "
                         f"(got shape {a.shape})")
    check_real_finite(a, "content image")
    if min(a.shape) < MIN_SIZE:
        raise ValueError(f"content image is too small ({a.shape}); the transform network "
                         f"needs at least {MIN_SIZE}x{MIN_SIZE}")
    a = a.astype(np.float32)
    if a.min() >= 0.0 and a.max() <= 1.0:
        return a, False
    lo, hi = float(a.min()), float(a.max())
    if not hi - lo > 0:
        raise ValueError("content image is constant: no intensity range to map to [0, 1]")
    return (a - lo) / (hi - lo), True


def transfer(content, *, network: str | None = None, noise_seed: int | None = None
             ) -> np.ndarray:
    """Run the transform network on one image.

    Args:
      content: ``[H, W]`` grayscale (in [0, 1], or any range: min-max mapped), H, W >= 8.
      network, noise_seed: as :class:`JohnsonConfig`.
    Returns:
      ``[H, W]`` float32 in [0, 1].
    Raises:
      ValueError: wrong rank/dtype, NaN/inf, a constant out-of-range image, a missing
        network or one of another architecture.
    """
    return _transfer(content, JohnsonConfig(network=network, noise_seed=noise_seed))


def _transfer(content, cfg: JohnsonConfig) -> np.ndarray:
    x, _ = _check_content(content)
    path = cfg.network or shipped_network()
    if not os.path.isdir(path):
        raise ValueError(f"transform network {path!r} not found (export one with 'stylejax "
                         "train transform-net --config default --workdir DIR --export OUT')")
    net, _ = load_network(os.path.abspath(path))
    key = None if cfg.noise_seed is None else jax.random.key(int(cfg.noise_seed))
    return np.clip(stylize(net, x, key=key), 0.0, 1.0).astype(np.float32)


class Johnson:
    """The feed-forward transform network as a :class:`stylejax.methods.base.Method`."""

    name = "johnson"
    help = "feed-forward Johnson transform net (shipped: ultrasound low -> high quality)"
    config_class = JohnsonConfig
    inputs = ()
    json_extra = ("styles_ignored",)

    def needs_extractor(self, config: JohnsonConfig) -> bool:
        return False

    def run(self, content, styles, *, extractor=None, config: JohnsonConfig,
            progress: bool = False) -> TransferResult:
        """Transform ``content``; ``styles`` are not used (the style is in the weights).

        Returns:
          :class:`TransferResult` with ``steps=0``, ``history=[nan, nan]`` and
          ``extra={"styles_ignored": len(styles)}``.
        """
        n_styles = 1 if isinstance(styles, np.ndarray) and styles.ndim == 2 else len(
            list(styles))
        t0 = time.perf_counter()
        out = _transfer(content, config)
        nan = float("nan")
        return TransferResult(image=out, steps=0, seconds=time.perf_counter() - t0,
                              loss_initial=nan, loss_final=nan, history=np.array([nan, nan]),
                              extra={"styles_ignored": int(n_styles)})
