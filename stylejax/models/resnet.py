"""ResNet-18 in Flax NNX for single-channel (X-ray) images.

The torchvision ResNet-18 layout (He et al. 2016) with the input stem taking
``in_channels`` channels (1 for X-ray images): a 7x7/2 convolution, 3x3/2 max
pooling, four stages of two basic blocks (widths ``w, 2w, 4w, 8w``, the last three
stages starting with stride 2) and global average pooling. ``width=64`` is the
real ResNet-18 (11.2 M parameters with a 1000-way head); smaller widths are
only for quick tests.

Details that make it match torchvision / the SimSiam recipe:

* explicit symmetric padding (3 for the 7x7 stem, 1 for 3x3, 0 for 1x1) instead
  of ``SAME``, which pads asymmetrically for stride 2 on even sizes;
* convolutions without bias, initialised ``kaiming_normal(fan_out, relu)``;
* BatchNorm momentum 0.9 (PyTorch's 0.1), epsilon 1e-5;
* ``zero_init_residual``: the scale (gamma) of the last BatchNorm of every
  residual branch starts at 0, so at initialisation each block computes
  ``relu(shortcut(x))``.

Layout is NHWC (XLA's native convolution layout on CPU, GPU and TPU).
The module doubles as a discriminator or classifier with ``num_outputs``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from stylejax import _checks

#: Feature widths of the four stages relative to ``width``.
STAGE_MULTIPLIERS = (1, 2, 4, 8)
#: Basic blocks per stage (ResNet-18).
BLOCKS_PER_STAGE = (2, 2, 2, 2)
#: Total stride of the network (stem 4, stages 8): inputs smaller than this make
#: a 1x1 final feature map at best.
TOTAL_STRIDE = 32

_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(cin, cout, k, stride, *, dtype, rngs):
    pad = k // 2
    return nnx.Conv(cin, cout, (k, k), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=False,
                    kernel_init=_conv_init, dtype=dtype, rngs=rngs)


def _bn(c, *, zero_scale=False, dtype, rngs):
    return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, dtype=dtype,
                         scale_init=nnx.initializers.zeros if zero_scale else nnx.initializers.ones,
                         rngs=rngs)


def _pool_taps(xp, out_h, out_w):
    """The 9 strided views ``xp[:, di::2, dj::2]`` of the padded input, each ``[N, oh, ow, C]``."""
    return [jax.lax.slice(xp, (0, di, dj, 0),
                          (xp.shape[0], di + 2 * out_h - 1, dj + 2 * out_w - 1, xp.shape[3]),
                          (1, 2, 2, 1))
            for di in range(3) for dj in range(3)]


@jax.custom_vjp
def max_pool_3x3_s2(x):
    """3x3 max pooling, stride 2, padding 1 (torchvision's stem pooling), NHWC.

    The gradient goes to the first maximum of each window in row-major order
    (XLA's ``select_and_scatter`` convention), but is computed with 9 strided
    slices and interior-padded adds that XLA fuses, instead of
    ``select_and_scatter``, which is slow on the CPU backend.
    """
    return _max_pool_fwd(x)[0]


def _max_pool_fwd(x):
    n, h, w, c = x.shape
    out_h, out_w = (h + 1) // 2, (w + 1) // 2
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    out = functools.reduce(jnp.maximum, _pool_taps(xp, out_h, out_w))
    return out, (x, out)


def _max_pool_bwd(res, g):
    x, out = res
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    taken = jnp.zeros(out.shape, bool)
    grad = jnp.zeros(xp.shape, g.dtype)
    for k, tap in enumerate(_pool_taps(xp, out_h, out_w)):
        di, dj = divmod(k, 3)
        hit = (tap == out) & ~taken
        taken = taken | hit
        # Scatter back to rows di, di+2, ... by interior padding (no scatter op).
        contrib = jnp.where(hit, g, jnp.zeros_like(g))
        grad = grad + jax.lax.pad(contrib, jnp.zeros((), g.dtype),
                                  ((0, 0, 0), (di, xp.shape[1] - di - 2 * out_h + 1, 1),
                                   (dj, xp.shape[2] - dj - 2 * out_w + 1, 1), (0, 0, 0)))
    return (grad[:, 1:h + 1, 1:w + 1, :],)


max_pool_3x3_s2.defvjp(_max_pool_fwd, _max_pool_bwd)


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions with a residual connection.

    Args:
      cin, cout: input and output channels.
      stride: stride of the first convolution (and of the projection shortcut).
      zero_init_residual: start the last BatchNorm's scale at 0.
      dtype: computation dtype (parameters stay float32).
      rngs: NNX random streams.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, *, zero_init_residual: bool = True,
                 dtype=None, rngs: nnx.Rngs):
        self.conv1 = _conv(cin, cout, 3, stride, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(cout, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(cout, cout, 3, 1, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(cout, zero_scale=zero_init_residual, dtype=dtype, rngs=rngs)
        if stride != 1 or cin != cout:
            self.down_conv = _conv(cin, cout, 1, stride, dtype=dtype, rngs=rngs)
            self.down_bn = _bn(cout, dtype=dtype, rngs=rngs)
        else:
            self.down_conv = None
            self.down_bn = None

    def __call__(self, x):
        """``[N, H, W, cin] -> [N, H/stride, W/stride, cout]``."""
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.down_conv is None else self.down_bn(self.down_conv(x))
        return nnx.relu(y + shortcut)


class ResNet18(nnx.Module):
    """ResNet-18 backbone, optionally with a linear head.

    Args:
      num_outputs: ``None`` returns the pooled features ``[N, 8 * width]``;
        an int adds a linear layer and returns ``[N, num_outputs]`` logits
        (e.g. 1 for a GAN discriminator).
      in_channels: input channels (1 for grayscale X-ray images).
      width: channels of the first stage (64 = ResNet-18).
      zero_init_residual: zero-initialise the last BatchNorm scale of each block.
      dtype: computation dtype, e.g. ``jnp.bfloat16`` (parameters stay float32).
      rngs: NNX random streams (``params``).
    """

    def __init__(self, num_outputs: int | None = None, in_channels: int = 1, *, width: int = 64,
                 zero_init_residual: bool = True, dtype=None, rngs: nnx.Rngs):
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1 (got {in_channels}, {width})")
        if num_outputs is not None and num_outputs < 1:
            raise ValueError(f"num_outputs must be None or >= 1 (got {num_outputs})")
        self.in_channels = in_channels
        self.width = width
        self.num_features = width * STAGE_MULTIPLIERS[-1]
        self.dtype = dtype
        self.stem_conv = _conv(in_channels, width, 7, 2, dtype=dtype, rngs=rngs)
        self.stem_bn = _bn(width, dtype=dtype, rngs=rngs)
        blocks = []
        cin = width
        for stage, (mult, count) in enumerate(zip(STAGE_MULTIPLIERS, BLOCKS_PER_STAGE)):
            cout = width * mult
            for i in range(count):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride, zero_init_residual=zero_init_residual,
                                         dtype=dtype, rngs=rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = (None if num_outputs is None else
                     nnx.Linear(self.num_features, num_outputs, dtype=dtype, rngs=rngs))

    def features(self, x):
        """Pooled features.

        Args:
          x: ``[N, H, W, C]`` (or ``[N, H, W]`` when ``in_channels == 1``), H, W >= 32.
        Returns:
          ``[N, 8 * width]`` float32.
        """
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        _checks.check_rank(x, "x", min_rank=4, max_rank=4)
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"x has {x.shape[-1]} channels, the network expects {self.in_channels}")
        if min(x.shape[1], x.shape[2]) < TOTAL_STRIDE:
            raise ValueError(f"x is too small: {x.shape[1]}x{x.shape[2]} pixels, "
                             f"need at least {TOTAL_STRIDE}x{TOTAL_STRIDE}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        x = nnx.relu(self.stem_bn(self.stem_conv(x)))
        x = max_pool_3x3_s2(x)
        for block in self.blocks:
            x = block(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

    def __call__(self, x):
        """Features ``[N, 8 * width]`` or head outputs ``[N, num_outputs]``."""
        f = self.features(x)
        return f if self.head is None else self.head(f)
