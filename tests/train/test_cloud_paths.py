"""A ``gs://`` workdir (issue 19): config, metrics, plot and checkpoint digests go
through ``etils.epath``. The bucket is a local folder: ``epath.testing.mock_epath``
routes every epath call on ``gs://bucket/...`` there, and orbax's checkpoint folder
is redirected to a local one (its tensorstore has its own GCS driver)."""

import json

import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing
from test_loop import LinearTask, _data, _numpy_descent, smoke

from stylejax.train import loop


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    root = tmp_path / "bucket_root"
    root.mkdir()

    def remap(fn, path, *args, **kwargs):
        return fn(str(path).replace("gs://bucket", str(root)), *args, **kwargs)

    def remap2(fn, src, dst, *args, **kwargs):
        return fn(*(str(p).replace("gs://bucket", str(root)) for p in (src, dst)), *args,
                  **kwargs)

    checkpoints = tmp_path / "orbax"
    real_manager = loop.checkpoint_manager
    monkeypatch.setattr(loop, "checkpoint_manager", lambda workdir, keep: real_manager(
        str(checkpoints / workdir.replace("gs://", "")), keep))
    monkeypatch.setattr(loop, "is_run", lambda workdir: epath.Path(
        loop.join(workdir, loop.CONFIG_FILE)).exists())
    one = {n: remap for n in ("open", "exists", "isdir", "listdir", "glob", "makedirs",
                              "mkdir", "remove", "rmtree", "stat", "walk")}
    with epath_testing.mock_epath(rename=remap2, replace=remap2, copy=remap2, **one):
        yield root


def test_gs_workdir_gets_config_metrics_plot_and_digests(bucket):
    task, cfg = LinearTask(*_data()), smoke()
    workdir = "gs://bucket/runs/a"

    class Stop(Exception):
        pass

    def stop(step, state):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        loop.run(task, cfg, workdir, progress=False, callback=stop)
    result = loop.run(task, cfg, workdir, progress=False)
    run = bucket / "runs" / "a"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_digests.json", "config.json", "loss.png", "metrics.jsonl"]
    assert smoke().from_dict(json.loads((run / "config.json").read_text())) == cfg
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    w, _, losses = _numpy_descent(*_data(), cfg, cfg.steps)
    assert [r["step"] for r in rows] == list(range(1, cfg.steps + 1))
    np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-5)
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert {"4", "6"} <= set(json.loads((run / "checkpoint_digests.json").read_text()))
    np.testing.assert_allclose(np.asarray(result.state["w"]), w, rtol=1e-5, atol=1e-6)
    # load_run reads the run back through the same paths.
    saved, state, step = loop.load_run(task, workdir)
    assert saved == cfg and step == 6
    np.testing.assert_allclose(np.asarray(state["w"]), w, rtol=1e-5, atol=1e-6)


def test_stylex_model_saved_to_and_loaded_from_gs(bucket):
    from flax import nnx

    from stylejax.metrics import stylex
    from stylejax.models.simsiam import StyleEncoder
    from stylejax.train import simsiam
    model = stylex.StyleX.from_encoder(StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(0)),
                                       embed_size=32, info={"config": "t"})
    model.save("gs://bucket/models/m", dtype="float32")
    assert sorted(p.name for p in (bucket / "models" / "m").iterdir()) == [
        stylex.MODEL_FILE, stylex.WEIGHTS_FILE]
    for back in (stylex.load("gs://bucket/models/m"), simsiam.load_model("gs://bucket/models/m")):
        assert back.embed_size == 32 and back.info == {"config": "t"}
        for k, v in model.flat_weights().items():
            np.testing.assert_array_equal(back.flat_weights()[k], v)
    (bucket / "models" / "m" / stylex.MODEL_FILE).write_text("{")
    with pytest.raises(ValueError, match="gs://bucket/models/m"):
        stylex.load("gs://bucket/models/m")
