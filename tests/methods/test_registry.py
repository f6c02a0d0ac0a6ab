"""The method registry and the extractor registry: every method meets the protocol, every
config field is described and typed, and unknown names fail clearly."""

import dataclasses

import pytest

from stylejax.methods import base, extractors, registry


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_every_method_meets_the_protocol(name):
    method = registry.METHODS[name]
    assert isinstance(method, base.Method) and method.name == name and method.help
    config = method.config_class()  # defaults are valid
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 1
    specs = base.options(method.config_class)
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(config)]
    for spec in specs:
        assert spec.help and spec.flag.startswith("--")
        if spec.choices:
            assert spec.default in spec.choices
    assert isinstance(method.needs_extractor(config), bool)
    assert all(isinstance(i, base.MethodInput) for i in method.inputs)


def test_option_specs_resolve_types():
    specs = {s.name: s for s in base.options(registry.METHODS["gatys"].config_class)}
    assert specs["learning_rate"].flag == "--lr" and specs["learning_rate"].base_type is float
    assert specs["style_taps"].optional and specs["style_taps"].base_type == tuple[str, ...]
    assert specs["normalize"].base_type is bool and specs["normalize"].default is True
    assert specs["variant"].choices == ("basic", "augmented", "local", "average")

    @dataclasses.dataclass(frozen=True)
    class Undescribed:
        x: int = 1

    with pytest.raises(ValueError, match="no help text"):
        base.options(Undescribed)


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown method 'cyclegan'; choose one of gatys"):
        registry.get_method("cyclegan")
    with pytest.raises(ValueError, match="unknown extractor 'vgg11'"):
        extractors.build_extractor("vgg11")
    with pytest.raises(ValueError, match="is for VGG"):
        extractors.build_extractor("stylex", "random")
    with pytest.raises(ValueError, match="unknown extractor"):
        extractors.extractor_taps("resnet50")


def test_extractor_taps_are_listed_without_weights():
    vgg19 = extractors.extractor_taps("vgg19")
    assert vgg19["style"] == ("relu1_1", "relu2_1", "relu3_1", "relu5_1")
    assert vgg19["content"] == ("relu5_2",) and "pool5" in vgg19["valid"]
    assert "relu5_4" in vgg19["valid"]
    assert "relu5_4" not in extractors.extractor_taps("vgg16")["valid"]
    stylex = extractors.extractor_taps("stylex")
    assert stylex["valid"] == ("stem", "pool", "stage1", "stage2", "stage3", "stage4")
    assert stylex["content"] == ("stage3",)


def test_json_value_converts_numpy():
    import numpy as np

    assert base.json_value({"w": np.array([0.5, 1.0]), "n": np.int64(3), "t": (1, 2)}) == \
        {"w": [0.5, 1.0], "n": 3, "t": [1, 2]}
