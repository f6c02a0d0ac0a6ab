"""mr2NST: multi-reference target, per-patch loss, exact histogram matching, tiling/blending,
refiner GAN, an end-to-end run, the ehm variant and bad input. References are
numpy/scipy/skimage computations or closed-form facts, never the code's own output."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import rankdata
from skimage.exposure import match_histograms

from stylejax.methods import engine
from stylejax.methods import mr2nst as M
from stylejax.models.refiner import Refiner


def _channels(x):
    """Three non-negative per-pixel channels of images ``[..., h, w]`` (numpy or jax)."""
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.stack([x, x * x, xp.sqrt(x + 0.01)], axis=-1)


def _pixel_extractor(images, taps=("px",)):
    return {t: _channels(jnp.asarray(images, jnp.float32)) for t in taps}


# ------------------------------------------------------------ multi-reference target


def test_max_gram_with_histogram_specification_matches_numpy():
    rng = np.random.default_rng(0)
    refs = [rng.random((12, 10)).astype(np.float32) for _ in range(3)]
    extraction, state = engine.Extraction.of(_pixel_extractor)
    grams = M.reference_grams(extraction, state, refs, (1.0, 1.0), ("px",))["px"]

    feats = [_channels(r.astype(np.float64)).reshape(-1, 3) for r in refs]
    np_grams = np.stack([f.T @ f / f.shape[0] for f in feats])  # Eq. 5's F^T F / M
    np.testing.assert_allclose(grams, np_grams, rtol=1e-5)

    plain = np.asarray(M.multi_reference_target(grams, histogram=False))
    np.testing.assert_allclose(plain, np_grams.max(axis=0), rtol=1e-5)

    # H: average ranks -> quantiles of the stacked Grams, linear interpolation.
    maxed = np_grams.max(axis=0)
    q = (rankdata(maxed.ravel(), method="average") - 1) / (maxed.size - 1)
    expected = np.quantile(np_grams.ravel(), q).reshape(maxed.shape)
    spec = np.asarray(M.multi_reference_target(grams, histogram=True))
    np.testing.assert_allclose(spec, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(spec, spec.T)  # symmetric ties stay equal


def test_reference_grams_keep_references_of_different_sizes_in_order():
    rng = np.random.default_rng(1)
    refs = [rng.random((16, 12)), rng.random((8, 8)), rng.random((16, 12)) * 0.5]
    refs = [r.astype(np.float32) for r in refs]
    extraction, state = engine.Extraction.of(_pixel_extractor)
    grams = np.asarray(M.reference_grams(extraction, state, refs, (1.0, 1.0), ("px",))["px"])
    assert grams.shape == (3, 3, 3)
    for g, r in zip(grams, refs):
        f = _channels(r.astype(np.float64)).reshape(-1, 3)
        np.testing.assert_allclose(g, f.T @ f / f.shape[0], rtol=1e-5)


def test_patch_loss_terms_match_numpy_per_patch():
    rng = np.random.default_rng(11)
    patches = rng.random((3, 6, 5)).astype(np.float32)
    content = rng.random((3, 6, 5)).astype(np.float32)
    targets = rng.random((2, 3, 3)).astype(np.float32)  # one target per scale
    level = np.array([0, 1, 1], np.int32)
    extraction, state = engine.Extraction.of(_pixel_extractor)
    loss = M.PatchLoss(extraction, ("px",), ("px",))
    aux = {"state": state, "content": {"px": _channels(jnp.asarray(content))},
           "style": {"px": jnp.asarray(targets)}, "level": jnp.asarray(level),
           "content_weights": {"px": jnp.asarray([1.0, 2.0, 3.0])},
           "style_weights": {"px": jnp.float32(0.5)}}
    c_terms, s_terms = loss.terms(jnp.asarray(patches), aux)
    f = _channels(patches.astype(np.float64)).reshape(3, -1, 3)
    fc = _channels(content.astype(np.float64)).reshape(3, -1, 3)
    want_c = 0.5 * ((f - fc) ** 2).mean(axis=(1, 2))  # Eq. 2.2 per patch
    grams = np.einsum("bpc,bpd->bcd", f, f) / f.shape[1]
    want_s = ((grams - targets[level]) ** 2).sum(axis=(1, 2)) / (2 * 3 * 3)  # Eq. 2.4
    np.testing.assert_allclose(c_terms["px"], want_c, rtol=1e-5)
    np.testing.assert_allclose(s_terms["px"], want_s, rtol=1e-5)
    total = float(loss(jnp.asarray(patches), aux))
    assert total == pytest.approx(float(np.dot([1, 2, 3], want_c) + 0.5 * want_s.sum()), rel=1e-5)


# ------------------------------------------------------------------------- EHM


def test_ehm_takes_the_reference_values_exactly_even_with_ties():
    rng = np.random.default_rng(2)
    image = np.round(rng.random((9, 11)) * 4) / 4  # heavy ties
    reference = rng.normal(size=99).astype(np.float32)
    out = np.asarray(M.exact_histogram_matching(image, reference))
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(reference))
    # Order preserving: a brighter pixel never gets a smaller value.
    flat_in, flat_out = image.ravel(), out.ravel()
    i, j = np.nonzero(flat_in[:, None] < flat_in[None, :])
    assert np.all(flat_out[i] <= flat_out[j])
    # Twice as many pixels (9 x 6 = 54) as reference values (27): each used exactly twice.
    ref_27 = rng.permutation(99)[:27].astype(np.float32)
    out2 = np.asarray(M.exact_histogram_matching(image[:, :6], ref_27))
    values, counts = np.unique(out2, return_counts=True)
    np.testing.assert_array_equal(values, np.sort(ref_27))
    assert np.all(counts == 2)


def test_ehm_equals_skimage_when_both_are_exact():
    rng = np.random.default_rng(3)
    image = rng.random((20, 15))  # distinct values, same size as the reference
    reference = rng.gamma(2.0, size=(15, 20))
    ours = np.asarray(M.exact_histogram_matching(image.astype(np.float32),
                                                 reference.astype(np.float32)))
    theirs = match_histograms(image, reference)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_ehm_breaks_ties_by_neighbourhood_mean():
    image = np.zeros((5, 5), np.float32)
    image[1, 1] = image[3, 3] = 0.5  # equal values ...
    image[3, 4] = 0.9                # ... but (3, 3) has the brighter neighbourhood
    out = np.asarray(M.exact_histogram_matching(image, np.arange(25, dtype=np.float32)))
    assert out[3, 3] > out[1, 1]
    assert out[3, 4] == 24.0


# ---------------------------------------------------------------- tiling, blending


@pytest.mark.parametrize("shape,overlap", [((37, 50), 0.125), ((64, 64), 0.3), ((9, 8), 0.0)])
def test_tiling_and_blending_reconstruct_an_unchanged_image_exactly(shape, overlap):
    image = np.random.default_rng(4).random(shape).astype(np.float32)
    for level in (0, 1, 2):
        boxes = M.tile_boxes(shape, level, overlap)
        assert len(boxes) == 4 ** level
        covered = np.zeros(shape, int)
        for y, x, h, w in boxes:
            covered[y:y + h, x:x + w] += 1
        assert covered.min() >= 1
        np.testing.assert_array_equal(M.blend(M.tile(image, boxes), boxes, shape), image)


def test_blend_cross_fades_the_overlap_with_tent_weights():
    boxes = [(0, 0, 1, 12), (0, 8, 1, 12)]
    out = M.blend(np.stack([np.zeros((1, 12)), np.ones((1, 12))]), boxes, (1, 20))[0]
    np.testing.assert_array_equal(out[:8], 0.0)
    np.testing.assert_array_equal(out[12:], 1.0)
    # Overlap x = 8..11: left weight min(x+1, 12-x), right weight min(x-7, 20-x).
    x = np.arange(8, 12)
    wl, wr = np.minimum(x + 1, 12 - x), np.minimum(x - 7, 20 - x)
    np.testing.assert_allclose(out[8:12], wr / (wl + wr), rtol=1e-6)


def test_patch_starts_follow_the_paper_layout():
    starts, size = M.patch_starts(2048, 4, 0.125)
    assert size == 576 and starts[0] == 0 and starts[-1] == 2048 - 576
    assert M.patch_starts(2048, 1, 0.125) == ((0,), 2048)
    assert M.work_shape((2048, 1024), 512) == (512, 256)


# --------------------------------------------------------------------- refiner


class SmallDiscriminator(nnx.Module):
    """Conv-BatchNorm-linear stand-in for the ResNet-18 discriminator: the same GAN code
    path (parameters and BatchNorm statistics) at a fraction of ResNet-18's compile time."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


