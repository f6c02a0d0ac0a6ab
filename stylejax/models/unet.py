"""A small U-Net (Ronneberger et al. 2015) for segmentation, in Flax NNX.

The CT paper's downstream experiment trains a U-Net on one scanner's images and tests
it on others. Layout: per level two 3x3 convolutions (``SAME`` padding) each followed
by group normalisation and ReLU; 2x2 max pooling down; at the way up a 2x2 transposed
convolution with stride 2, concatenation with the skip connection and two more
convolutions; a final 1x1 convolution gives per-pixel class logits. Group
normalisation instead of the original's none (or batch norm) keeps training stable
without running statistics or a train/eval switch.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stylejax._checks import is_concrete

__all__ = ["UNet", "cross_entropy"]


class _Conv(nnx.Module):
    """``SAME`` convolution, He-normal kernel drawn with numpy (no per-shape compilation)."""

    def __init__(self, cin: int, cout: int, size: int, rng: np.random.Generator):
        std = np.sqrt(2.0 / (size * size * cin))
        self.kernel = nnx.Param(jnp.asarray(rng.standard_normal((size, size, cin, cout)) * std,
                                            jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))

    def __call__(self, x):
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + self.bias[...]


class _UpConv(nnx.Module):
    """2x2 transposed convolution with stride 2 (non-overlapping: one einsum)."""

    def __init__(self, cin: int, cout: int, rng: np.random.Generator):
        std = np.sqrt(1.0 / cin)
        self.kernel = nnx.Param(jnp.asarray(rng.standard_normal((2, 2, cin, cout)) * std,
                                            jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))

    def __call__(self, x):
        n, h, w, _ = x.shape
        y = jnp.einsum("nhwc,ijco->nhiwjo", x, self.kernel[...])
        return y.reshape(n, 2 * h, 2 * w, -1) + self.bias[...]


class _GroupNorm(nnx.Module):
    """Group normalisation over (H, W, channels of the group), learned scale and shift."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-5):
        self.groups, self.eps = groups, eps
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x):
        n, h, w, c = x.shape
        g = x.reshape(n, h, w, self.groups, c // self.groups)
        mu = g.mean(axis=(1, 2, 4), keepdims=True)
        var = jnp.square(g - mu).mean(axis=(1, 2, 4), keepdims=True)
        g = (g - mu) * jax.lax.rsqrt(var + self.eps)
        return g.reshape(n, h, w, c) * self.scale[...] + self.bias[...]


class _Block(nnx.Module):
    """Two (conv 3x3 -> GroupNorm -> ReLU)."""

    def __init__(self, cin: int, cout: int, rng: np.random.Generator):
        groups = max(1, min(8, cout // 4))
        while cout % groups:
            groups -= 1
        self.conv1 = _Conv(cin, cout, 3, rng)
        self.norm1 = _GroupNorm(cout, groups)
        self.conv2 = _Conv(cout, cout, 3, rng)
        self.norm2 = _GroupNorm(cout, groups)

    def __call__(self, x):
        x = jax.nn.relu(self.norm1(self.conv1(x)))
        return jax.nn.relu(self.norm2(self.conv2(x)))


def _max_pool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class UNet(nnx.Module):
    """U-Net returning class logits.

    Args:
      num_classes: output classes (e.g. ``len(stylejax.data.ct.LABEL_NAMES)``).
      in_channels: image channels (1 for CT).
      channels: widths per level, shallow to deep; ``len(channels) - 1`` poolings, so
        image sides must be divisible by ``2 ** (len(channels) - 1)``.
      seed: seed of the initial weights (He-normal convolutions, drawn with numpy).
    """

    def __init__(self, num_classes: int, in_channels: int = 1,
                 channels: Sequence[int] = (16, 32, 64, 128), *, seed: int = 0):
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be one or more positive widths (got {channels})")
        if num_classes < 2 or in_channels < 1:
            raise ValueError(f"need num_classes >= 2 and in_channels >= 1 (got {num_classes}, "
                             f"{in_channels})")
        self.num_classes, self.in_channels, self.channels = num_classes, in_channels, channels
        rng = np.random.default_rng(seed)
        widths = (in_channels,) + channels
        self.down = nnx.List([_Block(widths[i], widths[i + 1], rng)
                              for i in range(len(channels))])
        self.up = nnx.List([_UpConv(channels[i + 1], channels[i], rng)
                            for i in reversed(range(len(channels) - 1))])
        self.merge = nnx.List([_Block(2 * channels[i], channels[i], rng)
                               for i in reversed(range(len(channels) - 1))])
        self.head = _Conv(channels[0], num_classes, 1, rng)

    @property
    def multiple(self) -> int:
        """Image sides must be divisible by this."""
        return 2 ** (len(self.channels) - 1)

    def __call__(self, images) -> jax.Array:
        """Logits ``[B, H, W, num_classes]`` of images ``[B, H, W]`` or ``[B, H, W, C]``."""
        x = jnp.asarray(images, jnp.float32)
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"images must be [B, H, W, {self.in_channels}] (or [B, H, W] for "
                             f"one channel); got shape {tuple(np.shape(images))}")
        h, w = x.shape[1:3]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"image size {h}x{w} is not divisible by {self.multiple} "
                             f"(2^{len(self.channels) - 1} for {len(self.channels)} levels)")
        if is_concrete(images) and not np.all(np.isfinite(np.asarray(images))):
            raise ValueError("images contain non-finite values (NaN or inf)")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = _max_pool2(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(jnp.concatenate([up(x), skip], axis=-1))
        return self.head(x)


def cross_entropy(logits, labels, weights=None) -> jax.Array:
    """Mean per-pixel softmax cross-entropy.

    Args:
      logits: ``[B, H, W, K]``.
      labels: int ``[B, H, W]`` in ``0..K-1``.
      weights: optional per-class weights ``[K]`` (e.g. inverse frequency).
    Returns:
      scalar (weighted mean over pixels).
    """
    if np.shape(logits)[:-1] != np.shape(labels):
        raise ValueError(f"logits {tuple(np.shape(logits))} and labels "
                         f"{tuple(np.shape(labels))} do not match")
    labels = jnp.asarray(labels, jnp.int32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if weights is None:
        return jnp.mean(loss)
    w = jnp.asarray(weights, jnp.float32)[labels]
    return jnp.sum(loss * w) / jnp.maximum(jnp.sum(w), 1e-12)
