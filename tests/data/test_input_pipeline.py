"""Random raw crops: sub-arrays of the sources, deterministic, host-disjoint, sharded."""

import threading

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from stylejax.data.input_pipeline import (RandomCrops, foreground_mask, global_batches,
                                          prefetch, to_global_array)


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((int(rng.integers(9, 15)), int(rng.integers(9, 15)))).astype(np.float32)
            for _ in range(n)]


def _find(crop, images):
    """All (image, y, x) where ``crop`` occurs, by brute force."""
    ch, cw = crop.shape
    hits = []
    for i, im in enumerate(images):
        for y in range(im.shape[0] - ch + 1):
            for x in range(im.shape[1] - cw + 1):
                if np.array_equal(im[y:y + ch, x:x + cw], crop):
                    hits.append((i, y, x))
    return hits


def test_crops_are_sub_arrays_of_the_images_read():
    images = _images()
    loader = RandomCrops(images, batch_size=4, crop_size=(6, 7), seed=3, prefetch=0)
    assert len(loader) == 3
    batches = list(loader.epoch(0))
    assert len(batches) == 3
    order = loader.host_indices(0)
    assert sorted(order) == list(range(12))  # one process: every image once per epoch
    for b, batch in enumerate(batches):
        assert batch.shape == (4, 6, 7) and batch.dtype == np.float32
        for k, crop in enumerate(batch):
            hits = _find(crop, images)
            assert len(hits) == 1 and hits[0][0] == order[b * 4 + k]


def test_dict_items_and_numpy_source():
    images = np.random.default_rng(1).random((6, 10, 10)).astype(np.float32)
    source = [{"raw": im, "seed": i} for i, im in enumerate(images)]
    a = list(RandomCrops(source, batch_size=3, crop_size=5, seed=1, prefetch=0).epoch(2))
    b = list(RandomCrops(images, batch_size=3, crop_size=5, seed=1, prefetch=0).epoch(2))
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    for crop in np.concatenate(a):
        assert len(_find(crop, list(images))) == 1


def test_deterministic_per_seed_and_epoch():
    images = _images()
    make = lambda seed: RandomCrops(images, batch_size=4, crop_size=5, seed=seed, prefetch=0)
    first = np.stack(list(make(0).epoch(1)))
    np.testing.assert_array_equal(first, np.stack(list(make(0).epoch(1))))
    assert not np.array_equal(first, np.stack(list(make(0).epoch(2))))
    assert not np.array_equal(first, np.stack(list(make(1).epoch(1))))


def test_prefetched_iteration_matches_epochs():
    images = _images()
    loader = RandomCrops(images, batch_size=4, crop_size=5, seed=9, prefetch=2)
    got = list(loader(start_epoch=2, num_epochs=2))
    want = list(loader.epoch(2)) + list(loader.epoch(3))
    assert len(got) == 6
    np.testing.assert_array_equal(np.stack(got), np.stack(want))


def test_host_sharding_is_disjoint_and_consistent():
    images = _images(n=13)
    hosts = [RandomCrops(images, batch_size=2, crop_size=5, seed=4, process_index=i,
                         process_count=3, prefetch=0) for i in range(3)]
    single = RandomCrops(images, batch_size=2, crop_size=5, seed=4, process_count=1,
                         process_index=0, prefetch=0)
    assert {len(h) for h in hosts} == {2}  # 13 // 3 = 4 images per host -> 2 batches
    for epoch in (0, 1):
        seen = [set(h.host_indices(epoch).tolist()) for h in hosts]
        assert all(len(s) == 4 for s in seen)
        assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
        # A given image gets the same crop whatever the number of hosts.
        full = dict(zip(single.host_indices(epoch).tolist(),
                        np.concatenate(list(single.epoch(epoch)))))
        for h in hosts:
            for index, crop in zip(h.host_indices(epoch).tolist(),
                                   np.concatenate(list(h.epoch(epoch)))):
                if index in full:
                    np.testing.assert_array_equal(crop, full[index])


