"""VGG16 / VGG19 feature extractors (Flax NNX) with named taps.

An *extractor* in stylejax is any callable ``extractor(images, taps=(...)) -> {tap:
[N, h, w, C]}``; the style-transfer methods and losses only rely on that contract (plus
the optional attributes ``plan``, ``style_taps`` and ``content_taps``). :class:`VGG` is the
standard one::

    from stylejax.models.vgg import vgg19
    net = vgg19("vgg19.safetensors")            # or "imagenet", or "random" (warns)
    feats = net(images, taps=("relu1_1", "relu5_2"))   # images [N, H, W] in [0, 1]

Tap names follow the torchvision layer order: ``conv{b}_{l}`` (convolution output),
``relu{b}_{l}`` (after the ReLU) and ``pool{b}``. The thesis' Keras names
``block{b}_conv{l}`` include the ReLU, i.e. they are ``relu{b}_{l}`` here.

Inputs in [0, 1]: grayscale ``[N, H, W]`` (or ``[N, H, W, 1]``) is repeated to three
channels, then the ImageNet mean/std normalisation of torchvision is applied. Max-pooling
floors odd sizes like torchvision. ``remat=True`` wraps every block in
``jax.checkpoint`` so the backward pass keeps only block outputs (large images).
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax._checks import is_concrete
from stylejax.models import weights as weight_io

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Thesis section 4.2: style block1..3,5_conv1, content block5_conv2 (Keras conv = conv+ReLU).
STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu5_1")
CONTENT_TAPS = ("relu5_2",)


def preprocess(images) -> jax.Array:
    """Grayscale -> RGB and ImageNet normalisation.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, 1]`` grayscale, or ``[N, H, W, 3]`` RGB, in [0, 1].
    Returns:
      ``[N, H, W, 3]`` float32, ``(x - mean) / std`` per channel.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError("images must be [N, H, W] grayscale or [N, H, W, 3] RGB "
                         f"(got shape {tuple(np.shape(images))})")
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, x.shape[:-1] + (3,))
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (x - mean) / std


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """'SAME' 3x3 convolution, NHWC activations and HWIO kernel (zero padding, stride 1)."""
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


