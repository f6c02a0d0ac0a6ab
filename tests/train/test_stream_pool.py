"""StreamSource: the phantom pools on disk, each step's rows read there (``stream_pool``)."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from stylejax.train import loop, simsiam, simsiam_configs
from stylejax.train.simsiam_data import PhantomSource
from stylejax.train.simsiam_stream import StreamSource, _RowFile

CFG = dataclasses.replace(simsiam_configs.smoke(), vendor_fraction=0.5, num_vendor_raw=3,
                          num_raw=6).validate()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pools")
    return PhantomSource(CFG), StreamSource(CFG, cache_dir=str(cache)), cache


def _assert_batches_equal(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)


def test_stream_batches_equal_the_in_memory_pool(sources):
    memory, stream, _ = sources
    assert stream.normalized.shape == memory.normalized.shape
    assert stream.vendor.shape == memory.vendor.shape
    for step in (0, 7):
        assert memory.indices(step)["vendor"].any()
        _assert_batches_equal(stream.local_batch(step), memory.local_batch(step))
        # Two processes' halves of the same step.
        for p in range(2):
            _assert_batches_equal(stream.local_batch(step, p, 2), memory.local_batch(step, p, 2))


def test_pool_files_are_npy_arrays_of_the_pools(sources):
    memory, _, cache = sources
    files = sorted(os.listdir(cache))
    assert len(files) == 3 and not any(".tmp" in f for f in files)
    tissue = np.load(cache / next(f for f in files if "tissue" in f))
    np.testing.assert_array_equal(tissue, memory.tissue)
    vendor = np.load(cache / next(f for f in files if "vendor" in f))
    np.testing.assert_array_equal(vendor, memory.vendor)


def test_existing_files_are_reused(sources, monkeypatch):
    _, _, cache = sources
    from stylejax.data import phantom

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached pool")

    monkeypatch.setattr(phantom, "mammogram", no_build)
    again = StreamSource(CFG, cache_dir=str(cache))
    assert again.local_batch(1)["a"].shape == (CFG.batch_size, CFG.raw_size, CFG.raw_size)


def test_damaged_pool_files_are_refused_by_name(sources, tmp_path):
    _, _, cache = sources
    name = next(f for f in os.listdir(cache) if "tissue" in f)
    data = (cache / name).read_bytes()
    (tmp_path / name).write_bytes(data[:-10])
    with pytest.raises(ValueError, match=rf"{name}.*truncated"):
        _RowFile(str(tmp_path / name))
    (tmp_path / name).write_bytes(b"not an npy file at all")
    with pytest.raises(ValueError, match=name):
        _RowFile(str(tmp_path / name))
    # A file from another configuration (wrong shape) is not silently used.
    np.save(tmp_path / name, np.zeros((2, 4, 4), np.uint8))
    for f in os.listdir(cache):
        if f != name:
            (tmp_path / f).write_bytes((cache / f).read_bytes())
    with pytest.raises(ValueError, match=rf"{name}.*expected \(6, 64, 64\)"):
        StreamSource(CFG, cache_dir=str(tmp_path))


def test_row_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 4, 2)).astype(np.float16)
    path = str(tmp_path / "x.npy")
    _RowFile.write(path, x.shape, x.dtype, iter(x))
    np.testing.assert_array_equal(np.load(path), x)
    f = _RowFile(path)
    np.testing.assert_array_equal(f.read(3), x[3])
    np.testing.assert_array_equal(f.read(4, sub=2), x[4, 2])
    out = np.empty((4, 2), np.float32)
    f.read(1, out, sub=1)
    np.testing.assert_array_equal(out, x[1, 1].astype(np.float32))
    with pytest.raises(ValueError, match="wrote 4 rows, expected 5"):
        _RowFile.write(str(tmp_path / "y.npy"), x.shape, x.dtype, iter(x[:4]))
    assert not os.path.exists(tmp_path / "y.npy") and len(os.listdir(tmp_path)) == 1


def test_trainer_streams_for_stream_pool_configs(sources, tmp_path):
    """With stream_pool the task hands host batches to the mesh even where it would
    gather on the devices, and they are the in-memory pool's batches."""
    memory, _, cache = sources
    cfg = dataclasses.replace(CFG, stream_pool=True)
    assert simsiam_configs.paper().stream_pool and simsiam_configs.pod().stream_pool
    workdir = tmp_path / "run"
    (workdir / "cache").mkdir(parents=True)
    for f in os.listdir(cache):  # reuse the built files (the workdir's cache)
        os.link(cache / f, workdir / "cache" / f)
    task = simsiam.SimSiamTask(gather_on_device=True)
    batch = task.batches(cfg, loop.make_mesh(), str(workdir))
    _assert_batches_equal(jax.device_get(batch(2)), memory.local_batch(2))
    # stream_pool does not change the computation: a run may switch it on resume.
    assert cfg.computation_key() == CFG.computation_key()
