"""Black-box "vendor" style bank: 32 fixed, non-differentiable X-ray processing styles.

These stand in for the proprietary 32-style vendor pipeline (PASS) of the StyleX
paper. Every style is a fixed chain of numpy / scipy / scikit-image operators
applied to the *normalised log* of the raw detector signal:

    raw (linear, > 0) -> -log(raw) -> robust normalisation to [0, 1]
    (1st / 99th percentile of the image) -> operator chain -> clip to [0, 1]

The operators come from eight families, four styles each, and the chains mix
families so that no two styles share a chain:

=================  ===========================================================
family             operators
=================  ===========================================================
tone               gamma, sigmoid S-curve, piecewise-linear knee, log/exp curve
equalisation       global histogram equalisation over the breast, Gaussian
                   histogram specification
clahe              contrast-limited adaptive histogram equalisation (skimage)
sharpening         unsharp masking at 1..8 px radius, cored unsharp masking
denoising          bilateral, total variation (Chambolle), median
flattening         morphological background subtraction, peripheral
                   (skin-line) equalisation, local contrast normalisation,
                   morphological top-hat contrast
base-detail        guided / bilateral base-detail decomposition with base
                   compression and detail boost
posterisation      quantisation to 8..32 grey levels
=================  ===========================================================

Styles keep the display convention (dense tissue bright): no operator inverts.
Small-scale operators (noise, sharpening, detail) have sizes in pixels; large-scale
ones (CLAHE tiles, background and skin-line estimates) are fractions of the
image's shorter side, so a style looks alike at any resolution. Thresholds,
medians, histograms, rank and morphological filters make the styles
non-differentiable and beyond what LAP (log -> Laplacian band gains -> soft
window) can express exactly.

Histograms, auto-windows (``window``: the breast's percentiles to 0/1) and the
flattening operators work over the breast: Otsu's split of the smoothed
normalised log into breast and direct-exposure background (all pixels when the
image has no background, e.g. a crop inside the breast).

``HELD_OUT`` holds one style from each of four different families; the other 28
(``TRAIN_STYLES``) are for training style metrics. ``describe(style)`` prints a
style's chain; ``experiments/figures/blackbox_styles.png`` shows all 32.

These are numpy functions on concrete arrays: not jit-able, not differentiable
(on purpose). Speed at 512x512 on the 2-core development machine, shared and
loaded (best of 3, ``python experiments/figures/blackbox_styles.py --timing``):
slowest style 14 (TV + unsharp mask) 58-75 ms, mean over the 32 styles 37-49 ms.
"""

from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy import special
from skimage import exposure, filters, restoration

from stylejax._checks import check_image

NUM_STYLES = 32
HELD_OUT: tuple[int, ...] = (3, 10, 18, 25)
TRAIN_STYLES: tuple[int, ...] = tuple(s for s in range(NUM_STYLES) if s not in HELD_OUT)

# Breast / direct-exposure background split (histograms and auto-windows are taken
# over the breast): Otsu on the smoothed normalised log finds the two classes; the
# lower one is background only if it is dark and well separated (a crop inside the
# breast has none), and the threshold sits at its 99th percentile so the thin skin
# line stays in the breast even with a heel-effect gradient in the background.
_BACKGROUND_MAX_MEAN = 0.15
_BACKGROUND_MIN_GAP = 0.3


# ----------------------------------------------------------------------------
# The normalised log signal and the tissue mask.
# ----------------------------------------------------------------------------

def normalized_log(raw) -> np.ndarray:
    """Robustly normalised log signal of a raw image, dense tissue bright.

    Args:
      raw: [H, W] linear raw detector image, strictly positive, any scale.
    Returns:
      [H, W] float32 ``clip((-log(raw) - p1) / (p99 - p1), 0, 1)`` where p1 and
      p99 are the 1st and 99th percentiles of ``-log(raw)`` over the image (the
      minimum and maximum when those coincide).
    Raises:
      ValueError: for a constant image (no contrast, so no style is defined).
    """
    a = -np.log(np.asarray(raw, dtype=np.float64))
    lo, hi = np.percentile(a, [1.0, 99.0])
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        raise ValueError("raw is constant (no contrast): a style is undefined for it")
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


class _Context(NamedTuple):
    """What operators may need besides the current image."""

    mask: np.ndarray  # [H, W] bool, breast (not background)


