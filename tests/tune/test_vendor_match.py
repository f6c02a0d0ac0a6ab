"""Vendor matching on a tiny case, checked against independent computations: SSIM
with scikit-image, the StyleX-style distance with numpy from the encoder's
embeddings, and the grid's best SSIM point by brute force."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from stylejax.data import phantom
from stylejax.pipeline import blackbox, lap
from stylejax.tune import vendor_match

SIZE = 48
STYLE = 5


class HistogramEncoder:
    """Soft 16-bin grey-level histogram plus two box-pyramid band log energies."""

    min_size = 16

    def embed(self, images):
        x = jnp.asarray(images, jnp.float32)
        centers = jnp.linspace(0.0, 1.0, 16)
        hist = jnp.exp(-0.5 * ((x[..., None] - centers) * 16.0) ** 2).mean(axis=(1, 2))
        feats, cur = [jnp.sqrt(hist / hist.sum(-1, keepdims=True)) - 0.25], x
        for _ in range(2):
            n, h, w = cur.shape
            down = cur.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
            up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)
            feats.append(0.2 * (jnp.log(jnp.mean((cur - up) ** 2, axis=(1, 2)) + 1e-6)[:, None]
                                + 7.0))
            cur = down
        return jnp.concatenate(feats, axis=-1)


MODEL = HistogramEncoder()
RAWS = [phantom.mammogram(s, size=(SIZE, SIZE), view="cc").raw for s in (1, 2)]
REF_RAWS = [phantom.mammogram(s, size=(SIZE, SIZE), view="mlo").raw for s in (11, 12)]


def skimage_ssim(a, b):
    return structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0)


def mean_ssim(params, vendor):
    return np.mean([skimage_ssim(lap.process(r, params), v) for r, v in zip(RAWS, vendor)])


@pytest.fixture(scope="module")
def match():
    return vendor_match.match_style(STYLE, RAWS, REF_RAWS, model=MODEL, steps=10, starts=2,
                                    coarse=3, ssim_grid=3)


def test_ssims_match_skimage(match):
    vendor = [blackbox.apply(r, STYLE) for r in RAWS]
    tuned = lap.LAPParams(match.params.w, match.params.l, match.params.h)
    assert match.ssim == pytest.approx(mean_ssim(tuned, vendor), abs=2e-3)
    assert match.ssim_neutral == pytest.approx(mean_ssim(lap.LAPParams(5.0, 5.0, 5.0), vendor),
                                               abs=2e-3)
    # Content-matched reference: the best mean SSIM over the 3x3x3 grid on [0, 10].
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 10.0, 3)] * 3, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    brute = [mean_ssim(lap.LAPParams(*map(float, p)), vendor) for p in grid]
    assert match.ssim_grid_best == pytest.approx(max(brute), abs=2e-3)
    best = grid[int(np.argmax(brute))]
    assert [match.grid_best_params[k] for k in "wlh"] == pytest.approx(best.tolist())


def test_distances_are_one_minus_cosine_of_mean_embeddings(match):
    def mean_embedding(images):
        e = np.asarray(MODEL.embed(np.stack(images)), np.float64)
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).mean(0)

    target = mean_embedding([blackbox.apply(r, STYLE) for r in REF_RAWS])

    def distance(params):
        m = mean_embedding([np.asarray(lap.process(r, params)) for r in RAWS])
        return 1.0 - m @ target / (np.linalg.norm(m) * np.linalg.norm(target))

    tuned = lap.LAPParams(match.params.w, match.params.l, match.params.h)
    assert match.distance == pytest.approx(distance(tuned), abs=1e-5)
    assert match.distance_neutral == pytest.approx(distance(lap.LAPParams(5.0, 5.0, 5.0)),
                                                   abs=1e-5)
    # The coarse start grid (0.5, 5, 9.5 per axis) holds the neutral point and the
    # optimiser keeps its best point, so tuning never ends above neutral.
    assert match.distance <= match.distance_neutral + 1e-6


def test_result_fields_and_json(match):
    assert match.style == STYLE and match.held_out == (STYLE in blackbox.HELD_OUT)
    assert all(0.0 <= getattr(match.params, k) <= 10.0 for k in "wlh")
    assert 1 <= match.steps <= 10 and match.seconds > 0
    out = json.loads(json.dumps(match.to_dict()))
    assert set(out["params"]) == {"w", "l", "h"} and out["style"] == STYLE


def test_match_all_reports_each_style_in_order():
    seen = []
    # The fixture's shapes and settings: every compiled program is reused.
    matches = vendor_match.match_all(RAWS, REF_RAWS, model=MODEL, styles=[0, 30],
                                     progress=seen.append, steps=2, starts=2, coarse=3,
                                     ssim_grid=3)
    assert [m.style for m in matches] == [0, 30] and seen == matches
