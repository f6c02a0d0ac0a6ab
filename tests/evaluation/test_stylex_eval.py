"""Tests for the StyleX evaluation experiment and the evaluate-stylex command."""

import contextlib
import io
import json
import os

import numpy as np
import pytest

from stylejax import cli
from stylejax.evaluation import stylex_eval as ev

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick CLI run of a tiny random StyleX model saved to disk, with both baselines."""
    from flax import nnx

    from stylejax.metrics.stylex import StyleX
    from stylejax.models.simsiam import StyleEncoder

    model_dir = tmp_path_factory.mktemp("model")
    StyleX.from_encoder(StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(0)), embed_size=64,
                        info={"config": "tiny-test"}).save(str(model_dir))
    out = tmp_path_factory.mktemp("eval")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["evaluate-stylex", "--model", str(model_dir), "--quick",
                         "--out", str(out), "--no-progress"])
    return code, out, printed.getvalue()


def test_cli_quick_writes_metrics_and_figures(quick_run):
    code, out, printed = quick_run
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["main"] == "stylex"
    assert report["command"].startswith("stylejax evaluate-stylex --model ")
    assert report["command"].endswith(" --quick")
    assert set(report["encoders"]) == {"stylex", "handcrafted", "gram"}
    assert report["encoders"]["stylex"]["metric"] == "cosine"
    assert report["encoders"]["stylex"]["info"]["config"] == "tiny-test"
    for name, entry in report["encoders"].items():
        missing = set(ev.METRIC_NAMES) - set(entry["metrics"])
        assert not missing, f"{name} lacks {missing}"
        for key in ev.METRIC_NAMES:
            value = entry["metrics"][key]
            assert value is None or -1.0 <= value <= 1.0, (name, key, value)
    assert [row["metric"] for row in report["table"]] == list(ev.METRIC_NAMES)
    assert len(report["verdicts"]) == len(ev.METRIC_NAMES)
    assert "retrieval_lapx" in printed and "handcrafted" in printed and "best" in printed
    assert report["config"]["content_seeds"] == [0, 1, 2]
    assert report["config"]["heldout_vendor_styles"] == [3, 10, 18, 25]
    assert sorted(report["figures"]) == ["fig3_stylex.png", "fig4_stylex.png"]  # quick mode
    for name in report["figures"]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE


def test_handcrafted_retrieves_extreme_lap_styles(quick_run):
    # LAP-x styles differ by 4x band gains and window widths: global statistics see that.
    _, out, _ = quick_run
    m = json.loads((out / "metrics.json").read_text())["encoders"]["handcrafted"]["metrics"]
    assert m["retrieval_lapx"] >= 0.9
    assert m["auc_lapx"] >= 0.9
    assert m["spearman_dist_h"] >= 0.8


def _fake_sets(contents=3):
    """Style sets with the real label layout and placeholder images."""
    def make(name, k, value=None, held=None):
        style = np.repeat(np.arange(k), contents)
        return ev.StyleSet(name, np.zeros((k * contents, 1, 1), np.float32), style,
                           np.tile(np.arange(contents), k), [str(i) for i in range(k)],
                           value=None if value is None else np.repeat(value, contents),
                           held_out=None if held is None else np.isin(style, held))
    sets = {p: make(p, 11, value=np.arange(11.0)) for p in ev.PARAMS}
    sets["lapx"] = make("lapx", 8)
    sets["vendor"] = make("vendor", 32, held=(3, 10, 18, 25))
    return sets


def test_metrics_of_oracle_and_content_encoders():
    sets = _fake_sets()
    rng = np.random.default_rng(0)
    cfg = ev.EvalConfig.quick()

    def style_oracle(s):  # style on a line (sweeps) or one-hot; content as tiny noise
        base = s.value[:, None] if s.value is not None else np.eye(s.style.max() + 1)[s.style]
        return np.concatenate([base * 10.0, 0.01 * rng.normal(size=(len(s.style), 2))], 1)

    def content_oracle(s):
        return np.concatenate([np.eye(s.content.max() + 1)[s.content] * 10.0,
                               0.01 * rng.normal(size=(len(s.style), 2))], 1)

    good, tsne = ev.evaluate_embeddings({k: style_oracle(s) for k, s in sets.items()}, sets,
                                        "euclidean", cfg)
    for p in ev.PARAMS:
        assert good[f"spearman_tsne_{p}"] > 0.95
        assert good[f"spearman_dist_{p}"] > 0.99  # tied values, untied distances
        assert tsne[p].shape == (33,)
        # the oriented coordinate grows with the parameter
        assert np.corrcoef(tsne[p], sets[p].value)[0, 1] > 0
    for key in ("retrieval_lapx", "retrieval_vendor", "retrieval_vendor_heldout",
                "auc_lapx", "auc_vendor", "auc_content", "retrieval_fine"):
        assert good[key] == 1.0, key
    assert good["silhouette_vendor_heldout"] > 0.9
    assert tsne["vendor"].shape == (96, 2)

    bad, _ = ev.evaluate_embeddings({k: content_oracle(s) for k, s in sets.items()}, sets,
                                    "euclidean", cfg)
    assert bad["auc_content"] == 0.0
    assert min(bad[f"odd_between_{p}"] for p in ev.PARAMS) < 1.0
    assert max(bad[f"spearman_tsne_{p}"] for p in ev.PARAMS) < 0.5
    assert bad["silhouette_lapx"] < 0
    assert bad["retrieval_lapx"] < 0.5


def test_compare_picks_best_and_checks_targets():
    names = ("stylex", "handcrafted")
    results = {n: {m: 0.5 for m in ev.METRIC_NAMES} for n in names}
    results["stylex"]["retrieval_lapx"] = 0.97
    results["handcrafted"]["auc_content"] = 0.99
    results["stylex"]["spearman_tsne_w"] = None
    rows, verdicts = ev.compare(results, "stylex")
    by = {r["metric"]: r for r in rows}
    assert by["retrieval_lapx"]["best"] == "stylex" and by["retrieval_lapx"]["meets_target"]
    assert by["auc_content"]["best"] == "handcrafted"
    assert by["auc_content"]["meets_target"] is False
    assert by["spearman_tsne_w"]["best"] == "handcrafted"
    assert by["spearman_tsne_w"]["meets_target"] is None
    assert by["silhouette_lapx"]["target"] is None
    text = dict(zip(ev.METRIC_NAMES, verdicts))
    assert "NOT met" in text["auc_content"] and "tie" in text["silhouette_lapx"]
    table = ev.format_table(rows, list(names))
    assert "MISS" in table and "n/a" in table


def test_refuses_training_content_and_bad_config(tmp_path):
    class Leaky:
        info = {"data_seed": 0, "num_raw": 10}

        def embed(self, images):
            return np.zeros((len(images), 2))

    with pytest.raises(ValueError, match="overlap"):
        ev.evaluate(Leaky(), str(tmp_path), ev.EvalConfig.quick(), progress=False)
    with pytest.raises(ValueError, match="contents"):
        ev.EvalConfig.quick(contents=1).validate()
    with pytest.raises(ValueError, match="embed"):
        ev.evaluate(object(), str(tmp_path), ev.EvalConfig.quick(), progress=False)


def test_cli_errors(tmp_path, capsys):
    code = cli.main(["evaluate-stylex", "--model", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "o"), "--quick"])
    assert code == 2
    assert "not found" in capsys.readouterr().err
    code = cli.main(["evaluate-stylex", "--encoder", "gram", "--model", str(tmp_path),
                     "--out", str(tmp_path / "o")])
    assert code == 2
    assert not os.path.exists(tmp_path / "o")
