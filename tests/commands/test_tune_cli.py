"""``stylejax tune`` end to end on tiny files, with a stand-in encoder injected
in place of the shipped StyleX model (the command's plumbing is under test here;
the optimiser and the model have their own tests)."""

import json
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from stylejax import cli, io, lap, tune

SIZE = 40


class TinyEncoder:
    """Soft 12-bin histogram + two box-pyramid band log energies (differentiable)."""

    min_size = 16

    def embed(self, images):
        x = jnp.asarray(images, jnp.float32)
        centers = jnp.linspace(0.0, 1.0, 12)
        hist = jnp.exp(-0.5 * ((x[..., None] - centers) * 12.0) ** 2).mean(axis=(1, 2))
        feats, cur = [jnp.sqrt(hist / hist.sum(-1, keepdims=True)) - 0.3], x
        for _ in range(2):
            n, h, w = cur.shape
            down = cur.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
            up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)
            energy = jnp.log(jnp.mean((cur - up) ** 2, axis=(1, 2)) + 1e-6)
            feats.append(0.2 * (energy[:, None] + 7.0))
            cur = down
        return jnp.concatenate(feats, axis=-1)


MODEL = TinyEncoder()


def _raw(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    blobs = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
                for cx, cy in rng.uniform(0.1, 0.9, (6, 2)))
    texture = rng.normal(size=(SIZE, SIZE)) * 0.05
    return (500.0 * np.exp(-(1.0 + blobs + texture))).astype(np.float32)


@pytest.fixture
def files(tmp_path, monkeypatch):
    shipped = tune.resolve_model
    monkeypatch.setattr(tune, "resolve_model", lambda m: MODEL if m is None else shipped(m))
    raw = tmp_path / "raw.npy"
    np.save(raw, _raw(0))
    style = lap.LAPParams(7.0, 3.0, 8.0)
    ref8 = np.asarray(lap.process(_raw(1), style))
    ref16 = np.asarray(lap.process(_raw(2), style))
    io.write_image(tmp_path / "ref8.png", ref8, bits=8)
    io.write_image(tmp_path / "ref16.tif", ref16, bits=16)
    return tmp_path


def test_tune_json_writes_outputs(files, capsys):
    out = files / "out"
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
            str(files / "ref16.tif"), "--steps", "25", "--out", str(out), "--json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds exactly one JSON object
    assert "tune lap" in captured.err  # the progress bar went to stderr
    assert set(summary["params"]) == {"w", "l", "h"}
    assert all(0.0 <= v <= 10.0 for v in summary["params"].values())
    assert summary["distance"] < summary["initial_distance"]
    assert summary["steps"] >= 1 and summary["steps"] <= 25 and summary["seconds"] > 0
    for name in ("comparison.png", "trajectory.png", "result.json", "tuned_raw.png"):
        assert (out / name).stat().st_size > 0
    # The tuned image is LAP with the reported parameters, stored as 16-bit counts.
    counts = io.read_image(out / "tuned_raw.png")
    expected = np.asarray(lap.process(_raw(0), lap.LAPParams(**summary["params"])))
    np.testing.assert_allclose(counts / 65535.0, expected, atol=2e-4)


def test_combined_metric_is_the_loss(files, capsys, monkeypatch):
    from stylejax.metrics import style_combination

    class Named(TinyEncoder):
        name = "stylex+stats"

    used = Named()
    monkeypatch.setattr(style_combination, "load_pretrained", lambda: used)
    seen = []
    real = tune.Objective
    monkeypatch.setattr(tune, "Objective", lambda *a, **k: seen.append(k["model"]) or real(*a, **k))
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
            "--steps", "3", "--metric", "combined", "--out", str(files / "c"), "--json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert seen == [used] and json.loads(captured.out)["metric"] == "combined"
    assert "stylex+stats distance" in captured.err


def test_references_are_mapped_to_unit_range(files):
    from stylejax.commands.tune import read_inputs
    _, refs = read_inputs([str(files / "raw.npy")],
                          [str(files / "ref8.png"), str(files / "ref16.tif")], MODEL)
    from PIL import Image
    np.testing.assert_allclose(refs[0], np.asarray(Image.open(files / "ref8.png")) / 255.0,
                               atol=1e-6)
    assert refs[1].max() <= 1.0 and refs[1].dtype == np.float32


def test_bad_reference_file_is_named(files, capsys):
    io.write_image(files / "flat.png", np.full((SIZE, SIZE), 0.5, np.float32))
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "flat.png"),
            "--steps", "2", "--out", str(files / "o"), "--json"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "flat.png" in captured.err and "constant" in captured.err
    assert captured.out == ""


