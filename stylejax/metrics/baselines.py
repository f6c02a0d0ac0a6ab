"""Two training-free style descriptors to compare the learned StyleX metric against.

The StyleX paper did not test any baseline. These two are the obvious ones a user
would try first, and both expose ``.embed(images) -> [N, D]`` (plus ``metric``,
``name``) so the evaluation treats them exactly like a StyleX model:

* :class:`HandcraftedStyle` - global image statistics: the grey-level histogram
  and the energy of each Laplacian-pyramid band. LAP changes band gains and the
  window globally, so these statistics follow LAP styles closely; they know
  nothing about local, non-linear operators and see content through the histogram.
* :class:`RandomGramStyle` - Gram matrices (channel co-activation statistics) of a
  small convolutional network with fixed random weights: the classic "texture
  = style" descriptor of neural style transfer, without ImageNet weights (random
  CNN features are known to carry much of the texture information; none are
  downloadable here). The network is ours, not VGG, to keep it fast on CPU.

Both descriptors are compared with Euclidean distance (``metric = "euclidean"``);
their components are scaled so no single group dominates by units alone.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stylejax import _checks
from stylejax.pipeline import pyramid


_CHUNK = 16


def _chunked(fn, x: np.ndarray, size: int) -> np.ndarray:
    """``fn`` over chunks of exactly ``size`` images (the last one padded by repetition).

    One chunk shape per image size means one jit compilation, whatever N is.
    """
    out = []
    for i in range(0, x.shape[0], size):
        chunk = x[i:i + size]
        n = chunk.shape[0]
        if n < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
        out.append(np.asarray(fn(jnp.asarray(chunk)))[:n])
    return np.concatenate(out, axis=0)


def _check_images(images, min_size: int) -> np.ndarray:
    _checks.check_image(images, "images", min_rank=3, max_rank=3, min_size=min_size,
                        unit_range=True)
    return np.asarray(images, dtype=np.float32)


class HandcraftedStyle:
    """Intensity histogram + Laplacian band energies.

    Descriptor of one image (``D = bins + 2 * levels``):

    * ``sqrt`` of the normalised ``bins``-bin grey-level histogram on [0, 1]
      (Euclidean distance between these is proportional to the Hellinger distance);
    * for each Laplacian band (finest first), ``log`` of its RMS and ``log`` of its
      mean absolute value: the first follows band gains (LAP ``h``/``l``,
      sharpening, smoothing), their difference follows how heavy-tailed the
      band is (local non-linear operators such as denoising or CLAHE change it).

    Args:
      bins: histogram bins.
      levels: Laplacian bands (images need ``min_size`` >= 2 ** (levels + 1) pixels).
      band_weight: factor on the band features relative to the histogram part.
    """

    name = "handcrafted"
    metric = "euclidean"

    def __init__(self, bins: int = 32, levels: int = 4, band_weight: float = 0.5):
        if bins < 2:
            raise ValueError(f"bins must be >= 2 (got {bins})")
        if levels < 1:
            raise ValueError(f"levels must be >= 1 (got {levels})")
        if not band_weight > 0:
            raise ValueError(f"band_weight must be positive (got {band_weight})")
        self.bins = int(bins)
        self.levels = int(levels)
        self.band_weight = float(band_weight)

    @property
    def min_size(self) -> int:
        """Smallest image side the pyramid accepts."""
        return max(pyramid.MIN_SIZE, 2 ** (self.levels + 1))

    @property
    def dim(self) -> int:
        """Descriptor length ``D``."""
        return self.bins + 2 * self.levels

    def histogram(self, images) -> np.ndarray:
        """``[N, bins]`` normalised grey-level histograms of ``[N, H, W]`` images in [0, 1]."""
        x = _check_images(images, 1)
        idx = np.minimum((x.reshape(x.shape[0], -1) * self.bins).astype(np.int64), self.bins - 1)
        offsets = np.arange(x.shape[0])[:, None] * self.bins
        counts = np.bincount((idx + offsets).ravel(), minlength=x.shape[0] * self.bins)
        counts = counts.reshape(x.shape[0], self.bins).astype(np.float64)
        return counts / counts.sum(axis=1, keepdims=True)

    def band_energies(self, images) -> np.ndarray:
        """``[N, 2 * levels]``: per band ``log RMS`` then ``log mean|.|`` (finest first)."""
        x = _check_images(images, self.min_size)
        stats = _chunked(lambda chunk: _band_stats(chunk, self.levels), x, _CHUNK)
        return stats.astype(np.float64)

    def embed(self, images) -> np.ndarray:
        """Descriptors of ``images`` ``[N, H, W]`` in [0, 1] -> ``[N, D]`` float32."""
        x = _check_images(images, self.min_size)
        hist = np.sqrt(self.histogram(x))
        bands = self.band_energies(x) * self.band_weight
        return np.concatenate([hist, bands], axis=1).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("levels",))
def _band_stats(x, levels: int):
    bands, _ = pyramid.laplacian_pyramid(x, levels)
    eps = 1e-6
    rms = jnp.stack([jnp.log(jnp.sqrt(jnp.mean(b * b, axis=(-2, -1))) + eps) for b in bands], 1)
    mad = jnp.stack([jnp.log(jnp.mean(jnp.abs(b), axis=(-2, -1)) + eps) for b in bands], 1)
    return jnp.concatenate([rms, mad], axis=1)


class RandomGramStyle:
    """Gram-matrix statistics of a fixed random CNN.

    Network: ``len(channels)`` blocks of 3x3 convolution (He-normal weights from
    ``seed``, no bias, 'SAME' padding) + ReLU, each block after the first preceded by
    2x2 average pooling. Input is ``2 * image - 1``. For every block the Gram
    matrix ``G = F^T F / (h w)`` (``[C, C]``) is taken; the descriptor is
    ``log(G + 1e-4) / C`` over its upper triangle (diagonal included). Entries are
    >= 0 after ReLU and span decades (the log makes a band gain an additive
    shift; it separated LAP styles far better than the raw or square-rooted Gram
    in our checks), and ``1 / C`` lets each block contribute about equally.
    ``D = sum_k C_k (C_k + 1) / 2``.

    Args:
      channels: output channels per block.
      seed: weight seed (fixed: the descriptor must not change between runs).
      batch_size: images per forward pass (bounds memory; fewer are padded).
    """

    name = "gram"
    metric = "euclidean"

    def __init__(self, channels=(16, 32, 64), seed: int = 0, batch_size: int = _CHUNK):
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive ints "
                             f"(got {channels})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.channels = channels
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        rng = np.random.default_rng(self.seed)
        c_in = (1,) + channels[:-1]
        # He-normal: keeps activations at a similar scale through the ReLUs.
        self.kernels = tuple(
            jnp.asarray(rng.standard_normal((3, 3, ci, co)) * np.sqrt(2.0 / (9 * ci)), jnp.float32)
            for ci, co in zip(c_in, channels))

    @property
    def min_size(self) -> int:
        """Smallest image side: the last block still sees at least 2x2 positions."""
        return 2 ** len(self.channels)

    @property
    def dim(self) -> int:
        """Descriptor length ``D``."""
        return sum(c * (c + 1) // 2 for c in self.channels)

    def features(self, images):
        """Activations of every block: list of ``[N, h_k, w_k, C_k]`` arrays."""
        x = _check_images(images, self.min_size)
        return list(_forward(self.kernels, jnp.asarray(x)))

    def embed(self, images) -> np.ndarray:
        """Descriptors of ``images`` ``[N, H, W]`` in [0, 1] -> ``[N, D]`` float32."""
        x = _check_images(images, self.min_size)
        return _chunked(lambda chunk: _gram_descriptor(self.kernels, chunk), x, self.batch_size)


def _forward(kernels, x):
    h = (2.0 * x - 1.0)[..., None]
    feats = []
    for k, kernel in enumerate(kernels):
        if k > 0:
            n, hh, ww, c = h.shape
            h = h[:, :hh // 2 * 2, :ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c).mean((2, 4))
        h = jax.nn.relu(jax.lax.conv_general_dilated(
            h, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        feats.append(h)
    return feats


@jax.jit
def _gram_descriptor(kernels, x):
    parts = []
    for f in _forward(kernels, x):
        n, hh, ww, c = f.shape
        flat = f.reshape(n, hh * ww, c)
        gram = jnp.einsum("npc,npd->ncd", flat, flat) / (hh * ww)
        iu = np.triu_indices(c)
        parts.append(jnp.log(jnp.maximum(gram[:, iu[0], iu[1]], 0.0) + 1e-4) / c)
    return jnp.concatenate(parts, axis=1)


def baselines() -> dict:
    """The two baselines with their default settings, keyed by ``name``."""
    return {b.name: b for b in (HandcraftedStyle(), RandomGramStyle())}
