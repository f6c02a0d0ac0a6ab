"""MUNIT-style generators with AdaConv (or AdaIN) decoders and a bidirectional ConvLSTM over
time, for DCE-MRI series (Huang et al. ECCV 2018, adapted as in the DCE-MRI paper).

Per domain (contrast-enhanced "ce" and non-enhanced "non_ce") a :class:`Generator` holds

* a **content encoder** (shared by all time points): 7x7 conv (``dim``), ``n_down`` 4x4
  stride-2 convs doubling the width, ``n_res`` residual blocks; instance norm and ReLU
  everywhere, reflect padding -> content code ``[h, w, C]`` with ``h = H / 2^n_down``,
  ``C = dim 2^n_down``;
* a **bidirectional ConvLSTM** (:mod:`stylejax.models.convlstm`) over the T content codes
  of a series, so that structure visible in some phases informs every frame;
* a **style encoder**: 7x7 conv, ``n_style_down`` 4x4 stride-2 convs (width doubling twice,
  then constant), ReLU, no normalisation (MUNIT), adaptive average pooling to
  ``style_size x style_size`` and a 1x1 conv -> style code ``[k, k, S]`` per frame. AdaConv
  uses a 3x3 descriptor (its spatial kernels follow its layout); MUNIT's AdaIN a 1x1 one;
* a **decoder**: ``n_res`` style blocks ``x + conv3(mod_2(conv3(relu(mod_1(x)))))`` where
  ``mod`` is
  :class:`~stylejax.models.adaconv.AdaConv` (kernels predicted from the style code, applied
  to instance-normalised features, then the ordinary conv) or, for the ablation, AdaIN
  with ``gamma, beta`` from one MLP over the style code (MUNIT); then ``n_down`` times
  nearest 2x upsampling and 5x5 conv halving the width (fused: :func:`upsample_conv`), layer
  norm (over H, W, C, per-channel
  affine) and ReLU; a 7x7 conv to one channel and ``(1 + tanh) / 2`` -> images in (0, 1).

:class:`MUNIT` pairs the CE and non-CE generators; translation takes the content of one
domain and the style of the other (MUNIT's ``x_ab = G_b(E^c_a(x_a), s_b)``).

Series are ``[B, T, H, W]`` (frames of one series in time order); content codes
``[B, T, h, w, C]``; style codes ``[B, T, k, k, S]``. Layout NHWC throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax.models.adaconv import AdaConv, AdaIN, adaptive_avg_pool, instance_norm
from stylejax.models.convlstm import BiConvLSTM

__all__ = ["MODULATIONS", "ContentEncoder", "StyleEncoder", "Decoder", "Generator", "MUNIT",
           "upsample_conv", "conv_one_in", "conv_one_out", "conv_stride2"]

MODULATIONS = ("adaconv", "adain")

def _space_to_depth(x):
    """``[N, 2h, 2w, C]`` -> ``[N, h, w, 4C]``; channel ``(r, s, c)`` is pixel ``(2i + r, 2j + s)``
    (row-major ``r, s, c``)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def _depth_to_space(z, c):
    """Inverse of :func:`_space_to_depth`: ``[N, h, w, 4C]`` -> ``[N, 2h, 2w, C]``."""
    n, h, w, _ = z.shape
    return z.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)


