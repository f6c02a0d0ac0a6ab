"""Full-reference image-quality metrics in JAX: SSIM, MS-SSIM, PSNR, contrast-weighted SSIM.

All metrics take ``a, b`` of shape ``[H, W]`` (-> scalar) or ``[N, H, W]`` (-> ``[N]``) with
values in [0, 1] (``data_range`` 1 by default), and are ``jit``/``grad``/``vmap`` safe.

* :func:`ssim` - Wang et al. 2004 with an 11-tap Gaussian window (sigma 1.5, truncated at
  3.5 sigma), ``k1 = 0.01``, ``k2 = 0.03``, population (co)variances, averaged over the
  positions where the window fits entirely in the image. This equals
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.
* :func:`ms_ssim` - Wang, Simoncelli & Bovik 2003: five scales with weights
  ``[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]``, 2x2 average down-sampling between scales,
  contrast-structure terms at scales 1-4 and full SSIM at scale 5 (negative terms clipped
  to 0 before the fractional powers, as TensorFlow and pytorch-msssim do).
* :func:`psnr` - ``10 log10(data_range^2 / MSE)``.
* :func:`cw_ssim` - the DCE-MRI paper's *contrast-weighted* SSIM (Eq. 3):
  ``SSIM(x * dist_map, y * dist_map)``; :func:`contrast_weight_map` builds ``dist_map``.
  It is not the complex-wavelet SSIM.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stylejax._checks import check_image, check_rank, is_concrete

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SIGMA, _TRUNCATE, _K1, _K2 = 1.5, 3.5, 0.01, 0.03
WIN_SIZE = 2 * int(_TRUNCATE * _SIGMA + 0.5) + 1  # 11, as scipy/skimage


def _gaussian_taps() -> np.ndarray:
    radius = WIN_SIZE // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / _SIGMA) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _filter_valid(x: jax.Array) -> jax.Array:
    """Separable Gaussian filter of ``[N, H, W, C]`` keeping only fully-covered positions.

    Two 1-D convolutions with a channel-diagonal kernel: on XLA's CPU backend the dense
    convolution path ran faster than a depthwise (grouped) one or shifted-slice sums,
    and two ops compile quickly.
    """
    c = x.shape[-1]
    taps = jnp.asarray(_gaussian_taps())
    eye = jnp.eye(c, dtype=x.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    rows = taps[:, None, None, None] * eye  # [k, 1, C, C]
    x = jax.lax.conv_general_dilated(x, rows, (1, 1), "VALID", dimension_numbers=dn)
    cols = taps[None, :, None, None] * eye  # [1, k, C, C]
    return jax.lax.conv_general_dilated(x, cols, (1, 1), "VALID", dimension_numbers=dn)


def _check(x, name: str, min_size: int, **kwargs):
    """``check_image`` for concrete arrays; rank and size only for tracers (under jit)."""
    if is_concrete(x):
        return check_image(x, name, min_rank=2, max_rank=3, min_size=min_size, **kwargs)
    check_rank(x, name, min_rank=2, max_rank=3)
    if min(np.shape(x)[-2:]) < min_size:
        raise ValueError(f"{name} is too small: {np.shape(x)[-2]}x{np.shape(x)[-1]} pixels, "
                         f"need at least {min_size}x{min_size}")
    return x


def _prepare(a, b, name_a: str, name_b: str, min_size: int):
    _check(a, name_a, min_size)
    _check(b, name_b, min_size)
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{name_a} and {name_b} must have the same shape "
                         f"(got {tuple(np.shape(a))} and {tuple(np.shape(b))})")
    single = np.ndim(a) == 2
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if single:
        a, b = a[None], b[None]
    return a, b, single


def _ssim_maps(a: jax.Array, b: jax.Array, data_range: float):
    """Per-position luminance*cs (SSIM) and cs maps on the valid region, ``[N, h, w]``."""
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    stats = _filter_valid(jnp.stack([a, b, a * a, b * b, a * b], axis=-1))
    mu_a, mu_b, e_aa, e_bb, e_ab = (stats[..., i] for i in range(5))
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    return lum * cs, cs


def ssim(a, b, *, data_range: float = 1.0) -> jax.Array:
    """Mean structural similarity (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03).

    Args:
      a, b: ``[H, W]`` or ``[N, H, W]``, same shape, at least 11x11.
      data_range: dynamic range of the values (1 for images in [0, 1]).
    Returns:
      scalar for ``[H, W]`` inputs, ``[N]`` for batches; 1 means identical.
    """
    a, b, single = _prepare(a, b, "a", "b", WIN_SIZE)
    out = _ssim_batch(a, b, float(data_range))
    return out[0] if single else out


@functools.partial(jax.jit, static_argnums=2)
def _ssim_batch(a, b, data_range):
    s, _ = _ssim_maps(a, b, data_range)
    return s.mean(axis=(-2, -1))


def _avg_pool2(x: jax.Array) -> jax.Array:
    n, h, w = x.shape
    x = x[:, : 2 * (h // 2), : 2 * (w // 2)]
    return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def ms_ssim(a, b, *, data_range: float = 1.0, weights=MS_SSIM_WEIGHTS) -> jax.Array:
    """Multi-scale SSIM (Wang et al. 2003).

    Args:
      a, b: ``[H, W]`` or ``[N, H, W]``; both sides at least ``11 * 2^(scales-1)`` pixels
        (176 for the default five scales).
      data_range: dynamic range of the values.
      weights: per-scale exponents (default the paper's five).
    Returns:
      scalar or ``[N]``.
    """
    scales = len(weights)
    min_size = WIN_SIZE * 2 ** (scales - 1)
    a, b, single = _prepare(a, b, "a", "b", min_size)
    out = _ms_ssim_batch(a, b, float(data_range), tuple(float(x) for x in weights))
    return out[0] if single else out


@functools.partial(jax.jit, static_argnums=(2, 3))
def _ms_ssim_batch(a, b, data_range, weights):
    scales = len(weights)
    w = jnp.asarray(weights, jnp.float32)
    terms = []
    for scale in range(scales):
        s, cs = _ssim_maps(a, b, data_range)
        if scale == scales - 1:
            terms.append(s.mean(axis=(-2, -1)))
        else:
            terms.append(cs.mean(axis=(-2, -1)))
            a, b = _avg_pool2(a), _avg_pool2(b)
    stacked = jax.nn.relu(jnp.stack(terms, axis=-1))  # [N, scales]
    return jnp.prod(stacked ** w, axis=-1)


def psnr(a, b, *, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB (inf if equal).

    Args:
      a, b: ``[H, W]`` or ``[N, H, W]``, same shape.
      data_range: peak value (1 for [0, 1] images; the thesis' Eq. 4.1 uses max(target)).
    Returns:
      scalar or ``[N]``.
    """
    a, b, single = _prepare(a, b, "a", "b", 1)
    mse = jnp.mean(jnp.square(a - b), axis=(-2, -1))
    out = 10.0 * jnp.log10(data_range ** 2 / mse)
    return out[0] if single else out


def cw_ssim(a, b, dist_map, *, data_range: float = 1.0) -> jax.Array:
    """Contrast-weighted SSIM (DCE-MRI paper Eq. 3): ``SSIM(a * dist_map, b * dist_map)``.

    Args:
      a: generated image ``[H, W]`` or ``[N, H, W]``.
      b: content image (content CW-SSIM, non-inverted map) or style image (style CW-SSIM,
        inverted map), same shape.
      dist_map: ``[H, W]`` (or ``[N, H, W]``) weights in [0.1, 1] from
        :func:`contrast_weight_map`.
      data_range: as :func:`ssim`.
    Returns:
      scalar or ``[N]``.
    """
    _check(dist_map, "dist_map", 1, nonnegative=True)
    if np.shape(dist_map)[-2:] != np.shape(a)[-2:]:
        raise ValueError(f"dist_map size {tuple(np.shape(dist_map)[-2:])} does not match the "
                         f"images {tuple(np.shape(a)[-2:])}")
    d = jnp.asarray(dist_map, jnp.float32)
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    return ssim(a * d, b * d, data_range=data_range)


def enhancement_mask(series, *, threshold: float = 20.0) -> np.ndarray:
    """Contrast-enhanced pixels of a DCE series (DCE-MRI paper section 2.3).

    Args:
      series: ``[T, H, W]`` frames; frame 0 is the pre-contrast image.
      threshold: on the mean of ``frame_t - frame_0`` over ``t >= 1``; the paper's 20 is in
        the scanner's intensity units - scale it for normalised images (e.g. 20/255).
    Returns:
      ``[H, W]`` bool.
    """
    s = np.asarray(series, np.float64)
    check_image(s, "series", min_rank=3, max_rank=3)
    if s.shape[0] < 2:
        raise ValueError("series needs a pre-contrast frame and at least one more frame")
    return (s[1:] - s[0]).mean(axis=0) > threshold


def contrast_weight_map(enhanced, *, invert: bool = False) -> np.ndarray:
    """Distance-to-enhancement weight map for :func:`cw_ssim`, normalised to [0.1, 1].

    Args:
      enhanced: ``[H, W]`` bool mask of contrast-enhanced pixels (:func:`enhancement_mask`).
      invert: ``False`` (content CW-SSIM): far from enhancement -> 1, enhanced -> 0.1;
        ``True`` (style CW-SSIM): enhanced -> 1, farthest -> 0.1.
    Returns:
      ``[H, W]`` float32.
    """
    from scipy import ndimage

    e = np.asarray(enhanced, bool)
    if e.ndim != 2:
        raise ValueError(f"enhanced must be a [H, W] mask (got shape {e.shape})")
    if not e.any():
        raise ValueError("no contrast-enhanced pixel: the distance map is undefined "
                         "(lower the threshold?)")
    dist = ndimage.distance_transform_edt(~e)
    span = dist.max() - dist.min()
    unit = (dist - dist.min()) / span if span > 0 else np.zeros_like(dist)
    if invert:
        unit = 1.0 - unit
    return (0.1 + 0.9 * unit).astype(np.float32)