def _tissue_mask(n: np.ndarray) -> np.ndarray:
    """bool [H, W]: breast pixels (all pixels when there is no background)."""
    smooth = ndi.gaussian_filter(n, 2.0, mode="reflect")
    everything = np.ones(n.shape, bool)
    if smooth.max() - smooth.min() < 1e-6:
        return everything
    t = filters.threshold_otsu(smooth)
    low, high = smooth[smooth <= t], smooth[smooth > t]
    if (low.size == 0 or high.size == 0 or low.mean() > _BACKGROUND_MAX_MEAN
            or high.mean() - low.mean() < _BACKGROUND_MIN_GAP):
        return everything
    mask = smooth > min(np.percentile(low, 99.0), t)
    mask = ndi.binary_dilation(mask, iterations=2)  # give back the rim the blur took
    if mask.sum() < 0.01 * mask.size:
        return everything
    return mask


def _short_side(x: np.ndarray) -> int:
    return min(x.shape)


# ----------------------------------------------------------------------------
# Operators. Each takes the current float32 image (about [0, 1]) and the context
# and returns a float32 image; parameters are keyword arguments fixed per style.
# ----------------------------------------------------------------------------

def _clip01(x):
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def _gamma(x, ctx, *, g):
    return _clip01(x) ** np.float32(g)


def _sigmoid(x, ctx, *, gain, centre):
    x = _clip01(x).astype(np.float64)
    lo, hi = special.expit(-gain * centre), special.expit(gain * (1.0 - centre))
    return ((special.expit(gain * (x - centre)) - lo) / (hi - lo)).astype(np.float32)


def _knee(x, ctx, *, points):
    xp, fp = zip(*points)
    return np.interp(_clip01(x), xp, fp).astype(np.float32)


def _log_curve(x, ctx, *, k):
    return (np.log1p(k * _clip01(x)) / np.log1p(k)).astype(np.float32)


def _exp_curve(x, ctx, *, k):
    return (np.expm1(k * _clip01(x)) / np.expm1(k)).astype(np.float32)


def _equalize(x, ctx, *, blend, nbins=256):
    x = _clip01(x)
    eq = exposure.equalize_hist(x, nbins=nbins, mask=ctx.mask)
    return (blend * eq + (1.0 - blend) * x).astype(np.float32)


def _specify(x, ctx, *, mean, sd, nbins=256):
    """Histogram specification to a Gaussian of ``mean`` and ``sd`` (over the breast)."""
    cdf = exposure.equalize_hist(_clip01(x), nbins=nbins, mask=ctx.mask)
    cdf = np.clip(cdf, 1e-3, 1.0 - 1e-3)
    out = mean + sd * special.ndtri(cdf.astype(np.float64))
    out = np.where(ctx.mask, out, np.minimum(out, _clip01(x)))  # background stays dark
    return out.astype(np.float32)


def _clahe(x, ctx, *, tile, clip, nbins=256, blend=1.0):
    """CLAHE (skimage) with tiles ``tile`` x the image size, blended with its input."""
    kernel = tuple(max(int(round(s * tile)), 4) for s in x.shape)
    x = _clip01(x)
    out = exposure.equalize_adapthist(x, kernel_size=kernel, clip_limit=clip, nbins=nbins)
    if blend != 1.0:
        out = blend * out + (1.0 - blend) * x
    return out.astype(np.float32)


def _unsharp(x, ctx, *, sigma, amount, core=0.0, limit=None):
    """Unsharp masking.

    With ``core`` > 0 detail smaller than it is left alone (coring, spares the
    noise); with ``limit`` the detail is clamped to +-limit (halo/overshoot control).
    """
    detail = x - ndi.gaussian_filter(x, sigma, mode="reflect")
    if core > 0:
        detail = np.sign(detail) * np.maximum(np.abs(detail) - core, 0.0)
    if limit is not None:
        detail = np.clip(detail, -limit, limit)
    return (x + amount * detail).astype(np.float32)


# Paeth's 19 compare-exchange network for the median of 9 values (N. Devillard,
# "Fast median search", 1998): about 5x faster than ndimage.median_filter for 3x3.
_MEDIAN9_NETWORK = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8),
                    (0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4),
                    (4, 2))


