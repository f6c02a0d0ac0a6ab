"""``fit``: tune a pipeline's parameters toward the style of reference images.

The objective (:mod:`stylejax.tune.objective`) is the StyleX distance between the
average style of the styled raw images and that of the references. Start points
are screened forward-only (a Latin hypercube plus the neutral point, one batch),
the best ones start multi-start L-BFGS-B or Adam (:mod:`stylejax.tune.optimizers`),
and the best point any start reached is returned as a :class:`TuneResult`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import jax
import numpy as np

from stylejax.pipeline.tunable import Pipeline
from stylejax.tune.objective import Objective
from stylejax.tune.optimizers import OPTIMIZERS, run_adam, run_lbfgs


@dataclasses.dataclass
class TuneResult:
    """Outcome of :func:`fit`.

    Attributes:
      params: best parameters (the pipeline's pytree, e.g. ``LAPParams``, floats).
      distance: StyleX distance ``1 - cos`` reached by ``params``.
      history: ``[T, S]`` distance of each start at each step (before its update).
      trajectory: ``[T, S, P]`` bounded parameters of each start at each step.
      steps: steps run (``T``; fewer than asked when stopped early).
      elapsed: ``[T]`` seconds from the call of :func:`fit` to the end of each step.
      seconds: wall time of :func:`fit` (validation, compilation and the loop).
      best_start: index of the start that gave ``params``.
      initial_distance: the distance of that start at step 0.
      stopped_early: True when Adam's patience criterion ended the run, or every
        L-BFGS-B start converged before ``steps``.
      pipeline: the :class:`Pipeline` tuned.
      screened: ``[K, P]`` points evaluated forward-only to choose the starts
        (``K = 0`` without screening); screened_distances: ``[K]``; screen_seconds:
        the wall time of that screening (included in ``elapsed``).
      optimizer: "lbfgs" or "adam".
      step_evaluations: ``[T]`` value-and-gradient evaluations computed in each
        step, all starts together (``starts`` per step: L-BFGS-B starts run in
        lockstep, finished ones padded).
    """

    params: Any
    distance: float
    history: np.ndarray
    trajectory: np.ndarray
    steps: int
    elapsed: np.ndarray
    seconds: float
    best_start: int
    initial_distance: float
    stopped_early: bool
    pipeline: Pipeline
    screened: np.ndarray
    screened_distances: np.ndarray
    screen_seconds: float
    optimizer: str
    step_evaluations: np.ndarray

    @property
    def starts(self) -> int:
        return int(self.history.shape[1])

    @property
    def evaluations(self) -> int:
        """Pipeline + encoder evaluations: those of the steps (with their backward
        pass, see ``step_evaluations``) plus the forward-only screening."""
        return int(self.step_evaluations.sum() + len(self.screened))

    @property
    def best_history(self) -> np.ndarray:
        """``[T]`` lowest distance reached so far over all starts."""
        return np.minimum.accumulate(self.history.min(axis=1))

    def to_dict(self) -> dict:
        """JSON-ready summary: ``params`` as ``{name: value}`` in the pipeline's
        flat order (:meth:`Pipeline.names`), ``parameter_names`` that order."""
        return {"params": self.pipeline.to_dict(self.params), "distance": self.distance,
                "initial_distance": self.initial_distance, "steps": self.steps,
                "seconds": self.seconds, "starts": self.starts, "best_start": self.best_start,
                "evaluations": self.evaluations, "stopped_early": self.stopped_early,
                "pipeline": self.pipeline.name, "parameter_names": self.pipeline.names(),
                "optimizer": self.optimizer}


def initial_points(pipeline: Pipeline, starts: int, seed: int, init=None) -> np.ndarray:
    """Start points ``[starts, P]``.

    ``init`` first (a parameter pytree, or ``[k, P]`` flat start points; default the
    pipeline's neutral parameters), then a Latin hypercube over the middle 80% of
    the box, so the other starts spread out in every parameter.

    Raises:
      ValueError: ``init`` with the wrong number of parameters, or outside the box.
    """
    low, high = pipeline.bounds()
    if init is None:
        first = pipeline.flatten(pipeline.init)[None]
    elif isinstance(init, (np.ndarray, jax.Array, list, tuple)) and np.ndim(init) == 2:
        first = np.asarray(init, np.float32)
    else:
        first = pipeline.flatten(init)[None]
    if first.shape[-1] != low.size:
        raise ValueError(f"init has {first.shape[-1]} parameters per start, the pipeline "
                         f"{pipeline.name} has {low.size}")
    if np.any(first < low) or np.any(first > high) or not np.all(np.isfinite(first)):
        raise ValueError(f"init must lie within the pipeline's bounds "
                         f"[{low.min():g}, {high.max():g}] (got {first.min():g}..{first.max():g})")
    n = starts - len(first)
    if n <= 0:
        return first[:starts].astype(np.float32)
    rng = np.random.default_rng(seed)
    strata = (np.stack([rng.permutation(n) for _ in range(low.size)], axis=1)
              + rng.random((n, low.size))) / n
    others = low + (high - low) * (0.1 + 0.8 * strata)
    return np.concatenate([first, others]).astype(np.float32)


def _check_settings(optimizer, steps, starts, lr, lr_final, patience, screen):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} (got {optimizer!r})")
    if (steps < 1 or starts < 1 or not 0 < lr < math.inf or patience < 1
            or not 0 < lr_final <= 1):
        raise ValueError(f"need steps >= 1, starts >= 1, finite lr > 0, 0 < lr_final <= 1, patience "
                         f">= 1 (got steps={steps}, starts={starts}, lr={lr}, lr_final="
                         f"{lr_final}, patience={patience})")
    if screen < 0:
        raise ValueError(f"screen must be >= 0 (got {screen})")


def fit(raw, reference, *, model=None, steps: int = 150, seed: int = 0, starts: int = 4,
        optimizer: str = "lbfgs", lr: float = 0.1, lr_final: float = 0.05,
        pipeline: Pipeline | str | None = None, init=None, patience: int = 30,
        tol: float = 1e-3, screen: int = 64, progress: bool = False,
        objective: Objective | None = None) -> TuneResult:
    """Tune pipeline parameters so the raw images take the references' style.

    Args:
      raw: raw detector images: ``[H, W]``, ``[N, H, W]`` or a list of ``[H, W]``
        (positive, linear, any scale; sizes may differ).
      reference: reference images in the wanted style, in [0, 1], same forms;
        their content need not match ``raw``. More images of both kinds average
        out how content colours the metric (docs/tuning.md measures how many).
      model: the style encoder: None (shipped StyleX), a StyleX run directory,
        or any object with a differentiable ``embed([N, H, W]) -> [N, D]``.
      steps: maximum Adam steps, or L-BFGS-B evaluations per start.
      seed: seed of the random start points.
      starts: optimisations run side by side (one batch per round); the best is kept.
      optimizer: "lbfgs" (scipy's L-BFGS-B on the box itself, the starts in
        lockstep so that each round of evaluations is one batch; no learning rate)
        or "adam" (optax, on the unconstrained parameters, with ``lr`` and ``lr_final``).
      lr: peak Adam learning rate on the unconstrained parameters (near the middle
        of the box, 0.1 moves a 0..10 parameter by up to about 0.25 per step).
      lr_final: the learning rate decays from ``lr`` to ``lr * lr_final`` over
        ``steps`` (cosine), so late steps refine instead of oscillating.
      pipeline: a :class:`Pipeline`, a name registered in
        :mod:`stylejax.pipeline.registry` (``"lap"``, ``"extended-lap"`` or a user
        one), or None (LAP).
      init: parameters of the first start (default the pipeline's neutral ones),
        or ``[k, P]`` flat start points for the first ``k`` starts.
      screen: evaluate this many quasi-random points (Latin hypercube, plus the
        neutral one) forward-only first and start from the best; given ``init``
        points are always kept as starts. Cheap (no backward pass, one batch)
        insurance against starting in a poor basin; 0 disables it.
      patience, tol: Adam stops when the best distance has not improved by more
        than the fraction ``tol`` of itself for ``patience`` steps. (L-BFGS-B stops
        by its own test: a step lowers the distance by less than 1e-7, or the
        projected gradient is below 1e-6.)
      progress: show a tqdm progress bar on stderr.
      objective: a prepared :class:`Objective` (then ``raw``, ``reference``,
        ``model`` and ``pipeline`` are ignored); saves re-validating and
        re-embedding the references over repeated fits.
    Returns:
      a :class:`TuneResult`.
    Raises:
      ValueError: bad images (constant, non-finite, wrong rank, too small, out of
        range), an empty reference list, a model directory that is not a StyleX
        run, an unknown pipeline name, or bad settings.
    """
    t0 = time.perf_counter()
    _check_settings(optimizer, steps, starts, lr, lr_final, patience, screen)
    if objective is None:
        objective = Objective(raw, reference, model=model, pipeline=pipeline)
    pipe = objective.pipeline
    low = np.asarray(pipe.bounds()[0])
    screen_t0 = time.perf_counter()
    if screen > 0:
        keep = 0 if init is None else len(np.atleast_2d(
            init if np.ndim(init) == 2 else pipe.flatten(init)))
        screened = initial_points(pipe, max(screen, starts + keep), seed, init)
        screened_d = objective(screened, chunk=min(len(screened), 32))
        order = keep + np.argsort(screened_d[keep:], kind="stable")
        p0 = np.concatenate([screened[:keep], screened[order]])[:starts]
    else:
        p0 = initial_points(pipe, starts, seed, init)
        screened, screened_d = np.zeros((0, len(low)), np.float32), np.zeros((0,))
    screen_seconds = time.perf_counter() - screen_t0

    history, trajectory, elapsed = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"tune {pipe.name} ({optimizer})", unit="step",
                   leave=False, file=sys.stderr)

    def on_row(points, d, active):
        trajectory.append(points)
        history.append(d)
        elapsed.append(time.perf_counter() - t0)
        if bar is not None:
            finite = [np.nanmin(h) for h in history if np.any(np.isfinite(h))]
            bar.update(1)
            bar.set_postfix(distance=f"{min(finite, default=np.inf):.5f}",
                            running=int(active.sum()))

    try:
        if optimizer == "lbfgs":
            best_u, best_d, stopped = run_lbfgs(objective, p0, steps, on_row=on_row)
        else:
            best_u, best_d, stopped = run_adam(objective, p0, steps, lr=lr, lr_final=lr_final,
                                               patience=patience, tol=tol, on_row=on_row)
    finally:
        if bar is not None:
            bar.close()

    if not np.any(np.isfinite(best_d)):
        raise ValueError("the distance was not finite at any step: check the model and images")
    k = int(np.nanargmin(best_d))
    flat = np.asarray(best_u[k], np.float32)
    params = jax.tree.map(lambda v: float(v) if np.ndim(v) == 0 else np.asarray(v),
                          pipe.unflatten(flat))
    history = np.stack(history)
    return TuneResult(params=params, distance=float(best_d[k]), history=history,
                      trajectory=np.stack(trajectory), steps=len(history),
                      elapsed=np.asarray(elapsed), seconds=time.perf_counter() - t0, best_start=k,
                      initial_distance=float(history[0, k]), stopped_early=stopped,
                      pipeline=pipe, screened=screened, screened_distances=screened_d,
                      screen_seconds=screen_seconds, optimizer=optimizer,
                      step_evaluations=np.full(len(history), len(p0), np.int64))
