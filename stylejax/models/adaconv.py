"""Adaptive convolutions (AdaConv, Chandran et al. CVPR 2021) and AdaIN modulation, NHWC.

AdaConv replaces AdaIN's per-channel scale and shift by a whole convolution predicted from
the style: from a spatial style descriptor ``w`` (``[B, k, k, S]``), three predictors give,
per sample,

* a grouped **spatial** kernel ``[k, k, C/G_s, C]`` (``G_s`` groups; ``G_s = C``, the
  default, is depthwise), predicted by a ``k x k`` convolution over ``w`` so that the
  kernel's spatial layout follows the style descriptor's;
* a grouped **pointwise** kernel ``[C/G_p, C]`` per group (``G_p`` groups), predicted from
  the spatially averaged descriptor by a linear layer;
* a **bias** ``[C]``, likewise.

The block applies them, in this order, to the instance-normalised (no affine) content
features with reflect padding: ``y = pointwise(spatial(IN(x))) + bias``. In a decoder it
is followed by an ordinary learned convolution (see :mod:`stylejax.models.munit`).

Predicted kernels are scaled by ``1 / sqrt(fan_in)`` of the kernel they form (``k*k*C/G_s``
and ``C/G_p``), so with unit-variance style codes an untrained block keeps the feature
scale.

The per-sample grouped convolution is written as shifted multiply-adds with a custom VJP:
XLA's CPU backend runs a per-sample grouped ``conv_general_dilated`` (batch folded into
feature groups) two to three orders of magnitude slower than this, and plain autodiff of
the multiply-adds turns the kernel gradient into many small strided reductions.

:class:`AdaIN` is the ablation's modulation: ``IN(x) * gamma + beta`` with ``gamma, beta``
given by the caller (MUNIT predicts them for all layers with one MLP from the style code).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["instance_norm", "grouped_conv_per_sample", "pointwise_per_sample", "AdaConv",
           "AdaIN", "adaptive_avg_pool"]


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-sample, per-channel normalisation over the spatial axes of ``[N, H, W, C]``.

    Uses the biased variance with ``eps`` inside the square root (as PyTorch's
    ``InstanceNorm2d``); no affine parameters.
    """
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """Average pooling of ``[N, H, W, C]`` to ``[N, size, size, C]`` with PyTorch's bins.

    Bin ``i`` of an axis of length ``L`` covers ``floor(i L / size) .. ceil((i + 1) L / size)``
    (``torch.nn.AdaptiveAvgPool2d``), so bins may overlap when ``L`` is not a multiple.
    """
    n, h, w, c = x.shape
    if size > min(h, w):
        raise ValueError(f"cannot pool {h}x{w} features to {size}x{size}")

    def bins(length):
        return [(i * length // size, -(-(i + 1) * length // size)) for i in range(size)]

    rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(h)]             # size x [N, W, C]
    return jnp.stack([jnp.stack([jnp.mean(r[:, a:b], axis=1) for a, b in bins(w)], axis=1)
                      for r in rows], axis=1)


def _repeat_group_inputs(x: jax.Array, i: int, p: int) -> jax.Array:
    """Channel ``g p + o`` of the result holds input channel ``g p + i`` (for all ``o < p``)."""
    if p == 1:
        return x
    xi = x[..., i::p]
    return jnp.broadcast_to(xi[..., None], xi.shape + (p,)).reshape(x.shape)


def _shifted_sum(xp: jax.Array, k: jax.Array, p: int, h: int, w: int) -> jax.Array:
    """``out[b, y, x, gp + o] = sum_{dy, dx, i} xp[b, y + dy, x + dx, gp + i] k[b, dy, dx, i, gp + o]``
    (``gp`` = group index times ``p``)."""
    kh, kw = k.shape[1], k.shape[2]
    out = None
    for dy in range(kh):
        for dx in range(kw):
            window = xp[:, dy:dy + h, dx:dx + w]
            for i in range(p):
                term = _repeat_group_inputs(window, i, p) * k[:, dy, dx, i][:, None, None, :]
                out = term if out is None else out + term
    return out


@jax.custom_vjp
def _grouped_conv_valid(xp: jax.Array, k: jax.Array) -> jax.Array:
    p = k.shape[3]
    h, w = xp.shape[1] - k.shape[1] + 1, xp.shape[2] - k.shape[2] + 1
    return _shifted_sum(xp, k, p, h, w)


def _grouped_conv_fwd(xp, k):
    return _grouped_conv_valid(xp, k), (xp, k)


def _grouped_conv_bwd(res, g):
    xp, k = res
    kh, kw, p = k.shape[1], k.shape[2], k.shape[3]
    h, w = g.shape[1], g.shape[2]
    # Kernel gradient: one full-size product and spatial sum per (tap, group input).
    dk = jnp.stack([jnp.stack([jnp.stack([
        jnp.einsum("bhwc,bhwc->bc", _repeat_group_inputs(xp[:, dy:dy + h, dx:dx + w], i, p), g)
        for i in range(p)], axis=1) for dx in range(kw)], axis=1) for dy in range(kh)], axis=1)
    # Input gradient: the same shifted sum over the zero-padded output gradient with the
    # kernel flipped in space and transposed within each group (i <-> o).
    gp = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    c = k.shape[-1]
    kt = k[:, ::-1, ::-1].reshape(k.shape[:3] + (p, c // p, p))         # [B, kh, kw, i, G, o]
    kt = jnp.swapaxes(kt, 3, 5).reshape(k.shape)                          # [B, kh, kw, o, (G, i)]
    dxp = _shifted_sum(gp, kt, p, xp.shape[1], xp.shape[2])
    return dxp, dk


_grouped_conv_valid.defvjp(_grouped_conv_fwd, _grouped_conv_bwd)


def grouped_conv_per_sample(x: jax.Array, kernel: jax.Array, *, padding: str = "reflect"
                            ) -> jax.Array:
    """Per-sample grouped 2-D convolution (stride 1, 'same' size), NHWC.

    Args:
      x: ``[B, H, W, C]``.
      kernel: ``[B, kh, kw, p, C]`` per-sample HWIO kernels with ``p = C / groups`` input
        channels per group; output channel ``c`` belongs to group ``c // p`` and reads input
        channels ``(c // p) p .. (c // p) p + p - 1``. ``p = 1`` is depthwise.
      padding: ``"reflect"`` or ``"zeros"``; odd kernel sizes.
    Returns:
      ``[B, H, W, C]``.
    """
    b, h, w, c = x.shape
    if kernel.ndim != 5 or kernel.shape[0] != b or kernel.shape[4] != c:
        raise ValueError(f"kernel must be [B, kh, kw, C/groups, C] = [{b}, kh, kw, p, {c}] "
                         f"(got {tuple(kernel.shape)})")
    kh, kw, p = kernel.shape[1:4]
    if kh % 2 == 0 or kw % 2 == 0 or c % p:
        raise ValueError(f"kernel needs odd spatial size and C divisible by p (got {kh}x{kw}, "
                         f"C={c}, p={p})")
    if padding not in ("reflect", "zeros"):
        raise ValueError(f"padding must be 'reflect' or 'zeros' (got {padding!r})")
    pads = ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0))
    xp = jnp.pad(x, pads, mode="reflect" if padding == "reflect" else "constant")
    return _grouped_conv_valid(xp, kernel.astype(x.dtype))


def pointwise_per_sample(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Per-sample grouped 1x1 convolution.

    Args:
      x: ``[B, H, W, C]``.
      kernel: ``[B, G, C/G, C/G]`` (group, input, output).
    Returns:
      ``[B, H, W, C]``: channel ``g q + o`` is ``sum_i x[..., g q + i] kernel[b, g, i, o]``.
    """
    b, h, w, c = x.shape
    g, q = kernel.shape[1], kernel.shape[2]
    if kernel.shape != (b, g, q, q) or g * q != c:
        raise ValueError(f"kernel must be [B, G, C/G, C/G] with G * C/G = {c} "
                         f"(got {tuple(kernel.shape)})")
    if g == 1:
        return jnp.einsum("bhwi,bio->bhwo", x, kernel[:, 0])
    # One block-diagonal [C, C] matrix per sample: a single batched matmul beats G small ones.
    eye = jnp.eye(g, dtype=kernel.dtype)
    dense = jnp.einsum("bgio,gh->bgiho", kernel, eye).reshape(b, c, c)
    return jnp.einsum("bhwi,bio->bhwo", x, dense)


class AdaConv(nnx.Module):
    """Adaptive convolution block: predicted kernels applied to ``IN(x)``.

    Args:
      channels: ``C`` of the content features (input and output).
      style_channels: ``S`` of the style descriptor ``[B, k, k, S]``.
      style_size: ``k`` of the descriptor; also the spatial kernel size (odd).
      spatial_groups: ``G_s`` for the spatial kernel (default ``C``: depthwise).
      pointwise_groups: ``G_p`` for the pointwise kernel (default ``C // 8``, at least 1).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, channels: int, style_channels: int, *, style_size: int = 3,
                 spatial_groups: int | None = None, pointwise_groups: int | None = None,
                 rngs: nnx.Rngs):
        c = int(channels)
        gs = c if spatial_groups is None else int(spatial_groups)
        gp = max(c // 8, 1) if pointwise_groups is None else int(pointwise_groups)
        if c < 1 or gs < 1 or gp < 1 or c % gs or c % gp:
            raise ValueError(f"channels ({c}) must be divisible by spatial_groups ({gs}) and "
                             f"pointwise_groups ({gp})")
        if style_size < 1 or style_size % 2 == 0:
            raise ValueError(f"style_size must be odd (got {style_size})")
        self.channels, self.style_size = c, int(style_size)
        self.p, self.q = c // gs, c // gp
        self.pointwise_groups = gp
        k = self.style_size
        self.spatial_pred = nnx.Conv(style_channels, c * self.p, (k, k), padding="SAME",
                                     rngs=rngs)
        self.pointwise_pred = nnx.Linear(style_channels, c * self.q, rngs=rngs)
        self.bias_pred = nnx.Linear(style_channels, c, rngs=rngs)

    def kernels(self, style: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Predicted ``(spatial [B, k, k, p, C], pointwise [B, G_p, q, q], bias [B, C])``."""
        b, k = style.shape[0], self.style_size
        if style.ndim != 4 or style.shape[1:3] != (k, k):
            raise ValueError(f"style must be [B, {k}, {k}, S] (got {tuple(style.shape)})")
        spatial = self.spatial_pred(style).reshape(b, k, k, self.p, self.channels)
        spatial = spatial * (1.0 / math.sqrt(k * k * self.p))
        pooled = jnp.mean(style, axis=(1, 2))
        pointwise = self.pointwise_pred(pooled).reshape(b, self.pointwise_groups, self.q, self.q)
        pointwise = pointwise * (1.0 / math.sqrt(self.q))
        return spatial, pointwise, self.bias_pred(pooled)

    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        """``[B, H, W, C]`` content features and ``[B, k, k, S]`` style -> ``[B, H, W, C]``."""
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"x must be [B, H, W, {self.channels}] (got {tuple(x.shape)})")
        if style.shape[0] != x.shape[0]:
            raise ValueError(f"style batch {style.shape[0]} != content batch {x.shape[0]}")
        spatial, pointwise, bias = self.kernels(style)
        y = grouped_conv_per_sample(instance_norm(x), spatial)
        y = pointwise_per_sample(y, pointwise)
        return y + bias[:, None, None, :].astype(y.dtype)


class AdaIN(nnx.Module):
    """``IN(x) * gamma + beta`` with per-sample ``gamma, beta`` given by the caller.

    Args:
      channels: ``C``; the module has no parameters of its own.
    """

    def __init__(self, channels: int):
        self.channels = int(channels)

    def __call__(self, x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
        """``x [B, H, W, C]``, ``gamma, beta [B, C]`` -> ``[B, H, W, C]``."""
        if np.shape(gamma) != (x.shape[0], self.channels) or np.shape(beta) != np.shape(gamma):
            raise ValueError(f"gamma and beta must be [B, C] = [{x.shape[0]}, {self.channels}] "
                             f"(got {tuple(np.shape(gamma))}, {tuple(np.shape(beta))})")
        return instance_norm(x) * gamma[:, None, None, :] + beta[:, None, None, :]