def _half_air(n=6, h=16, w=32, seed=0):
    """Images whose left half is bright air and right half attenuating tissue."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = np.empty((h, w), np.float32)
        im[:, : w // 2] = 1000 + rng.normal(0, 10, (h, w // 2))
        im[:, w // 2:] = 100 + rng.normal(0, 5, (h, w - w // 2))
        out.append(im)
    return out


def test_foreground_mask_finds_tissue():
    im = _half_air(1)[0]
    want = np.zeros(im.shape, bool)
    want[:, 16:] = True
    np.testing.assert_array_equal(foreground_mask(im), want)


def test_background_aware_crops_avoid_air():
    images = _half_air()
    tissue_fraction = lambda batch: (np.concatenate(batch) < 500).mean(axis=(1, 2))
    plain = RandomCrops(images, batch_size=3, crop_size=8, seed=0, prefetch=0)
    aware = RandomCrops(images, batch_size=3, crop_size=8, seed=0, prefetch=0,
                        background_aware=True, min_foreground=0.9, max_tries=64)
    plain_fracs = np.concatenate([tissue_fraction(list(plain.epoch(e))) for e in range(4)])
    aware_fracs = np.concatenate([tissue_fraction(list(aware.epoch(e))) for e in range(4)])
    assert plain_fracs.min() < 0.5  # plain crops do land on air
    assert aware_fracs.min() >= 0.9


def test_bad_input():
    images = _images()
    with pytest.raises(ValueError, match="smaller than the 20x20 crop"):
        next(RandomCrops(images, batch_size=2, crop_size=20, prefetch=0).epoch(0))
    with pytest.raises(ValueError, match="too few"):
        RandomCrops(images, batch_size=5, crop_size=4, process_count=3, process_index=0)
    with pytest.raises(ValueError, match="process_index 3"):
        RandomCrops(images, batch_size=1, crop_size=4, process_count=3, process_index=3)
    with pytest.raises(ValueError, match="crop_size"):
        RandomCrops(images, batch_size=1, crop_size=(4, 0))
    nan = [np.full((8, 8), np.nan, np.float32)] * 2
    with pytest.raises(ValueError, match="non-finite"):  # raised through the prefetch thread
        next(iter(RandomCrops(nan, batch_size=1, crop_size=4, prefetch=2)))


def test_prefetch_thread_stops_when_closed():
    before = threading.active_count()
    it = prefetch(iter(range(1000)), size=2)
    assert next(it) == 0 and next(it) == 1
    it.close()
    assert threading.active_count() == before


def test_global_array_on_eight_devices():
    assert jax.device_count() == 8
    images = _images(n=16)
    loader = RandomCrops(images, batch_size=8, crop_size=4, seed=2, prefetch=0)
    mesh = jax.make_mesh((8,), ("data",))
    batch = next(loader.epoch(0))
    arr = to_global_array(batch, mesh)
    assert arr.shape == (8, 4, 4) and arr.sharding == NamedSharding(mesh, P("data"))
    np.testing.assert_array_equal(np.asarray(arr), batch)
    for shard in arr.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), batch[shard.index])
        assert shard.data.shape == (1, 4, 4)
    # 2-D mesh: the batch is split over "data" and replicated over "model".
    mesh2 = jax.make_mesh((4, 2), ("data", "model"))
    arrays = list(global_batches(loader.epoch(1), mesh2))
    assert len(arrays) == 2 and arrays[0].shape == (8, 4, 4)
    assert {s.data.shape for s in arrays[0].addressable_shards} == {(2, 4, 4)}
    np.testing.assert_array_equal(np.asarray(arrays[1]), list(loader.epoch(1))[1])
    with pytest.raises(ValueError, match="multiple of 8"):
        to_global_array(batch[:6], mesh)
    with pytest.raises(ValueError, match="no axis 'batch'"):
        to_global_array(batch, mesh, axis="batch")


def test_foreground_mask_agrees_with_phantom_labels():
    phantom = pytest.importorskip("stylejax.data.phantom")
    for seed, view in [(0, "cc"), (1, "mlo")]:
        m = phantom.mammogram(seed, size=(64, 64), view=view)
        agreement = (foreground_mask(m.raw) == (m.labels != phantom.BACKGROUND)).mean()
        assert agreement > 0.95
