"""TFDS builders (array_record, no TensorFlow): synthetic mammograms and a raw folder."""

import logging

import numpy as np
import pydicom
import pytest
import tensorflow_datasets as tfds
import tifffile

from stylejax import io
from stylejax.data import datasets

phantom = pytest.importorskip("stylejax.data.phantom")

SMOKE = {"train": 16, "validation": 4, "test": 4}


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    datasets.load_raw_dataset("synthetic_mammograms/smoke", "train", data_dir=data_dir)
    return data_dir


def test_synthetic_examples_are_the_phantoms(smoke_dir):
    seeds = {}
    for split, count in SMOKE.items():
        source = datasets.load_raw_dataset("synthetic_mammograms/smoke", split,
                                           data_dir=smoke_dir)
        assert len(source) == count
        seeds[split] = set()
        for i in range(len(source)):
            ex = source[i]
            seed = int(ex["seed"])
            view = ex["view"].decode()
            assert view == ("cc", "mlo")[seed % 2]
            want = phantom.mammogram(seed, size=(64, 64), view=view)
            assert ex["raw"].dtype == np.float32 and ex["raw"].shape == (64, 64)
            np.testing.assert_array_equal(ex["raw"], want.raw)
            np.testing.assert_array_equal(ex["labels"], want.labels)
            seeds[split].add(seed)
    assert seeds["train"] == set(range(16))
    assert seeds["validation"] == set(range(100_000_000, 100_000_004))
    assert seeds["test"] == set(range(200_000_000, 200_000_004))


def test_registered_name_reads_without_building(smoke_dir):
    source = tfds.data_source("synthetic_mammograms/smoke", split="test", data_dir=smoke_dir,
                              download=False)
    assert len(source) == 4 and source[0]["raw"].shape == (64, 64)


