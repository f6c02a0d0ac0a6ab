"""Fuzzing the image readers (issue 19): damaged, random, empty, wrongly typed and
NaN-holding NPY/PNG/TIFF/DICOM files, generated from a fixed seed.

Each case may only (a) raise ``ValueError`` whose message names the file, or (b) read
back exactly the image the undamaged file holds (e.g. a file cut after its pixel
data); never another exception, and never a different ("garbage") image.
"""

import re
import warnings

import numpy as np
import pytest

from stylejax.data import io

RNG_SEED = 19
MAGIC_LENGTH = {".png": 8, ".tif": 4, ".npy": 6, ".dcm": 132}
SHAPE = (12, 10)


def _valid_files(tmp_path):
    """(path, expected read_image result) for each format and bit depth."""
    rng = np.random.default_rng(RNG_SEED)
    unit = rng.random(SHAPE)
    out = []

    def add(name, array, **kw):
        p = io.write_image(tmp_path / name, array, **kw)
        out.append((p, io.read_image(p)))

    add("u8.png", unit, bits=8)
    add("u16.png", unit, bits=16)
    add("u8.tif", unit, bits=8)
    add("u16.tif", unit, bits=16)
    add("f32.tif", unit * 100, bits=32)
    add("f32.npy", unit * 3000)
    add("u16.npy", (unit * 4000).astype(np.uint16))
    add("raw.dcm", unit * 3000, for_processing=True)
    add("u8.dcm", (unit * 255).astype(np.uint8), bits=8)
    return out


def _check(path, original=None):
    """Read ``path``: a ValueError naming it, or (when ``original`` is given) exactly
    ``original``. Returns "error" or "same"."""
    for reader in (io.read_image, io.read_image_info):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a warning is not an answer either
                got = reader(path)
        except ValueError as err:
            assert str(path) in str(err), f"{path.name}: message does not name the file: {err}"
            continue
        if reader is io.read_image:
            assert original is not None, f"{path.name}: damaged file read as an image"
            assert got.dtype == np.float32 and got.shape == original.shape, path.name
            np.testing.assert_array_equal(got, original, err_msg=path.name)
            return "same"
    return "error"


