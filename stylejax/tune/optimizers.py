"""Multi-start optimisers of an :class:`~stylejax.tune.objective.Objective`.

* L-BFGS-B (scipy) on the box itself: each start is a scipy minimisation in its own
  thread and the threads run in lockstep, so that every round of evaluations is one
  batch of all starts through the pipeline and the encoder
  (:func:`lbfgs_lockstep`). No learning rate; box bounds are L-BFGS-B's own.
* Adam (optax) on unconstrained parameters ``u`` with the box reached through the
  smooth reparameterisation ``p = low + (high - low) * sigmoid(u)``, so no step can
  leave the box; all starts are one ``vmap``-ped batch per step.

Both report each round through ``on_row(points [S, P], d [S], active [S] bool)``
(bounded parameters and their distances) and return the best point of each start.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stylejax.tune.objective import distances

#: Optimiser names accepted by :func:`stylejax.tune.fit`.
OPTIMIZERS = ("lbfgs", "adam")


# ----------------------------------------------------------------------------
# Reparameterisation (Adam)
# ----------------------------------------------------------------------------

def to_bounded(u, low, high):
    """Unconstrained ``u`` -> ``low + (high - low) * sigmoid(u)`` (inside the box)."""
    return low + (high - low) * jax.nn.sigmoid(u)


def to_unconstrained(p, low, high, eps: float = 1e-4):
    """Inverse of :func:`to_bounded`; values on the bounds are pulled inside by ``eps``."""
    s = np.clip((np.asarray(p, np.float64) - low) / (high - low), eps, 1.0 - eps)
    return np.log(s / (1.0 - s)).astype(np.float32)


# ----------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------

#: Adam with the learning rate held in its state, so one compiled step serves any lr.
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)


def _adam_step(pipeline, embed, model_arg, xs, target, low, high, u, opt_state, best_u,
               best_d):
    def loss(v):
        d = distances(pipeline, embed, model_arg, xs, target, to_bounded(v, low, high))
        return d.sum(), d  # starts are independent: the sum's gradient is per start

    (_, d), g = jax.value_and_grad(loss, has_aux=True)(u)
    updates, opt_state = ADAM.update(g, opt_state, u)
    better = d < best_d
    best_u = jnp.where(better[:, None], u, best_u)
    best_d = jnp.where(better, d, best_d)
    return optax.apply_updates(u, updates), opt_state, best_u, best_d, d


_adam_step_jit = jax.jit(_adam_step, static_argnums=(0, 1), donate_argnums=(7, 8, 9, 10))


def adam_step(objective, u, opt_state, best_u, best_d):
    """One Adam step on unconstrained ``u [S, P]`` for all starts (jitted, donating
    ``u``, ``opt_state``, ``best_u`` and ``best_d``).

    Returns:
      ``(u, opt_state, best_u, best_d, d)``: ``d [S]`` is the distance at the
      incoming ``u``; ``best_*`` keep each start's lowest distance so far.
    """
    return _adam_step_jit(*objective.arguments, objective.low, objective.high, u, opt_state,
                          best_u, best_d)


def run_adam(objective, p0, steps: int, *, lr: float, lr_final: float, patience: int,
             tol: float, on_row=None):
    """Multi-start Adam with a cosine learning-rate decay and early stopping.

    Args:
      objective: an :class:`~stylejax.tune.objective.Objective`.
      p0: ``[S, P]`` bounded start points.
      steps: maximum steps.
      lr, lr_final: the learning rate decays from ``lr`` to ``lr * lr_final`` (cosine).
      patience, tol: stop when the best distance has not improved by more than the
        fraction ``tol`` of itself for ``patience`` steps.
      on_row: optional ``(points [S, P], d [S], active [S])`` callback per step.
    Returns:
      ``(best bounded parameters [S, P], best distances [S], stopped_early)``.
    """
    low, high = (np.asarray(b) for b in objective.pipeline.bounds())
    starts = len(p0)
    active = np.ones(starts, bool)
    u = jnp.asarray(to_unconstrained(p0, low, high))
    state = (u, ADAM.init(u), jnp.array(u), jnp.full((starts,), jnp.inf, jnp.float32))
    best, since_best = np.inf, 0
    for t in range(steps):
        points = np.asarray(to_bounded(state[0], low, high))  # before u is donated
        decay = 0.5 * (1.0 + np.cos(np.pi * t / steps))
        state[1].hyperparams["learning_rate"] = jnp.asarray(
            lr * (lr_final + (1.0 - lr_final) * decay), jnp.float32)
        *state, d = adam_step(objective, *state)
        d = np.asarray(d, np.float64)
        if on_row is not None:
            on_row(points, d, active)
        current = float(np.nanmin(d)) if np.any(np.isfinite(d)) else np.inf
        if current < best - tol * abs(best) or not np.isfinite(best):
            best, since_best = current, 0
        else:
            since_best += 1
        if since_best >= patience:
            return np.asarray(to_bounded(state[2], low, high)), np.asarray(state[3]), True
    return np.asarray(to_bounded(state[2], low, high)), np.asarray(state[3]), False


# ----------------------------------------------------------------------------
# L-BFGS-B in lockstep
# ----------------------------------------------------------------------------

class _Abort(Exception):
    pass


def lbfgs_lockstep(values_and_grads, p0, low, high, max_evaluations: int, on_row) -> None:
    """L-BFGS-B (scipy) from each row of ``p0 [S, P]``, the S runs in lockstep.

    Each run is a scipy minimisation in its own thread; whenever every unfinished
    run waits for an evaluation, their points are evaluated as one batch by
    ``values_and_grads(points [S, P]) -> (d [S], g [S, P])`` (finished runs are
    padded with their last point, so the batch shape and the compiled program stay
    the same). A run ends when L-BFGS-B converges (a step lowers the value by less
    than ``1e-7`` relative, or the projected gradient is below ``1e-6``) or after
    ``max_evaluations``. Non-finite values count as ``inf`` with a zero gradient.

    Args:
      values_and_grads: batched evaluation, see above.
      p0: ``[S, P]`` start points inside the box.
      low, high: ``[P]`` box bounds.
      max_evaluations: evaluations per run.
      on_row: ``(points [S, P], d [S], active [S] bool)``, called after each batch.
    Raises:
      whatever ``values_and_grads`` or ``on_row`` raised (every run is stopped).
    """
    from scipy.optimize import minimize

    n = len(p0)
    cond = threading.Condition()
    pending, results = {}, {}
    finished, errors = [False] * n, []
    bounds = list(zip(np.asarray(low, np.float64), np.asarray(high, np.float64)))
    used = [0] * n

    def objective(k):
        def f(x):
            if used[k] >= max_evaluations:  # scipy's maxfun can overshoot in a line search
                raise _Abort
            used[k] += 1
            with cond:
                pending[k] = np.clip(x, low, high).astype(np.float32)
                cond.notify_all()
                while k not in results and not errors:
                    cond.wait()
                if errors:
                    raise _Abort
                d, g = results.pop(k)
            return d, g
        return f

    def run(k):
        try:
            minimize(objective(k), np.asarray(p0[k], np.float64), jac=True, method="L-BFGS-B",
                     bounds=bounds, options=dict(maxfun=max_evaluations, ftol=1e-7, gtol=1e-6))
        except _Abort:
            pass
        except Exception as err:  # surfaced in the calling thread
            with cond:
                errors.append(err)
        finally:
            with cond:
                finished[k] = True
                cond.notify_all()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    last = np.asarray(p0, np.float32).copy()
    while True:
        with cond:
            while not all(finished[k] or k in pending for k in range(n)):
                cond.wait()
            if not pending:
                break
            active = np.array([k in pending for k in range(n)])
            for k, x in pending.items():
                last[k] = x
            pending.clear()
        try:
            d, g = (np.asarray(v, np.float64) for v in values_and_grads(jnp.asarray(last)))
            on_row(last.copy(), d, active)
        except BaseException as err:  # e.g. KeyboardInterrupt: stop every run
            with cond:
                errors.append(err)
                cond.notify_all()
            break
        with cond:
            for k in np.flatnonzero(active):
                finite = np.isfinite(d[k]) and np.all(np.isfinite(g[k]))
                results[int(k)] = (float(d[k]), g[k]) if finite else (np.inf, np.zeros_like(g[k]))
            cond.notify_all()
        with cond:
            if errors:
                break
    for t in threads:
        t.join(timeout=10)
    if errors:
        raise errors[0]


def run_lbfgs(objective, p0, steps: int, *, on_row=None):
    """Multi-start L-BFGS-B in lockstep on an objective.

    Args:
      objective: an :class:`~stylejax.tune.objective.Objective`.
      p0: ``[S, P]`` bounded start points.
      steps: maximum evaluations per start (rounds of evaluations).
      on_row: optional ``(points [S, P], d [S], active [S])`` callback per round.
    Returns:
      ``(best bounded parameters [S, P], best distances [S], stopped_early)``;
      stopped early means every start converged before ``steps`` rounds.
    """
    low, high = (np.asarray(b) for b in objective.pipeline.bounds())
    starts = len(p0)
    best_u = np.asarray(p0, np.float32).copy()
    best_d = np.full(starts, np.inf)
    rows = [0]

    def record(points, d, active):
        better = np.isfinite(d) & (d < best_d)
        best_u[better], best_d[better] = points[better], d[better]
        rows[0] += 1
        if on_row is not None:
            on_row(points, d, active)

    lbfgs_lockstep(objective.values_and_grads, p0, low, high, steps, record)
    return best_u, best_d, rows[0] < steps