def test_parallel_build_gives_the_same_data(smoke_dir, tmp_path):
    builder = datasets.SyntheticMammograms(config="smoke", data_dir=tmp_path, workers=2,
                                           file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    parallel = builder.as_data_source(split="validation")
    serial = datasets.load_raw_dataset("synthetic_mammograms/smoke", "validation",
                                       data_dir=smoke_dir)
    by_seed = {int(serial[i]["seed"]): serial[i]["raw"] for i in range(len(serial))}
    for i in range(len(parallel)):
        np.testing.assert_array_equal(parallel[i]["raw"], by_seed[int(parallel[i]["seed"])])


def test_bad_names_and_splits(smoke_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic_mammograms config 'huge'"):
        datasets.load_raw_dataset("synthetic_mammograms/huge", data_dir=smoke_dir)
    with pytest.raises(ValueError, match="split 'dev'"):
        datasets.load_raw_dataset("synthetic_mammograms/smoke", "dev", data_dir=smoke_dir)
    with pytest.raises(ValueError, match="unknown data set or missing folder"):
        datasets.load_raw_dataset(tmp_path / "does_not_exist", data_dir=smoke_dir)
    with pytest.raises(ValueError, match="workers"):
        datasets.SyntheticMammograms(config="smoke", data_dir=tmp_path, workers=0)


# ----------------------------------------------------------------------------- folder


def _for_processing_dicom(path, stored, spacing):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2.1"  # Digital Mammography, For Processing
    ds.Modality, ds.PresentationIntentType = "MG", "FOR PROCESSING"
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.ImagerPixelSpacing = list(spacing)
    ds.set_pixel_data(stored, "MONOCHROME1", 14)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def raw_folder(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "mbtst"
    (folder / "patient1").mkdir(parents=True)
    npy = (rng.random((20, 30)) * 1000 + 1).astype(np.float32)
    np.save(folder / "a.npy", npy)
    dcm = rng.integers(1, 2 ** 14, size=(25, 17)).astype(np.uint16)
    _for_processing_dicom(folder / "patient1" / "IMG001", dcm, (0.085, 0.085))
    tif = rng.integers(0, 65536, size=(8, 9)).astype(np.uint16)
    tifffile.imwrite(folder / "c.tiff", tif)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / ".hidden.npy").write_bytes(b"ignored")
    want = {"a.npy": npy, "patient1/IMG001": dcm, "c.tiff": tif}
    return folder, want


def test_folder_builder_reads_every_readable_file(raw_folder, tmp_path, caplog):
    folder, want = raw_folder
    with caplog.at_level(logging.WARNING, logger="stylejax.data.datasets"):
        source = datasets.load_raw_dataset(folder, data_dir=tmp_path / "tfds")
    assert "broken.png" in caplog.text and "notes.txt" in caplog.text
    assert ".hidden" not in caplog.text
    got = {source[i]["filename"].decode(): source[i] for i in range(len(source))}
    assert sorted(got) == sorted(want)
    for name, stored in want.items():
        np.testing.assert_array_equal(got[name]["raw"], stored.astype(np.float32))
    assert got["patient1/IMG001"]["for_processing"]
    np.testing.assert_allclose(got["patient1/IMG001"]["pixel_spacing"], [0.085, 0.085])
    assert not got["a.npy"]["for_processing"]
    assert np.isnan(got["a.npy"]["pixel_spacing"]).all()


def test_folder_fingerprint_follows_contents(raw_folder, tmp_path):
    folder, _ = raw_folder
    first = datasets.folder_config(folder).name
    assert first == datasets.folder_config(folder).name and first.startswith("mbtst_")
    io.write_image(folder / "new.npy", np.ones((4, 4), np.float32))
    assert datasets.folder_config(folder).name != first
    source = datasets.load_raw_dataset(folder, data_dir=tmp_path / "tfds")
    assert len(source) == 4


def test_folder_split_subfolders(tmp_path):
    for split, n in [("train", 3), ("test", 2)]:
        for i in range(n):
            io.write_image(tmp_path / "xr" / split / f"{i}.npy", np.full((5, 6), i + 1.0))
    data_dir = tmp_path / "tfds"
    assert len(datasets.load_raw_dataset(tmp_path / "xr", "train", data_dir=data_dir)) == 3
    assert len(datasets.load_raw_dataset(tmp_path / "xr", "test", data_dir=data_dir)) == 2
    with pytest.raises(ValueError, match="split 'validation'"):
        datasets.load_raw_dataset(tmp_path / "xr", "validation", data_dir=data_dir)


def test_folder_errors(tmp_path):
    data_dir = tmp_path / "tfds"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing or empty"):
        datasets.load_raw_dataset(tmp_path / "empty", data_dir=data_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"zz")
    (bad / "y.jpg").write_bytes(b"zz")
    with pytest.raises(ValueError, match=r"no readable image(.|\n)*x\.png: corrupt(.|\n)*y\.jpg"):
        datasets.load_raw_dataset(bad, data_dir=data_dir)
    with pytest.raises(ValueError, match="not a folder"):
        datasets.load_raw_dataset(bad / "x.png", data_dir=data_dir)
    # A failed build leaves nothing half-written that a later build would reuse.
    (bad / "x.png").unlink()
    (bad / "y.jpg").unlink()
    io.write_image(bad / "ok.npy", np.ones((3, 3), np.float32))
    assert len(datasets.load_raw_dataset(bad, data_dir=data_dir)) == 1


def test_random_crops_from_the_built_data_set(smoke_dir):
    import jax

    from stylejax.data.input_pipeline import RandomCrops, to_global_array

    source = datasets.load_raw_dataset("synthetic_mammograms/smoke", "train", data_dir=smoke_dir)
    loader = RandomCrops(source, batch_size=8, crop_size=24, seed=5, background_aware=True)
    batch = next(iter(loader))
    order = loader.host_indices(0)[:8]
    for k, index in enumerate(order):
        raw = source[int(index)]["raw"]
        windows = np.lib.stride_tricks.sliding_window_view(raw, (24, 24))
        assert np.all(windows == batch[k], axis=(2, 3)).any()  # a sub-array of that image
    arr = to_global_array(batch, jax.make_mesh((8,), ("data",)))
    np.testing.assert_array_equal(np.asarray(arr), batch)
