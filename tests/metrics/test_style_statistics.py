"""stylejax.metrics.style_statistics: channel statistics of the StyleX encoder + linear head."""

import jax
import numpy as np
import pytest
from flax import nnx

from stylejax.metrics import style_projection, style_statistics as SS, stylex
from stylejax.models import features
from stylejax.models.simsiam import StyleEncoder


@pytest.fixture(scope="module")
def model():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(jax.random.key(3, impl="rbg")))
    return stylex.StyleX.from_encoder(encoder, embed_size=32)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 1.0, (3, 64, 48)).astype(np.float32)


def test_channel_statistics_match_numpy():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
    mean, std = SS.channel_statistics(x)
    np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(1, 2)), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        SS.channel_statistics(x[0])


def test_statistics_are_means_and_log_stds_of_resized_feature_maps(model, images):
    desc = SS.StyleStatistics(model, taps=("stem", "stage2"))
    assert desc.dim == SS.statistics_dim(model, ("stem", "stage2")) == 2 * (4 + 8)
    got = np.asarray(desc.statistics(images))
    # Reference: resize to the model's scale (shorter side 32), feature maps, numpy stats.
    small = np.asarray(jax.image.resize(images, (3, 43, 32), "linear", antialias=True))
    maps = features.StyleXFeatures(model.encoder())(small, ("stem", "stage2"))
    ref = []
    for t in ("stem", "stage2"):
        f = np.asarray(maps[t], np.float64)
        ref += [f.mean(axis=(1, 2)), np.log(f.std(axis=(1, 2)) + SS.LOG_EPS)]
    np.testing.assert_allclose(got, np.concatenate(ref, axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(desc.embed(images[0]), got[0], rtol=1e-5, atol=1e-5)


def test_fit_head_is_standardisation_then_lda():
    rng = np.random.default_rng(2)
    styles = np.repeat(np.arange(6), 5)
    x = rng.normal(size=(6, 9))[styles] + 0.3 * rng.normal(size=(30, 9))
    x[:, 4] = 2.0  # constant in training: dropped (zero row)
    x *= np.linspace(0.5, 20.0, 9)
    mean, matrix = SS.fit_head(x, styles, dims=3, shrinkage=0.1)
    keep = np.arange(9) != 4
    z = (x[:, keep] - x[:, keep].mean(0)) / x[:, keep].std(0)
    m2, w2 = style_projection.fit_lda(z, styles, dims=3, shrinkage=0.1)
    new = rng.normal(size=(4, 9))
    ref = ((new[:, keep] - x[:, keep].mean(0)) / x[:, keep].std(0) - m2) @ w2
    np.testing.assert_allclose((new - mean) @ matrix, ref, rtol=1e-4, atol=1e-4)
    assert np.all(matrix[4] == 0)
    with pytest.raises(ValueError, match="finite"):
        SS.fit_head(np.full((4, 2), np.nan), [0, 0, 1, 1])


def test_head_save_load_and_refusals(model, images, tmp_path):
    desc = SS.StyleStatistics(model, taps=("stage1",))
    rng = np.random.default_rng(3)
    head = (rng.normal(size=desc.dim).astype(np.float32),
            rng.normal(size=(desc.dim, 3)).astype(np.float32))
    with_head = SS.StyleStatistics(model, taps=("stage1",), head=head, info={"fit": "test"})
    z = np.asarray(with_head.embed(images))
    np.testing.assert_allclose(z, (np.asarray(desc.statistics(images)) - head[0]) @ head[1],
                               rtol=1e-4, atol=1e-4)
    with_head.save(tmp_path / "h")
    back = SS.load(tmp_path / "h", model)
    assert back.taps == ("stage1",) and back.info == {"fit": "test"}
    np.testing.assert_allclose(back.embed(images), z, rtol=1e-6)
    d = np.asarray(back.distance(images[:2], images[1:]))
    assert d.shape == (2,) and np.all(d >= -1e-6)
    with pytest.raises(ValueError, match="head must be mean"):
        SS.StyleStatistics(model, taps=("stage1",), head=(head[0][:-1], head[1]))
    with pytest.raises(ValueError, match="unknown StyleX tap"):
        SS.StyleStatistics(model, taps=("stage9",))
    with pytest.raises(ValueError, match="non-finite|NaN"):
        desc.embed(np.full((1, 32, 32), np.nan, np.float32))
    with pytest.raises(ValueError, match="too small"):
        desc.embed(np.zeros((1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="no head"):
        desc.save(tmp_path / "none")
    (tmp_path / "h" / SS.HEAD_WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable safetensors"):
        SS.load(tmp_path / "h", model)
    with pytest.raises(FileNotFoundError):
        SS.load(tmp_path / "missing", model)


def test_differentiable_in_the_images(model, images):
    desc = SS.StyleStatistics(model, taps=("stem",))
    g = jax.grad(lambda x: desc.embed(x).sum())(images[:1, :32, :32])
    assert g.shape == (1, 32, 32) and np.all(np.isfinite(np.asarray(g)))


def test_public_reexport():
    from stylejax import stylex as public

    assert public.StyleStatistics is SS.StyleStatistics
    assert public.load_style_statistics is SS.load_pretrained
