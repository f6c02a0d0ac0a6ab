"""The AdaIN CT training task: sampling, a smoke run, export/load and its checks."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.train import adain as A
from stylejax.train import loop, registry


def test_to_unit_hu_window_and_unit_stretch():
    hu = np.array([[-1000.0, 0.0], [1000.0, 1500.0]], np.float32)
    x, rng = A.to_unit(hu)  # auto -> HU window
    np.testing.assert_allclose(x, [[0.0, 0.5], [1.0, 1.25]], atol=1e-6)
    np.testing.assert_allclose(A.from_unit(x, rng), hu, atol=1e-3)
    ramp = np.tile(np.linspace(0.2, 0.6, 64, dtype=np.float32), (64, 1))
    y, (lo, hi) = A.to_unit(ramp)  # within [0, 1] -> own smoothed range
    assert 0.2 <= lo < 0.21 and 0.59 < hi <= 0.6
    np.testing.assert_allclose(A.from_unit(y, (lo, hi)), ramp, atol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        A.to_unit(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="constant"):
        A.to_unit(np.full((8, 8), 0.5), "unit")
    with pytest.raises(ValueError, match="intensity"):
        A.to_unit(hu, "window")


def test_sample_pairs_other_seed_and_other_kernel():
    n, k, s = 5, 6, 16
    pool = (np.arange(n)[:, None, None, None] * 10 + np.arange(k)[None, :, None, None]
            + np.zeros((1, 1, s, s))).astype(np.float32)
    c, st = A.sample(jax.random.key(3), jnp.asarray(pool), 64, 8)
    c, st = np.asarray(c), np.asarray(st)
    assert c.shape == st.shape == (64, 8, 8)
    assert np.all(c == c[:, :1, :1]) and np.all(st == st[:, :1, :1])  # crops of one slice
    cs, ck = c[:, 0, 0] // 10, c[:, 0, 0] % 10
    ss, sk = st[:, 0, 0] // 10, st[:, 0, 0] % 10
    assert np.all(cs != ss) and np.all(ck != sk)
    assert len(set(ck.tolist())) > 3 and len(set(sk.tolist())) > 3


def test_config_checks_and_registry():
    assert registry.get("adain") is A.TASK
    assert isinstance(A.TASK, loop.Task)
    with pytest.raises(ValueError, match="variant"):
        A.AdaINConfig(variant="gatys").validate()
    with pytest.raises(ValueError, match="encoder"):
        A.AdaINConfig(encoder="vgg16").validate()
    with pytest.raises(ValueError, match="vgg19 needs"):
        A.build_encoder({"name": "vgg19"})
    assert A.default_for("contextual").style_weight == 1.0
    with pytest.raises(ValueError, match="loss weights"):
        A.AdaINConfig(lowpass_weight=-1.0).validate()
    with pytest.raises(ValueError, match="lowpass_sigma"):
        A.AdaINConfig(lowpass_sigma=0.0).validate()


def test_smoke_run_export_load_and_mismatch(tmp_path):
    cfg = dataclasses.replace(A.smoke(), variant="adain",  # contextual: tests/losses
                              lowpass_weight=1.0)
    result = loop.run(A.TASK, cfg, None, devices=jax.devices()[:1], progress=False)
    assert result.step == cfg.steps and "lowpass" in result.last_metrics
    assert all(np.isfinite(v) for v in result.last_metrics.values())
    out = tmp_path / "dec"
    A.TASK.export(cfg, result.state, str(out), progress=False)
    from safetensors.numpy import load_file
    tensors = load_file(str(out / A.DECODER_FILE))
    assert all(v.dtype == np.float16 for v in tensors.values())
    net, meta = A.load(str(out))
    assert meta["variant"] == cfg.variant and meta["content_tap"] == "relu1_1"
    dec = A.decoder_from_state(cfg, result.state)
    np.testing.assert_allclose(np.asarray(net.decoder.convs[0].kernel[...]),
                               np.asarray(dec.convs[0].kernel[...]), atol=2e-3)
    # Another encoder (other random weights): refused by the fingerprint.
    with pytest.raises(ValueError, match="does not match the encoder"):
        A.load(str(out), extractor=A.build_encoder({"name": "vgg19-random", "seed": 1}))
    # Tensors of another architecture: refused.
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    meta = json.loads((bad / A.META_FILE).read_text())
    meta["stages"][0][0] = 12
    (bad / A.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match the architecture"):
        A.load(str(bad))
    with pytest.raises(ValueError, match="not an exported AdaIN decoder"):
        A.load(str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_large_configs_keep_each_variants_losses_and_stay_below_the_evaluation_seeds():
    from stylejax.models.adain import VARIANTS

    for v in VARIANTS:
        cfg = A.TASK.configs[f"large-{v}"]().validate()
        small = A.default_for(v)
        assert (cfg.variant, cfg.style_weight, cfg.content_tap) == (v, small.style_weight,
                                                                   small.content_tap)
        assert cfg.crop <= cfg.pool_size and cfg.pool_seeds < 100000  # held-out: 100000+
        assert cfg.batch_size % 8 == 0  # splits over the tests' 8 devices / a GPU host