@jax.custom_vjp
def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, floor on odd sizes (as ``torch.nn.MaxPool2d(2, 2)``).

    The gradient goes to every position equal to its window's maximum. Exact ties only
    occur where post-ReLU maps are 0, and there the ReLU blocks the gradient anyway.
    Both JAX's default routes were slower on XLA's CPU backend: ``reduce_window``
    differentiates into ``select_and_scatter``, and ``max`` over a reshape divides the
    gradient among ties with an extra counting reduction.
    """
    return _pool_windows(x).max(axis=(2, 4))


def _pool_windows(x):
    n, h, w, c = x.shape
    x = x[:, : 2 * (h // 2), : 2 * (w // 2)]
    return x.reshape(n, h // 2, 2, w // 2, 2, c)


def _max_pool2_fwd(x):
    y = max_pool2(x)
    return y, (x, y)


def _max_pool2_bwd(res, g):
    x, y = res
    n, h, w, c = x.shape
    windows = _pool_windows(x)
    hit = windows == y[:, :, None, :, None, :]
    dx = jnp.where(hit, g[:, :, None, :, None, :], 0.0).reshape(n, 2 * (h // 2), 2 * (w // 2), c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)


class Conv3x3(nnx.Module):
    """Parameters of one 3x3 convolution: ``kernel [3, 3, Cin, Cout]`` (HWIO), ``bias [Cout]``."""

    def __init__(self, kernel, bias):
        self.kernel = nnx.Param(jnp.asarray(kernel, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))

    def __call__(self, x):
        return conv3x3(x, self.kernel[...], self.bias[...])


def he_normal_tensors(arch: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random ``{conv: (kernel, bias)}``: He-normal kernels (std sqrt(2 / fan_in)), zero bias.

    Drawn with numpy: a per-shape JAX initialiser would compile one XLA program per layer
    shape, which dominated start-up time on CPU.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, (kshape, bshape) in weight_io.conv_shapes(arch).items():
        fan_in = kshape[0] * kshape[1] * kshape[2]
        kernel = rng.standard_normal(kshape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        out[name] = (kernel, np.zeros(bshape, np.float32))
    return out


class VGG(nnx.Module):
    """VGG16/VGG19 convolutional trunk returning named feature maps.

    Args:
      arch: ``"vgg16"`` or ``"vgg19"``.
      tensors: ``{conv_name: (kernel_hwio, bias)}`` (see ``stylejax.models.weights``);
        None draws He-normal weights from ``seed`` (:func:`he_normal_tensors`).
      seed: seed for the random weights.
      remat: default for ``jax.checkpoint`` per block (overridable per call).
    Attributes:
      plan: ``((kind, name), ...)`` layer sequence, kind in ``conv``/``relu``/``pool``; the
        masked style loss propagates masks along it.
      taps: every valid tap name, in network order.
      style_taps / content_taps: the thesis' default layers.
    """

    style_taps = STYLE_TAPS
    content_taps = CONTENT_TAPS

    def __init__(self, arch: str = "vgg19", *, tensors: dict | None = None, seed: int = 0,
                 remat: bool = False):
        self.arch = arch
        self.remat = bool(remat)
        self.plan = tuple((kind, name) for kind, name, _ in weight_io.layer_plan(arch))
        tensors = he_normal_tensors(arch, seed) if tensors is None else tensors
        _check_tensors(arch, tensors)
        for name in weight_io.conv_shapes(arch):
            setattr(self, name, Conv3x3(*tensors[name]))

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.plan)

    def _check_taps(self, taps) -> tuple[str, ...]:
        if isinstance(taps, str):
            taps = (taps,)
        taps = tuple(taps)
        if not taps:
            raise ValueError("taps is empty: name at least one layer, e.g. 'relu1_1'")
        bad = [t for t in taps if t not in self.taps]
        if bad:
            raise ValueError(f"unknown {self.arch} tap(s) {bad}; valid taps: "
                             f"{', '.join(self.taps)}")
        return taps

    def __call__(self, images, taps=STYLE_TAPS + CONTENT_TAPS, *, remat: bool | None = None
                 ) -> dict[str, jax.Array]:
        """Feature maps at ``taps``.

        Args:
          images: ``[N, H, W]`` grayscale or ``[N, H, W, 3]`` RGB in [0, 1].
          taps: tap names (see :attr:`taps`); the network only runs up to the deepest one.
          remat: ``jax.checkpoint`` each block (default: the constructor's ``remat``).
        Returns:
          ``{tap: [N, h, w, C]}`` float32.
        """
        taps = self._check_taps(taps)
        if is_concrete(images) and not np.all(np.isfinite(np.asarray(images))):
            raise ValueError("images contain non-finite values (NaN or inf)")
        x = preprocess(images)
        remat = self.remat if remat is None else bool(remat)
        last = max(self.taps.index(t) for t in taps)
        blocks, current = [], []
        for kind, name in self.plan[: last + 1]:
            current.append((kind, name))
            if kind == "pool":
                blocks.append(tuple(current))
                current = []
        if current:
            blocks.append(tuple(current))
        wanted = frozenset(taps)
        out = {}
        for block in blocks:
            params = {name: (getattr(self, name).kernel[...], getattr(self, name).bias[...])
                      for kind, name in block if kind == "conv"}
            if x.shape[1] == 0 or x.shape[2] == 0:
                raise ValueError(f"images of size {tuple(np.shape(images))[1:3]} are too small "
                                 f"for tap {block[0][1]} and deeper")
            fn = _make_block(block, wanted)
            if remat:
                fn = jax.checkpoint(fn)
            x, found = fn(x, params)
            out.update(found)
        return {t: out[t] for t in taps}


def _check_tensors(arch: str, tensors: dict) -> None:
    expected = weight_io.conv_shapes(arch)
    unknown = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    if unknown or missing:
        raise ValueError(f"{arch} weights: missing {missing or 'none'}, "
                         f"unexpected {unknown or 'none'}")
    for name, (kernel, bias) in tensors.items():
        kshape, bshape = expected[name]
        if tuple(np.shape(kernel)) != kshape or tuple(np.shape(bias)) != bshape:
            raise ValueError(f"{arch} {name}: kernel {tuple(np.shape(kernel))} / bias "
                             f"{tuple(np.shape(bias))}, expected {kshape} / {bshape}")


def _make_block(block, wanted):
    """A pure function ``(x, params) -> (x, {tap: x})`` running one block's layers."""

    def run(x, params):
        found = {}
        for kind, name in block:
            if kind == "conv":
                x = conv3x3(x, *params[name])
            elif kind == "relu":
                x = jax.nn.relu(x)
            else:
                x = max_pool2(x)
            if name in wanted:
                found[name] = x
        return x, found

    return run


def _build(arch: str, weights, *, remat: bool, seed: int) -> VGG:
    if weights is None:
        raise ValueError(f"{arch}: pass weights= a .safetensors/.h5 path, 'imagenet' "
                         "(download, cached), or 'random' (explicit, untrained)")
    if isinstance(weights, str) and weights == "random":
        warnings.warn(f"{arch} with random weights: features are untrained (fine for tests "
                      "and texture statistics, not a substitute for ImageNet weights)",
                      UserWarning, stacklevel=3)
        return VGG(arch, seed=seed, remat=remat)
    if isinstance(weights, str) and weights == "imagenet":
        tensors = weight_io.load_file(weight_io.fetch_imagenet(arch), arch)
    elif isinstance(weights, dict):
        tensors = weights
    elif isinstance(weights, (str, os.PathLike)):
        tensors = weight_io.load_file(weights, arch)
    else:
        raise ValueError(f"{arch}: weights must be a path, 'imagenet', 'random' or a dict "
                         f"of tensors (got {type(weights).__name__})")
    return VGG(arch, tensors=tensors, remat=remat)


def vgg19(weights, *, remat: bool = False, seed: int = 0) -> VGG:
    """VGG19 extractor.

    Args:
      weights: path to a ``.safetensors`` (torchvision/timm keys) or flaxmodels ``.h5``
        file; ``"imagenet"`` (download once, cached, sha256-checked); ``"random"``
        (He-normal, emits a UserWarning); or ``{conv_name: (kernel_hwio, bias)}``.
      remat: checkpoint each block by default.
      seed: seed of the He-normal weights for ``"random"``.
    Returns:
      :class:`VGG`.
    """
    return _build("vgg19", weights, remat=remat, seed=seed)


def vgg16(weights, *, remat: bool = False, seed: int = 0) -> VGG:
    """VGG16 extractor; arguments as :func:`vgg19`."""
    return _build("vgg16", weights, remat=remat, seed=seed)
