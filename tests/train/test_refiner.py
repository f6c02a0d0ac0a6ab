"""The mr2NST refiner GAN task: crops and pools against numpy, the same weights as the
GAN that trained inline in methods/mr2nst.py, checkpoint/resume of its two-optimiser
state, the NaN guard, a GAN that pulls the refined image toward the references."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stylejax.models.refiner import Refiner
from stylejax.train import loop
from stylejax.train import refiner as R


class SmallDiscriminator(nnx.Module):
    """Conv-BatchNorm-linear stand-in for the ResNet-18 discriminator: the same code path
    (parameters and BatchNorm statistics) at a fraction of its compile time."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


class PlainDiscriminator(nnx.Module):
    """Without BatchNorm: its logits depend on each crop alone (with BatchNorm over the
    shared real+fake batch they only see crops relative to the batch)."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


def _rbg(seed):
    return nnx.Rngs(params=jax.random.key(seed, impl="rbg"))


def _data(seed=5):
    rng = np.random.default_rng(seed)
    fake = rng.random((1, 40, 36, 3)).astype(np.float32)
    refs = [rng.random((33, 45)).astype(np.float32), rng.random((48, 32)).astype(np.float32)]
    return fake, refs


def _leaves(module):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module))]


def test_pad_pool_and_random_crops_against_numpy():
    rng = np.random.default_rng(0)
    images = [rng.random((5, 7)).astype(np.float32), rng.random((6, 4)).astype(np.float32)]
    pool, sizes = R.pad_pool(images)
    assert pool.shape == (2, 6, 7) and sizes.tolist() == [[5, 7], [6, 4]]
    np.testing.assert_array_equal(pool[0, :5, :7], images[0])
    np.testing.assert_array_equal(pool[1, :6, :4], images[1])
    assert not pool[0, 5:].any() and not pool[1, :, 4:].any()
    crops = np.asarray(R.random_crops(jax.random.key(1), jnp.asarray(pool), jnp.asarray(sizes),
                                      64, 3))
    assert crops.shape == (64, 3, 3)
    # Every crop is a window of one image lying inside that image (never padding).
    windows = [(i, y, x) for i, im in enumerate(images) for y in range(im.shape[0] - 2)
               for x in range(im.shape[1] - 2)]
    found = set()
    for c in crops:
        hits = [w for w in windows if np.array_equal(images[w[0]][w[1]:w[1] + 3, w[2]:w[2] + 3], c)]
        assert len(hits) == 1
        found.add(hits[0][0])
    assert found == {0, 1}


def test_gan_pulls_the_refined_image_toward_the_references():
    rng = np.random.default_rng(2)
    dark = (0.2 + 0.05 * rng.random((1, 40, 40, 3))).astype(np.float32)
    bright = [(0.8 + 0.05 * rng.random((40, 40))).astype(np.float32) for _ in range(2)]
    refiner, disc = Refiner(3, 4, rngs=_rbg(0)), PlainDiscriminator(_rbg(1))
    before = float(np.asarray(refiner(dark)).mean())
    np.testing.assert_allclose(before, dark.mean(), rtol=1e-5)  # starts as the mean
    history = R.train_refiner(refiner, disc, dark, bright, steps=30, crop=32, batch=2,
                              refiner_lr=0.02, disc_lr=0.01)
    assert history.shape == (30, 2) and history.dtype == np.float64
    after = float(np.asarray(refiner(dark)).mean())
    assert after > before + 0.1, (before, after)


def test_two_optimiser_state_checkpoints_and_resumes(tmp_path):
    fake, refs = _data()
    cfg = dataclasses.replace(R.smoke(), steps=4, checkpoint_every=2)

    def task():
        return R.RefinerTask(Refiner(3, 4, rngs=_rbg(0)), SmallDiscriminator(_rbg(1)), fake,
                             refs)

    assert isinstance(task(), loop.Task)
    one_device = jax.devices()[:1]
    full = loop.run(task(), cfg, None, devices=one_device, progress=False)
    # train_refiner is this in-memory run (its config, one device).
    refiner, disc = Refiner(3, 4, rngs=_rbg(0)), SmallDiscriminator(_rbg(1))
    history = R.train_refiner(refiner, disc, fake, refs, steps=4, crop=32, batch=2, seed=0)
    np.testing.assert_array_equal(history[:, 1], [r["loss"] for r in full.history])
    np.testing.assert_array_equal(history[:, 0], [r["d_loss"] for r in full.history])

    workdir = str(tmp_path / "gan")

    def stop(step, state):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run(task(), cfg, workdir, devices=one_device, progress=False, callback=stop)
    resumed = loop.run(task(), cfg, workdir, devices=one_device, progress=False)
    assert [r["step"] for r in resumed.history] == [3, 4]
    assert set(resumed.state) == {"refiner", "disc", "disc_stats", "opt_refiner", "opt_disc"}
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(full.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert os.path.getsize(os.path.join(workdir, "loss.png")) > 1000


def test_train_refiner_errors_and_nan_guard():
    fake, refs = _data()
    refiner = Refiner(3, 2, rngs=_rbg(0))
    with pytest.raises(ValueError, match=r"scales must be \[N, H, W, 3\]"):
        R.train_refiner(refiner, None, fake[..., :2], refs, steps=1, crop=32)
    with pytest.raises(ValueError, match="crop 40 must lie in"):
        R.train_refiner(refiner, None, fake, refs, steps=1, crop=40)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        R.train_refiner(refiner, None, fake, refs, steps=-1, crop=32)
    assert R.train_refiner(refiner, None, fake, refs, steps=0, crop=32).shape == (0, 2)
    # Same shapes as the other tests: no new compilation.
    refiner, disc = Refiner(3, 4, rngs=_rbg(0)), SmallDiscriminator(_rbg(1))
    before = _leaves(refiner)
    with pytest.raises(loop.TrainingDiverged, match="in-memory"):
        R.train_refiner(refiner, disc, fake, [np.full_like(r, np.nan) for r in refs], steps=2,
                        crop=32, batch=2)
    for a, b in zip(_leaves(refiner), before):  # left as it was
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="refiner_lr and disc_lr"):
        dataclasses.replace(R.default(), disc_lr=0.0).validate()
