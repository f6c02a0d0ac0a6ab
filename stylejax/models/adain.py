"""AdaIN style transfer (Huang & Belongie 2017; CT paper Eq. 1-3): layer, decoder, network.

* :func:`adain` ``AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)``, per sample and
  channel over the spatial positions, ``sigma = sqrt(var + eps)`` (eps inside the root).
* :class:`Decoder` mirrors an encoder given as stages ``((channels, convs), ...)``
  (shallow to deep): reflect-padded 3x3 convolutions with ReLU, nearest-neighbour 2x
  upsampling between stages, no activation after the last convolution. For VGG19 up to
  ``relu4_1`` (:data:`VGG19_RELU4_1`) this is the decoder of the AdaIN paper's code:
  512->256, up, 256->256 x3, 256->128, up, 128->128, 128->64, up, 64->64, 64->out.
* :class:`AdaINNet`: frozen encoder -> ``adain`` -> ``alpha`` interpolation with the
  content features -> decoder. The encoder is any *extractor* ``extractor(images, taps)
  -> {tap: [N, h, w, C]}`` (``stylejax.models.vgg.VGG`` or another network's taps);
  only :attr:`AdaINNet.decoder` is meant to be trained. For inference on whole images
  ``net(content, style, margin=net.border_margin())`` reflect-pads the inputs so that the
  encoder's zero padding cannot draw lines along the image border.
* Losses of the three trained variants: :func:`content_mse` (Huang's content loss on
  the AdaIN target), :func:`style_mean_std_loss` (MSE of channel means and stds summed
  over the style taps) and, for the contextual variants,
  :func:`stylejax.losses.contextual.contextual_loss`; :func:`variant_loss` combines them,
  optionally with :func:`lowpass_mse` (a low-frequency pixel term, not in the papers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax._checks import is_concrete
from stylejax.losses.contextual import contextual_loss
from stylejax.losses.style import mean_std, mean_std_loss

__all__ = ["adain", "mean_std", "Decoder", "AdaINNet", "content_mse", "style_mean_std_loss",
           "variant_loss", "lowpass_mse", "VARIANTS", "VGG19_RELU4_1", "VGG_STYLE_TAPS", "VGG_CONTENT_TAP",
           "stages_from_plan", "reflect_conv3x3", "upsample_nearest"]

# VGG19 up to relu4_1 as (channels, convolutions) per block, and the AdaIN paper's taps.
VGG19_RELU4_1 = ((64, 2), (128, 2), (256, 4), (512, 1))
VGG_STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
VGG_CONTENT_TAP = "relu4_1"
VARIANTS = ("adain", "contextual", "context-aware")


def _check_features(f, name):
    if np.ndim(f) != 4:
        raise ValueError(f"{name} must be feature maps [B, H, W, C] (got shape "
                         f"{tuple(np.shape(f))})")
    if 0 in np.shape(f):
        raise ValueError(f"{name} is empty (shape {tuple(np.shape(f))})")
    if is_concrete(f) and not np.all(np.isfinite(np.asarray(f))):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def adain(content_features, style_features, eps: float = 1e-5, *, content_stats=None,
          style_stats=None) -> jax.Array:
    """Adaptive instance normalisation.

    Args:
      content_features: ``[B, H, W, C]``.
      style_features: ``[B, H', W', C]`` or ``[1, H', W', C]`` (one style for the whole
        batch); the spatial size may differ from the content's.
      eps: added to the variances inside the square root.
      content_stats, style_stats: ``(mean, std)`` ``[B or 1, C]`` to use instead of the
        statistics of all positions (e.g. of the unpadded part of a padded image).
    Returns:
      ``[B, H, W, C]`` float32 with the style's per-channel mean and std.
    """
    _check_features(content_features, "content_features")
    _check_features(style_features, "style_features")
    b, c = np.shape(content_features)[0], np.shape(content_features)[-1]
    if np.shape(style_features)[-1] != c:
        raise ValueError(f"AdaIN: channel counts differ (content {c}, style "
                         f"{np.shape(style_features)[-1]})")
    if np.shape(style_features)[0] not in (1, b):
        raise ValueError(f"AdaIN: style batch {np.shape(style_features)[0]} must be 1 or the "
                         f"content batch {b}")
    x = jnp.asarray(content_features, jnp.float32)
    mu_c, sd_c = mean_std(x, eps=eps) if content_stats is None else content_stats
    mu_s, sd_s = mean_std(style_features, eps=eps) if style_stats is None else style_stats
    scale = (sd_s / sd_c)[:, None, None, :]
    return (x - mu_c[:, None, None, :]) * scale + mu_s[:, None, None, :]


def _check_alpha(alpha):
    if not (isinstance(alpha, (int, float, jax.Array, np.ndarray)) and
            (not is_concrete(alpha) or 0.0 <= float(alpha) <= 1.0)):
        raise ValueError(f"alpha must be in [0, 1] (got {alpha!r})")


_DN = ("NHWC", "HWIO", "NHWC")


def reflect_conv3x3(x, kernel, bias) -> jax.Array:
    """3x3 convolution with reflect padding (``torch.nn.ReflectionPad2d(1)`` + conv), NHWC/HWIO.

    Computed as the zero-padded ('SAME') convolution plus the contributions of the
    reflected border rows and columns (thin 1x3 / 3x1 convolutions added to the edge
    rows and columns), which is exact and avoids materialising a padded copy: on XLA's
    CPU backend ``jnp.pad(mode="reflect")`` followed by a 'VALID' convolution took about
    3x as long as the 'SAME' convolution alone.

    Args:
      x: ``[N, H, W, Cin]`` with H, W >= 2; kernel ``[3, 3, Cin, Cout]``; bias ``[Cout]``.
    Returns:
      ``[N, H, W, Cout]``.
    """
    h, w = x.shape[1:3]
    if h < 2 or w < 2:
        raise ValueError(f"reflect padding needs at least 2x2 pixels (got {h}x{w})")
    conv = lambda a, k, pad: jax.lax.conv_general_dilated(a, k, (1, 1), pad,
                                                          dimension_numbers=_DN)
    y = conv(x, kernel, "SAME")
    # Top and bottom pad rows (x[1] and x[H-2]) reach output rows 0 and H-1 through kernel
    # rows 0 and 2; the pad columns of those rows are zero here and handled below.
    y = y.at[:, :1].add(conv(x[:, 1:2], kernel[:1], ((0, 0), (1, 1))))
    y = y.at[:, h - 1:].add(conv(x[:, h - 2:h - 1], kernel[2:], ((0, 0), (1, 1))))
    # Left and right pad columns (corners included: taken from the row-reflected input).
    rows = jnp.concatenate([x[:, 1:2], x, x[:, h - 2:h - 1]], axis=1)
    y = y.at[:, :, :1].add(conv(rows[:, :, 1:2], kernel[:, :1], "VALID"))
    y = y.at[:, :, w - 1:].add(conv(rows[:, :, w - 2:w - 1], kernel[:, 2:], "VALID"))
    return y + bias


def upsample_nearest(x, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of ``[N, H, W, C]`` by an integer factor."""
    n, h, w, c = x.shape
    y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return y.reshape(n, h * factor, w * factor, c)


