"""stylejax.metrics.style_combination: StyleX embedding + style statistics in one cosine."""

import jax
import numpy as np
import pytest
from flax import nnx

from stylejax.metrics import style_combination as SC, style_statistics as SS, stylex
from stylejax.models.simsiam import StyleEncoder


@pytest.fixture(scope="module")
def parts():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(jax.random.key(5, impl="rbg")))
    rng = np.random.default_rng(0)
    projection = (rng.normal(size=16).astype(np.float32),
                  rng.normal(size=(16, 6)).astype(np.float32))
    model = stylex.StyleX.from_encoder(encoder, embed_size=32).replace(projection=projection)
    taps = ("stem", "stage1")
    dim = SS.statistics_dim(model, taps)
    head = (rng.normal(size=dim).astype(np.float32), rng.normal(size=(dim, 5)).astype(np.float32))
    return model, SS.StyleStatistics(model, taps=taps, head=head)


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_cosine_is_the_weighted_mean_of_the_two_cosines(parts, weight):
    model, stats = parts
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (3, 40, 36)).astype(np.float32)
    b = rng.uniform(0, 1, (3, 40, 36)).astype(np.float32) ** 2
    combined = SC.CombinedStyle(model, stats, weight=weight)
    cos_x = _cos(model.embed(a), model.embed(b))
    cos_s = _cos(stats.embed(a), stats.embed(b))
    want = (cos_x + weight ** 2 * cos_s) / (1 + weight ** 2)
    np.testing.assert_allclose(combined.similarity(a, b), want, atol=2e-5)
    np.testing.assert_allclose(combined.distance(a, b), 1 - want, atol=2e-5)
    e = np.asarray(combined.embed(a))
    assert e.shape == (3, combined.embedding_dim) == (3, 6 + 5)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # a pytree: the same embedding through jit, and a finite gradient in the images
    np.testing.assert_allclose(jax.jit(lambda m, x: m.embed(x))(combined, a), e, atol=1e-5)
    g = jax.grad(lambda x: combined.distance(x, b[0]).sum())(a)
    assert np.all(np.isfinite(np.asarray(g))) and float(np.abs(g).max()) > 0


def test_bad_arguments_are_refused(parts):
    model, stats = parts
    for weight in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="weight"):
            SC.CombinedStyle(model, stats, weight=weight)
    with pytest.raises(ValueError, match="StyleX"):
        SC.CombinedStyle(stats, stats)
    with pytest.raises(ValueError, match="StyleStatistics"):
        SC.CombinedStyle(model, model)
    with pytest.raises(ValueError, match="outside|range|\\[0, 1\\]"):
        SC.CombinedStyle(model, stats).embed(np.full((40, 40), 2.0, np.float32))


def test_shipped_combination_uses_one_encoder_and_is_reexported():
    from stylejax import stylex as public

    assert public.load_combined is SC.load_pretrained and public.CombinedStyle is SC.CombinedStyle
    combined = SC.load_pretrained()
    assert combined.stylex is combined.statistics.model and combined.weight == 1.0
    assert combined.stylex.projection is not None  # the shipped model's style projection
    assert combined.embedding_dim == 64 + 64