def _rbg(seed):
    return nnx.Rngs(params=jax.random.key(seed, impl="rbg"))


def test_refiner_starts_as_the_mean_and_a_few_gan_steps_train_it():
    rng = np.random.default_rng(5)
    refiner = Refiner(3, 4, rngs=_rbg(0))
    scales = rng.random((2, 8, 7, 3)).astype(np.float32)
    out = np.asarray(refiner(scales))
    assert out.shape == (2, 8, 7)
    np.testing.assert_allclose(out, scales.mean(axis=-1), rtol=1e-6, atol=1e-7)

    disc = SmallDiscriminator(_rbg(1))
    before_r = jax.tree.map(np.array, nnx.state(refiner, nnx.Param))
    before_d = jax.tree.map(np.array, nnx.state(disc, nnx.BatchStat))
    fake = rng.random((1, 40, 36, 3)).astype(np.float32)
    refs = [rng.random((33, 45)).astype(np.float32), rng.random((48, 32)).astype(np.float32)]
    history = M.train_refiner(refiner, disc, fake, refs, steps=3, crop=32, batch=2)
    assert history.shape == (3, 2) and np.all(np.isfinite(history))
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before_r,
                           nnx.state(refiner, nnx.Param))
    assert all(jax.tree.leaves(changed))  # every refiner parameter moved, w_k included
    stats = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before_d,
                         nnx.state(disc, nnx.BatchStat))
    assert all(jax.tree.leaves(stats))
    assert np.all(np.isfinite(np.asarray(refiner(fake))))


