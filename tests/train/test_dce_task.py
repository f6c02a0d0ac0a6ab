"""The DCE-MRI MUNIT task: config checks, one real training step whose loss terms are
recomputed independently from the initial networks (style references from another training
series, not the input's twin), export/load round trip and mismatch."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from stylejax.train import dce as T
from stylejax.train import loop
from stylejax.train import registry


def _cfg():
    # two training series, batch 1: the step draws series i and, as style reference, the
    # other one (1 - i), never the input's own twin
    return dataclasses.replace(T.smoke(), steps=1, pool_series=2, temporal="none",
                               checkpoint_every=1).validate()


def test_registered_and_configs_validate():
    assert registry.get("dce") is T.TASK
    for name, make in T.TASK.configs.items():
        cfg = make().validate()
        assert isinstance(cfg, T.DCEConfig)
    assert T.TASK.configs["default-adain"]().decoder == "adain"
    assert T.TASK.configs["default-no-convlstm"]().temporal == "none"
    for bad in (dict(decoder="vgg"), dict(temporal="gru"), dict(frames=1), dict(size=30),
                dict(lr=0.0), dict(w_pair=-1.0), dict(pool_series=T.EVAL_SEED_START)):
        with pytest.raises(ValueError):
            dataclasses.replace(T.default(), **bad).validate()


def test_step_losses_match_an_independent_recomputation(tmp_path):
    cfg = _cfg()
    pool = T._pool(cfg, None)
    net0 = T.build_munit(cfg, seed=cfg.seed)  # the task's initial generators
    ce, non = pool["ce"], pool["non_ce"]

    def losses(i, r):  # input series i, style references from series r
        a, b = ce[i:i + 1], non[i:i + 1]
        ab = np.asarray(net0.translate(a, to="non_ce", style_series=non[r:r + 1]))
        ba = np.asarray(net0.translate(b, to="ce", style_series=ce[r:r + 1]))
        rec = (np.abs(np.asarray(net0.ce(a)) - a).mean()
               + np.abs(np.asarray(net0.non_ce(b)) - b).mean())
        return np.abs(ab - b).mean() + np.abs(ba - a).mean(), rec

    res = loop.run(T.TASK, cfg, str(tmp_path / "run"), devices=jax.devices()[:1],
                   progress=False)
    m = res.last_metrics
    assert all(np.isfinite(v) for v in m.values())
    rec0 = losses(0, 0)[1]
    i = 0 if np.isclose(m["rec"], rec0, rtol=1e-4) else 1   # the series the step drew
    pair, rec = losses(i, 1 - i)
    np.testing.assert_allclose(m["rec"], rec, rtol=1e-4)
    np.testing.assert_allclose(m["pair"], pair, rtol=1e-4)
    own_twin = losses(i, i)[0]
    # the reference was not the twin (at initialisation the style moves the loss by ~1e-3)
    assert not np.isclose(own_twin, m["pair"], rtol=2e-4, atol=0)
    a, b = ce[:1], non[:1]
    ab = np.asarray(net0.translate(a, to="non_ce", style_series=b))
    assert os.path.exists(tmp_path / "run" / "cache")
    # the generators moved, and the export reloads to the same network (float16)
    net = T.munit_from_state(cfg, res.state)
    T.TASK.export(cfg, res.state, str(tmp_path / "exp"), progress=False)
    net2, meta = T.load(str(tmp_path / "exp"))
    assert meta["frames"] == cfg.frames and meta["train_seeds"] == [0, 1]
    out1 = np.asarray(net.translate(a, to="non_ce", style_series=b))
    out2 = np.asarray(net2.translate(a, to="non_ce", style_series=b))
    assert np.abs(out1 - ab).max() > 1e-6
    np.testing.assert_allclose(out2, out1, atol=5e-3)

    # weights that do not match the architecture in dce.json
    meta_path = tmp_path / "exp" / T.META_FILE
    bad = json.loads(meta_path.read_text())
    bad["architecture"]["dim"] = 6
    meta_path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="do not match"):
        T.load(str(tmp_path / "exp"))
    with pytest.raises(ValueError, match="not an exported"):
        T.load(str(tmp_path))