class _Conv(nnx.Module):
    def __init__(self, cin, cout, rng: np.random.Generator):
        # He-uniform like torch's default conv init scale, drawn with numpy (no per-shape
        # compilation at start-up).
        bound = 1.0 / math.sqrt(9 * cin)
        self.kernel = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (3, 3, cin, cout)),
                                            jnp.float32))
        self.bias = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (cout,)), jnp.float32))

    def __call__(self, x):
        return reflect_conv3x3(x, self.kernel[...], self.bias[...])


class Decoder(nnx.Module):
    """Mirror of an encoder: features ``[N, h, w, C_deep]`` -> images ``[N, H, W, out]``.

    Args:
      stages: encoder stages, shallow to deep, ``((channels, convolutions), ...)``; a 2x
        downsampling is assumed between consecutive stages (VGG pools). Stage ``s`` maps
        to ``convolutions - 1`` convolutions at its width plus one to the width of the
        stage before it (``out_channels`` for the first), then a 2x upsampling.
      out_channels: image channels (1 for grayscale CT, 3 for RGB).
      seed: seed of the initial weights.
    Attributes:
      convs: list of the convolutions in order; stages, out_channels.
    """

    def __init__(self, stages: Sequence[tuple[int, int]] = VGG19_RELU4_1, out_channels: int = 1,
                 *, seed: int = 0):
        stages = tuple((int(c), int(n)) for c, n in stages)
        if not stages or any(c < 1 or n < 1 for c, n in stages):
            raise ValueError(f"stages must be non-empty ((channels >= 1, convs >= 1), ...) "
                             f"(got {stages})")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1 (got {out_channels})")
        self.stages, self.out_channels = stages, int(out_channels)
        rng = np.random.default_rng(seed)
        convs, upsample_after = [], []
        for s in range(len(stages) - 1, -1, -1):
            width, n = stages[s]
            nxt = stages[s - 1][0] if s > 0 else self.out_channels
            for k in range(n):
                convs.append(_Conv(width, width if k < n - 1 else nxt, rng))
                upsample_after.append(k == n - 1 and s > 0)
        self.convs = nnx.List(convs)
        self._upsample_after = tuple(upsample_after)

    @property
    def in_channels(self) -> int:
        return self.stages[-1][0]

    def __call__(self, features) -> jax.Array:
        """Decode ``[N, h, w, C_deep]`` -> ``[N, h 2^(S-1), w 2^(S-1), out_channels]``."""
        _check_features(features, "decoder input")
        if np.shape(features)[-1] != self.in_channels:
            raise ValueError(f"decoder expects {self.in_channels} channels (the encoder's "
                             f"deepest stage), got {np.shape(features)[-1]}")
        if min(np.shape(features)[1:3]) < 2:
            raise ValueError(f"decoder input {tuple(np.shape(features)[1:3])} is too small for "
                             "reflect padding (needs at least 2x2)")
        x = jnp.asarray(features, jnp.float32)
        last = len(self.convs) - 1
        for i, (conv, up) in enumerate(zip(self.convs, self._upsample_after)):
            x = conv(x)
            if i < last:
                x = jax.nn.relu(x)
            if up:
                x = upsample_nearest(x)
        return x


