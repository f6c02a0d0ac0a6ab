"""Fitting a StyleX model's style projection on its own training phantoms and styles."""

import jax
import numpy as np
import pytest
from flax import nnx

from stylejax.metrics.stylex import StyleX
from stylejax.models.simsiam import StyleEncoder
from stylejax.pipeline import blackbox, vendor_random
from stylejax.train import projection as P


def test_fit_model_on_its_training_phantoms():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(jax.random.key(3, impl="rbg")))
    model = StyleX.from_encoder(encoder, embed_size=64, tile_size=32, info=dict(
        data_seed=2_000_000, raw_size=64, vendor_fraction=0.0))
    fitted = P.fit(model, dims=8, phantoms=4, progress=False)
    assert fitted.embedding_dim == 8 and fitted.info["projection"]["dims"] == 8
    z = np.asarray(fitted.embed(np.random.default_rng(0).random((2, 64, 64), np.float32)))
    assert z.shape == (2, 8) and np.all(np.isfinite(z))
    with pytest.raises(ValueError, match="training data"):
        P.fit(model.replace(info={}), progress=False)


def test_the_projection_is_fitted_on_the_models_own_vendor_styles():
    assert P.model_vendor_styles({"vendor_fraction": 0.0, "data_seed": 5}) == []
    styles = P.model_vendor_styles({"vendor_fraction": 0.25, "data_seed": 5})
    assert styles == [int(s) for s in blackbox.TRAIN_STYLES]
    styles = P.model_vendor_styles({"vendor_fraction": 0.5, "data_seed": 5,
                                    "vendor_random_styles": 2})
    assert styles[28:] == [vendor_random.random_style(5), vendor_random.random_style(6)]
