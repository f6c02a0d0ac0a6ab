"""The StyleX metric: API, validation, differentiability, save/load, shipped model."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax import stylex
from stylejax.models.simsiam import StyleEncoder


@pytest.fixture(scope="module")
def model():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    return stylex.StyleX.from_encoder(encoder, embed_size=32, info={"config": "test"})


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((3, 40, 48)).astype(np.float32)


def test_embed_similarity_distance(model, images):
    z = np.asarray(model.embed(images))
    assert z.shape == (3, 16) and np.all(np.isfinite(z))
    # One image gives one embedding, the same as in a batch (inference-mode BN).
    np.testing.assert_allclose(np.asarray(model.embed(images[1])), z[1], rtol=1e-4, atol=1e-5)
    sim = np.asarray(model.similarity(images, images[::-1]))
    ref = (z * z[::-1]).sum(-1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(z[::-1], axis=-1))
    np.testing.assert_allclose(sim, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.distance(images, images[::-1])), 1 - ref,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(model.similarity(images[0], images[0])), 1.0, atol=1e-5)
    # Broadcasting one reference against a batch.
    assert model.distance(images[0], images).shape == (3,)


def test_tiled_embedding_is_mean_of_unit_tile_embeddings():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(jax.random.key(1, impl="rbg")))
    tiled = stylex.StyleX.from_encoder(encoder, embed_size=64, tile_size=32)
    images = np.random.default_rng(1).random((2, 64, 80)).astype(np.float32)
    # Independent reference: the tiles cut by hand (80 px = 3 tiles of 32 at 0, 24, 48).
    net = tiled.encoder()
    expected = []
    for image in images:
        tiles = np.stack([image[i:i + 32, j:j + 32] for i in (0, 32) for j in (0, 24, 48)])
        z = np.asarray(net(jnp.asarray(tiles)))
        expected.append((z / np.linalg.norm(z, axis=-1, keepdims=True)).mean(0))
    np.testing.assert_allclose(np.asarray(tiled.embed(images)), np.stack(expected),
                               rtol=1e-4, atol=1e-5)
    # Without tiles: the whole image in one pass, unit length.
    whole = stylex.StyleX.from_encoder(encoder, embed_size=64)
    z = np.asarray(net(jnp.asarray(images)))
    np.testing.assert_allclose(np.asarray(whole.embed(images)),
                               z / np.linalg.norm(z, axis=-1, keepdims=True), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="tile_size"):
        stylex.StyleX.from_encoder(encoder, embed_size=64, tile_size=65)
    with pytest.raises(ValueError, match="tile_size"):
        stylex.StyleX.from_encoder(encoder, embed_size=64, tile_size="32")


def test_input_validation(model, images):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.embed(images * 2)
    with pytest.raises(ValueError, match="non-finite"):
        model.embed(np.where(images > 0.5, np.nan, images))
    with pytest.raises(ValueError, match="rank"):
        model.embed(images[None])
    with pytest.raises(ValueError, match="too small"):
        model.embed(images[:, :20, :20])


def test_differentiable_and_jittable(model, images):
    ref = jnp.asarray(images[0])
    g = jax.grad(lambda x: model.distance(x, ref))(jnp.asarray(images[1]))
    assert g.shape == (40, 48) and np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0
    # The model is a pytree: it can be an argument of a jitted function.
    jitted = jax.jit(lambda m, x: m.embed(x))(model, jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(model.embed(images)), rtol=1e-4,
                               atol=1e-5)


def test_save_load_roundtrip(model, images, tmp_path):
    z = np.asarray(model.embed(images))
    for dtype, tol in (("float32", 1e-5), ("float16", 2e-3)):
        path = str(tmp_path / dtype)
        model.save(path, dtype=dtype)
        meta = json.load(open(os.path.join(path, "stylex.json")))
        assert meta["dtype"] == dtype and meta["embed_size"] == 32 and meta["tile_size"] is None
        loaded = stylex.load(path)
        assert loaded.info == {"config": "test"} and loaded.dim == 16
        assert loaded.tile_size is None
        z2 = np.asarray(loaded.embed(images))
        cos = (z * z2).sum(-1) / np.linalg.norm(z, axis=-1) / np.linalg.norm(z2, axis=-1)
        assert np.all(cos > 1 - tol)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        stylex.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a StyleX"):
        stylex.load(str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "stylex.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="unsupported format"):
        stylex.load(str(bad))


def test_shipped_model_loads():
    model = stylex.load_pretrained()
    assert model.dim == 2048 and model.embed_size >= 128
    assert model.tile_size == model.info["image_size"]  # tiles = the training views
    assert model.info.get("config") == "default"
    weights = model.flat_weights()
    assert all(np.all(np.isfinite(w)) for w in weights.values())
    # Trained, not freshly initialised: the residual branches' last BN scales moved off 0.
    scales = [w for k, w in weights.items() if k.endswith("bn2/scale")]
    assert scales and max(float(np.abs(s).max()) for s in scales) > 1e-3
    # The shipped model embeds through its style projection (fitted after training).
    assert model.embedding_dim == model.info["projection"]["dims"] == 64
    assert model.without_projection().embedding_dim == 2048


def test_projection_applies_after_tile_mean(model, images, tmp_path):
    rng = np.random.default_rng(2)
    mean, matrix = rng.normal(size=16).astype(np.float32), rng.normal(size=(16, 5)).astype(
        np.float32)
    projected = model.replace(projection=(mean, matrix))
    assert projected.embedding_dim == 5 and model.embedding_dim == 16
    z = np.asarray(model.embed(images))
    expected = (z - mean) @ matrix
    np.testing.assert_allclose(np.asarray(projected.embed(images)), expected, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(projected.without_projection().embed(images)), z,
                               rtol=1e-6)
    # Pytree with the projection as leaves: jit and grad go through it.
    jitted = jax.jit(lambda m, x: m.embed(x))(projected, jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(jitted), expected, rtol=1e-4, atol=1e-4)
    g = jax.grad(lambda x: projected.distance(x, jnp.asarray(images[0])))(jnp.asarray(images[1]))
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0
    # Saved as float32 beside float16 weights; loads back.
    projected.save(str(tmp_path / "p"), dtype="float16")
    loaded = stylex.load(str(tmp_path / "p"))
    assert json.load(open(tmp_path / "p" / "stylex.json"))["projection_dim"] == 5
    np.testing.assert_array_equal(np.asarray(loaded.projection[1]), matrix)
    # Malformed projections.
    with pytest.raises(ValueError, match="projection must be mean"):
        model.replace(projection=(mean[:3], matrix))
    with pytest.raises(ValueError, match="NaN"):
        model.replace(projection=(mean, np.full_like(matrix, np.nan)))
    with pytest.raises(TypeError, match="unknown"):
        model.replace(width=3)
    from safetensors.numpy import load_file, save_file
    weights = load_file(str(tmp_path / "p" / "weights.safetensors"))
    del weights["style_projection/mean"]
    save_file(weights, str(tmp_path / "p" / "weights.safetensors"))
    with pytest.raises(ValueError, match="projection is incomplete"):
        stylex.load(str(tmp_path / "p"))


def test_metrics_modules_import_no_upper_layer_nor_data():
    """metrics/ sits below data loading, training and everything that uses metrics."""
    import ast
    import pathlib

    import stylejax.metrics
    root = pathlib.Path(stylejax.metrics.__file__).parent
    banned = ("stylejax.train", "stylejax.data", "stylejax.tune", "stylejax.methods",
              "stylejax.commands", "stylejax.evaluation", "stylejax.cli")
    reexports = {"lap", "phantom", "io", "stylex", "blackbox", "tune"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.module == "stylejax":
                    names += [f"stylejax.{a.name}" for a in node.names if a.name in reexports]
            else:
                continue
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
                assert name not in {f"stylejax.{m}" for m in reexports}, \
                    f"{path.name} imports the re-export {name}"