def test_truncated_and_damaged_files(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    counts = {"error": 0, "same": 0}
    for path, image in _valid_files(tmp_path):
        data = path.read_bytes()
        cuts = sorted(set(rng.integers(1, len(data), 18).tolist()) | {1, len(data) // 2,
                                                                       len(data) - 1})
        for k, cut in enumerate(cuts):
            bad = path.with_name(f"cut{k}_{path.name}")
            bad.write_bytes(data[:cut])
            # A cut after the pixel data (e.g. a PNG's end chunk) may still read, as itself.
            counts[_check(bad, image)] += 1
            bad.unlink()
        # The format's magic number followed by random bytes (a random payload after
        # an intact header would be a valid image of random pixels).
        head = MAGIC_LENGTH[path.suffix]
        for k in range(6):
            bad = path.with_name(f"junk{k}_{path.name}")
            bad.write_bytes(data[:head] + rng.bytes(int(rng.integers(0, 400))))
            counts[_check(bad)] += 1
            bad.unlink()
    assert counts["error"] >= 200, counts


def test_random_empty_and_misnamed_files(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 1)
    n = 0
    for ext in (".npy", ".png", ".tif", ".tiff", ".dcm", ".dicom"):
        (tmp_path / f"empty{ext}").write_bytes(b"")
        assert _check(tmp_path / f"empty{ext}") == "error"
        for k in range(8):
            p = tmp_path / f"random{k}{ext}"
            p.write_bytes(rng.bytes(int(rng.integers(1, 3000))))
            assert _check(p) == "error"
            n += 1
    # A valid file under another format's extension.
    valid = dict((p.suffix, p) for p, _ in _valid_files(tmp_path))
    for src, dst in ((".png", ".tif"), (".tif", ".png"), (".npy", ".dcm"), (".dcm", ".npy"),
                     (".png", ".npy"), (".tif", ".dcm")):
        p = tmp_path / f"misnamed{src[1:]}{dst}"
        p.write_bytes(valid[src].read_bytes())
        assert _check(p) == "error"
    # Random bytes without a known extension are neither DICOM nor any format.
    p = tmp_path / "noext"
    p.write_bytes(rng.bytes(500))
    assert _check(p) == "error"
    assert n == 48


WRONG_DTYPES = [np.complex64, np.complex128, bool, "U3", "S4", "V8",
                [("a", np.float32), ("b", np.int16)]]


@pytest.mark.parametrize("fmt", ["npy", "tif"])
def test_wrong_dtypes_are_refused_by_name(tmp_path, fmt):
    import tifffile
    rng = np.random.default_rng(RNG_SEED + 2)
    for k, dtype in enumerate(WRONG_DTYPES):
        p = tmp_path / f"dtype{k}.{fmt}"
        if fmt == "npy":
            arr = np.zeros(SHAPE, dtype)
            if np.dtype(dtype).kind == "c":
                arr += rng.random(SHAPE)
            np.save(p, arr)
        else:
            if np.dtype(dtype).kind in "USV" or np.dtype(dtype).names:
                continue  # TIFF cannot hold these
            tifffile.imwrite(p, np.ones(SHAPE, dtype))
        with pytest.raises(ValueError, match=rf"{p.name}.*dtype"):
            io.read_image(p)
    if fmt == "npy":  # object arrays need pickling, which the reader never allows
        p = tmp_path / "object.npy"
        np.save(p, np.empty(SHAPE, object), allow_pickle=True)
        with pytest.raises(ValueError, match="object.npy"):
            io.read_image(p)


def test_non_finite_empty_and_stacked_arrays(tmp_path):
    import tifffile
    rng = np.random.default_rng(RNG_SEED + 3)
    for k in range(20):
        arr = rng.random(SHAPE).astype(np.float32)
        arr.flat[rng.integers(0, arr.size, 1 + k % 5)] = (np.nan, np.inf, -np.inf)[k % 3]
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        for p in (tmp_path / f"nan{k}.npy", tmp_path / f"nan{k}.tif"):
            np.save(p, arr) if p.suffix == ".npy" else tifffile.imwrite(p, arr)
            with pytest.raises(ValueError, match=rf"{p.name}: image contains {bad} non-finite"):
                io.read_image(p)
    for shape in ((0, 5), (5, 0), (0,), ()):
        p = tmp_path / f"empty_{len(shape)}_{sum(shape)}.npy"
        np.save(p, np.zeros(shape, np.float32))
        with pytest.raises(ValueError, match=p.name):
            io.read_image(p)
    # A stack of images is not one image with many channels.
    for shape in ((8, 12, 10), (3, 12, 10), (2, 3, 12, 10)):
        p = tmp_path / f"stack{len(shape)}_{shape[0]}.npy"
        np.save(p, rng.random(shape).astype(np.float32))
        with pytest.raises(ValueError, match=rf"{p.name}: .*shape {re.escape(str(shape))}.*stack"):
            io.read_image(p)


def test_folder_builder_keeps_only_the_readable_files(tmp_path, caplog):
    """``--data FOLDER``: every damaged file is skipped with its name and problem in
    the warning; the data set holds exactly the readable images."""
    import logging

    import tifffile

    from stylejax.data import datasets
    rng = np.random.default_rng(RNG_SEED + 4)
    folder = tmp_path / "scans"
    valid = _valid_files(folder)
    good = {p.name: image for p, image in valid if p.name in ("f32.npy", "raw.dcm", "u16.tif")}
    for p, _ in valid:
        if p.name not in good:
            p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])  # truncated
    (folder / "random.dcm").write_bytes(rng.bytes(700))
    (folder / "empty.png").write_bytes(b"")
    nan = rng.random(SHAPE).astype(np.float32)
    nan[3, 4] = np.nan
    np.save(folder / "nan.npy", nan)
    tifffile.imwrite(folder / "complex.tif", np.ones(SHAPE, np.complex64))
    np.save(folder / "stack.npy", np.ones((8,) + SHAPE, np.float32))
    bad = sorted(set(p.name for p in folder.iterdir()) - set(good))
    with caplog.at_level(logging.WARNING, logger="stylejax.data.datasets"):
        source = datasets.load_raw_dataset(folder, data_dir=tmp_path / "tfds")
    got = {source[i]["filename"].decode(): source[i]["raw"] for i in range(len(source))}
    assert sorted(got) == sorted(good)
    for name, image in good.items():
        np.testing.assert_array_equal(got[name], image)
    assert f"skipped {len(bad)} file(s)" in caplog.text
    for name, problem in [("nan.npy", "non-finite"), ("complex.tif", "dtype complex64"),
                          ("stack.npy", "stack of images"), ("empty.png", "corrupt"),
                          ("u8.png", "truncated"), ("u16.npy", "not a readable .npy")]:
        assert re.search(rf"{name}: .*{problem}", caplog.text), (name, caplog.text)
    for name in bad:
        assert f"  {name}: " in caplog.text, name
