"""The tunable-pipeline interface and its name registry."""

import ast
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.pipeline import extended_lap, lap, pyramid, registry, tunable


def gamma_apply(x, p):
    return jnp.clip(jnp.clip(x, 1e-3, 1.0) ** p["gamma"] * p["gain"], 0.0, 1.0)


def gamma_pipeline(name="user-gamma"):
    return tunable.Pipeline(name, gamma_apply, init={"gamma": 1.0, "gain": 1.0},
                            low={"gamma": 0.3, "gain": 0.5}, high={"gamma": 3.0, "gain": 2.0})


@pytest.fixture
def clean_registry():
    before = registry.names()
    yield
    for name in registry.names():
        if name not in before:
            registry.unregister(name)


def test_builtins():
    assert registry.names()[:2] == ("lap", "extended-lap")
    assert registry.get("lap") is tunable.LAP
    assert tunable.LAP.names() == ["w", "l", "h"]
    for shape in [(16, 16), (64, 80), (100, 37), (2048, 1664)]:
        # LAP's default: floor(log2(min side)) - 2 bands, clipped to 1..6.
        levels = min(6, max(1, math.floor(math.log2(min(shape))) - 2))
        pipe = registry.get("extended-lap", image_shape=shape)
        assert pipe is extended_lap.extended_lap(levels)
        assert pipe.names() == ["w"] + [f"band{k}" for k in range(levels)]
        low, high = pipe.bounds()
        np.testing.assert_array_equal(low, np.zeros(levels + 1))
        np.testing.assert_array_equal(high, np.full(levels + 1, 10.0))
    with pytest.raises(ValueError, match="image_shape"):
        registry.get("extended-lap")


def test_unknown_names_are_refused_with_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown pipeline 'lapp'; registered: lap, extended-lap"):
        registry.get("lapp")
    with pytest.raises(ValueError, match="no pipeline named"):
        registry.unregister("lapp")
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("lap")


def test_user_pipeline_and_factory(clean_registry):
    pipe = gamma_pipeline()
    registry.register("user-gamma", pipe)
    assert registry.get("user-gamma") is pipe and registry.names()[-1] == "user-gamma"
    with pytest.raises(ValueError, match="already registered"):
        registry.register("user-gamma", gamma_pipeline())
    other = gamma_pipeline()
    registry.register("user-gamma", other, replace=True)
    assert registry.get("user-gamma") is other
    with pytest.raises(ValueError, match="built in"):
        registry.register("lap", pipe, replace=True)

    shapes = []
    registry.register("user-sized", lambda shape: shapes.append(shape) or pipe)
    assert registry.get("user-sized", image_shape=(3, 40, 32)) is pipe and shapes == [(40, 32)]
    registry.register("user-broken", lambda shape: "not a pipeline")
    with pytest.raises(ValueError, match="returned a str"):
        registry.get("user-broken", image_shape=(32, 32))
    registry.unregister("user-gamma")
    assert "user-gamma" not in registry.names()


@pytest.mark.parametrize("name, entry, message", [
    ("User", None, "lower-case"),
    ("", None, "lower-case"),
    ("a b", None, "lower-case"),
    ("ok-name", 3.0, "Pipeline or a factory"),
])
def test_bad_registrations(name, entry, message, clean_registry):
    with pytest.raises(ValueError, match=message):
        registry.register(name, gamma_pipeline() if entry is None else entry)


def test_pipeline_flattening_follows_pytree_order():
    pipe = gamma_pipeline()
    # Dict leaves flatten in sorted key order: gain, then gamma.
    assert pipe.names() == ["gain", "gamma"] and pipe.size == 2
    np.testing.assert_array_equal(pipe.flatten({"gamma": 2.0, "gain": 1.5}), [1.5, 2.0])
    low, high = pipe.bounds()
    np.testing.assert_array_equal(low, np.float32([0.5, 0.3]))
    np.testing.assert_array_equal(high, [2.0, 3.0])
    back = pipe.unflatten(np.array([1.25, 0.75]))
    assert float(back["gain"]) == 1.25 and float(back["gamma"]) == 0.75
    # apply() runs the pipeline on normalised log raw images.
    raw = np.exp(-np.linspace(0.5, 2.0, 32 * 32)).reshape(32, 32).astype(np.float32)
    got = tunable.apply(raw, {"gamma": 2.0, "gain": 1.5}, pipe)
    x = np.asarray(lap.normalize_log(raw))
    np.testing.assert_allclose(got, np.clip(np.clip(x, 1e-3, 1) ** 2.0 * 1.5, 0, 1), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(init={"a": 11.0}), "outside its bounds"),
    (dict(init={"a": 1.0}, low=2.0, high=1.0), "low < high"),
    (dict(init={"a": 1.0}, high=np.inf), "finite"),
    (dict(init={"a": np.ones(3)}, low={"a": 0.0}), "leaf shapes"),
    (dict(init={"a": 1.0, "b": 2.0}, param_names=("x",)), "2 distinct names"),
    (dict(init={"a": 1.0, "b": 2.0}, param_names=("x", "x")), "2 distinct names"),
    (dict(init={}), "no parameters"),
])
def test_bad_pipelines_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tunable.Pipeline("bad", gamma_apply, **kwargs)


def test_extended_lap_levels_and_band_mapping():
    for bad in (0, 7, 2.5, True):
        with pytest.raises(ValueError, match="levels"):
            extended_lap.extended_lap(bad)
    p = extended_lap.ExtendedLAPParams.from_lap(lap.LAPParams(2.0, 8.5, 3.0), 4)
    # Finest ceil(4 / 3) = 2 bands take h; the others l's gain 2**((l-5)/3.5) on the
    # band scale 2**((b-5)/2.5).
    np.testing.assert_allclose(p.bands[:2], 3.0)
    np.testing.assert_allclose(2 ** ((p.bands[2:] - 5) / 2.5), 2 ** ((8.5 - 5) / 3.5), rtol=1e-6)
    assert p.to_dict() == {"w": 2.0, "bands": pytest.approx([3.0, 3.0, p.bands[2], p.bands[3]])}
    assert pyramid.default_levels((64, 64)) == 4


def test_pipeline_modules_import_no_upper_layer():
    root = pathlib.Path(tunable.__file__).parent
    upper = ("stylejax.tune", "stylejax.methods", "stylejax.train", "stylejax.commands",
             "stylejax.evaluation", "stylejax.cli")
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(upper), f"{path.name} imports {name}"
