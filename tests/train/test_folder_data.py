"""Training on real raw files (issue 19): ``stylejax train simsiam --data FOLDER``
builds an array_record TFDS data set from the folder and streams it through Grain;
batches depend only on the step, so they are the same on any process split."""

import json
import os

import numpy as np
import pytest

from stylejax import cli
from stylejax.data import io
from stylejax.train import simsiam_configs
from stylejax.train.simsiam_data import FolderSource, prepare_raw

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _raw(seed, shape):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]] / max(shape)
    body = np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.08)
    return (2000.0 * np.exp(-(2.0 * body + 0.1 * rng.random(shape)))).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    for k in range(3):
        np.save(root / f"scan{k}.npy", _raw(k, (80, 72)))
    io.write_image(root / "scan3.tif", _raw(3, (70, 90)) / 2000.0, bits=16)
    io.write_image(root / "scan4.png", _raw(4, (64, 64)) / 2000.0, bits=16)
    return root


def test_prepare_raw_crops_the_centre_and_resizes_by_area():
    raw = np.arange(1, 8 * 12 + 1, dtype=np.float32).reshape(8, 12)
    square, tissue = prepare_raw(raw, 4)
    want = raw[:, 2:10].reshape(4, 2, 4, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(square, want, rtol=1e-6)
    assert tissue.dtype == np.uint8 and tissue.shape == (4, 4)
    with pytest.raises(ValueError, match="finite 2-D"):
        prepare_raw(np.full((8, 8), np.nan), 4)


def test_folder_source_batches_depend_only_on_the_step(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    cfg = simsiam_configs.smoke()
    source = FolderSource(cfg, str(folder), data_dir=str(tmp_path / "tfds"))
    assert len(source) == 5
    whole = source.local_batch(3)
    halves = [source.local_batch(3, p, 2) for p in (0, 1)]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]))
    again = FolderSource(cfg, str(folder), data_dir=str(tmp_path / "tfds")).local_batch(3)
    np.testing.assert_array_equal(whole["a"], again["a"])
    assert whole["a"].shape == (cfg.batch_size, cfg.raw_size, cfg.raw_size)
    assert not np.array_equal(whole["a"], source.local_batch(4)["a"])


def test_train_smoke_on_a_folder(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    workdir = str(tmp_path / "run")
    argv = ["train", "simsiam", "--config", "smoke", "--workdir", workdir, "--data",
            str(folder), "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["step"] == 6 and np.isfinite(summary["loss"])
    assert "cache" not in os.listdir(workdir)  # no phantom pool was made
    assert cli.main(["train", "simsiam", "--config", "smoke", "--workdir", str(tmp_path / "x"),
                     "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_folder_batches_where_the_trainer_would_gather_on_device(folder, tmp_path,
                                                                 monkeypatch):
    """On GPUs/TPUs the task gathers in-memory pools on the devices; a --data source has
    none and must hand over host batches instead (it used to call pools() and fail)."""
    import jax

    from stylejax.train import loop, simsiam
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    cfg = simsiam_configs.smoke()
    task = simsiam.SimSiamTask(gather_on_device=True).with_data(str(folder))
    batch = task.batches(cfg, loop.make_mesh(), str(tmp_path / "run"))(3)
    want = FolderSource(cfg, str(folder)).local_batch(3)
    for key, value in want.items():
        np.testing.assert_array_equal(jax.device_get(batch[key]), value)