def _median3x3(x):
    """3x3 median filter, reflect (half-sample symmetric) borders like ``ndimage``."""
    h, w = x.shape
    pad = np.pad(x, 1, mode="symmetric")
    p = [pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    for a, b in _MEDIAN9_NETWORK:
        p[a], p[b] = np.minimum(p[a], p[b]), np.maximum(p[a], p[b])
    return p[4]


def _median(x, ctx, *, passes=1):
    """3x3 median filter, applied ``passes`` times (iterated median)."""
    for _ in range(passes):
        x = _median3x3(x)
    return x


def _tv(x, ctx, *, weight, iters=20):
    out = restoration.denoise_tv_chambolle(x.astype(np.float32), weight=weight,
                                           max_num_iter=iters)
    return out.astype(np.float32)


def _bilateral_filter(x, sigma_s, sigma_r):
    """Edge-preserving bilateral filter, reflect padding, window radius 2 sigma_s.

    Offsets are taken on a grid of step ``max(1, round(sigma_s / 1.5))`` so wide
    spatial kernels stay fast (a strided bilateral).
    """
    step = max(1, int(round(sigma_s / 1.5)))
    radius = int(np.ceil(2.0 * sigma_s / step)) * step
    x = x.astype(np.float32)
    pad = np.pad(x, radius, mode="reflect")
    h, w = x.shape
    num = np.zeros_like(x)
    den = np.zeros_like(x)
    inv_r = np.float32(-0.5 / sigma_r ** 2)
    for dy in range(-radius, radius + 1, step):
        for dx in range(-radius, radius + 1, step):
            d2 = dy * dy + dx * dx
            if d2 > radius * radius:
                continue
            ws = np.float32(np.exp(-0.5 * d2 / sigma_s ** 2))
            shifted = pad[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
            diff = shifted - x
            wgt = ws * np.exp(inv_r * diff * diff)
            num += wgt * shifted
            den += wgt
    return num / den


def _bilateral(x, ctx, *, sigma_s, sigma_r):
    return _bilateral_filter(x, sigma_s, sigma_r)


def _box(x, r):
    return ndi.uniform_filter(x, size=2 * r + 1, mode="reflect")


def _guided_filter(x, r, eps):
    """Self-guided filter (He et al. 2013) with box radius ``r`` and regulariser ``eps``."""
    x = x.astype(np.float32)
    mean = _box(x, r)
    var = np.maximum(_box(x * x, r) - mean * mean, 0.0)
    a = var / (var + np.float32(eps))
    b = mean - a * mean
    return _box(a, r) * x + _box(b, r)


def _base_detail(x, ctx, *, base, detail_gain, base_gain=1.0, base_gamma=1.0, r=8,
                 eps=0.01, sigma_s=3.0, sigma_r=0.1):
    """Edge-preserving base/detail split; compress the base, boost the detail."""
    if base == "guided":
        b = _guided_filter(x, r, eps)
    else:
        b = _bilateral_filter(x, sigma_s, sigma_r)
    detail = x - b
    centre = np.float32(np.median(b[ctx.mask]))
    b = centre + base_gain * (b - centre)
    if base_gamma != 1.0:
        b = _clip01(b) ** np.float32(base_gamma)
    return (b + detail_gain * detail).astype(np.float32)


def _smooth_large(x, sigma):
    """Gaussian blur for large ``sigma``: blur a block-averaged copy, then upsample."""
    factor = max(1, int(sigma // 4))
    if factor == 1 or min(x.shape) < 4 * factor:
        return ndi.gaussian_filter(x, sigma, mode="reflect")
    h, w = x.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(x, ((0, hp - h), (0, wp - w)), mode="reflect")
    small = padded.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / factor, mode="reflect")
    big = ndi.zoom(small, factor, order=1, mode="nearest", grid_mode=True)
    return big[:h, :w].astype(x.dtype, copy=False)


def _flatten(x, ctx, *, scale, strength):
    """Large-scale flattening: subtract a morphological (opening) background in the breast."""
    size = max(3, int(round(scale * _short_side(x))) | 1)
    level = np.float32(np.median(x[ctx.mask]))
    inside = np.where(ctx.mask, x, level)  # background must not pull the estimate down
    background = ndi.grey_opening(inside, size=(size, size), mode="reflect")
    background = _smooth_large(background, size / 4.0)
    return (x - strength * (background - level) * ctx.mask).astype(np.float32)


def _peripheral(x, ctx, *, scale, strength, ref_pct=60.0):
    """Peripheral equalisation: lift the thin skin-line region toward the thick plateau.

    The breast's thickness trend is a normalised-convolution low-pass of the image
    inside the breast mask; where it falls below its ``ref_pct`` percentile the
    shortfall (times ``strength``) is added back.
    """
    sigma = max(1.0, scale * _short_side(x))
    m = ctx.mask.astype(np.float32)
    num = _smooth_large(x * m, sigma)
    den = _smooth_large(m, sigma)
    trend = num / np.maximum(den, 1e-3)
    ref = np.percentile(trend[ctx.mask], ref_pct)
    lift = strength * np.maximum(ref - trend, 0.0) * m
    return (x + lift).astype(np.float32)


def _local_norm(x, ctx, *, sigma, blend, floor=0.02):
    """Local contrast normalisation (x - local mean) / local std, blended back."""
    mean = _smooth_large(x, sigma)
    var = _smooth_large(x * x, sigma) - mean * mean
    std = np.sqrt(np.maximum(var, 0.0)) + np.float32(floor)
    z = np.float32(0.5) + np.float32(0.15) * (x - mean) / std
    return ((1.0 - blend) * x + blend * z).astype(np.float32)


def _morph_contrast(x, ctx, *, size, amount):
    """Morphological contrast: add white top-hat, subtract black top-hat."""
    white = ndi.white_tophat(x, size=(size, size), mode="reflect")
    black = ndi.black_tophat(x, size=(size, size), mode="reflect")
    return (x + amount * (white - black)).astype(np.float32)


def _window(x, ctx, *, lo=1.0, hi=99.0):
    """Auto-window: map the breast's ``lo``/``hi`` percentiles to 0/1."""
    a, b = np.percentile(x[ctx.mask], [lo, hi])
    if not b > a:
        return _clip01(x)
    return _clip01((x - a) / (b - a))


def _posterize(x, ctx, *, levels):
    return (np.round(_clip01(x) * (levels - 1)) / (levels - 1)).astype(np.float32)


_OPS: dict[str, Callable] = {
    "gamma": _gamma, "sigmoid": _sigmoid, "knee": _knee, "log": _log_curve,
    "exp": _exp_curve, "equalize": _equalize, "specify": _specify, "clahe": _clahe,
    "unsharp": _unsharp, "median": _median, "tv": _tv, "bilateral": _bilateral,
    "base_detail": _base_detail, "flatten": _flatten, "peripheral": _peripheral,
    "local_norm": _local_norm, "morph_contrast": _morph_contrast, "window": _window,
    "posterize": _posterize,
}


def _frac(f: float) -> str:
    """0.125 -> '1/8' (fractions of the image size read better that way)."""
    inv = 1.0 / f
    return f"1/{round(inv)}" if abs(inv - round(inv)) < 1e-6 else f"{f:g}"


def _describe_op(name: str, p: dict) -> str:
    if name == "gamma":
        return f"gamma {p['g']:g}"
    if name == "sigmoid":
        return f"sigmoid S-curve (gain {p['gain']:g}, centre {p['centre']:g})"
    if name == "knee":
        return "piecewise-linear knee " + " ".join(f"({a:g},{b:g})" for a, b in p["points"])
    if name == "log":
        return f"log curve (k {p['k']:g})"
    if name == "exp":
        return f"exp curve (k {p['k']:g})"
    if name == "equalize":
        return f"histogram equalisation over the breast (blend {p['blend']:g})"
    if name == "specify":
        return f"histogram specification to Gaussian (mean {p['mean']:g}, sd {p['sd']:g})"
    if name == "clahe":
        extra = f", {p['nbins']} bins" if "nbins" in p else ""
        extra += f", blend {p['blend']:g}" if p.get("blend", 1.0) != 1.0 else ""
        return f"CLAHE (tiles {_frac(p['tile'])} of image, clip {p['clip']:g}{extra})"
    if name == "unsharp":
        extra = f", coring {p['core']:g}" if p.get("core") else ""
        extra += f", clamp +-{p['limit']:g}" if p.get("limit") is not None else ""
        return f"unsharp mask (sigma {p['sigma']:g} px, amount {p['amount']:g}{extra})"
    if name == "median":
        return "median 3x3" + (f" x{p['passes']}" if p.get("passes", 1) > 1 else "")
    if name == "tv":
        return f"total-variation denoise (weight {p['weight']:g})"
    if name == "bilateral":
        return f"bilateral denoise (sigma_s {p['sigma_s']:g} px, sigma_r {p['sigma_r']:g})"
    if name == "base_detail":
        if p["base"] == "guided":
            base = f"guided base (r {p.get('r', 8)} px, eps {p.get('eps', 0.01):g})"
        else:
            base = (f"bilateral base (sigma_s {p.get('sigma_s', 3.0):g} px, "
                    f"sigma_r {p.get('sigma_r', 0.1):g})")
        parts = [base, f"detail x{p['detail_gain']:g}"]
        if p.get("base_gain", 1.0) != 1.0:
            parts.append(f"base x{p['base_gain']:g}")
        if p.get("base_gamma", 1.0) != 1.0:
            parts.append(f"base gamma {p['base_gamma']:g}")
        return ", ".join(parts)
    if name == "flatten":
        return (f"morphological background subtraction (opening {_frac(p['scale'])} of image, "
                f"strength {p['strength']:g})")
    if name == "peripheral":
        return (f"peripheral equalisation (scale {_frac(p['scale'])} of image, "
                f"strength {p['strength']:g})")
    if name == "local_norm":
        return f"local contrast normalisation (sigma {p['sigma']:g} px, blend {p['blend']:g})"
    if name == "morph_contrast":
        return f"top-hat contrast ({p['size']} px, amount {p['amount']:g})"
    if name == "window":
        return f"auto-window p{p.get('lo', 1.0):g}-p{p.get('hi', 99.0):g}"
    if name == "posterize":
        return f"posterise {p['levels']} levels"
    raise KeyError(name)


class Style(NamedTuple):
    """A vendor style: its family and its operator chain ``((name, params), ...)``.

    The 32 bank styles are fixed; :mod:`stylejax.pipeline.vendor_random` draws
    new ones from the same operators. ``apply``, ``apply_batch`` and ``describe``
    take a bank index or a ``Style``.
    """

    family: str
    chain: tuple[tuple[str, dict], ...]


def _s(family: str, *chain: tuple[str, dict]) -> Style:
    return Style(family, tuple(chain))


_STYLES: tuple[Style, ...] = (
    # --- tone curves -------------------------------------------------------------
    _s("tone", ("gamma", dict(g=1.5)), ("median", dict())),
    _s("tone", ("window", dict(lo=2.0, hi=99.5)), ("sigmoid", dict(gain=9.0, centre=0.6)),
       ("unsharp", dict(sigma=1.5, amount=1.2, core=0.01))),
    _s("tone", ("window", dict(lo=0.5, hi=99.9)),
       ("knee", dict(points=((0.0, 0.0), (0.3, 0.05), (0.65, 0.6), (1.0, 0.85)))),
       ("tv", dict(weight=0.04))),
    _s("tone", ("window", dict(lo=5.0, hi=99.8)), ("log", dict(k=2.0)),
       ("morph_contrast", dict(size=7, amount=0.8))),
    # --- global histogram equalisation / specification ---------------------------
    _s("equalisation", ("equalize", dict(blend=0.6)), ("gamma", dict(g=1.6)),
       ("unsharp", dict(sigma=1.0, amount=0.8, limit=0.03))),
    _s("equalisation", ("specify", dict(mean=0.55, sd=0.16)), ("tv", dict(weight=0.06))),
    _s("equalisation", ("equalize", dict(blend=1.0)),
       ("bilateral", dict(sigma_s=1.5, sigma_r=0.08))),
    _s("equalisation", ("exp", dict(k=2.0)), ("equalize", dict(blend=0.4, nbins=64)),
       ("unsharp", dict(sigma=4.0, amount=0.8))),
    # --- CLAHE -------------------------------------------------------------------
    _s("clahe", ("clahe", dict(tile=1 / 8, clip=0.01))),
    _s("clahe", ("clahe", dict(tile=1 / 16, clip=0.02, blend=0.6)), ("gamma", dict(g=1.2)),
       ("tv", dict(weight=0.02))),
    _s("clahe", ("median", dict()), ("clahe", dict(tile=1 / 4, clip=0.01)),
       ("sigmoid", dict(gain=4.0, centre=0.55))),
    _s("clahe", ("bilateral", dict(sigma_s=1.0, sigma_r=0.05)),
       ("clahe", dict(tile=1 / 6, clip=0.02, nbins=128, blend=0.7)),
       ("unsharp", dict(sigma=0.8, amount=0.7))),
    # --- sharpening --------------------------------------------------------------
    _s("sharpening", ("unsharp", dict(sigma=1.0, amount=2.0, limit=0.04)), ("window", dict()),
       ("sigmoid", dict(gain=6.0, centre=0.65))),
    _s("sharpening", ("window", dict(lo=3.0, hi=99.5)),
       ("unsharp", dict(sigma=3.0, amount=1.5, core=0.02)), ("gamma", dict(g=1.2))),
    _s("sharpening", ("tv", dict(weight=0.05)), ("unsharp", dict(sigma=2.0, amount=1.5)),
       ("window", dict(lo=2.0, hi=99.0)), ("sigmoid", dict(gain=5.0, centre=0.6))),
    _s("sharpening", ("median", dict()), ("unsharp", dict(sigma=8.0, amount=0.7)),
       ("window", dict(lo=8.0, hi=99.5)), ("knee", dict(points=((0.0, 0.0), (0.2, 0.05), (0.9, 0.95), (1.0, 1.0))))),
    # --- noise reduction ---------------------------------------------------------
    _s("denoising", ("bilateral", dict(sigma_s=2.5, sigma_r=0.07)),
       ("window", dict(lo=0.5, hi=99.8)), ("sigmoid", dict(gain=4.0, centre=0.6))),
    _s("denoising", ("tv", dict(weight=0.12)),
       ("knee", dict(points=((0.0, 0.0), (0.55, 0.3), (0.95, 0.92), (1.0, 1.0))))),
    _s("denoising", ("median", dict(passes=3)), ("unsharp", dict(sigma=1.0, amount=1.0)),
       ("window", dict(lo=1.0, hi=99.9)), ("log", dict(k=2.5))),
    _s("denoising", ("median", dict()), ("tv", dict(weight=0.03)),
       ("window", dict(lo=2.0, hi=99.5)), ("exp", dict(k=2.5))),
    # --- flattening / peripheral equalisation / local normalisation -------------
    _s("flattening", ("flatten", dict(scale=1 / 8, strength=0.7)),
       ("window", dict(lo=0.5, hi=99.5)), ("gamma", dict(g=0.9))),
    _s("flattening", ("peripheral", dict(scale=1 / 16, strength=0.8)),
       ("window", dict(lo=1.0, hi=99.0)), ("gamma", dict(g=1.3))),
    _s("flattening", ("peripheral", dict(scale=1 / 10, strength=1.2)),
       ("clahe", dict(tile=1 / 8, clip=0.008))),
    _s("flattening", ("local_norm", dict(sigma=16.0, blend=0.5)), ("median", dict()),
       ("window", dict())),
    # --- base-detail decomposition -----------------------------------------------
    _s("base-detail", ("base_detail", dict(base="guided", r=8, eps=0.01, base_gain=0.6,
                                           detail_gain=2.0)),
       ("window", dict(lo=0.5, hi=99.5)), ("sigmoid", dict(gain=6.0, centre=0.5))),
    _s("base-detail", ("base_detail", dict(base="bilateral", sigma_s=3.0, sigma_r=0.1,
                                           detail_gain=3.0)),
       ("window", dict())),
    _s("base-detail", ("base_detail", dict(base="guided", r=16, eps=0.01, base_gamma=1.4,
                                           detail_gain=2.0))),
    _s("base-detail", ("base_detail", dict(base="guided", r=4, eps=0.02, detail_gain=2.5)),
       ("median", dict()), ("window", dict(lo=10.0, hi=99.5)), ("gamma", dict(g=1.3))),
    # --- posterisation -----------------------------------------------------------
    _s("posterisation", ("window", dict(lo=1.0, hi=99.9)), ("gamma", dict(g=0.9)),
       ("posterize", dict(levels=8))),
    _s("posterisation", ("clahe", dict(tile=1 / 8, clip=0.015)),
       ("posterize", dict(levels=16))),
    _s("posterisation", ("median", dict()), ("equalize", dict(blend=0.5)),
       ("posterize", dict(levels=12))),
    _s("posterisation", ("bilateral", dict(sigma_s=1.5, sigma_r=0.06)),
       ("unsharp", dict(sigma=1.5, amount=1.0)), ("window", dict(lo=0.5, hi=99.9)),
       ("exp", dict(k=1.5)), ("posterize", dict(levels=24))),
)
assert len(_STYLES) == NUM_STYLES

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(s.family for s in _STYLES))


# ----------------------------------------------------------------------------
# Public entry points.
# ----------------------------------------------------------------------------

def _check_style(style) -> Style:
    """A bank index or a :class:`Style` -> the :class:`Style` (unknown operators refused)."""
    if isinstance(style, Style):
        unknown = [name for name, _ in style.chain if name not in _OPS]
        if unknown or not style.chain:
            raise ValueError(f"style chain must be a non-empty sequence of operators from "
                             f"{sorted(_OPS)} (got {[name for name, _ in style.chain]})")
        for name, params in style.chain:
            try:
                inspect.signature(_OPS[name]).bind(None, None, **params)
            except TypeError as err:
                raise ValueError(f"style operator {name!r} got bad settings {params}: "
                                 f"{err}") from None
        return style
    if isinstance(style, (bool, np.bool_)) or not isinstance(style, (int, np.integer)):
        raise ValueError(f"style must be an int in 0..{NUM_STYLES - 1} or a Style "
                         f"(got {style!r})")
    if not 0 <= int(style) < NUM_STYLES:
        raise ValueError(f"style must be in 0..{NUM_STYLES - 1} (got {int(style)})")
    return _STYLES[int(style)]


def describe(style: int | Style) -> str:
    """One-line description of a style's operator chain, e.g. for figure captions."""
    s = _check_style(style)
    chain = " -> ".join(_describe_op(name, p) for name, p in s.chain)
    if isinstance(style, Style):
        return f"{s.family} style: log + normalise -> {chain}"
    held = " [held out]" if int(style) in HELD_OUT else ""
    return f"style {int(style)} ({s.family}){held}: log + normalise -> {chain}"


def family(style: int | Style) -> str:
    """The operator family a style belongs to (one of ``FAMILIES``)."""
    return _check_style(style).family


def apply(raw, style: int | Style) -> np.ndarray:
    """Process a raw image with a vendor style.

    Args:
      raw: [H, W] linear raw detector image (strictly positive, finite, any scale,
        at least 16x16 pixels).
      style: a bank style (int in ``0..31``) or a :class:`Style` (e.g. one drawn by
        :func:`stylejax.pipeline.vendor_random.random_style`).
    Returns:
      [H, W] float32 image in [0, 1], dense tissue bright.
    Raises:
      ValueError: for a bad image (rank, size, NaN/inf, non-positive, constant) or
        a style outside ``0..31``.
    """
    style = _check_style(style)
    check_image(raw, "raw", min_rank=2, max_rank=2, min_size=16, positive=True)
    x = normalized_log(raw)
    ctx = _Context(mask=_tissue_mask(x))
    for name, params in style.chain:
        x = _OPS[name](x, ctx, **params)
    return _clip01(x)


def apply_batch(raws, styles: int | Style | Sequence[int | Style]) -> np.ndarray:
    """Apply styles to a batch of raw images.

    Args:
      raws: [N, H, W] raw images (each validated like ``apply``'s ``raw``).
      styles: one style for all images, or a sequence of N styles.
    Returns:
      [N, H, W] float32 in [0, 1].
    """
    check_image(raws, "raws", min_rank=3, max_rank=3, min_size=16, positive=True)
    raws = np.asarray(raws)
    n = raws.shape[0]
    single = isinstance(styles, Style) or np.ndim(styles) == 0
    styles = [styles] * n if single else list(styles)
    if len(styles) != n:
        raise ValueError(f"styles has {len(styles)} entries for {n} images")
    styles = [_check_style(s) for s in styles]
    return np.stack([apply(r, s) for r, s in zip(raws, styles)]).astype(np.float32, copy=False)
