"""Random vendor styles: deterministic, valid, never a held-out bank chain."""

import numpy as np
import pytest

from stylejax.pipeline import blackbox, vendor_random
from stylejax.phantom import mammogram


@pytest.fixture(scope="module")
def raw():
    return mammogram(11, size=(64, 64)).raw


def test_a_style_is_a_pure_function_of_its_seed():
    assert vendor_random.random_style(5) == vendor_random.random_style(5)
    assert vendor_random.random_styles(3, seed=5)[1] == vendor_random.random_style(6)
    assert vendor_random.random_style(5) != vendor_random.random_style(6)


def test_draws_cover_every_family_and_never_repeat_a_held_out_chain():
    styles = vendor_random.random_styles(400)
    assert {s.family for s in styles} == set(blackbox.FAMILIES)
    held = {tuple(n for n, _ in blackbox._STYLES[s].chain) for s in blackbox.HELD_OUT}
    assert not held & {tuple(n for n, _ in s.chain) for s in styles}
    for s in styles:  # posterisation keeps its levels: it comes last
        if s.family == "posterisation":
            assert s.chain[-1][0] == "posterize"


def test_random_styles_give_valid_images(raw):
    for style in vendor_random.random_styles(24, seed=100):
        out = blackbox.apply(raw, style)
        assert out.shape == raw.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
        assert blackbox.describe(style).startswith(f"{style.family} style: log + normalise -> ")


def test_a_style_object_applies_its_chain(raw):
    """A one-operator chain against the formula: normalised log to the power g."""
    style = blackbox.Style("tone", (("gamma", dict(g=1.7)),))
    want = np.clip(blackbox.normalized_log(raw).astype(np.float64), 0, 1) ** 1.7
    np.testing.assert_allclose(blackbox.apply(raw, style), want, atol=1e-6)
    batch = blackbox.apply_batch(np.stack([raw, raw]), style)
    np.testing.assert_array_equal(batch[1], blackbox.apply(raw, style))


def test_bad_input():
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        vendor_random.random_style(-1)
    with pytest.raises(ValueError, match="count must be >= 0"):
        vendor_random.random_styles(-2)
    with pytest.raises(ValueError, match="operators from"):
        blackbox.apply(mammogram(1, size=(32, 32)).raw, blackbox.Style("tone", (("warp", {}),)))
    with pytest.raises(ValueError, match="'gamma' got bad settings"):
        blackbox.apply(mammogram(1, size=(32, 32)).raw,
                       blackbox.Style("tone", (("gamma", dict(gamma=2.0)),)))
