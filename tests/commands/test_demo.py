"""``stylejax demo --quick`` end to end with the shipped StyleX model.

The quick mode only checks that the main job runs (3 L-BFGS-B evaluations on a
64 px phantom), so the test checks its plumbing against independent
recomputations: the hidden style from its documented rule, the references from
``lap.process`` on the documented phantoms, the reported distances from the
embeddings with numpy, and the written files against the printed JSON.
"""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from stylejax import cli
from stylejax.data import phantom
from stylejax.pipeline import lap


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["demo", "--quick", "--seed", "3", "--out", str(out), "--json"])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_quick_demo_prints_one_json_object_and_writes_its_files(demo_run):
    code, out, err, folder = demo_run
    assert code == 0, err
    summary = json.loads(out)  # stdout holds exactly one JSON object; logs go to stderr
    assert "hidden style drawn" in err and "tune lap" in err
    assert summary["quick"] is True and summary["size"] == 64 and summary["seed"] == 3
    assert summary["pipeline"] == "lap" and summary["parameter_names"] == ["w", "l", "h"]
    assert 1 <= summary["steps"] <= 3 and summary["starts"] == 1
    assert json.loads((folder / "result.json").read_text()) == summary
    for name in ("comparison", "trajectory"):
        with Image.open(summary["outputs"][name]) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_quick_demo_hidden_style_and_errors_follow_the_documented_rule(demo_run):
    summary = json.loads(demo_run[1])
    # Hidden style: uniform in [1, 9] from numpy's default_rng(seed), one decimal.
    truth = np.round(np.random.default_rng(3).uniform(1.0, 9.0, 3), 1)
    np.testing.assert_allclose([summary["truth"][k] for k in "wlh"], truth, atol=1e-6)
    for k in "wlh":
        assert 0.0 <= summary["params"][k] <= 10.0
        assert summary["errors"][k] == pytest.approx(summary["params"][k] - summary["truth"][k])
    assert summary["recovered"] == (max(abs(e) for e in summary["errors"].values()) <= 0.5)


def test_quick_demo_distances_are_the_stylex_distances(demo_run):
    # Recompute the objective with numpy from the model's embeddings of the raw
    # phantom styled with the reported parameters and of the reference phantom.
    from stylejax.metrics import stylex
    summary = json.loads(demo_run[1])
    model = stylex.load_pretrained()
    base = 10_000 + 100 * 3  # the demo's documented phantom seeds
    raw = phantom.mammogram(base, size=(64, 64), view="cc").raw
    truth = lap.LAPParams(*(summary["truth"][k] for k in "wlh"))
    reference = np.asarray(lap.process(phantom.mammogram(base + 1, size=(64, 64), view="mlo").raw,
                                       truth))
    found = np.asarray(lap.process(raw, lap.LAPParams(*(summary["params"][k] for k in "wlh"))))
    at_truth = np.asarray(lap.process(raw, truth))
    e = np.asarray(model.embed(np.stack([reference, found, at_truth])), np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert summary["distance"] == pytest.approx(1.0 - e[0] @ e[1], abs=2e-4)
    assert summary["distance_at_truth"] == pytest.approx(1.0 - e[0] @ e[2], abs=2e-4)
    assert summary["distance"] <= summary["initial_distance"] + 1e-7