def test_refiner_rejects_bad_scales():
    refiner = Refiner(3, 2, rngs=_rbg(0))
    with pytest.raises(ValueError, match="3 scales"):
        refiner(np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        refiner(np.full((1, 4, 4, 3), np.nan))


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_vgg():
    from stylejax.models.vgg import vgg19

    with pytest.warns(UserWarning, match="random"):
        return vgg19("random", seed=0)


def _images(seed, n=1, shape=(32, 32)):
    rng = np.random.default_rng(seed)
    base = np.linspace(0.2, 0.8, shape[1])[None, :] * np.ones(shape)
    return [np.clip(base + 0.15 * rng.standard_normal(shape), 0, 1).astype(np.float32)
            for _ in range(n)]


def test_end_to_end_tiny_run_reduces_its_loss(tiny_vgg):
    content = _images(6)[0]
    refs = _images(7, n=2, shape=(36, 34))
    # Shallow taps keep the compile small; the default (normalised) weights.
    config = M.Mr2NSTConfig(work_size=16, steps=6, learning_rate=1e-2, refiner_steps=2,
                            gan_batch=2, content_taps=("relu2_1",),
                            style_taps=("relu1_1", "relu2_1"))
    result = M.mr2nst(content, refs, extractor=tiny_vgg, config=config,
                      discriminator=SmallDiscriminator(_rbg(2)))
    extra = result.extra
    assert result.image.shape == content.shape and extra["scales"].shape == (3, 32, 32)
    assert result.history.shape == (7,) and extra["gan_history"].shape == (2, 2)
    # Normalised per patch and averaged over the 21 patches: the loss starts at beta.
    assert result.loss_initial == pytest.approx(config.style_weight, rel=1e-4)
    assert result.loss_final < 0.8 * result.loss_initial
    assert np.all((result.image >= 0) & (result.image <= 1))
    assert extra["scale_weights"].shape == (3,) and extra["levels"] == (0, 1, 2)
    assert not np.allclose(extra["scale_weights"], 1 / 3)  # the GAN trained the refiner
    for s in extra["scales"]:  # every scale was transferred, not just copied
        assert np.abs(s - content).mean() > 1e-3


def test_ehm_variant_matches_the_pooled_references():
    content = _images(8)[0]
    refs = _images(9, n=2)
    result = M.mr2nst(content, refs, extractor=None, config=M.Mr2NSTConfig(variant="ehm"))
    assert result.steps == 0 and result.extra["scales"] is None
    assert result.loss_final < result.loss_initial  # Wasserstein distance to the references
    # 1024 pixels from 2048 pooled values: every second sorted reference value.
    np.testing.assert_array_equal(np.sort(result.image.ravel()),
                                  np.sort(np.concatenate([r.ravel() for r in refs]))[1::2])
    assert not M.Mr2NST().needs_extractor(M.Mr2NSTConfig(variant="ehm"))
    assert M.Mr2NST().needs_extractor(M.Mr2NSTConfig())


def test_bad_input_is_rejected(tiny_vgg):
    content = _images(10)[0]
    with pytest.raises(ValueError, match="references is empty"):
        M.mr2nst(content, [], extractor=tiny_vgg)
    with pytest.raises(ValueError, match="grayscale"):
        M.mr2nst(np.stack([content] * 3, -1), [content], extractor=tiny_vgg)
    with pytest.raises(ValueError, match="grayscale"):
        M.mr2nst(content, [np.stack([content] * 3, -1)], extractor=tiny_vgg)
    bad = content.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        M.mr2nst(bad, [content], extractor=tiny_vgg)
    with pytest.raises(ValueError, match="variant"):
        M.Mr2NSTConfig(variant="cyclegan")
    with pytest.raises(ValueError, match="overlap"):
        M.Mr2NSTConfig(overlap=1.5)
    with pytest.raises(ValueError, match="levels"):
        M.Mr2NSTConfig(levels=(1, 1))
    with pytest.raises(ValueError, match="needs a feature extractor"):
        M.mr2nst(content, [content], extractor=None)
    with pytest.raises(ValueError, match="crop"):
        M.train_refiner(Refiner(3, 2, rngs=_rbg(0)), None, np.zeros((1, 20, 20, 3)),
                        [content], steps=1, crop=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="cannot cut"):
            M.patch_starts(3, 4, 0.1)