def test_extended_lap_pipeline_reports_its_band_parameters(files, capsys):
    out = files / "ext"
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
            "--pipeline", "extended-lap", "--steps", "6", "--starts", "2", "--screen", "0",
            "--out", str(out), "--json", "--quiet"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    # 40 px: floor(log2(40)) - 2 = 3 bands, band0 the finest.
    names = ["w", "band0", "band1", "band2"]
    assert summary["pipeline"] == "extended-lap" and summary["parameter_names"] == names
    assert list(summary["params"]) == names
    assert all(0.0 <= v <= 10.0 for v in summary["params"].values())
    assert "band2=" in captured.err
    assert json.loads((out / "result.json").read_text())["params"] == summary["params"]
    # The tuned image is the extended pipeline with the reported parameters.
    p = summary["params"]
    params = tune.ExtendedLAPParams(w=p["w"], bands=np.array([p["band0"], p["band1"],
                                                              p["band2"]], np.float32))
    expected = tune.apply(_raw(0), params, tune.extended_lap(3))
    np.testing.assert_allclose(io.read_image(out / "tuned_raw.png") / 65535.0, expected,
                               atol=2e-4)


def test_unknown_pipeline_is_refused_with_the_registered_names(files, capsys):
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
            "--pipeline", "lapp", "--out", str(files / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "'lapp'" in err and "lap, extended-lap" in err
    assert not (files / "o").exists()


def test_user_pipeline_from_a_module(files, capsys, monkeypatch):
    # MODULE:NAME imports MODULE, which registers NAME (a gamma-and-gain pipeline).
    from stylejax.pipeline import registry
    (files / "my_pipelines.py").write_text(
        "import jax.numpy as jnp\n"
        "from stylejax.pipeline import registry, tunable\n"
        "def apply(x, p):\n"
        "    y = jnp.clip(x, 1e-3, 1.0) ** p['gamma'] * p['gain']\n"
        "    return 0.5 + 0.5 * jnp.tanh(2.0 * (y - 0.5))\n"
        "registry.register('test-gamma', tunable.Pipeline(\n"
        "    'test-gamma', apply, init={'gain': 1.0, 'gamma': 1.0},\n"
        "    low={'gain': 0.5, 'gamma': 0.3}, high={'gain': 2.0, 'gamma': 3.0}))\n")
    monkeypatch.syspath_prepend(str(files))
    monkeypatch.delitem(sys.modules, "my_pipelines", raising=False)
    try:
        argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
                "--pipeline", "my_pipelines:test-gamma", "--steps", "4", "--starts", "2",
                "--screen", "0",
                "--out", str(files / "user"), "--json", "--quiet"]
        assert cli.main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
    finally:
        registry.unregister("test-gamma")
    assert summary["pipeline"] == "test-gamma"
    assert summary["parameter_names"] == ["gain", "gamma"]
    assert 0.5 <= summary["params"]["gain"] <= 2.0 and 0.3 <= summary["params"]["gamma"] <= 3.0


def test_raw_files_with_the_same_name_get_their_own_outputs(files, capsys):
    for d, seed in (("a", 0), ("b", 3)):
        (files / d).mkdir()
        np.save(files / d / "scan.npy", _raw(seed))
    out = files / "same"
    argv = ["tune", "--raw", str(files / "a" / "scan.npy"), str(files / "b" / "scan.npy"),
            "--reference", str(files / "ref8.png"), "--steps", "3", "--starts", "1",
            "--screen", "0", "--out", str(out), "--json", "--quiet"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.glob("tuned_*")) == ["tuned_0_scan.png", "tuned_1_scan.png"]
    params = lap.LAPParams(**summary["params"])
    for k, seed in ((0, 0), (1, 3)):  # each file holds its own raw image, tuned
        np.testing.assert_allclose(io.read_image(out / f"tuned_{k}_scan.png") / 65535.0,
                                   np.asarray(lap.process(_raw(seed), params)), atol=2e-4)


@pytest.mark.parametrize("extra, message", [
    (["--optimizer", "adam", "--lr", "inf"], "--lr must be a finite number > 0 (got inf)"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--seed", "-5"], "--seed must be >= 0"),
    (["--starts", "0"], "--starts must be >= 1"),
    (["--metric", "combined", "--model", "run_dir"], "--metric combined uses the shipped"),
])
def test_bad_options_are_named_before_any_work(files, capsys, monkeypatch, extra, message):
    monkeypatch.setattr(tune, "fit", lambda *a, **k: pytest.fail("the fit ran"))
    argv = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png"),
            "--out", str(files / "o")] + extra
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (files / "o").exists()


def test_output_folder_is_checked_before_the_fit(files, capsys, monkeypatch):
    import os
    monkeypatch.setattr(tune, "fit", lambda *a, **k: pytest.fail("the fit ran"))
    (files / "afile").write_text("x")
    base = ["tune", "--raw", str(files / "raw.npy"), "--reference", str(files / "ref8.png")]
    assert cli.main(base + ["--out", str(files / "afile" / "out")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    assert cli.main(base + ["--out", str(files / "afile")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    locked = files / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert cli.main(base + ["--out", str(locked / "x")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        os.chmod(locked, 0o700)


def test_demo_names_a_bad_seed(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--seed", "-5", "--out", str(tmp_path / "d")]) == 2
    assert "--seed must be >= 0 (got -5)" in capsys.readouterr().err