def _tap_matrix(k: int) -> np.ndarray:
    """``M[a, u, r, d] = 1`` where output phase ``a`` at tap ``d`` reads the space-to-depth
    input at offset ``u``, phase ``r``: ``2u + r = a + d``."""
    m = np.zeros((2, k // 2 + 1, 2, k), np.float32)
    for a in range(2):
        for d in range(k):
            m[a, (a + d) // 2, (a + d) % 2, d] = 1.0
    return m


def _one_in_phase(xp, kernel):
    hp, wp = xp.shape[1:3]
    k, o = kernel.shape[0], kernel.shape[-1]
    h, w, u = hp - k + 1, wp - k + 1, k // 2 + 1
    rows, cols = -(-h // 2), -(-w // 2)
    xp = jnp.pad(xp, ((0, 0), (0, 2 * (rows + u - 1) - hp), (0, 2 * (cols + u - 1) - wp), (0, 0)))
    m = jnp.asarray(_tap_matrix(k), kernel.dtype)
    phases = jnp.einsum("aurd,bvse,deo->uvrsabo", m, m, kernel[:, :, 0]).reshape(u, u, 4, 4 * o)
    return _depth_to_space(_conv_valid(_space_to_depth(xp), phases), o)[:, :h, :w]


def _one_out_shifts(xp, kernel):
    n, hp, wp, c = xp.shape
    k = kernel.shape[0]
    h, w = hp - k + 1, wp - k + 1
    z = jnp.einsum("nhwc,tc->nhwt", xp, kernel.reshape(k * k, c))
    taps = [z[:, dy:dy + h, dx:dx + w, dy * k + dx] for dy in range(k) for dx in range(k)]
    return sum(taps)[..., None]


def _xla_conv_vjp(res, g):
    xp, kernel = res
    return jax.vjp(_conv_valid, xp, kernel)[1](g)


@jax.custom_vjp
def conv_one_in(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """'VALID' stride-1 convolution of a one-channel input, ``[N, Hp, Wp, 1]`` with
    ``[K, K, 1, O]`` -> ``[N, Hp - K + 1, Wp - K + 1, O]``.

    The forward pass runs on the space-to-depth input: the four output phases are one
    ``(K//2 + 1) x (K//2 + 1)`` convolution with 4 input and ``4 O`` output channels (taps
    regrouped by a fixed 0/1 matrix), then depth-to-space; XLA's CPU backend runs the direct
    one-channel convolution on a slower generic path. The gradients are XLA's gradients of
    the direct convolution (a custom VJP), which were faster than those of this form.
    """
    return _one_in_phase(xp, kernel)


conv_one_in.defvjp(lambda xp, kernel: (_one_in_phase(xp, kernel), (xp, kernel)), _xla_conv_vjp)


@jax.custom_vjp
def conv_one_out(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """'VALID' stride-1 convolution to one output channel, ``[N, Hp, Wp, C]`` with
    ``[K, K, C, 1]`` -> ``[N, Hp - K + 1, Wp - K + 1, 1]``.

    The forward pass is one ``C -> K*K`` channel contraction followed by the sum of the
    ``K*K`` shifted tap planes (XLA's CPU backend runs the direct convolution to one
    channel about 2x slower); the gradients are XLA's gradients of the direct convolution.
    """
    return _one_out_shifts(xp, kernel)


conv_one_out.defvjp(lambda xp, kernel: (_one_out_shifts(xp, kernel), (xp, kernel)),
                    _xla_conv_vjp)


_EIGEN_KERNEL_GRAD_CHANNELS = 16


def _kernel_grad_valid(x, g, kernel_shape):
    """Kernel gradient of the 'VALID' stride-1 convolution of ``x`` for output gradients ``g``,
    computed in chunks of at most 16 output channels: XLA's CPU backend hands convolutions
    with more than 16 input or output features to single-threaded YNNPACK fusions, whose
    kernel-gradient convolutions (a large window, a small output) ran several times slower
    than the multi-threaded Eigen path the chunks take."""
    step = _EIGEN_KERNEL_GRAD_CHANNELS
    outs = []
    for a in range(0, g.shape[-1], step):
        gs = g[..., a:a + step]
        zeros = jnp.zeros(tuple(kernel_shape[:3]) + (gs.shape[-1],), x.dtype)
        outs.append(jax.vjp(lambda k: _conv_valid(x, k), zeros)[1](gs)[0])
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)


def _stride2_phase_kernel(kernel):
    """``[K, K, C, O]`` -> ``[K/2, K/2, 4C, O]``: tap ``(2u + r, 2v + s)`` at ``(u, v)``,
    channel ``(r, s, c)`` (the space-to-depth order)."""
    k, _, c, o = kernel.shape
    q = k // 2
    return kernel.reshape(q, 2, q, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(q, q, 4 * c, o)


def _conv_stride2(xp, kernel):
    return jax.lax.conv_general_dilated(xp, kernel, (2, 2), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_stride2_bwd(res, g):
    xp, kernel = res
    k, _, c, o = kernel.shape
    q = k // 2
    phases = _stride2_phase_kernel(kernel)
    # Input gradient: the full correlation of the output gradient with the phase kernel,
    # flipped in space and transposed (O -> 4C), then depth-to-space.
    flipped = jnp.swapaxes(phases[::-1, ::-1], 2, 3)
    gp = jnp.pad(g, ((0, 0), (q - 1, q - 1), (q - 1, q - 1), (0, 0)))
    dxp = _depth_to_space(_conv_valid(gp, flipped), c)
    dphases = _kernel_grad_valid(_space_to_depth(xp), g, phases.shape)
    dkernel = dphases.reshape(q, q, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(k, k, c, o)
    return dxp, dkernel


@jax.custom_vjp
def conv_stride2(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """'VALID' stride-2 convolution with an even kernel on an even-sized input,
    ``[N, Hp, Wp, C]`` with ``[K, K, C, O]`` -> ``[N, (Hp - K) / 2 + 1, (Wp - K) / 2 + 1, O]``.

    The forward pass is XLA's. The gradients use the space-to-depth form, in which the
    convolution is a ``K/2 x K/2`` stride-1 convolution of the ``[N, Hp/2, Wp/2, 4C]`` input
    with the tap-regrouped kernel: the input gradient is one stride-1 convolution of the
    padded output gradient followed by depth-to-space (XLA's own input gradient convolves a
    zero-dilated output gradient, several times the work), the kernel gradient that form's
    kernel gradient (:func:`_kernel_grad_valid`) regrouped back.
    """
    _check_stride2(xp, kernel)
    return _conv_stride2(xp, kernel)


def _check_stride2(xp, kernel):
    hp, wp = xp.shape[1:3]
    k = kernel.shape[0]
    if k % 2 or kernel.shape[1] != k or hp % 2 or wp % 2 or min(hp, wp) < k:
        raise ValueError(f"conv_stride2 needs an even square kernel and an even-sized input "
                         f"at least as large (got kernel {tuple(kernel.shape)}, input "
                         f"{hp}x{wp})")


def _conv_stride2_fwd(xp, kernel):
    _check_stride2(xp, kernel)
    return _conv_stride2(xp, kernel), (xp, kernel)


conv_stride2.defvjp(_conv_stride2_fwd, _conv_stride2_bwd)


class _Conv(nnx.Module):
    """Conv with explicit reflect padding ``k // 2`` (or ``pad``), optional stride; one input
    or output channel (stride 1) through :func:`conv_one_in` / :func:`conv_one_out`, even
    kernels with stride 2 through :func:`conv_stride2`."""

    def __init__(self, cin, cout, k, stride=1, pad=None, *, rngs):
        self.pad = k // 2 if pad is None else pad
        self.conv = nnx.Conv(cin, cout, (k, k), strides=(stride, stride), padding="VALID",
                             rngs=rngs)

    def __call__(self, x):
        p = self.pad
        if p:
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        kernel = self.conv.kernel[...]
        if self.conv.strides == (1, 1) and kernel.shape[0] > 1 and kernel.shape[2] == 1:
            return conv_one_in(x, kernel.astype(x.dtype)) + self.conv.bias[...]
        if self.conv.strides == (1, 1) and kernel.shape[0] > 1 and kernel.shape[3] == 1:
            return conv_one_out(x, kernel.astype(x.dtype)) + self.conv.bias[...]
        if (self.conv.strides == (2, 2) and kernel.shape[0] % 2 == 0 and x.shape[1] % 2 == 0
                and x.shape[2] % 2 == 0):
            return conv_stride2(x, kernel.astype(x.dtype)) + self.conv.bias[...]
        return self.conv(x)


def _upsample2(x):
    n, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


def _conv_valid(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _phase_matrix(k: int) -> tuple[np.ndarray, int]:
    """``M[a, r + R, d + P] = 1`` where output phase ``a`` reads input offset ``r = (a + d) // 2``."""
    p = k // 2
    r = max(-((-p) // 2), (1 + p) // 2)
    m = np.zeros((2, 2 * r + 1, k), np.float32)
    for a in range(2):
        for d in range(-p, p + 1):
            m[a, (a + d) // 2 + r, d + p] = 1.0
    return m, r


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest 2x up-sampling, reflect padding ``K // 2`` and a KxK convolution (stride 1).

    Computed without forming the up-sampled image: output pixel ``(2m + a, 2n + b)`` only
    reads input pixels ``m + r, n + s`` with ``r, s`` in a small range, so the four output
    phases ``(a, b)`` are one ``(2R+1) x (2R+1)`` convolution of the low-resolution input
    with ``4 C_out`` outputs (kernel taps summed per phase), then depth-to-space. The
    ``K // 2`` output rows and columns at each border, whose windows reach into the
    reflected padding, are recomputed directly from the up-sampled image of the outer
    ``K // 2`` input rows and columns. Exact; on XLA's
    CPU backend about 10x faster in the forward pass than the direct 5x5 convolution
    (whose narrow outputs run slowly there) and 3x faster forward + backward.

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[K, K, C, O]``, K odd, ``K // 2 < 2 min(H, W) / 3``.
    Returns:
      ``[N, 2H, 2W, O]``.
    """
    h, w, c = x.shape[1:]
    k, o = kernel.shape[0], kernel.shape[-1]
    p = k // 2
    if kernel.shape[:3] != (k, k, c) or k % 2 == 0 or 3 * p > 2 * min(h, w):
        raise ValueError(f"upsample_conv needs an odd square kernel [K, K, {c}, O] with "
                         f"3 (K // 2) <= 2 min(H, W) (got kernel {tuple(kernel.shape)}, "
                         f"input {h}x{w})")
    m, r = _phase_matrix(k)
    size = m.shape[1]
    phases = jnp.einsum("ard,bse,deco->rscabo", m, m, kernel).reshape(size, size, c, 4 * o)
    z = _conv_valid(jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge"), phases)
    y = _depth_to_space(z, o)
    if p == 0:
        return y

    def strip(part, pads):
        # The border windows of the reflect-padded up-sampled image read only the up-sampled
        # image of the outer p input rows (columns) and their reflection.
        return _conv_valid(jnp.pad(_upsample2(part), ((0, 0),) + pads + ((0, 0),),
                                   mode="reflect"), kernel)

    y = y.at[:, :p].set(strip(x[:, :p], ((p, 0), (p, p))))
    y = y.at[:, 2 * h - p:].set(strip(x[:, h - p:], ((0, p), (p, p))))
    y = y.at[:, :, :p].set(strip(x[:, :, :p], ((p, p), (p, 0))))
    return y.at[:, :, 2 * w - p:].set(strip(x[:, :, w - p:], ((p, p), (0, p))))


class _UpConv(nnx.Module):
    """Nearest 2x up-sampling + reflect-padded KxK conv (:func:`upsample_conv`)."""

    def __init__(self, cin, cout, k, *, rngs):
        self.conv = nnx.Conv(cin, cout, (k, k), padding="VALID", rngs=rngs)

    def __call__(self, x):
        return upsample_conv(x, self.conv.kernel[...].astype(x.dtype)) + self.conv.bias[...]


class LayerNorm2d(nnx.Module):
    """Per-sample normalisation over ``(H, W, C)`` with a per-channel affine (MUNIT's LN)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x):
        mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2, 3), keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class _ResBlock(nnx.Module):
    def __init__(self, c, *, rngs):
        self.conv1 = _Conv(c, c, 3, rngs=rngs)
        self.conv2 = _Conv(c, c, 3, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(instance_norm(self.conv1(x)))
        return x + instance_norm(self.conv2(h))


class ContentEncoder(nnx.Module):
    """Image ``[N, H, W, 1]`` -> content code ``[N, H / 2^n_down, W / 2^n_down, dim 2^n_down]``."""

    def __init__(self, dim: int = 64, n_down: int = 2, n_res: int = 4, *, rngs: nnx.Rngs):
        self.stem = _Conv(1, dim, 7, rngs=rngs)
        self.down = nnx.List([_Conv(dim * 2 ** i, dim * 2 ** (i + 1), 4, 2, 1, rngs=rngs)
                              for i in range(n_down)])
        self.res = nnx.List([_ResBlock(dim * 2 ** n_down, rngs=rngs) for _ in range(n_res)])
        self.channels = dim * 2 ** n_down

    def __call__(self, x):
        x = jax.nn.relu(instance_norm(self.stem(x)))
        for conv in self.down:
            x = jax.nn.relu(instance_norm(conv(x)))
        for block in self.res:
            x = block(x)
        return x


class StyleEncoder(nnx.Module):
    """Image ``[N, H, W, 1]`` -> style code ``[N, size, size, style_dim]``."""

    def __init__(self, dim: int = 64, n_down: int = 4, style_dim: int = 8, size: int = 3, *,
                 rngs: nnx.Rngs):
        widths = [dim] + [dim * 2 ** min(i + 1, 2) for i in range(n_down)]
        self.stem = _Conv(1, dim, 7, rngs=rngs)
        self.down = nnx.List([_Conv(a, b, 4, 2, 1, rngs=rngs)
                              for a, b in zip(widths[:-1], widths[1:])])
        self.out = nnx.Conv(widths[-1], style_dim, (1, 1), rngs=rngs)
        self.size, self.style_dim = int(size), int(style_dim)

    def __call__(self, x):
        x = jax.nn.relu(self.stem(x))
        for conv in self.down:
            x = jax.nn.relu(conv(x))
        return self.out(adaptive_avg_pool(x, self.size))


class _StyleBlock(nnx.Module):
    """``x + conv3(mod_2(conv3(relu(mod_1(x)))))``; ``mod`` is AdaConv or AdaIN."""

    def __init__(self, c, style_dim, style_size, modulation, spatial_groups, pointwise_groups,
                 *, rngs):
        self.modulation = modulation
        if modulation == "adaconv":
            kw = dict(style_size=style_size, spatial_groups=spatial_groups,
                      pointwise_groups=pointwise_groups, rngs=rngs)
            self.mod1 = AdaConv(c, style_dim, **kw)
            self.mod2 = AdaConv(c, style_dim, **kw)
        else:
            self.mod1, self.mod2 = AdaIN(c), AdaIN(c)
        self.conv1 = _Conv(c, c, 3, rngs=rngs)
        self.conv2 = _Conv(c, c, 3, rngs=rngs)

    def __call__(self, x, style, adain_params=None):
        if self.modulation == "adaconv":
            h = self.conv1(jax.nn.relu(self.mod1(x, style)))
            h = self.conv2(self.mod2(h, style))
        else:
            g1, b1, g2, b2 = adain_params
            h = self.conv1(jax.nn.relu(self.mod1(x, g1, b1)))
            h = self.conv2(self.mod2(h, g2, b2))
        return x + h


class Decoder(nnx.Module):
    """Content code ``[N, h, w, C]`` + style code ``[N, k, k, S]`` -> image ``[N, H, W]``."""

    def __init__(self, channels: int, n_up: int = 2, n_res: int = 4, style_dim: int = 8,
                 style_size: int = 3, modulation: str = "adaconv", mlp_dim: int = 256,
                 spatial_groups: int | None = None, pointwise_groups: int | None = None, *,
                 rngs: nnx.Rngs):
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS} (got {modulation!r})")
        if channels % 2 ** n_up:
            raise ValueError(f"channels ({channels}) must be divisible by 2^n_up ({2 ** n_up})")
        self.modulation, self.channels, self.n_res = modulation, channels, n_res
        self.blocks = nnx.List([_StyleBlock(channels, style_dim, style_size, modulation,
                                            spatial_groups, pointwise_groups, rngs=rngs)
                                for _ in range(n_res)])
        if modulation == "adain":
            n_params = 4 * n_res * channels
            flat = style_dim * style_size * style_size
            self.mlp = nnx.List([nnx.Linear(flat, mlp_dim, rngs=rngs),
                                 nnx.Linear(mlp_dim, mlp_dim, rngs=rngs),
                                 nnx.Linear(mlp_dim, n_params, rngs=rngs)])
        self.up = nnx.List([_UpConv(channels // 2 ** i, channels // 2 ** (i + 1), 5, rngs=rngs)
                            for i in range(n_up)])
        self.norms = nnx.List([LayerNorm2d(channels // 2 ** (i + 1)) for i in range(n_up)])
        self.out = _Conv(channels // 2 ** n_up, 1, 7, rngs=rngs)

    def adain_params(self, style: jax.Array) -> jax.Array:
        """AdaIN ``[N, n_res, 4, C]`` (gamma_1, beta_1, gamma_2, beta_2 per block) from the MLP."""
        h = style.reshape(style.shape[0], -1)
        for i, layer in enumerate(self.mlp):
            h = layer(h)
            if i < len(self.mlp) - 1:
                h = jax.nn.relu(h)
        return h.reshape(style.shape[0], self.n_res, 4, self.channels)

    def __call__(self, content: jax.Array, style: jax.Array) -> jax.Array:
        x = content
        params = self.adain_params(style) if self.modulation == "adain" else None
        for i, block in enumerate(self.blocks):
            x = block(x, style, None if params is None else tuple(
                params[:, i, j] for j in range(4)))
        for conv, norm in zip(self.up, self.norms):
            x = jax.nn.relu(norm(conv(x)))
        return 0.5 * (jnp.tanh(self.out(x)[..., 0]) + 1.0)


def _in_halves(fn, *xs):
    """``fn(*xs)`` computed on the two halves of the batch axis and concatenated; for
    networks that treat samples independently (every layer here is per sample) the result
    is the same. On the CPU this gives XLA's runtime two independent chains of
    convolutions, which it can run on two cores: it starts a second worker only for
    enough independent work, and runs each convolution it gives to YNNPACK on one
    thread."""
    n = xs[0].shape[0]
    if n < 2:
        return fn(*xs)
    half = (n + 1) // 2
    return jnp.concatenate([fn(*(x[:half] for x in xs)), fn(*(x[half:] for x in xs))], axis=0)


class Generator(nnx.Module):
    """Autoencoder of one domain: content encoder (+ BiConvLSTM over time), style encoder,
    decoder.

    Args:
      dim: width of the first encoder layer (MUNIT 64; small values for CPU).
      n_down: down-sampling steps of the content encoder (= up-sampling steps of the decoder).
      n_res: residual blocks in the content encoder and style blocks in the decoder.
      style_dim: channels ``S`` of the style code.
      n_style_down: down-sampling steps of the style encoder.
      style_size: spatial size ``k`` of the style code (default 3 for AdaConv, 1 for AdaIN).
      modulation: ``"adaconv"`` or ``"adain"`` (the ablation).
      temporal: run the bidirectional ConvLSTM over the content codes (False: the
        "without ConvLSTM" ablation, frames independent).
      lstm_hidden: hidden channels of each ConvLSTM direction (default ``C``).
      mlp_dim: hidden width of the AdaIN MLP.
      spatial_groups, pointwise_groups: AdaConv groups (defaults: depthwise, ``C // 8``).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, *, dim: int = 64, n_down: int = 2, n_res: int = 4, style_dim: int = 8,
                 n_style_down: int = 4, style_size: int | None = None,
                 modulation: str = "adaconv", temporal: bool = True,
                 lstm_hidden: int | None = None, mlp_dim: int = 256,
                 spatial_groups: int | None = None, pointwise_groups: int | None = None,
                 rngs: nnx.Rngs):
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS} (got {modulation!r})")
        for name, v, low in (("dim", dim, 1), ("n_down", n_down, 0), ("n_res", n_res, 0),
                             ("style_dim", style_dim, 1), ("n_style_down", n_style_down, 0)):
            if not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low} (got {v!r})")
        size = (3 if modulation == "adaconv" else 1) if style_size is None else int(style_size)
        self.n_down, self.n_style_down, self.style_size = n_down, n_style_down, size
        self.temporal, self.modulation = bool(temporal), modulation
        self.content_encoder = ContentEncoder(dim, n_down, n_res, rngs=rngs)
        c = self.content_encoder.channels
        self.style_encoder = StyleEncoder(dim, n_style_down, style_dim, size, rngs=rngs)
        self.lstm = BiConvLSTM(c, lstm_hidden, rngs=rngs) if temporal else None
        self.decoder = Decoder(c, n_down, n_res, style_dim, size, modulation, mlp_dim,
                               spatial_groups, pointwise_groups, rngs=rngs)

    # --------------------------------------------------------------------- checks
    def check_series(self, series, name: str = "series") -> jax.Array:
        """Validate ``[B, T, H, W]`` (static checks; values too when concrete)."""
        shape = tuple(np.shape(series))
        if len(shape) != 4:
            raise ValueError(f"{name} must be [B, T, H, W] (got shape {shape})")
        b, t, h, w = shape
        if self.temporal and t < 2:
            raise ValueError(f"{name} has {t} frame(s); the bidirectional ConvLSTM needs >= 2")
        step = 2 ** self.n_down
        if h % step or w % step:
            raise ValueError(f"{name} frames of {h}x{w} must be divisible by 2^n_down = {step}")
        if min(h, w) >> self.n_style_down < self.style_size:
            raise ValueError(f"{name} frames of {h}x{w} are too small for {self.n_style_down} "
                             f"style down-samplings and a {self.style_size}x{self.style_size} "
                             "style code")
        if not isinstance(series, jax.core.Tracer) and not np.all(np.isfinite(series)):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
        return jnp.asarray(series, jnp.float32)

    # --------------------------------------------------------------------- parts
    def encode_content(self, series) -> jax.Array:
        """``[B, T, H, W]`` -> content codes ``[B, T, h, w, C]`` (after the ConvLSTM)."""
        x = self.check_series(series)
        b, t, h, w = x.shape
        c = _in_halves(self.content_encoder, x.reshape(b * t, h, w, 1))
        c = c.reshape((b, t) + c.shape[1:])
        return self.lstm(c) if self.lstm is not None else c

    def encode_style(self, series) -> jax.Array:
        """``[B, T, H, W]`` -> style codes ``[B, T, k, k, S]``, one per frame."""
        x = self.check_series(series)
        b, t, h, w = x.shape
        s = _in_halves(self.style_encoder, x.reshape(b * t, h, w, 1))
        return s.reshape((b, t) + s.shape[1:])

    def encode(self, series) -> tuple[jax.Array, jax.Array]:
        """``(content [B, T, h, w, C], style [B, T, k, k, S])``."""
        return self.encode_content(series), self.encode_style(series)

    def decode(self, content: jax.Array, style: jax.Array) -> jax.Array:
        """Content ``[B, T, h, w, C]`` and style ``[B, T, k, k, S]`` (or ``[B, k, k, S]``,
        the same style for every frame) -> images ``[B, T, H, W]`` in (0, 1)."""
        if content.ndim != 5:
            raise ValueError(f"content must be [B, T, h, w, C] (got {tuple(content.shape)})")
        b, t = content.shape[:2]
        if style.ndim == 4:
            style = jnp.broadcast_to(style[:, None], (b, t) + style.shape[1:])
        if style.ndim != 5 or style.shape[:2] != (b, t):
            raise ValueError(f"style must be [B, T, k, k, S] or [B, k, k, S] matching content "
                             f"[{b}, {t}, ...] (got {tuple(style.shape)})")
        y = _in_halves(self.decoder, content.reshape((b * t,) + content.shape[2:]),
                       style.reshape((b * t,) + style.shape[2:]))
        return y.reshape((b, t) + y.shape[1:])

    def __call__(self, series) -> jax.Array:
        """Within-domain reconstruction ``decode(*encode(series))``, ``[B, T, H, W]``."""
        return self.decode(*self.encode(series))


class MUNIT(nnx.Module):
    """The CE and non-CE generators of the DCE-MRI model.

    Args:
      rngs: ``nnx.Rngs``; every other keyword goes to both :class:`Generator`\\ s.
    Attributes:
      ce, non_ce: the two generators.
    """

    DOMAINS = ("ce", "non_ce")

    def __init__(self, *, rngs: nnx.Rngs, **generator_kwargs):
        self.ce = Generator(rngs=rngs, **generator_kwargs)
        self.non_ce = Generator(rngs=rngs, **generator_kwargs)

    def generator(self, domain: str) -> Generator:
        if domain not in self.DOMAINS:
            raise ValueError(f"domain must be one of {self.DOMAINS} (got {domain!r})")
        return self.ce if domain == "ce" else self.non_ce

    def translate(self, series, *, to: str, style_series=None, style_code=None) -> jax.Array:
        """Translate a series into domain ``to`` with the other domain's content encoder.

        Args:
          series: ``[B, T, H, W]`` of the source domain (the one that is not ``to``).
          to: ``"ce"`` (add contrast enhancement) or ``"non_ce"`` (remove it).
          style_series: ``[B, T, H, W]`` of the target domain whose per-frame styles to use;
          style_code: or the codes directly, ``[B, T, k, k, S]`` or ``[B, k, k, S]`` (e.g.
            drawn from N(0, I) as in MUNIT). Exactly one of the two.
        Returns:
          ``[B, T, H, W]`` in (0, 1).
        """
        target = self.generator(to)
        source = self.non_ce if to == "ce" else self.ce
        if (style_series is None) == (style_code is None):
            raise ValueError("give exactly one of style_series and style_code")
        if style_series is not None:
            if np.shape(style_series)[:2] != np.shape(series)[:2]:
                raise ValueError(f"style_series {tuple(np.shape(style_series))} must have the "
                                 f"batch and frames of series {tuple(np.shape(series))}")
            style_code = target.encode_style(style_series)
        return target.decode(source.encode_content(series), jnp.asarray(style_code))
