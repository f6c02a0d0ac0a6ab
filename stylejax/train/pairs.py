"""Positive pairs for SimSiam style training, made on the accelerator.

A pair is two views that share one style exactly. The data set stores only raw
detector images (and, optionally, images a non-differentiable vendor style has
already been applied to on the host). LAP's first step, the robust normalisation
of ``-log(raw)`` (:func:`stylejax.pipeline.lap.normalize_log`), does not depend on
the style, so the host does it once per image (:func:`normalize`) instead of
sorting for its percentiles in every step. Inside the jitted training step each pair

1. gets one style: LAP parameters drawn from the training grid (even values,
   :func:`stylejax.pipeline.lap.lap_grid`), applied to both of its source images
   ``a`` and ``b`` -- or, for a pre-styled (vendor) pair, the images as given;
2. is cut into two views, one from the styled ``a`` and one from the styled ``b``.
   ``a`` and ``b`` are the same raw image for "two crops of one image" pairs
   and two different raw images for non-matching-content pairs (the host
   sampler decides, see :mod:`stylejax.train.simsiam_data`).

Only geometric augmentation is used, and never intensity jitter: a random square
crop whose side is a fraction of the image's shorter side, resampled to
``image_size`` with the *same* scale factor (hence the same anti-aliasing
filter) for both views, then one of the 8 flips/90-degree rotations per view.
Crop positions and orientations are independent per view. When tissue masks
come with the images, crop positions are drawn among those whose crop is at
least ``min_tissue`` tissue: about half of a mammogram is air, and a crop of
air next to a crop of breast shares no visible style, so such pairs only teach
the encoder noise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from stylejax.pipeline import lap as _lap


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """How views are cut from styled images.

    Attributes:
      image_size: side of each view in pixels (the encoder's input size).
      crop_scale: ``(low, high)``: the crop side is drawn uniformly from
        ``[low, high] * min(H, W)`` of the styled image, once per pair.
      dihedral: apply a random flip / 90-degree rotation (8 choices) per view.
      min_tissue: with tissue masks, each crop is placed where at least this
        fraction of it is tissue (or, where no position reaches it, where the
        most is); 0 places crops uniformly.
    """

    image_size: int = 128
    crop_scale: tuple[float, float] = (0.5, 1.0)
    dihedral: bool = True
    min_tissue: float = 0.0

    def validate(self, source_shape=None):
        """Raise ValueError for an inconsistent spec (or source image shape)."""
        lo, hi = self.crop_scale
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 (got {self.image_size})")
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1 (got {self.crop_scale})")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise ValueError(f"min_tissue must lie in [0, 1] (got {self.min_tissue})")
        if source_shape is not None and min(source_shape[-2:]) * lo < 1:
            raise ValueError(f"source images {tuple(source_shape[-2:])} are too small "
                             f"for crop_scale {self.crop_scale}")
        return self


def training_styles(values=(0, 2, 4, 6, 8, 10)):
    """The LAP training grid as a ``[S, 3]`` float32 array of (w, l, h)."""
    return jnp.asarray(_lap.lap_grid(values))


def sample_styles(key, n: int, grid):
    """Draw ``n`` LAP styles uniformly from ``grid`` ``[S, 3]`` -> ``[n, 3]``."""
    idx = jax.random.randint(key, (n,), 0, grid.shape[0])
    return grid[idx]


def normalize(raw, chunk: int = 64):
    """``[N, H, W]`` raw images -> normalised attenuation images (LAP's style-free
    first step), as float32 numpy, ``chunk`` images per device call."""
    import numpy as np
    raw = np.asarray(raw, np.float32)
    return np.concatenate([np.asarray(_normalize(raw[i:i + chunk]))
                           for i in range(0, len(raw), chunk)] or [raw])


_normalize = jax.jit(_lap.normalize_log)


def style_lap(x, styles):
    """Apply LAP to each normalised image with its own parameters (no value checks;
    jit-safe).

    Args:
      x: ``[B, H, W]`` normalised attenuation images (:func:`normalize`).
      styles: ``[B, 3]`` (w, l, h).
    Returns:
      ``[B, H, W]`` in [0, 1]; ``style_lap(normalize(raw), s)`` equals
      ``stylejax.pipeline.lap.process(raw, s)``.
    """
    return _lap.process_normalized(x, _lap.LAPParams.from_array(styles))


def dihedral(image, k):
    """One of the 8 symmetries of the square: transpose if bit 0 of ``k``, flip rows
    if bit 1, flip columns if bit 2.

    Args:
      image: ``[S, S]`` (square).
      k: int32 scalar in 0..7 (may be traced).
    Returns:
      ``[S, S]``.
    """
    x = jnp.where(k & 1, image.T, image)
    x = jnp.where((k >> 1) & 1, x[::-1, :], x)
    return jnp.where((k >> 2) & 1, x[:, ::-1], x)


def crop_resize(image, side, origin, size: int):
    """Crop the square ``[origin, origin + side)`` and resample it to ``size x size``.

    Linear interpolation with anti-aliasing when shrinking; with ``side == size``
    and an integer origin this is an exact slice.

    Args:
      image: ``[H, W]``.
      side: crop side in input pixels (scalar, may be traced).
      origin: ``[2]`` (row, column) of the crop's top-left corner.
      size: output side (static).
    Returns:
      ``[size, size]``.
    """
    scale = size / side
    scale2 = jnp.stack([scale, scale])
    return jax.image.scale_and_translate(image, (size, size), (0, 1), scale2,
                                         -jnp.asarray(origin, jnp.float32) * scale2, "linear",
                                         antialias=True)


#: Candidate crop positions per axis when crops are placed on tissue.
TISSUE_CANDIDATES = 16


def tissue_origins(key, tissue, side, min_tissue: float):
    """Crop origins placed on tissue.

    For each image, ``TISSUE_CANDIDATES**2`` candidate origins (one uniformly
    at random in each cell of a regular grid over the allowed positions) are
    scored by the tissue fraction of their crop (a summed-area table), and one
    is drawn uniformly among those reaching ``min(min_tissue, best fraction)``.

    Args:
      key: PRNG key.
      tissue: ``[n, H, W]`` tissue masks (nonzero = tissue).
      side: ``[n]`` crop sides in pixels.
      min_tissue: required tissue fraction of a crop.
    Returns:
      ``[n, 2]`` integer-valued float32 (row, column) origins.
    """
    n, h, w = tissue.shape
    g = TISSUE_CANDIDATES
    sat = jnp.cumsum(jnp.cumsum((tissue != 0).astype(jnp.float32), axis=1), axis=2)
    sat = jnp.pad(sat, ((0, 0), (1, 0), (1, 0)))
    keys = jax.random.split(key, n)

    def one(k, table, s):
        k_pos, k_pick = jax.random.split(k)
        s_int = jnp.clip(jnp.round(s).astype(jnp.int32), 1, min(h, w))
        u = (jnp.arange(g)[None, :] + jax.random.uniform(k_pos, (2, g))) / g
        rows = jnp.floor(u[0] * (jnp.floor(h - s) + 1.0))
        cols = jnp.floor(u[1] * (jnp.floor(w - s) + 1.0))
        r, c = (v.astype(jnp.int32) for v in jnp.meshgrid(rows, cols, indexing="ij"))
        r2, c2 = jnp.minimum(r + s_int, h), jnp.minimum(c + s_int, w)
        area = table[r2, c2] - table[r, c2] - table[r2, c] + table[r, c]
        frac = (area / (s_int * s_int).astype(jnp.float32)).ravel()
        ok = frac >= jnp.minimum(min_tissue, frac.max())
        pick = jax.random.categorical(k_pick, jnp.where(ok, 0.0, -jnp.inf))
        return jnp.stack([rows[pick // g], cols[pick % g]])

    return jax.vmap(one)(keys, sat, side)


def sample_geometry(key, n: int, shape, spec: PairSpec, tissue_a=None, tissue_b=None):
    """Random crop sides (one per pair) and per-view origins and orientations.

    Args:
      key: PRNG key.
      n: number of pairs.
      shape: ``(H, W)`` of the styled source images.
      spec: :class:`PairSpec`.
      tissue_a, tissue_b: optional ``[n, H, W]`` tissue masks of each pair's two
        source images; with ``spec.min_tissue > 0`` crops are placed on tissue
        (:func:`tissue_origins`).
    Returns:
      dict with ``side [n]`` (float32 pixels), ``origin1, origin2 [n, 2]``
      (integer-valued float32) and ``orient1, orient2 [n]`` (int32 0..7).
    """
    h, w = shape
    k_side, k_o1, k_o2, k_d1, k_d2 = jax.random.split(key, 5)
    lo, hi = spec.crop_scale
    side = min(h, w) * jax.random.uniform(k_side, (n,), minval=lo, maxval=hi)
    side = jnp.maximum(side, 1.0)

    def origin(k):
        room = jnp.stack([h - side, w - side], axis=-1)
        return jnp.floor(jax.random.uniform(k, (n, 2)) * (jnp.floor(room) + 1.0))

    if spec.min_tissue > 0 and tissue_a is not None and tissue_b is not None:
        origin1 = tissue_origins(k_o1, tissue_a, side, spec.min_tissue)
        origin2 = tissue_origins(k_o2, tissue_b, side, spec.min_tissue)
    else:
        origin1, origin2 = origin(k_o1), origin(k_o2)
    if spec.dihedral:
        o1 = jax.random.randint(k_d1, (n,), 0, 8)
        o2 = jax.random.randint(k_d2, (n,), 0, 8)
    else:
        o1 = o2 = jnp.zeros((n,), jnp.int32)
    return dict(side=side, origin1=origin1, origin2=origin2, orient1=o1, orient2=o2)


def cut_views(styled_a, styled_b, geometry, spec: PairSpec):
    """Cut one view from each styled image with the given geometry.

    Args:
      styled_a, styled_b: ``[B, H, W]`` styled images (pair ``i`` shares a style).
      geometry: output of :func:`sample_geometry`.
      spec: :class:`PairSpec`.
    Returns:
      ``(view1, view2)``, each ``[B, image_size, image_size]``.
    """
    size = spec.image_size

    def one(img, side, origin, orient):
        return dihedral(crop_resize(img, side, origin, size), orient)

    v1 = jax.vmap(one)(styled_a, geometry["side"], geometry["origin1"], geometry["orient1"])
    v2 = jax.vmap(one)(styled_b, geometry["side"], geometry["origin2"], geometry["orient2"])
    return v1, v2


def make_pairs(key, a, b, prestyled, spec: PairSpec, grid, tissue_a=None, tissue_b=None):
    """Positive pairs from a batch of source images (call inside ``jit``).

    Args:
      key: PRNG key (use ``jax.random.fold_in(key, step)``).
      a, b: ``[B, H, W]`` source images of each pair: normalised raw images
        (:func:`normalize`) where ``prestyled`` is False, already styled images in [0, 1]
        where it is True. ``a[i]`` and ``b[i]`` may be the same image.
      prestyled: ``[B]`` bool; True for pairs styled on the host (vendor styles).
      spec: :class:`PairSpec`.
      grid: ``[S, 3]`` LAP styles to draw from (:func:`training_styles`).
      tissue_a, tissue_b: optional ``[B, H, W]`` tissue masks of ``a`` and ``b``
        (see :func:`sample_geometry`).
    Returns:
      ``(view1, view2, info)``: views ``[B, image_size, image_size]`` in [0, 1];
      ``info`` holds ``styles [B, 3]`` (the LAP parameters; meaningless where
      ``prestyled``) and the geometry of :func:`sample_geometry`.
    """
    n = a.shape[0]
    k_style, k_geom = jax.random.split(key)
    styles = sample_styles(k_style, n, grid)
    # One LAP call on both halves keeps the pyramid a single batched computation.
    lap_ab = style_lap(jnp.concatenate([a, b]), jnp.concatenate([styles, styles]))
    keep = prestyled[:, None, None]
    styled_a = jnp.where(keep, a, lap_ab[:n])
    styled_b = jnp.where(keep, b, lap_ab[n:])
    geometry = sample_geometry(k_geom, n, a.shape[-2:], spec, tissue_a, tissue_b)
    v1, v2 = cut_views(styled_a, styled_b, geometry, spec)
    return v1, v2, dict(styles=styles, **geometry)

