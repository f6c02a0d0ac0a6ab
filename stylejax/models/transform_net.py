"""The Johnson et al. image transform network (ultrasound thesis 3.3), Flax NNX, NHWC.

Layers (widths ``w1, w2, w3`` = 32, 64, 128 by default)::

    reflect pad 4, conv 9x9 w1        + instance norm + ReLU
    reflect pad 1, conv 3x3/2 w2      + instance norm + ReLU
    reflect pad 1, conv 3x3/2 w3      + instance norm + ReLU
    5 x residual block: x + IN(conv3x3(ReLU(IN(conv3x3(x)))))     (reflect pad 1 each)
    nearest upsample x2, reflect pad 1, conv 3x3 w2, crop [+ noise] + instance norm + ReLU
    nearest upsample x2, reflect pad 1, conv 3x3 w1, crop [+ noise] + instance norm + ReLU
    reflect pad 4, conv 9x9 1         [+ noise] -> sigmoid

* Grayscale in and out: ``[N, H, W]`` in [0, 1] -> ``[N, H, W]`` in (0, 1); the output
  goes through a **sigmoid** (not Johnson's scaled tanh, which targeted 0..255).
* Any size: each decoder convolution's output is cropped to the size of the encoder map
  it mirrors (upsample, reflect pad, convolve, crop), so odd sizes (e.g. 101x75) come
  back at their own size.
* On the CPU backend the stride-1 convolutions after the first run as one matrix
  product plus a shifted sum (:func:`conv_gemm`), which XLA's CPU backend runs faster
  than its convolution, and the upsample + convolution pairs run at low resolution
  (:func:`upsample_conv_gemm`, 16/36 of the multiply-adds); ``conv_method`` overrides
  this.
* Convolutions followed by instance norm have no bias (the norm removes it); instance
  norm has a learned per-channel scale and shift (epsilon 1e-5, biased variance, as
  ``torch.nn.InstanceNorm2d(affine=True)``).
* **Noise injection** (StyleGAN; thesis: three noise layers in the decoder): after each
  decoder convolution, ``x + s * n`` with ``n`` one standard normal ``[N, H, W, 1]``
  image per layer, broadcast over channels, and ``s`` a learned per-channel scale
  initialised to 0, so an untrained network ignores the noise. Noise is drawn from the
  ``key`` argument of :meth:`TransformNet.__call__`; ``key=None`` is the deterministic
  mode (noise omitted, i.e. its mean).

Also the **average style** targets of the thesis (3.2/3.3): the mean of Gram matrices over
a set of style images, or the Gram of their mean feature map, computed batch by batch
with any extractor ``extractor(images, taps) -> {tap: [N, h, w, C]}``.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax import _checks
from stylejax.losses import style as style_losses

#: The thesis / Johnson widths (w1, w2, w3).
DEFAULT_WIDTHS = (32, 64, 128)
NORM_EPS = 1e-5
#: Smallest height/width the network accepts (the reflect paddings need it).
MIN_SIZE = 8


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Reflect-pad the two spatial axes of ``[N, H, W, C]`` (as ``numpy.pad(mode="reflect")``)."""
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = NORM_EPS
                  ) -> jax.Array:
    """Instance normalisation of ``[N, H, W, C]`` per sample and channel, then ``* scale + bias``.

    Uses the biased variance over H, W (as ``torch.nn.InstanceNorm2d``).
    """
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    return centred * (jax.lax.rsqrt(var + eps) * scale) + bias


