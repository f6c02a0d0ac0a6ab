"""Gatys NST: losses at the start against numpy formulas, optimisation progress, variants, CLI.

The VGG tests share one configuration and image size so that they reuse a single
compiled step (the step cache is keyed on loss and config); L-BFGS and the scan driver
run on a tiny pure-function extractor to keep compilation cheap.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.losses import style as sl
from stylejax.methods import nst
from stylejax.models import vgg

CONTENT_TAPS = ("relu2_2",)
STYLE_TAPS = ("relu1_1", "relu2_1")
CFG = nst.NSTConfig(steps=6, learning_rate=0.02, content_weight=1.0, style_weight=1.0,
                    content_taps=CONTENT_TAPS, style_taps=STYLE_TAPS)
SIZE = 24


@pytest.fixture(scope="module")
def net():
    with pytest.warns(UserWarning, match="random weights"):
        return vgg.vgg19("random")


@pytest.fixture(scope="module")
def style_features(net):
    """Jitted reference feature extraction (eager VGG compiles op by op)."""
    return jax.jit(lambda x: net(x, taps=STYLE_TAPS))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    content = (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    style_a = rng.random((SIZE + 4, SIZE)).astype(np.float32)
    style_b = np.clip(rng.random((SIZE + 4, SIZE)) ** 2, 0, 1).astype(np.float32)
    labels = (xx * 3).astype(np.int64)  # three vertical stripes
    return content, style_a, style_b, labels


def np_gram(f):
    f = np.asarray(f, np.float64)[0]
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat / flat.shape[0]


def np_style_loss(features, image, style_grams, masks=None):
    """sum_l sum_ij (G - G')^2 / (2 C^2), optionally per label with mask-mean normalisation."""
    feats = features(image[None])
    total = 0.0
    for tap in STYLE_TAPS:
        f = np.asarray(feats[tap], np.float64)
        c = f.shape[-1]
        if masks is None:
            total += ((np_gram(f) - style_grams[tap]) ** 2).sum() / (2 * c * c)
            continue
        for d, m in enumerate(np.asarray(masks[tap], np.float64)):
            g = np_gram(f * m[None, ..., None]) / m.mean()
            total += ((g - style_grams[tap][d]) ** 2).sum() / (2 * c * c)
    return total


def test_basic_initial_loss_matches_formula_and_decreases(net, style_features, images):
    content, style, _, _ = images
    result = nst.gatys(content, style, extractor=net, config=CFG)
    sf = style_features(style[None])
    want = np_style_loss(style_features, content, {t: np_gram(sf[t]) for t in STYLE_TAPS})
    assert result.loss_initial == pytest.approx(want, rel=1e-4)  # content term is 0 at start
    assert len(result.history) == CFG.steps + 1
    assert result.loss_final < 0.7 * result.loss_initial
    assert result.image.shape == content.shape and result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert not np.allclose(result.image, content)
    assert result.seconds >= result.first_step_seconds > 0


def test_average_and_local_reuse_the_compiled_step(net, style_features, images):
    content, style_a, style_b, labels = images
    nst.gatys(content, style_a, extractor=net, config=CFG)
    compiled = nst.make_step.cache_info().currsize

    avg = nst.gatys(content, [style_a, style_b], extractor=net, variant="average", config=CFG)
    fa, fb = style_features(style_a[None]), style_features(style_b[None])
    grams = {t: (np_gram(fa[t]) + np_gram(fb[t])) / 2 for t in STYLE_TAPS}
    assert avg.loss_initial == pytest.approx(np_style_loss(style_features, content, grams), rel=1e-4)
    assert avg.loss_final < avg.loss_initial

    local = nst.gatys(content, style_a, extractor=net, variant="local", config=CFG,
                      content_labels=labels)
    assert local.labels == (0, 1, 2)
    grams = {t: np_gram(fa[t]) for t in STYLE_TAPS}
    want = sum(np_style_loss(style_features, content * (labels == v), grams) for v in (0, 1, 2))
    assert local.loss_initial == pytest.approx(want, rel=1e-4)
    assert len(local.history) == 3 * (CFG.steps + 1)
    assert local.loss_final < local.loss_initial
    assert nst.make_step.cache_info().currsize == compiled  # no new step was built


def test_augmented_matches_eq_3_1_and_eq_2_5(net, style_features, images):
    content, style, _, labels = images
    with pytest.raises(ValueError, match="same size"):
        nst.gatys(content, style, extractor=net, variant="augmented", config=CFG,
                  content_labels=labels)
    style_sq = style[:SIZE]
    result = nst.gatys(content, style_sq, extractor=net, variant="augmented", config=CFG,
                       content_labels=labels)
    masks = sl.propagate_masks(np.stack([labels == v for v in (0, 1, 2)]), net.plan, STYLE_TAPS)
    sf = style_features(style_sq[None])
    grams = {t: [np_gram(np.asarray(sf[t]) * np.asarray(m)[None, ..., None]) / float(m.mean())
                 for m in masks[t]] for t in STYLE_TAPS}
    assert result.loss_initial == pytest.approx(np_style_loss(style_features, content, grams, masks),
                                                rel=1e-4)
    assert result.loss_final < result.loss_initial

    # Eq. 2.5: the style has its own label map (and may have another size)
    style_labels = (np.mgrid[:SIZE + 4, :SIZE][1] * 3 // SIZE).astype(np.int64)
    eq25 = nst.gatys(content, style, extractor=net, variant="augmented", config=CFG,
                     content_labels=labels, style_labels=style_labels)
    assert eq25.labels == (0, 1, 2) and eq25.loss_final < eq25.loss_initial


class TinyExtractor:
    """A pure-function extractor: two fixed random 3x3 conv layers, grayscale only."""

    content_taps = ("b",)
    style_taps = ("a", "b")

    def __init__(self):
        rng = np.random.default_rng(1)
        self.k1 = jnp.asarray(rng.standard_normal((3, 3, 1, 4)) / 3, jnp.float32)
        self.k2 = jnp.asarray(rng.standard_normal((3, 3, 4, 6)) / 6, jnp.float32)

    def __call__(self, images, taps):
        dn = ("NHWC", "HWIO", "NHWC")
        a = jax.nn.relu(jax.lax.conv_general_dilated(images[..., None], self.k1, (1, 1), "SAME",
                                                     dimension_numbers=dn))
        b = jax.nn.relu(jax.lax.conv_general_dilated(a, self.k2, (2, 2), "SAME",
                                                     dimension_numbers=dn))
        return {t: {"a": a, "b": b}[t] for t in taps}


@pytest.fixture(scope="module")
def tiny():
    return TinyExtractor()


def test_lbfgs_reduces_loss(tiny, images):
    content, style, _, _ = images
    config = nst.NSTConfig(steps=4, optimizer="lbfgs", content_weight=1.0, style_weight=10.0)
    result = nst.gatys(content, style, extractor=tiny, config=config)
    assert result.loss_final < 0.9 * result.loss_initial
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0


def test_scan_driver_equals_python_driver(tiny, images):
    content, style, _, _ = images
    python = nst.NSTConfig(steps=4, learning_rate=0.02, content_weight=1.0, style_weight=10.0,
                           driver="python")
    scan = dataclass_replace(python, driver="scan", chunk=2)
    a = nst.gatys(content, style, extractor=tiny, config=python)
    b = nst.gatys(content, style, extractor=tiny, config=scan)
    np.testing.assert_allclose(b.history, a.history, rtol=1e-5)
    np.testing.assert_allclose(b.image, a.image, atol=1e-6)


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_masks_from_labels():
    content = np.zeros((20, 20), np.int64)
    content[:10] = 1
    content[0, 0] = 7  # 1 pixel = 0.25 %: not significant
    style = np.full((10, 10), 1, np.int64)
    style[:5, :5] = 3
    values, cm, sm = nst.masks_from_labels(content)
    assert values == (0, 1) and cm.shape == (2, 20, 20) and sm is None
    values, cm, sm = nst.masks_from_labels(content, style)
    assert values == (1,) and sm.shape == (1, 10, 10) and sm.sum() == 75
    with pytest.raises(ValueError, match="no label"):
        nst.masks_from_labels(content, np.full((4, 4), 5))


def test_bad_inputs(tiny, images):
    content, style, _, labels = images
    run = lambda c, s, **kw: nst.gatys(c, s, extractor=tiny, config=nst.NSTConfig(steps=0), **kw)
    with pytest.raises(ValueError, match="rank/channel"):
        run(content, np.stack([style] * 3, axis=-1))
    with pytest.raises(ValueError, match="non-finite"):
        run(np.where(content > 0.5, np.nan, content), style)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run(content * 3, style)
    with pytest.raises(ValueError, match="does not match"):
        run(content, style, variant="augmented", content_labels=labels[:10])
    with pytest.raises(ValueError, match="needs content_labels"):
        run(content, style, variant="local")
    with pytest.raises(ValueError, match="one style image"):
        run(content, [style, style])
    with pytest.raises(ValueError, match="unknown variant"):
        run(content, style, variant="fancy")
    with pytest.raises(ValueError, match="one size"):
        run(content, [style, style[:10]], variant="average", average="features")
    with pytest.raises(ValueError, match="optimizer"):
        nst.NSTConfig(optimizer="sgd")


def test_cli_json(tmp_path, images, capsys, monkeypatch):
    from stylejax import cli, io

    content, style, _, _ = images
    io.write_image(tmp_path / "content.png", content)
    io.write_image(tmp_path / "style.png", style)
    out = tmp_path / "out.png"
    argv = ["nst", "--method", "gatys", "--content", str(tmp_path / "content.png"),
            "--style", str(tmp_path / "style.png"), "-o", str(out), "--weights", "random",
            "--steps", str(CFG.steps), "--lr", str(CFG.learning_rate), "--content-weight", "1",
            "--style-weight", "1", "--content-taps", ",".join(CONTENT_TAPS),
            "--style-taps", ",".join(STYLE_TAPS), "--quiet", "--json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert {"method", "variant", "steps", "seconds", "loss_initial", "loss_final",
            "output"} <= set(summary)
    assert summary["method"] == "gatys" and summary["variant"] == "basic"
    assert summary["steps"] == CFG.steps and summary["output"] == str(out)
    assert summary["loss_final"] < summary["loss_initial"]
    assert io.read_image(out).shape == content.shape
    assert "random weights" in captured.err

    assert cli.main(argv[:-1] + ["--variant", "fancy"]) == 2
    assert "no variant 'fancy'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "stylejax.stylex", None)
    assert cli.main(argv + ["--extractor", "stylex"]) == 2
    assert "StyleX encoder not available yet" in capsys.readouterr().err


def test_cli_second_method_plugs_in(tmp_path, images, capsys):
    from stylejax import cli, io
    from stylejax.commands import nst as command

    if "mr2nst" not in command.METHODS:
        pytest.skip("mr2nst is not part of this build")
    content, style, style_b, _ = images
    io.write_image(tmp_path / "content.png", content)
    io.write_image(tmp_path / "a.png", style)
    io.write_image(tmp_path / "b.png", style_b)
    out = tmp_path / "ehm.png"
    argv = ["nst", "--method", "mr2nst", "--variant", "ehm", "--content",
            str(tmp_path / "content.png"), "--style", str(tmp_path / "a.png"),
            str(tmp_path / "b.png"), "-o", str(out), "--quiet", "--json"]
    assert cli.main(argv) == 0  # exact histogram matching: no extractor is built
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "mr2nst" and summary["variant"] == "ehm"
    assert summary["extractor"] is None and out.exists()
