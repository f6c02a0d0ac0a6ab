"""Tests of stylejax.tune with a small, fixed, differentiable stand-in encoder.

The stand-in embeds an image as a soft grey-level histogram plus the log energies
of a box-filter pyramid: global statistics that follow LAP's window and band gains
while being (roughly) independent of content, so parameter recovery across
non-matching content is a meaningful check of the optimiser, not of a model.
All tests share one image size, one model object and four starts, so the jitted
step compiles once for the module.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from stylejax import lap, tune

SIZE = 48
STARTS = 4


class StandInEncoder:
    """``embed([N, H, W]) -> [N, bins + levels]``; differentiable and jit-friendly."""

    min_size = 16

    def __init__(self, bins=16, levels=3):
        self.centers = np.linspace(0.0, 1.0, bins, dtype=np.float32)
        self.sigma = 1.0 / bins
        self.levels = levels

    def embed(self, images):
        x = jnp.asarray(images, jnp.float32)
        w = jnp.exp(-0.5 * ((x[..., None] - self.centers) / self.sigma) ** 2)
        hist = w.mean(axis=(1, 2))
        hist = hist / hist.sum(-1, keepdims=True)
        energies, cur = [], x
        for _ in range(self.levels):
            n, h, w_ = cur.shape
            cur = cur[:, :h // 2 * 2, :w_ // 2 * 2]
            down = cur.reshape(n, h // 2, 2, w_ // 2, 2).mean(axis=(2, 4))
            up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)
            energies.append(jnp.log(jnp.mean((cur - up) ** 2, axis=(1, 2)) + 1e-6))
            cur = down
        # Centred so that the cosine is sensitive to changes (no big common offset).
        return jnp.concatenate([jnp.sqrt(hist) - 0.25, 0.2 * (jnp.stack(energies, -1) + 7.0)], -1)


MODEL = StandInEncoder()


def synthetic_raw(seed, size=SIZE):
    """A positive linear raw image: exp(-attenuation) of a power-law texture and a lump."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    k = np.hypot(f[:, None], f[None, :])
    k[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / k ** 1.5
    field = np.fft.ifft2(spectrum).real
    field = (field - field.mean()) / field.std()
    yy, xx = np.mgrid[:size, :size] / size
    cx, cy = rng.uniform(0.3, 0.7, 2)
    thickness = 1.5 + 0.3 * field + np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.08)
    return (1000.0 * np.exp(-thickness)).astype(np.float32)


RAWS = [synthetic_raw(1), synthetic_raw(2)]
REF_RAWS = [synthetic_raw(11), synthetic_raw(12)]
TRUTH = np.array([3.0, 7.0, 6.0], np.float32)  # odd values: unlike LAP's training grid


def references(truth=TRUTH):
    params = lap.LAPParams(*map(float, truth))
    return [np.asarray(lap.process(r, params)) for r in REF_RAWS]


@pytest.fixture(scope="module")
def objective():
    return tune.Objective(RAWS, references(), model=MODEL)


def test_reparameterisation_stays_in_bounds_and_inverts():
    u = np.array([-1e4, -30.0, -1.0, 0.0, 0.5, 30.0, 1e4], np.float32)
    p = np.asarray(tune.to_bounded(u, 0.0, 10.0))
    assert np.all((p >= 0.0) & (p <= 10.0))
    np.testing.assert_allclose(p, 10.0 * special.expit(u.astype(np.float64)), atol=1e-5)
    values = np.array([0.0, 0.3, 5.0, 9.7, 10.0])
    back = np.asarray(tune.to_bounded(tune.to_unconstrained(values, 0.0, 10.0), 0.0, 10.0))
    assert np.all(np.isfinite(tune.to_unconstrained(values, 0.0, 10.0)))
    np.testing.assert_allclose(back, values, atol=2e-3)


@pytest.mark.parametrize("optimizer", tune.OPTIMIZERS)
def test_fit_recovers_lap_parameters_exactly_on_matching_content(optimizer):
    # References styled from the raw images themselves: the objective's minimum
    # (distance 0) is at the truth, so this checks the optimiser alone.
    refs = [np.asarray(lap.process(r, lap.LAPParams(*map(float, TRUTH)))) for r in RAWS]
    result = tune.fit(RAWS, refs, model=MODEL, steps=250, starts=STARTS, seed=0,
                      optimizer=optimizer)
    got = np.array([result.params.w, result.params.l, result.params.h])
    assert np.all(np.abs(got - TRUTH) <= 0.3), (got, TRUTH)
    assert result.distance < 1e-3
    assert result.trajectory.min() >= 0.0 and result.trajectory.max() <= 10.0
    assert result.to_dict()["params"].keys() == {"w", "l", "h"}
    assert result.evaluations == result.steps * STARTS + len(result.screened) > 0
    assert result.optimizer == optimizer == result.to_dict()["optimizer"]


