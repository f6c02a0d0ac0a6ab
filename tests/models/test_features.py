"""Feature-extractor interface: VGG and StyleX taps, shapes, inference-mode BatchNorm,
agreement with the networks' own forward passes, bad input."""

import jax
import numpy as np
import pytest
from flax import nnx

from stylejax.models import features, vgg
from stylejax.models.simsiam import StyleEncoder


def _rbg(seed):
    return nnx.Rngs(params=jax.random.key(seed, impl="rbg"))


@pytest.fixture(scope="module")
def encoder():
    enc = StyleEncoder(width=8, dim=16, rngs=_rbg(0))
    # Non-trivial BatchNorm statistics, so inference and training mode differ.
    rng = np.random.default_rng(0)
    for path, var in nnx.iter_graph(enc):
        if isinstance(var, nnx.BatchStat):
            shape = var[...].shape
            value = rng.uniform(0.5, 2.0, shape) if path[-1] == "var" else rng.normal(0, .3, shape)
            var[...] = value.astype(np.float32)
    return enc


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return rng.random((2, 64, 48)).astype(np.float32)


def test_vgg_features_list_taps_and_match_the_network(images):
    with pytest.warns(UserWarning, match="random"):
        net = vgg.vgg19("random", seed=0)
    ext = features.VGGFeatures(net)
    assert isinstance(ext, features.FeatureExtractor)
    assert ext.valid_taps == features.vgg_taps("vgg19") == net.taps
    assert ext.valid_taps[:4] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2")
    assert set(ext.style_taps + ext.content_taps) <= set(ext.valid_taps)
    assert len(features.vgg_taps("vgg16")) < len(features.vgg_taps("vgg19"))
    small = images[:1, :16, :16]
    np.testing.assert_array_equal(ext(small, taps=("relu1_1",))["relu1_1"],
                                  net(small, taps=("relu1_1",))["relu1_1"])
    with pytest.raises(ValueError, match="valid taps"):
        ext(images, taps=("relu9_9",))
    with pytest.raises(ValueError, match="vgg16"):
        features.vgg_taps("vgg11")


def test_stylex_features_shapes_and_pooled_output_match_the_backbone(encoder, images):
    ext = features.StyleXFeatures(encoder)
    assert isinstance(ext, features.FeatureExtractor)
    assert ext.valid_taps == features.STYLEX_TAPS
    out = jax.jit(lambda x: ext(x, taps=features.STYLEX_TAPS))(images)
    expected = {"stem": (32, 24, 8), "pool": (16, 12, 8), "stage1": (16, 12, 8),
                "stage2": (8, 6, 16), "stage3": (4, 3, 32), "stage4": (2, 2, 64)}
    for tap, shape in expected.items():
        assert out[tap].shape == (2,) + shape and out[tap].dtype == np.float32
    # Independent path: ResNet18.features (global average of the last stage) with the
    # encoder's [0, 1] -> [-1, 1] input map and running BatchNorm statistics.
    backbone = nnx.view(encoder.backbone, use_running_average=True)
    pooled = backbone.features(2.0 * images[..., None] - 1.0)
    np.testing.assert_allclose(np.asarray(out["stage4"]).mean(axis=(1, 2)), pooled,
                               rtol=1e-4, atol=1e-5)


def test_stylex_features_use_running_statistics(encoder, images):
    ext = features.StyleXFeatures(encoder)
    alone = ext(images[:1], taps=("stage2",))["stage2"]
    batched = ext(images, taps=("stage2",))["stage2"][:1]
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)  # no batch statistics
    assert encoder.backbone.stem_bn.use_running_average is False  # the caller's module untouched
    assert tuple(ext(images[:1, :32, :32], taps=("stem",))) == ("stem",)


def test_stylex_features_reject_bad_input(encoder, images):
    ext = features.StyleXFeatures(encoder.backbone)  # a bare backbone works too
    with pytest.raises(ValueError, match="grayscale"):
        ext(np.stack([images] * 3, axis=-1), taps=("stem",))
    with pytest.raises(ValueError, match="valid taps: stem"):
        ext(images, taps=("relu1_1",))
    with pytest.raises(ValueError, match="non-finite"):
        ext(np.full((1, 32, 32), np.nan, np.float32), taps=("stem",))
    with pytest.raises(ValueError, match="taps is empty"):
        ext(images, taps=())
    with pytest.raises(ValueError, match="StyleEncoder or a ResNet18"):
        features.StyleXFeatures(object())