def stages_from_plan(plan, tap: str) -> tuple[tuple[int, int], ...]:
    """Decoder stages of an extractor with a VGG-like ``plan`` up to ``tap``.

    Args:
      plan: ``((kind, name), ...)`` with kinds ``conv``/``relu``/``pool`` and names
        ``conv{block}_{layer}`` (``stylejax.models.vgg.VGG.plan``).
      tap: the deepest tap, e.g. ``"relu4_1"``.
    Returns:
      ``((channels, convs), ...)`` using VGG widths (64, 128, 256, 512, 512).
    """
    names = [name for _, name in plan]
    if tap not in names:
        raise ValueError(f"tap {tap!r} is not in the extractor's plan")
    counts: dict[int, int] = {}
    for kind, name in plan[: names.index(tap) + 1]:
        if kind == "conv":
            block = int(name[4:].split("_")[0])
            counts[block] = counts.get(block, 0) + 1
    widths = (64, 128, 256, 512, 512)
    return tuple((widths[min(b, 5) - 1], counts[b]) for b in sorted(counts))


class AdaINNet(nnx.Module):
    """Encoder -> AdaIN -> decoder, with a content/style weight ``alpha``.

    Args:
      extractor: ``extractor(images, taps) -> {tap: [N, h, w, C]}``; kept frozen (its
        outputs for content and style are ``stop_gradient``-ed; train ``net.decoder`` only).
      content_tap: the tap AdaIN works on (also the decoder's input).
      style_taps: taps of the mean/std style loss.
      decoder: a :class:`Decoder`; default built from ``stages``.
      stages: encoder stages for the default decoder; default from ``extractor.plan``
        when it has one (VGG), else required.
      out_channels: image channels the decoder produces.
      seed: decoder initialisation seed.
    """

    def __init__(self, extractor: Callable, *, content_tap: str = VGG_CONTENT_TAP,
                 style_taps: Sequence[str] = VGG_STYLE_TAPS, decoder: Decoder | None = None,
                 stages: Sequence[tuple[int, int]] | None = None, out_channels: int = 1,
                 seed: int = 0):
        if not callable(extractor):
            raise ValueError("extractor must be callable: extractor(images, taps) -> {tap: ...}")
        self.extractor = extractor
        self.content_tap = str(content_tap)
        self.style_taps = tuple(style_taps)
        if not self.style_taps:
            raise ValueError("style_taps is empty")
        if decoder is None:
            if stages is None:
                plan = getattr(extractor, "plan", None)
                if plan is None:
                    raise ValueError("pass stages=((channels, convs), ...) or a decoder: the "
                                     "extractor has no VGG-like plan to mirror")
                stages = stages_from_plan(plan, self.content_tap)
            decoder = Decoder(stages, out_channels, seed=seed)
        self.decoder = decoder

    def _taps(self):
        return tuple(dict.fromkeys((self.content_tap,) + self.style_taps))

    def encode(self, images, taps=None) -> dict[str, jax.Array]:
        """Extractor features ``{tap: [N, h, w, C]}`` (content tap and style taps by default)."""
        feats = self.extractor(images, taps or self._taps())
        return dict(feats)

    def target(self, content, style, *, alpha: float = 1.0):
        """The decoder's input ``t = alpha AdaIN(f_c, f_s) + (1 - alpha) f_c``.

        Args:
          content: images ``[B, H, W(, C)]`` as the extractor takes them.
          style: images ``[B or 1, H', W'(, C)]``.
          alpha: 1 = full style, 0 = the content's own features.
        Returns:
          ``(t, content_features, style_features)`` with the two feature dicts at the
          content and style taps, all ``stop_gradient``-ed.
        """
        _check_alpha(alpha)
        fc = jax.tree.map(jax.lax.stop_gradient, self.encode(content))
        fs = jax.tree.map(jax.lax.stop_gradient, self.encode(style))
        c = fc[self.content_tap]
        t = adain(c, fs[self.content_tap])
        return alpha * t + (1.0 - alpha) * c, fc, fs

    @property
    def scale(self) -> int:
        """Image pixels per content-tap position (``2 ** (decoder stages - 1)``)."""
        return 2 ** (len(self.decoder.stages) - 1)

    def border_margin(self) -> int:
        """A reflect-padding margin (pixels, a multiple of :attr:`scale`) at least the
        receptive-field radius of encoder plus decoder, so that the zero padding of the
        encoder's convolutions at the padded edge cannot reach the cropped output.

        Reach of a stage ``s`` (resolution ``2**-s``): ``2**s`` pixels per 3x3 convolution
        and ``2**s`` for the pooling or upsampling into it. The encoder's stages come from
        its VGG ``plan`` up to the content tap; an extractor without a plan is assumed to
        mirror the decoder.
        """
        def reach(stages):
            return sum((n + (1 if s else 0)) * 2 ** s for s, (_, n) in enumerate(stages))

        plan = getattr(self.extractor, "plan", None)
        encoder = stages_from_plan(plan, self.content_tap) if plan is not None else \
            self.decoder.stages
        m = reach(encoder) + reach(self.decoder.stages) + self.scale
        return -(-m // self.scale) * self.scale

    def __call__(self, content, style, *, alpha: float = 1.0, margin: int = 0) -> jax.Array:
        """Stylised images ``[B, H, W, out_channels]`` (one style image may serve a batch).

        Args:
          content: ``[B, H, W(, C)]``; style: ``[B or 1, H', W'(, C)]``.
          alpha: 1 = full style, 0 = the content's own features.
          margin: 0 = run on the images as they are (sizes must be multiples of
            :attr:`scale`; the encoder's zero padding then acts at the image border).
            ``> 0``: reflect-pad content and style by ``margin`` pixels (a multiple of
            :attr:`scale`; content also up to a multiple of :attr:`scale`), take the AdaIN
            statistics of both from the positions of the unpadded images only, decode and
            crop back to ``[H, W]``. With ``margin >= border_margin()`` the output near
            the border is what the network computes inside an image, without the edge
            responses of the encoder's zero padding.
        """
        if margin == 0:
            t, _, _ = self.target(content, style, alpha=alpha)
            return self.decoder(t)
        f = self.scale
        if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or \
                margin < 0 or margin % f:
            raise ValueError(f"margin must be a non-negative multiple of {f} (got {margin!r})")
        _check_alpha(alpha)

        def padded(x, to_multiple):
            x = jnp.asarray(x, jnp.float32)
            h, w = x.shape[1:3]
            extra_h, extra_w = ((-h) % f, (-w) % f) if to_multiple else (0, 0)
            widths = [(0, 0), (margin, margin + extra_h), (margin, margin + extra_w)]
            widths += [(0, 0)] * (x.ndim - 3)
            return jnp.pad(x, widths, mode="reflect"), h, w

        def inner_stats(feats, h, w):
            m = margin // f
            core = feats[:, m:m + -(-h // f), m:m + -(-w // f)]
            return mean_std(core, eps=1e-5)

        xc, h, w = padded(content, True)
        xs, hs, ws = padded(style, False)
        c = jax.lax.stop_gradient(self.encode(xc, (self.content_tap,))[self.content_tap])
        s = jax.lax.stop_gradient(self.encode(xs, (self.content_tap,))[self.content_tap])
        t = adain(c, s, content_stats=inner_stats(c, h, w), style_stats=inner_stats(s, hs, ws))
        out = self.decoder(alpha * t + (1.0 - alpha) * c)
        return out[:, margin:margin + h, margin:margin + w]


def content_mse(features, target) -> jax.Array:
    """Huang's content loss: mean squared error between features and the AdaIN target."""
    if np.shape(features) != np.shape(target):
        raise ValueError(f"content features {tuple(np.shape(features))} and target "
                         f"{tuple(np.shape(target))} differ in shape")
    return jnp.mean(jnp.square(jnp.asarray(features) - jnp.asarray(target)))


def style_mean_std_loss(features: Mapping[str, jax.Array], style: Mapping[str, jax.Array],
                        taps: Sequence[str]) -> jax.Array:
    """Sum over ``taps`` of MSE(channel means) + MSE(channel stds) (AdaIN style loss).

    ``style`` may have batch 1 (one style image for the batch).
    """
    total = jnp.zeros((), jnp.float32)
    for tap in taps:
        if tap not in features or tap not in style:
            raise ValueError(f"style tap {tap!r} missing from the features")
        total = total + mean_std_loss(features[tap], style[tap])
    return total


def _gaussian_taps(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def lowpass_mse(images, reference, sigma: float = 2.0) -> jax.Array:
    """Mean squared difference of the Gaussian-blurred images (a low-frequency pixel loss).

    The blur is separable, ``sigma`` pixels, truncated at ``ceil(3 sigma)``, with reflect
    padding (``d c b | a b c d``; ``scipy.ndimage.gaussian_filter(mode="mirror")``).

    Args:
      images, reference: ``[B, H, W]`` or ``[B, H, W, 1]`` of the same shape (H, W larger
        than the kernel radius).
      sigma: blur width in pixels (> 0).
    Returns:
      scalar float32.
    """
    if not sigma > 0:
        raise ValueError(f"lowpass sigma must be > 0 (got {sigma!r})")
    a, b = jnp.asarray(images, jnp.float32), jnp.asarray(reference, jnp.float32)
    a = a[..., 0] if a.ndim == 4 else a
    b = b[..., 0] if b.ndim == 4 else b
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"lowpass_mse needs two [B, H, W] images of one shape (got "
                         f"{tuple(np.shape(images))} and {tuple(np.shape(reference))})")
    g = jnp.asarray(_gaussian_taps(float(sigma)))
    r = (g.shape[0] - 1) // 2
    if min(a.shape[1:]) <= r:
        raise ValueError(f"images {a.shape[1:]} are too small for a blur of radius {r}")
    d = jnp.pad(a - b, ((0, 0), (r, r), (r, r)), mode="reflect")
    n = g.shape[0]
    d = sum(g[i] * d[:, i:i + a.shape[1], :] for i in range(n))
    d = sum(g[i] * d[:, :, i:i + a.shape[2]] for i in range(n))
    return jnp.mean(jnp.square(d))


def variant_loss(net: AdaINNet, content, style, *, variant: str = "adain",
                 style_weight: float = 10.0, content_weight: float = 1.0, alpha: float = 1.0,
                 band_width: float = 0.5, contextual_taps: Sequence[str] | None = None,
                 max_positions: int | None = None, key=None, lowpass_weight: float = 0.0,
                 lowpass_sigma: float = 2.0):
    """Training loss of one of the three AdaIN variants (gradient flows to the decoder).

    * ``"adain"`` (Huang): ``content_weight * content_mse(f(g)[content_tap], t) +
      style_weight * style_mean_std_loss``.
    * ``"contextual"`` (Mechrez's contextual transformation): ``content_weight *
      CX(f(g), f(content)) + style_weight * CX(f(g), f(style))`` at ``contextual_taps``.
    * ``"context-aware"`` (CT paper Eq. 11): ``content_weight * CX(f(g), f(content)) +
      style_weight * style_mean_std_loss``.
    * any variant, when ``lowpass_weight > 0`` (not in the papers): ``+ lowpass_weight *
      lowpass_mse(g, content, lowpass_sigma)``, which anchors the output's low
      frequencies (anatomy, intensities) to the content's and leaves the fine texture
      to the style term.

    Args:
      net: the network; content, style: images as its extractor takes them.
      contextual_taps: taps of the contextual terms (default: the content tap).
      max_positions, key: subsampling of :func:`contextual_loss`.
      lowpass_weight, lowpass_sigma: the optional low-frequency pixel term.
    Returns:
      ``(loss, {"content": .., "style": .., "lowpass": .., "output": images})``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown AdaIN variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    t, fc, fs = net.target(content, style, alpha=alpha)
    out = net.decoder(t)
    cx_taps = tuple(contextual_taps or (net.content_tap,))
    taps = tuple(dict.fromkeys((net.content_tap,) + net.style_taps + cx_taps))
    if variant != "adain":
        missing = [tp for tp in cx_taps if tp not in fc]
        if missing:
            fc.update(jax.tree.map(jax.lax.stop_gradient, net.encode(content, missing)))
            fs.update(jax.tree.map(jax.lax.stop_gradient, net.encode(style, missing)))
    fg = net.encode(out, taps)
    keys = None if key is None else jax.random.split(key, 2 * len(cx_taps))

    def cx(a, b, i):
        k = None if keys is None else keys[i]
        return jnp.mean(contextual_loss(a, b, band_width=band_width,
                                        max_positions=max_positions, key=k))

    if variant == "adain":
        c_loss = content_mse(fg[net.content_tap], t)
    else:
        c_loss = sum(cx(fg[tp], fc[tp], i) for i, tp in enumerate(cx_taps))
    if variant == "contextual":
        s_loss = sum(cx(fg[tp], fs[tp], len(cx_taps) + i) for i, tp in enumerate(cx_taps))
    else:
        s_loss = style_mean_std_loss(fg, fs, net.style_taps)
    total = content_weight * c_loss + style_weight * s_loss
    lp = jnp.zeros((), jnp.float32)
    if lowpass_weight:
        lp = lowpass_mse(out, content, lowpass_sigma)
        total = total + lowpass_weight * lp
    return total, {"content": c_loss, "style": s_loss, "lowpass": lp, "output": out}