def test_lbfgs_lockstep_matches_independent_scipy_runs(objective):
    # Reference: scipy's L-BFGS-B run start by start on single-point evaluations.
    from scipy.optimize import minimize
    starts = np.array([[5.0, 5.0, 5.0], [2.0, 8.0, 3.0], [8.0, 2.0, 7.0], [5.0, 1.0, 9.0]],
                      np.float32)
    result = tune.fit(None, None, objective=objective, steps=60, starts=STARTS, screen=0,
                      init=starts)
    expected = [minimize(lambda x: objective.value_and_grad(x.astype(np.float32)), x0,
                         jac=True, method="L-BFGS-B", bounds=[(0, 10)] * 3,
                         options=dict(maxfun=60, ftol=1e-7, gtol=1e-6)).fun for x0 in starts]
    reached = np.nanmin(result.history, axis=0)
    np.testing.assert_allclose(reached, expected, atol=2e-4)
    np.testing.assert_allclose(result.distance, min(expected), atol=2e-4)
    # Every row is one batch of all starts; finished starts repeat their last point.
    assert result.history.shape == (result.steps, STARTS) and result.steps <= 60 + 5
    np.testing.assert_array_equal(result.trajectory[0], starts)


def test_lbfgs_lockstep_stops_on_an_evaluation_error():
    calls = []

    def failing(points):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("evaluation failed")
        return jnp.sum((points - 3.0) ** 2, axis=1), 2 * (points - 3.0)

    with pytest.raises(RuntimeError, match="evaluation failed"):
        tune.lbfgs_lockstep(failing, np.full((2, 3), 5.0, np.float32), np.zeros(3),
                             np.full(3, 10.0), 50, lambda *a: None)
    rows = []
    tune.lbfgs_lockstep(lambda p: (jnp.sum((p - 3.0) ** 2, axis=1), 2 * (p - 3.0)),
                         np.array([[5.0, 5.0, 5.0], [9.0, 0.0, 1.0]], np.float32),
                         np.zeros(3), np.full(3, 10.0), 50, lambda p, d, a: rows.append(p))
    np.testing.assert_allclose(rows[-1], 3.0, atol=1e-3)  # a quadratic: both at the minimum


def test_fit_across_content_reaches_the_truths_distance(objective):
    # Non-matching content: the stand-in metric's optimum is biased away from the
    # truth, but the optimiser must find a point at least as close as the truth,
    # near it, and report the forward distance of the parameters it returns.
    result = tune.fit(None, None, objective=objective, steps=250, starts=STARTS, seed=0)
    got = np.array([result.params.w, result.params.l, result.params.h])
    d_truth, d_got = objective(np.stack([TRUTH, got, got, got]), chunk=STARTS)[:2]
    assert result.distance <= d_truth + 1e-6
    assert np.all(np.abs(got - TRUTH) <= 1.0), (got, TRUTH)
    np.testing.assert_allclose(result.distance, d_got, atol=1e-5)
    assert result.distance < result.initial_distance


def test_gradient_matches_finite_differences(objective):
    p = np.array([4.0, 6.0, 5.5], np.float32)
    d, grad = objective.value_and_grad(p)
    eps = 0.05
    plus_minus = np.concatenate([p + eps * np.eye(3), p - eps * np.eye(3)]).astype(np.float32)
    values = objective(plus_minus, chunk=STARTS)
    fd = (values[:3] - values[3:]) / (2 * eps)
    np.testing.assert_allclose(d, objective(np.stack([p] * STARTS))[0], rtol=1e-5)
    np.testing.assert_allclose(grad, fd, rtol=0.05, atol=2e-4 * np.abs(fd).max())
    assert np.abs(grad).max() > 0


@pytest.mark.parametrize("optimizer", tune.OPTIMIZERS)
def test_multistart_keeps_the_best_start(objective, optimizer):
    # The first start sits where the soft window saturates (a plateau); the others
    # spread over the box. The result must be the best point any start visited.
    result = tune.fit(None, None, objective=objective, steps=40, starts=STARTS, lr=0.2,
                      seed=3, init=lap.LAPParams(9.9, 9.9, 9.9), optimizer=optimizer)
    visited = result.trajectory.reshape(-1, 3)
    d = objective(visited, chunk=STARTS)
    best = int(np.argmin(d))
    assert result.best_start != 0
    assert result.distance <= d[best] + 1e-5
    got = np.array([result.params.w, result.params.l, result.params.h])
    np.testing.assert_allclose(result.distance, objective(np.stack([got] * STARTS))[0], atol=1e-5)
    assert result.history.shape == (result.steps, STARTS)


