"""The ultrasound transform-net training task: loss against numpy, paired crops, config
checks, a smoke run through the generic loop, export/load round trip and bad files."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.train import loop
from stylejax.train import registry
from stylejax.train import transform_net as T


def _lin_extractor(images, taps):
    """Features an independent numpy reference can reproduce: x, x^2 and (x, 1 - x)."""
    x = jnp.asarray(images, jnp.float32)[..., None]
    table = {"a": x, "b": jnp.concatenate([x * x, 1.0 - x], axis=-1)}
    return {t: table[t] for t in taps}


def _np_features(x):
    x = np.asarray(x, np.float64)[..., None]
    return {"a": x, "b": np.concatenate([x * x, 1.0 - x], axis=-1)}


def test_perceptual_loss_matches_numpy():
    rng = np.random.default_rng(0)
    out = rng.uniform(size=(3, 6, 5)).astype(np.float32)
    tgt = rng.uniform(size=(3, 6, 5)).astype(np.float32)
    g_b = rng.uniform(size=(2, 2)).astype(np.float32)
    g_a = rng.uniform(size=(1, 1)).astype(np.float32)
    loss, c, s = T.perceptual_loss(_lin_extractor, out, tgt, {"a": g_a, "b": g_b},
                                   content_tap="b", style_taps=("a", "b"),
                                   content_weight=2.0, style_weight=3.0)
    fo, ft = _np_features(out), _np_features(tgt)
    per = [0.5 * np.mean((fo["b"][i] - ft["b"][i]) ** 2) / (0.5 * np.mean(ft["b"][i] ** 2))
           for i in range(3)]
    ref_c = 2.0 * np.mean(per)
    ref_s = 0.0
    for tap, g_t in (("a", g_a), ("b", g_b)):
        f = fo[tap].reshape(3, -1, fo[tap].shape[-1])
        grams = np.einsum("npc,npd->ncd", f, f) / f.shape[1]
        ch = g_t.shape[0]
        layer = np.sum((grams - g_t) ** 2) / (2 * ch * ch) / 3
        energy = np.sum(g_t.astype(np.float64) ** 2) / (2 * ch * ch)
        ref_s += 3.0 / 2 * layer / energy
    np.testing.assert_allclose(float(c), ref_c, rtol=1e-5)
    np.testing.assert_allclose(float(s), ref_s, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref_c + ref_s, rtol=1e-5)


def test_sample_keeps_pairs_aligned():
    rng = np.random.default_rng(1)
    src = rng.uniform(size=(4, 20, 20)).astype(np.float32)
    pool = jnp.asarray(np.stack([src, 2.0 * src + 1.0], axis=1))
    a, b = T.sample(jax.random.key(3), pool, 16, 8)
    assert a.shape == b.shape == (16, 8, 8)
    np.testing.assert_allclose(np.asarray(b), 2.0 * np.asarray(a) + 1.0, rtol=1e-6)
    # every crop is a (possibly flipped) window of one pool image
    for crop in np.asarray(a)[:4]:
        found = False
        for img in src:
            for cand in (img, img[:, ::-1]):
                win = np.lib.stride_tricks.sliding_window_view(cand, (8, 8))
                found |= bool(np.any(np.all(np.isclose(win, crop), axis=(2, 3))))
        assert found


def test_config_checks_and_registry():
    assert registry.get("transform-net") is T.TASK
    assert T.HELDOUT_SEED0 > T.default().pool_seeds
    T.default().validate()
    for bad, msg in [(dict(style="many"), "style"), (dict(extractor="inception"), "extractor"),
                     (dict(content_tap="relu3_1"), "not a stylex tap"),
                     (dict(crop=8), "crop"), (dict(source="xq"), "source must be"),
                     (dict(target="labels"), "target one of"),
                     (dict(style_images=0), "style_images")]:
        with pytest.raises(ValueError, match=msg):
            dataclasses.replace(T.default(), **bad).validate()


def test_task_configs_and_label_map_inputs():
    from stylejax.data.ultrasound import ultrasound_label_map, ultrasound_labels
    assert (T.labels_to_hq().validate().source, T.labels_to_hq().target) == ("labels", "hq")
    assert (T.hq_to_clinical().validate().source, T.hq_to_clinical().target) == ("hq",
                                                                                 "clinical")
    x = T.source_images([5, 9], (24, 20), "labels")
    assert x.shape == (2, 24, 20) and x.dtype == np.float32
    top = len(ultrasound_labels()) - 1
    for img, seed in zip(x, (5, 9)):
        np.testing.assert_array_equal(np.rint(img * top).astype(int),
                                      ultrasound_label_map(seed, (24, 20)))


def test_smoke_run_export_and_load(tmp_path):
    cfg = dataclasses.replace(T.smoke(), steps=2).validate()
    res = loop.run(T.TASK, cfg, None, devices=jax.devices()[:1])
    assert np.isfinite(res.last_metrics["loss"]) and len(res.history) == 2
    out = tmp_path / "net"
    T.TASK.export(cfg, res.state, str(out), progress=False)
    net, meta = T.load(str(out))
    assert meta["widths"] == list(cfg.widths) and meta["noise"] is True
    assert meta["task"] == {"source": "lq", "target": "hq", "style": "average",
                            "extractor": "stylex"}
    # float16 export: the loaded network is the trained one up to float16 rounding
    from flax import nnx
    ref = T._net(cfg)
    nnx.update(ref, loop.host_copy(res.state["net"]))
    x = np.random.default_rng(0).uniform(size=(1, 24, 20)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(ref(x)), atol=5e-3)
    # another architecture: json widths changed -> ValueError naming it
    with open(out / T.META_FILE) as f:
        m = json.load(f)
    m["widths"] = [4, 8, 16]
    with open(out / T.META_FILE, "w") as f:
        json.dump(m, f)
    with pytest.raises(ValueError, match="another architecture"):
        T.load(str(out))
    m["architecture"] = "adain-decoder"
    with open(out / T.META_FILE, "w") as f:
        json.dump(m, f)
    with pytest.raises(ValueError, match="not a transform-network"):
        T.load(str(out))
    with pytest.raises(ValueError, match="not an exported transform network"):
        T.load(str(tmp_path))