def upsample2(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour x2 upsampling of ``[N, h, w, C]``, cropped to ``size`` (H, W)."""
    n, h, w, c = x.shape
    y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)
    return y[:, : size[0], : size[1]]


# Nearest x2 upsampling then a 3x3 tap, per output phase and axis: (offset into the
# edge-padded low-resolution map, kernel taps that land there).
_PHASE_TAPS = {0: ((0, (0,)), (1, (1, 2))), 1: ((1, (0, 1)), (2, (2,)))}


def upsample_conv_gemm(x: jax.Array, kernel: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``conv3x3(reflect_pad(upsample2(x), 1))`` cropped to ``size``, at low resolution.

    Nearest upsampling makes each output phase ``(a, b)`` (row/column parity) a 2x2
    convolution of the low-resolution map with summed taps of the 3x3 kernel, and the
    reflect padding of the upsampled map is the edge padding of the low-resolution one.
    The 16 (phase, tap) kernels run as one ``[Cin, 16 Cout]`` matrix product followed by
    shifted sums and a pixel shuffle: 16/36 of the multiply-adds of upsampling first, and
    no upsampled input is materialised.

    Args:
      x: ``[N, h, w, Cin]``; kernel: ``[3, 3, Cin, Cout]``; size: output (H, W) <= (2h, 2w).
    Returns:
      ``[N, H, W, Cout]``.
    """
    n, h, w, cin = x.shape
    cout = kernel.shape[3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    combos, weights = [], []
    for a in (0, 1):
        for b in (0, 1):
            for di, rows in _PHASE_TAPS[a]:
                for dj, cols in _PHASE_TAPS[b]:
                    combos.append((a, b, di, dj))
                    weights.append(sum(kernel[i, j] for i in rows for j in cols))
    z = jnp.dot(xp, jnp.concatenate(weights, axis=1)).reshape(n, h + 2, w + 2, 16, cout)
    phase = {}
    for idx, (a, b, di, dj) in enumerate(combos):
        tap = z[:, di:di + h, dj:dj + w, idx]
        phase[a, b] = tap if (a, b) not in phase else phase[a, b] + tap
    rows = [jnp.stack([phase[a, 0], phase[a, 1]], axis=3) for a in (0, 1)]   # [N, h, w, 2, C]
    y = jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)
    return y[:, : size[0], : size[1]]


def conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """Unpadded ('VALID') convolution of ``[N, H, W, Cin]`` with an HWIO kernel (XLA's conv)."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_gemm(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """The same convolution as :func:`conv`, as one matrix product and a shifted sum.

    ``z = x @ W`` with ``W`` reshaped to ``[Cin, k*k*Cout]`` gives every tap's
    contribution at every input position; the output is ``sum_ij z[i::s, j::s, (i, j)]``
    (one fused elementwise sum), at the cost of a ``k*k*Cout``-channel intermediate.
    On XLA's CPU backend this beats its convolution for the stride-1 layers of this
    network (by two orders of magnitude for the 9x9 ``Cout = 1`` output layer; see
    ``experiments/benchmarks/transform_net_speed.py``); on GPUs/TPUs XLA's convolution
    is the better choice.
    """
    k, _, cin, cout = kernel.shape
    n, hp, wp, _ = x.shape
    ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
    w = kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
    z = jnp.dot(x, w).reshape(n, hp, wp, k * k, cout)
    out = None
    for i in range(k):
        for j in range(k):
            tap = jax.lax.slice(z, (0, i, j, i * k + j, 0),
                                (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1,
                                 i * k + j + 1, cout), (1, stride, stride, 1, 1))[:, :, :, 0]
            out = tap if out is None else out + tap
    return out


def _upsample_conv_xla(x, kernel, size):
    full = upsample2(x, (2 * x.shape[1], 2 * x.shape[2]))
    return conv(reflect_pad(full, 1), kernel)[:, : size[0], : size[1]]


# The GEMM forms differentiate into pads and scatter-adds that XLA's CPU backend runs
# far slower than its own convolution gradients (which go the fast way round: fewer
# input than output channels). So their gradients are the XLA convolution's.

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_gemm_grad_xla(x, kernel, stride):
    return conv_gemm(x, kernel, stride)


def _conv_gemm_fwd(x, kernel, stride):
    return conv_gemm(x, kernel, stride), (x, kernel)


def _conv_gemm_bwd(stride, res, g):
    _, vjp = jax.vjp(lambda a, k: conv(a, k, stride), *res)
    return vjp(g)


_conv_gemm_grad_xla.defvjp(_conv_gemm_fwd, _conv_gemm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _upsample_conv_grad_xla(x, kernel, size):
    return upsample_conv_gemm(x, kernel, size)


def _upsample_conv_fwd(x, kernel, size):
    return upsample_conv_gemm(x, kernel, size), (x, kernel)


def _upsample_conv_bwd(size, res, g):
    _, vjp = jax.vjp(lambda a, k: _upsample_conv_xla(a, k, size), *res)
    return vjp(g)


_upsample_conv_grad_xla.defvjp(_upsample_conv_fwd, _upsample_conv_bwd)


CONV_METHODS = ("auto", "xla", "gemm")


def _use_gemm(method: str, cin: int, stride: int) -> bool:
    if method == "auto":
        return jax.default_backend() == "cpu" and stride == 1 and cin >= 16
    return method == "gemm"


class ConvLayer(nnx.Module):
    """Reflect-padded ``k x k`` convolution (stride 1 or 2), NHWC activations, HWIO kernel.

    Args:
      cin, cout: channels; kernel: k; stride: 1 or 2.
      use_bias: add a learned bias (off where instance norm follows).
      method: ``"xla"`` (:func:`conv`), ``"gemm"`` (:func:`conv_gemm` forward, XLA's
        convolution gradients backward) or ``"auto"``: ``gemm`` on the CPU backend for
        stride 1 and ``cin >= 16``, else ``xla`` (decided when the layer is called, so
        one model serves both). All give the same result up to float rounding.
      rngs: ``nnx.Rngs``; the kernel is LeCun-normal (fan in), the bias zero.
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1,
                 use_bias: bool = False, method: str = "auto", rngs: nnx.Rngs):
        if method not in CONV_METHODS:
            raise ValueError(f"method must be one of {CONV_METHODS} (got {method!r})")
        self.pad = kernel // 2
        self.stride = int(stride)
        self.method = method
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(
            rngs.params(), (kernel, kernel, cin, cout), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if use_bias else None

    @property
    def uses_gemm(self) -> bool:
        return _use_gemm(self.method, self.kernel.shape[2], self.stride)

    def __call__(self, x):
        x = reflect_pad(x, self.pad)
        y = (_conv_gemm_grad_xla if self.uses_gemm else conv)(x, self.kernel[...], self.stride)
        return y if self.bias is None else y + self.bias[...]

    def upsampled(self, x, size: tuple[int, int]) -> jax.Array:
        """This (3x3, stride-1) layer on the nearest x2 upsampling of ``x``, cropped to ``size``.

        Equals ``self(upsample2(x, (2h, 2w)))[:, :H, :W]``; with ``gemm`` it runs at low
        resolution (:func:`upsample_conv_gemm`).
        """
        if self.kernel.shape[0] != 3 or self.stride != 1:
            raise ValueError("upsampled() needs a 3x3 stride-1 layer")
        fn = _upsample_conv_grad_xla if self.uses_gemm else _upsample_conv_xla
        y = fn(x, self.kernel[...], tuple(size))
        return y if self.bias is None else y + self.bias[...]


class InstanceNorm(nnx.Module):
    """:func:`instance_norm` with learned per-channel scale (init 1) and bias (init 0)."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x):
        return instance_norm(x, self.scale[...], self.bias[...])


class NoiseInjection(nnx.Module):
    """StyleGAN noise: ``x + scale * n``, ``n ~ N(0, 1)`` ``[N, H, W, 1]``; scale init 0."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x, key):
        if key is None:
            return x
        noise = jax.random.normal(key, x.shape[:3] + (1,), x.dtype)
        return x + noise * self.scale[...]


class ResidualBlock(nnx.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with reflect-padded 3x3 convolutions."""

    def __init__(self, channels: int, *, method: str = "auto", rngs: nnx.Rngs):
        self.conv1 = ConvLayer(channels, channels, 3, method=method, rngs=rngs)
        self.norm1 = InstanceNorm(channels)
        self.conv2 = ConvLayer(channels, channels, 3, method=method, rngs=rngs)
        self.norm2 = InstanceNorm(channels)

    def __call__(self, x):
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(y))


class TransformNet(nnx.Module):
    """Johnson et al. transform network with optional noise injection (module docstring).

    Args:
      widths: ``(w1, w2, w3)`` channel widths of the three encoder convolutions (the
        decoder mirrors them); the thesis uses (32, 64, 128), smaller ones are for CPU
        tests.
      num_residual: residual blocks at width ``w3`` (5 in the thesis).
      noise: add the three noise-injection layers in the decoder.
      conv_method: ``"auto"``, ``"xla"`` or ``"gemm"`` for every convolution (see
        :class:`ConvLayer`); it changes speed and memory, not the function.
      rngs: ``nnx.Rngs`` for the initialisation.
    """

    def __init__(self, *, widths: Sequence[int] = DEFAULT_WIDTHS, num_residual: int = 5,
                 noise: bool = True, conv_method: str = "auto", rngs: nnx.Rngs):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts (got {widths})")
        if int(num_residual) < 0:
            raise ValueError(f"num_residual must be >= 0 (got {num_residual})")
        if conv_method not in CONV_METHODS:
            raise ValueError(f"conv_method must be one of {CONV_METHODS} (got {conv_method!r})")
        w1, w2, w3 = widths
        self.widths = widths
        self.num_residual = int(num_residual)
        self.noise = bool(noise)
        m = dict(method=conv_method, rngs=rngs)
        self.conv1, self.norm1 = ConvLayer(1, w1, 9, **m), InstanceNorm(w1)
        self.conv2, self.norm2 = ConvLayer(w1, w2, 3, stride=2, **m), InstanceNorm(w2)
        self.conv3, self.norm3 = ConvLayer(w2, w3, 3, stride=2, **m), InstanceNorm(w3)
        self.residual = nnx.List([ResidualBlock(w3, **m) for _ in range(num_residual)])
        self.up1, self.norm4 = ConvLayer(w3, w2, 3, **m), InstanceNorm(w2)
        self.up2, self.norm5 = ConvLayer(w2, w1, 3, **m), InstanceNorm(w1)
        self.out = ConvLayer(w1, 1, 9, use_bias=True, **m)
        if self.noise:
            self.noise1, self.noise2 = NoiseInjection(w2), NoiseInjection(w1)
            self.noise3 = NoiseInjection(1)

    def logits(self, images, *, key: jax.Array | None = None) -> jax.Array:
        """The output before the sigmoid, ``[N, H, W]`` (see :meth:`__call__`)."""
        x = _check_images(images)[..., None]
        keys = (None,) * 3 if key is None or not self.noise else tuple(jax.random.split(key, 3))
        size1 = x.shape[1:3]
        x = jax.nn.relu(self.norm1(self.conv1(x)))
        size2 = ((size1[0] + 1) // 2, (size1[1] + 1) // 2)
        x = jax.nn.relu(self.norm2(self.conv2(x)))
        x = jax.nn.relu(self.norm3(self.conv3(x)))
        for block in self.residual:
            x = block(x)
        x = self.up1.upsampled(x, size2)
        if self.noise:
            x = self.noise1(x, keys[0])
        x = jax.nn.relu(self.norm4(x))
        x = self.up2.upsampled(x, size1)
        if self.noise:
            x = self.noise2(x, keys[1])
        x = jax.nn.relu(self.norm5(x))
        x = self.out(x)
        if self.noise:
            x = self.noise3(x, keys[2])
        return x[..., 0]

    def __call__(self, images, *, key: jax.Array | None = None) -> jax.Array:
        """Transform images.

        Args:
          images: ``[N, H, W]`` grayscale in [0, 1], H and W >= 8 (any parity).
          key: a ``jax.random`` key for the injected noise; ``None`` = deterministic (no
            noise). Ignored by a network built with ``noise=False``.
        Returns:
          ``[N, H, W]`` float32 in (0, 1).
        """
        return jax.nn.sigmoid(self.logits(images, key=key))


def _check_images(images) -> jax.Array:
    _checks.check_rank(images, "images", min_rank=3, max_rank=3)
    shape = tuple(np.shape(images))
    if min(shape[1:]) < MIN_SIZE:
        raise ValueError(f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels "
                         f"(got {shape[1]}x{shape[2]})")
    if shape[0] == 0:
        raise ValueError("images is an empty batch")
    if _checks.is_concrete(images) and not np.all(np.isfinite(np.asarray(images))):
        raise ValueError("images contain non-finite values (NaN or inf)")
    return jnp.asarray(images, jnp.float32)


@nnx.jit
def _apply(model: TransformNet, images, key):
    return model(images, key=key)


@nnx.jit
def _apply_deterministic(model: TransformNet, images):
    return model(images)


def stylize(model: TransformNet, images, *, key: jax.Array | None = None,
            batch: int = 8) -> np.ndarray:
    """Run a transform network (jit-compiled) over images in batches.

    Args:
      model: a :class:`TransformNet`.
      images: ``[N, H, W]`` (or one ``[H, W]``) in [0, 1].
      key: noise key (folded with the batch index); ``None`` = deterministic.
      batch: images per call.
    Returns:
      numpy float32 array shaped like ``images``.
    """
    x = np.asarray(images, np.float32)
    single = x.ndim == 2
    x = x[None] if single else x
    _check_images(x)
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    out = []
    for i, start in enumerate(range(0, len(x), int(batch))):
        chunk = jnp.asarray(x[start:start + int(batch)])
        y = (_apply_deterministic(model, chunk) if key is None
             else _apply(model, chunk, jax.random.fold_in(key, i)))
        out.append(np.asarray(y))
    y = np.concatenate(out)
    return y[0] if single else y


# ----------------------------------------------------------------------------- average style

def _batches(styles, batch: int):
    """Yield ``[n, H, W]`` float32 chunks of a ``[S, H, W]`` stack or a list of images.

    A list of images of different sizes yields one image per chunk.
    """
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ValueError("styles is empty")
        images = [np.asarray(s, np.float32) for s in styles]
        if any(s.ndim != 2 for s in images):
            raise ValueError("a list of styles must hold [H, W] images")
        if len({s.shape for s in images}) > 1:
            for s in images:
                yield _check_images(s[None])
            return
        stack = np.stack(images)
    else:
        stack = np.asarray(styles, np.float32)
    _check_images(stack)
    for start in range(0, len(stack), int(batch)):
        yield stack[start:start + int(batch)]


def average_style_features(extractor: Callable, styles, taps: Sequence[str], *,
                           batch: int = 4) -> dict[str, jax.Array]:
    """Mean feature map over style images, per tap (the thesis' average style, feature space).

    Args:
      extractor: ``extractor(images, taps) -> {tap: [N, h, w, C]}``.
      styles: ``[S, H, W]`` in [0, 1] (one size: feature maps are averaged position-wise).
      taps: layer names.
      batch: images per extractor call.
    Returns:
      ``{tap: [h, w, C]}``.
    """
    taps = _check_taps(taps)
    if isinstance(styles, (list, tuple)) and len({np.shape(s)[-2:] for s in styles}) > 1:
        raise ValueError("average style in feature space needs style images of one size")
    total, count = None, 0
    for chunk in _batches(styles, batch):
        feats = extractor(jnp.asarray(chunk), taps)
        sums = {t: jnp.sum(feats[t], axis=0) for t in taps}
        total = sums if total is None else {t: total[t] + sums[t] for t in taps}
        count += len(chunk)
    return {t: total[t] / count for t in taps}


def average_style_target(extractor: Callable, styles, taps: Sequence[str], *,
                         mode: str = "features", batch: int = 4) -> dict[str, jax.Array]:
    """Average-style Gram targets over a set of style images (thesis 3.2, 3.3).

    Args:
      extractor: ``extractor(images, taps) -> {tap: [N, h, w, C]}``.
      styles: ``[S, H, W]`` in [0, 1], or a list of ``[H_i, W_i]`` images (``"gram"`` mode).
      taps: layer names.
      mode: ``"features"`` - Gram of the mean feature map (what the thesis trains the
        network with); ``"gram"`` - mean of the per-image Gram matrices.
      batch: images per extractor call.
    Returns:
      ``{tap: [C, C]}`` (``stylejax.losses.style.gram`` normalisation, ``F^T F / (h w)``).
    """
    if mode == "features":
        mean = average_style_features(extractor, styles, taps, batch=batch)
        return {t: style_losses.gram(m) for t, m in mean.items()}
    if mode != "gram":
        raise ValueError(f"mode must be 'features' or 'gram' (got {mode!r})")
    taps = _check_taps(taps)
    total, count = None, 0
    for chunk in _batches(styles, batch):
        feats = extractor(jnp.asarray(chunk), taps)
        sums = {t: jnp.sum(style_losses.gram(feats[t]), axis=0) for t in taps}
        total = sums if total is None else {t: total[t] + sums[t] for t in taps}
        count += len(chunk)
    return {t: total[t] / count for t in taps}


def style_target(extractor: Callable, style, taps: Sequence[str]) -> dict[str, jax.Array]:
    """Single-image style target ``{tap: [C, C]}`` (the Gram of one ``[H, W]`` style image)."""
    s = np.asarray(style, np.float32)
    if s.ndim != 2:
        raise ValueError(f"style must be one [H, W] image (got shape {s.shape})")
    return average_style_target(extractor, s[None], taps, mode="gram")


def _check_taps(taps) -> tuple[str, ...]:
    taps = (taps,) if isinstance(taps, str) else tuple(taps)
    if not taps:
        raise ValueError("taps is empty: name at least one layer")
    return taps


def parameter_count(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(np.size(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


__all__ = ["TransformNet", "ResidualBlock", "ConvLayer", "InstanceNorm", "NoiseInjection",
           "reflect_pad", "instance_norm", "upsample2", "conv", "conv_gemm", "upsample_conv_gemm",
           "CONV_METHODS", "stylize", "average_style_features",
           "average_style_target", "style_target", "parameter_count", "DEFAULT_WIDTHS",
           "MIN_SIZE"]