def test_early_stopping_after_patience(objective):
    result = tune.fit(None, None, objective=objective, steps=100, starts=STARTS, patience=5,
                      tol=10.0, optimizer="adam")
    with pytest.raises(ValueError, match="optimizer"):
        tune.fit(None, None, objective=objective, optimizer="sgd")
    assert result.stopped_early and result.steps == 6


def test_extended_lap_reproduces_lap_and_tunes():
    levels = 2
    pipe = tune.extended_lap(levels)
    assert tune.extended_lap(levels) is pipe
    assert pipe.names() == ["w", "band0", "band1"]
    x = lap.normalize_log(jnp.asarray(np.stack(RAWS)))
    for w, l, h in [(2.0, 8.0, 3.0), (7.0, 1.0, 9.5)]:
        p = lap.LAPParams(w, l, h)
        ext = tune.ExtendedLAPParams.from_lap(p, levels)
        np.testing.assert_allclose(pipe.apply(x, ext), lap.process_normalized(x, p, levels=levels),
                                   atol=1e-5)
    result = tune.fit(RAWS, references(), model=MODEL, pipeline=pipe, steps=30, starts=2,
                      lr=0.2, screen=0)
    assert isinstance(result.params, tune.ExtendedLAPParams)
    assert result.trajectory.shape[1:] == (2, 3)
    assert result.distance < result.initial_distance
    assert set(result.to_dict()["params"]) == set(pipe.names())


def _bad(kind):
    good = synthetic_raw(5)
    refs = references()
    small = good[:8, :8]
    cases = {
        "constant raw": (np.full((SIZE, SIZE), 100.0, np.float32), refs, "constant"),
        "nan raw": (np.where(good > good.mean(), np.nan, good), refs, "non-finite"),
        "negative raw": (good - good.max(), refs, "positive"),
        "rank-1 raw": (good[0], refs, "rank"),
        "rank-4 raw": (good[None, None], refs, "rank"),
        "small raw": (small, refs, "too small"),
        "constant reference": (good, [np.full((SIZE, SIZE), 0.5, np.float32)], "constant"),
        "nan reference": (good, [np.where(refs[0] > 0.5, np.nan, refs[0])], "non-finite"),
        "reference above 1": (good, [refs[0] * 3.0], r"\[0, 1\]"),
        "rank-3 reference in a list": (good, [np.stack(refs)], "rank"),
        "empty reference list": (good, [], "reference list is empty"),
        "small reference": (good, [refs[0][:8, :8]], "too small"),
    }
    return cases[kind]


@pytest.mark.parametrize("kind", ["constant raw", "nan raw", "negative raw", "rank-1 raw",
                                  "rank-4 raw", "small raw", "constant reference",
                                  "nan reference", "reference above 1",
                                  "rank-3 reference in a list", "empty reference list",
                                  "small reference"])
def test_bad_images_are_rejected(kind):
    raw, refs, message = _bad(kind)
    with pytest.raises(ValueError, match=message):
        tune.fit(raw, refs, model=MODEL, steps=1)


def test_bad_model_and_settings_are_rejected(tmp_path):
    pytest.importorskip("stylejax.stylex")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="not a StyleX run"):
        tune.fit(RAWS, references(), model=str(tmp_path), steps=1)
    with pytest.raises(ValueError, match="does not exist"):
        tune.fit(RAWS, references(), model=str(tmp_path / "missing"), steps=1)
    with pytest.raises(ValueError, match="embed"):
        tune.fit(RAWS, references(), model=object(), steps=1)
    with pytest.raises(ValueError, match="steps"):
        tune.fit(RAWS, references(), model=MODEL, steps=0)
    with pytest.raises(ValueError, match="Pipeline"):
        tune.fit(RAWS, references(), model=MODEL, pipeline=lap.process_normalized)


def test_registered_pipeline_names_resolve(monkeypatch):
    from stylejax.tune import objective as objective_module
    # An unknown name fails before the (shipped) model would be loaded.
    monkeypatch.setattr(objective_module, "resolve_model",
                        lambda m: pytest.fail("model loaded before the pipeline was checked"))
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        tune.fit(RAWS, references(), pipeline="nope", steps=1)
    monkeypatch.undo()
    obj = tune.Objective(RAWS, references(), model=MODEL, pipeline="extended-lap")
    # 48 px: floor(log2(48)) - 2 = 3 bands.
    assert obj.pipeline is tune.extended_lap(3)
    assert tune.Objective(RAWS, references(), model=MODEL, pipeline="lap").pipeline is tune.LAP
