"""Multi-scale PatchGAN discriminators (MUNIT's ``MsImageDis``), Flax NNX, NHWC.

Each scale is a PatchGAN: ``n_layers`` 4x4 stride-2 convolutions (reflect padding 1, widths
``dim, 2 dim, 4 dim, ...``, leaky ReLU 0.2, no normalisation) and a 1x1 convolution to one
output channel, so every output pixel scores one patch of the input. Scale ``s`` sees the
input average-pooled ``s`` times (3x3 window, stride 2, padding 1, padded positions left
out of the average, as PyTorch's ``AvgPool2d(3, 2, 1, count_include_pad=False)``), so
coarse scales judge large structures and fine scales texture. Pair with the LSGAN losses
of :mod:`stylejax.losses.adversarial`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["PatchDiscriminator", "MultiScaleDiscriminator", "avg_pool_3x3_s2"]


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3x3 average pooling, stride 2, padding 1, padding excluded from the count (NHWC)."""
    window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
    return total / count


def _reflect_conv(conv: nnx.Conv, x: jax.Array, pad: int) -> jax.Array:
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return conv(x)


class PatchDiscriminator(nnx.Module):
    """One PatchGAN scale.

    Args:
      in_channels: image channels (1 for MR magnitude images).
      dim: width of the first layer (doubles per layer).
      n_layers: stride-2 layers (the input must be at least 2^n_layers pixels).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, in_channels: int = 1, dim: int = 64, n_layers: int = 4, *,
                 rngs: nnx.Rngs):
        if n_layers < 1 or dim < 1:
            raise ValueError(f"n_layers and dim must be >= 1 (got {n_layers}, {dim})")
        widths = [in_channels] + [dim * 2 ** i for i in range(n_layers)]
        self.layers = nnx.List([nnx.Conv(a, b, (4, 4), strides=(2, 2), padding="VALID",
                                         rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.out = nnx.Conv(widths[-1], 1, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[N, H, W, C]`` -> ``[N, H / 2^n, W / 2^n, 1]`` patch scores."""
        for conv in self.layers:
            x = jax.nn.leaky_relu(_reflect_conv(conv, x, 1), 0.2)
        return self.out(x)


class MultiScaleDiscriminator(nnx.Module):
    """PatchGAN discriminators on ``num_scales`` successively halved copies of the input.

    Args:
      in_channels: image channels.
      dim: first-layer width of each scale.
      n_layers: stride-2 layers per scale.
      num_scales: number of scales (3 in MUNIT).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, in_channels: int = 1, dim: int = 64, n_layers: int = 4,
                 num_scales: int = 3, *, rngs: nnx.Rngs):
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1 (got {num_scales})")
        self.in_channels, self.n_layers, self.num_scales = in_channels, n_layers, num_scales
        self.scales = nnx.List([PatchDiscriminator(in_channels, dim, n_layers, rngs=rngs)
                                for _ in range(num_scales)])

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """Patch scores per scale, finest first.

        Args:
          x: ``[N, H, W]`` (one channel) or ``[N, H, W, C]`` images.
        Returns:
          list of ``num_scales`` arrays ``[N, h_s, w_s, 1]``.
        """
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must be [N, H, W] or [N, H, W, {self.in_channels}] "
                             f"(got {tuple(np.shape(x))})")
        need = 2 ** (self.n_layers + self.num_scales - 1)
        if min(x.shape[1:3]) < need:
            raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} are too small for "
                             f"{self.num_scales} scales of {self.n_layers} stride-2 layers "
                             f"(need at least {need}x{need})")
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = avg_pool_3x3_s2(x)
            outs.append(d(x))
        return outs
