"""Matching black-box vendor styles with LAP through the StyleX distance.

For a vendor style (:mod:`stylejax.pipeline.blackbox`, not differentiable, not
expressible exactly by LAP) the references are vendor outputs of *other* phantoms;
LAP is tuned on our raw images to minimise the StyleX distance to them
(:func:`stylejax.tune.fit`). Because the landscape of a non-LAP target can have
several basins, a coarse forward-only grid picks the start points first.

How good is the match? The StyleX distance reached says how close the styles are
to the metric; the SSIM between the tuned LAP output and the vendor output *on the
same raw image* says how close the pictures are. Two SSIM references frame it: the
neutral LAP (5, 5, 5), and the best SSIM any point of a LAP grid reaches, which
needs content-matched vendor images (unavailable in practice) and so bounds what a
style-only match can reach.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylejax.metrics import ssim
from stylejax.pipeline import blackbox
from stylejax.pipeline import lap
from stylejax.tune.fit import fit
from stylejax.tune.inputs import resolve_model
from stylejax.tune.objective import Objective


@dataclasses.dataclass
class VendorMatch:
    """The LAP parameters closest to one vendor style.

    Attributes:
      style: vendor style index (0..31), or the description of a
        :class:`~stylejax.pipeline.blackbox.Style` (e.g. a random one);
      held_out: a bank style of ``blackbox.HELD_OUT``.
      params: tuned :class:`stylejax.lap.LAPParams`.
      distance / distance_neutral: StyleX distance to the vendor references of the
        tuned / the neutral (5, 5, 5) LAP output.
      ssim / ssim_neutral: mean SSIM between LAP output and vendor output on the
        same raw images, tuned / neutral.
      ssim_grid_best, grid_best_params: the best SSIM over the LAP grid (content-
        matched, an upper reference) and where it is.
      steps, seconds: optimisation steps and wall time of the tuning.
    """

    style: int | str
    held_out: bool
    params: lap.LAPParams
    distance: float
    distance_neutral: float
    ssim: float
    ssim_neutral: float
    ssim_grid_best: float
    grid_best_params: dict
    steps: int
    seconds: float

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["params"] = self.params.to_dict()
        return out


def grid_points(per_axis: int, low: float = 0.5, high: float = 9.5) -> np.ndarray:
    """``[per_axis ** 3, 3]`` LAP parameters on a regular grid over ``[low, high]^3``."""
    return lap.lap_grid(np.linspace(low, high, per_axis)).astype(np.float32)


@jax.jit
def _lap_batch(x, p):
    return jax.vmap(lambda q: lap.process_normalized(x, lap.LAPParams.from_array(q)))(p)


#: LAP parameter points styled per call in the SSIM comparison (the last call is padded,
#: so one program is compiled per image shape).
_SSIM_BATCH = 8


def _blocks(points: np.ndarray, size: int):
    """``(block [size, P], rows used)`` covering ``points`` in order, the last block
    padded by repeating its last row."""
    for i in range(0, len(points), size):
        block = points[i:i + size]
        n = len(block)
        yield np.concatenate([block, np.repeat(block[-1:], size - n, axis=0)]), n


def _mean_ssim(images, target) -> np.ndarray:
    """Mean SSIM of ``images [K, R, H, W]`` against ``target [R, H, W]`` -> ``[K]``."""
    k, r = images.shape[:2]
    tiled = np.broadcast_to(target, images.shape).reshape(k * r, *target.shape[1:])
    return np.asarray(ssim(images.reshape(k * r, *target.shape[1:]), tiled)).reshape(k, r).mean(1)


def match_style(style: int | blackbox.Style, raws, reference_raws, *, model, steps: int = 60, starts: int = 2,
                coarse: int = 4, ssim_grid: int = 6, seed: int = 0) -> VendorMatch:
    """Tune LAP toward one vendor style.

    Args:
      style: vendor style index, or a :class:`~stylejax.pipeline.blackbox.Style`.
      raws: list of ``[H, W]`` raw images that are tuned (and compared by SSIM).
      reference_raws: list of raw images of other content; their vendor outputs
        are the references.
      model: style encoder (see :func:`stylejax.tune.inputs.resolve_model`).
      steps, starts: as in :func:`stylejax.tune.fit`; the ``starts`` best points of
        the coarse grid start the optimisation.
      coarse: grid points per axis of the start search (forward passes only).
      ssim_grid: grid points per axis of the content-matched SSIM reference.
      seed: seed of :func:`stylejax.tune.fit`.
    Returns:
      :class:`VendorMatch`.
    """
    t0 = time.perf_counter()
    refs = [blackbox.apply(r, style) for r in reference_raws]
    objective = Objective(raws, refs, model=model)
    neutral = np.array([[5.0, 5.0, 5.0]], np.float32)
    grid = grid_points(coarse)
    d_grid = objective(np.concatenate([grid, neutral]), chunk=16)
    d_neutral, d_grid = float(d_grid[-1]), d_grid[:-1]
    init = grid[np.argsort(d_grid)[:starts]]
    result = fit(None, None, objective=objective, steps=steps, starts=starts, seed=seed,
                 init=init, screen=0)
    seconds = time.perf_counter() - t0

    raw_stack = jnp.asarray(np.stack(raws))
    x = lap.normalize_log(raw_stack)
    vendor = np.stack([blackbox.apply(r, style) for r in raws])
    tuned = np.array([[result.params.w, result.params.l, result.params.h]], np.float32)
    fine = grid_points(ssim_grid, 0.0, 10.0)
    points = np.concatenate([fine, tuned, neutral])
    s_all = np.concatenate([_mean_ssim(np.asarray(_lap_batch(x, jnp.asarray(block))), vendor)
                            [:n] for block, n in _blocks(points, _SSIM_BATCH)])
    s_fine, (s_tuned, s_neutral) = s_all[:len(fine)], s_all[len(fine):]
    best = int(np.argmax(s_fine))
    bank = not isinstance(style, blackbox.Style)
    return VendorMatch(style=int(style) if bank else blackbox.describe(style),
                       held_out=bank and int(style) in blackbox.HELD_OUT,
                       params=result.params, distance=result.distance,
                       distance_neutral=d_neutral,
                       ssim=float(s_tuned), ssim_neutral=float(s_neutral),
                       ssim_grid_best=float(s_fine[best]),
                       grid_best_params=dict(zip(lap.PARAM_NAMES, map(float, fine[best]))),
                       steps=result.steps, seconds=seconds)


def match_all(raws, reference_raws, *, model, styles=None, progress=None, **options
              ) -> list[VendorMatch]:
    """:func:`match_style` for each style (default all 32).

    Args:
      styles: bank indices and/or :class:`~stylejax.pipeline.blackbox.Style` objects.
      progress: optional callable ``(VendorMatch) -> None`` called after each style.
      options: forwarded to :func:`match_style`.
    """
    model = resolve_model(model)
    out = []
    for style in (range(blackbox.NUM_STYLES) if styles is None else styles):
        match = match_style(style, raws, reference_raws, model=model, **options)
        out.append(match)
        if progress is not None:
            progress(match)
    return out
