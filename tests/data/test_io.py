"""Image I/O: round trips, DICOM conventions against hand-computed values, bad files."""

import os
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from stylejax import io

RNG = np.random.default_rng(1234)


def _dicom(path, stored, *, photometric="MONOCHROME2", bits=None, slope=None, intercept=None,
           intent=None, sign=None, spacing=None, modality="MG"):
    """Write a DICOM file with pydicom directly (independent of stylejax.io.write_image)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if intent is not None:
        ds.PresentationIntentType = intent
    if sign is not None:
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", sign
    if spacing is not None:
        ds.ImagerPixelSpacing = list(spacing)
    ds.set_pixel_data(stored, photometric, bits or stored.dtype.itemsize * 8)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext,bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16),
                                      (".dcm", 8), (".dcm", 12), (".dcm", 16)])
def test_integer_round_trip_is_exact(tmp_path, ext, bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    x = RNG.integers(0, 2 ** bits, size=(9, 13)).astype(dtype)
    path = io.write_image(tmp_path / f"a{ext}", x, bits=bits)
    y = io.read_image(path)
    assert y.dtype == np.float32 and y.shape == (9, 13)
    np.testing.assert_array_equal(y, x.astype(np.float32))
    np.testing.assert_array_equal(io.read_image(path, normalize=True),
                                  (x / (2.0 ** bits - 1)).astype(np.float32))
    assert io.read_image_info(path).bits_stored == bits


@pytest.mark.parametrize("ext,bits", [(".png", None), (".png", 16), (".tif", 8), (".tif", None),
                                      (".dcm", None), (".dcm", 8)])
def test_unit_float_round_trip(tmp_path, ext, bits):
    x = RNG.random((10, 7)).astype(np.float32)
    x[0, 0], x[-1, -1] = 0.0, 1.0
    path = io.write_image(tmp_path / f"u{ext}", x, bits=bits)
    nbits = bits or {".png": 8, ".tif": 16, ".dcm": 16}[ext]
    top = 2 ** nbits - 1
    y = io.read_image(path, normalize=True)
    # Quantisation to the nearest count: error at most half a count.
    assert np.max(np.abs(y - x)) <= 0.5 / top + 1e-7
    if nbits == 16:
        assert np.max(np.abs(y - x)) <= 1 / 65535
    if ext != ".dcm":  # raw counts equal numpy's rounding
        np.testing.assert_array_equal(io.read_image(path), np.round(x.astype(np.float64) * top))


def test_float_tiff_and_npy_are_lossless(tmp_path):
    x = (RNG.random((6, 5)) * 3000 + 1).astype(np.float32)
    np.testing.assert_array_equal(io.read_image(io.write_image(tmp_path / "r.tif", x, bits=32)), x)
    np.testing.assert_array_equal(io.read_image(io.write_image(tmp_path / "r.npy", x)), x)
    np.testing.assert_array_equal(np.load(io.write_image(tmp_path / "d.npy", x.astype(np.float64))),
                                  x)
    assert np.load(tmp_path / "d.npy").dtype == np.float32
    ints = RNG.integers(0, 5000, size=(4, 4)).astype(np.int32)
    np.testing.assert_array_equal(io.read_image(io.write_image(tmp_path / "i.npy", ints)), ints)


def test_raw_float_dicom_uses_rescale_and_round_trips(tmp_path):
    x = (RNG.random((8, 8)) * 12000 + 40).astype(np.float32)
    path = io.write_image(tmp_path / "raw.dcm", x, for_processing=True)
    ds = pydicom.dcmread(path)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    np.testing.assert_allclose(ds.pixel_array * slope + intercept, x, atol=slope / 2 + 1e-3)
    np.testing.assert_allclose(io.read_image(path), x, atol=slope / 2 + 1e-3)
    info = io.read_image_info(path)
    assert info.for_processing and info.intensity_sign == 1 and not info.inverted


def test_files_written_by_other_libraries(tmp_path):
    g16 = RNG.integers(0, 65536, size=(5, 6)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "pil16.png")
    tifffile.imwrite(tmp_path / "tf.tiff", g16)
    g8 = RNG.integers(0, 256, size=(5, 6)).astype(np.uint8)
    Image.fromarray(np.stack([g8] * 3, -1)).save(tmp_path / "gray_rgb.png")
    Image.fromarray(np.dstack([g8, g8, g8, np.full_like(g8, 255)])).save(tmp_path / "rgba.png")
    for name, want in [("pil16.png", g16), ("tf.tiff", g16), ("gray_rgb.png", g8),
                       ("rgba.png", g8)]:
        np.testing.assert_array_equal(io.read_image(tmp_path / name), want.astype(np.float32))
    # And what write_image produces is read back identically by those libraries.
    np.testing.assert_array_equal(np.asarray(Image.open(io.write_image(tmp_path / "w.png", g16))),
                                  g16)
    np.testing.assert_array_equal(tifffile.imread(io.write_image(tmp_path / "w.tif", g8)), g8)


def test_colour_allowed_without_grayscale(tmp_path):
    rgb = RNG.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    y = io.read_image(tmp_path / "c.png", grayscale=False)
    assert y.shape == (4, 5, 3)
    np.testing.assert_array_equal(y, rgb)


# ----------------------------------------------------------------------------- DICOM conventions


def test_dicom_rescale_slope_intercept(tmp_path):
    stored = np.array([[0, 1, 2], [100, 2000, 4095]], np.uint16)
    path = _dicom(tmp_path / "ct.dcm", stored, bits=12, slope="2.5", intercept="-100")
    want = np.array([[-100, -97.5, -95], [150, 4900, 10137.5]], np.float32)
    np.testing.assert_array_equal(io.read_image(path), want)
    info = io.read_image_info(path)
    assert info.value_range == (-100.0, 4095 * 2.5 - 100)
    assert not info.inverted and info.photometric == "MONOCHROME2" and info.modality == "MG"
    # normalize maps the rescaled representable range [-100, 10137.5] to [0, 1]
    np.testing.assert_allclose(io.read_image(path, normalize=True), stored / 4095, atol=1e-7)


def test_dicom_monochrome1_presentation_is_inverted(tmp_path):
    stored = np.array([[0, 10], [4000, 4095]], np.uint16)
    path = _dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits=12)
    np.testing.assert_array_equal(io.read_image(path), [[4095, 4085], [95, 0]])
    # with rescale: range [lo, hi] = [10, 2*4095 + 10]; out = lo + hi - (2 s + 10)
    path = _dicom(tmp_path / "m1r.dcm", stored, photometric="MONOCHROME1", bits=12,
                  slope="2", intercept="10")
    np.testing.assert_array_equal(io.read_image(path), [[8200, 8180], [200, 10]])
    assert io.read_image_info(path).inverted


def test_dicom_for_processing_orientation_follows_intensity_sign(tmp_path):
    stored = np.array([[5, 60000], [1234, 65535]], np.uint16)
    kw = dict(photometric="MONOCHROME1", intent="FOR PROCESSING", spacing=(0.085, 0.085))
    plus = _dicom(tmp_path / "plus.dcm", stored, sign=1, **kw)
    minus = _dicom(tmp_path / "minus.dcm", stored, sign=-1, **kw)
    np.testing.assert_array_equal(io.read_image(plus), stored.astype(np.float32))
    np.testing.assert_array_equal(io.read_image(minus), 65535.0 - stored)
    info = io.read_image_info(plus)
    assert info.for_processing and info.intensity_sign == 1 and not info.inverted
    assert info.pixel_spacing == (0.085, 0.085) and info.bits_stored == 16
    assert io.read_image_info(minus).inverted
    presentation = _dicom(tmp_path / "pres.dcm", stored, intent="FOR PRESENTATION",
                          photometric="MONOCHROME2")
    assert not io.read_image_info(presentation).for_processing


def test_dicom_signed_and_without_extension(tmp_path):
    stored = np.array([[-1000, -1], [0, 2047]], np.int16)
    path = _dicom(tmp_path / "IMG0001", stored, bits=12, modality="CT")
    np.testing.assert_array_equal(io.read_image(path), stored.astype(np.float32))
    assert io.read_image_info(path).value_range == (-2048.0, 2047.0)


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        io.read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("ext", [".png", ".tif", ".dcm", ".npy"])
def test_truncated_and_random_files(tmp_path, ext):
    x = RNG.integers(0, 65536, size=(32, 32)).astype(np.uint16)
    data = io.write_image(tmp_path / f"full{ext}", x).read_bytes()
    (tmp_path / f"half{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"half\\{ext}"):
        io.read_image(tmp_path / f"half{ext}")
    (tmp_path / f"noise{ext}").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match=f"noise\\{ext}"):
        io.read_image(tmp_path / f"noise{ext}")


def test_colour_png_rejected(tmp_path):
    rgb = RNG.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="colour"):
        io.read_image(tmp_path / "c.png")
    la = np.dstack([rgb[..., 0], np.full((4, 5), 7, np.uint8)])
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    with pytest.raises(ValueError, match="alpha"):
        io.read_image(tmp_path / "la.png")


def test_unknown_extension_and_wrong_content(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="unknown image format '.jpg'"):
        io.read_image(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="unknown image format"):
        io.write_image(tmp_path / "b.bmp", np.zeros((2, 2)))
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "g.gif", format="GIF")
    (tmp_path / "g.png").write_bytes((tmp_path / "g.gif").read_bytes())
    with pytest.raises(ValueError, match="not PNG"):
        io.read_image(tmp_path / "g.png")


def test_empty_multipage_and_nonfinite(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        io.read_image(tmp_path / "e.npy")
    with pytest.raises(ValueError, match="empty"):
        io.write_image(tmp_path / "e.png", np.zeros((0, 3)))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 4, 5), np.uint16))
    with pytest.raises(ValueError, match="2 pages"):
        io.read_image(tmp_path / "stack.tif")
    bad = np.ones((3, 3), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"w\.dcm.*non-finite"):
        io.write_image(tmp_path / "w.dcm", bad)
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy.*non-finite"):
        io.read_image(tmp_path / "nan.npy")


def test_write_range_checks(tmp_path):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        io.write_image(tmp_path / "a.png", np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="do not fit in 8-bit"):
        io.write_image(tmp_path / "a.png", np.full((2, 2), 300), bits=8)
    with pytest.raises(ValueError, match="bits=12"):
        io.write_image(tmp_path / "a.png", np.zeros((2, 2)), bits=12)
    with pytest.raises(ValueError, match="rank 2"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="for_processing"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 2)), for_processing=True)
    with pytest.raises(ValueError, match="fixed range"):
        io.read_image(io.write_image(tmp_path / "f.npy", np.full((2, 2), 7.0)), normalize=True)


def test_to_unit_range():
    np.testing.assert_array_equal(io.to_unit_range(np.array([0, 2047, 4095]), 12),
                                  np.array([0, 2047 / 4095, 1], np.float32))
    assert io.to_unit_range(np.uint8(255), 8) == 1.0
    with pytest.raises(ValueError, match="8-bit counts"):
        io.to_unit_range(np.array([256]), 8)
    with pytest.raises(ValueError, match="bits"):
        io.to_unit_range(np.array([1]), 0)


# ----------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("ext", [".png", ".tif", ".npy", ".dcm"])
def test_failed_write_keeps_previous_file_and_leaves_no_partial(tmp_path, ext, monkeypatch):
    path = tmp_path / f"out{ext}"
    first = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    io.write_image(path, first)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        io.write_image(path, first[::-1].copy())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = io.write_image(tmp_path / "a.png", np.zeros((4, 4), np.float32))
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_output_path_checked_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        io.check_output_path(tmp_path / "file" / "sub" / "out.png")
    with pytest.raises(ValueError, match="unknown image format"):
        io.check_output_path(tmp_path / "out.jpg")
    with pytest.raises(ValueError, match="is a directory"):
        io.check_output_path(tmp_path)


@pytest.mark.parametrize("ext", [".png", ".tif", ".npy", ".dcm"])
def test_declared_size_above_limit_is_refused_before_decoding(tmp_path, ext, monkeypatch):
    from stylejax.data import io as data_io

    path = io.write_image(tmp_path / f"big{ext}", np.zeros((20, 30), np.float32))
    monkeypatch.setattr(data_io, "MAX_PIXELS", 20 * 30 - 1)
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        io.read_image(path)
    monkeypatch.setattr(data_io, "MAX_PIXELS", 20 * 30)
    assert io.read_image(path).shape == (20, 30)


def test_sixteen_bit_colour_png_is_refused_not_truncated(tmp_path):
    from PIL import Image

    # A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR bit depth 16,
    # colour type 2, one unfiltered scanline per row.
    import struct
    import zlib

    h, w = 3, 4
    values = (np.arange(h * w * 3, dtype=">u2") * 257).reshape(h, w * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in values)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path = tmp_path / "rgb16.png"
    path.write_bytes(png)
    with Image.open(path) as im:
        assert im.mode == "RGB"  # the decoder's 8-bit reduction this guards against
    with pytest.raises(ValueError, match="16-bit colour PNG"):
        io.read_image(path)


def test_palette_colour_dicom_is_refused_not_read_as_indices(pydicom_test_file):
    path = pydicom_test_file("examples_palette.dcm")
    assert str(pydicom.dcmread(path).PhotometricInterpretation) == "PALETTE COLOR"
    with pytest.raises(ValueError, match="palette-colour"):
        io.read_image(path)


def test_dicom_rescale_type_is_recorded_and_checked(tmp_path):
    x = np.linspace(-1000.0, 1500.0, 64, dtype=np.float32).reshape(8, 8)
    p = io.write_image(tmp_path / "ct.dcm", x, rescale_type="HU")
    ds = pydicom.dcmread(p)
    assert ds.RescaleType == "HU"
    np.testing.assert_allclose(io.read_image(p), x, atol=float(ds.RescaleSlope) / 2 + 1e-3)
    assert pydicom.dcmread(io.write_image(tmp_path / "u.dcm", x)).RescaleType == "US"
    for bad in ("hu", "", "X" * 17, 3):
        with pytest.raises(ValueError, match="rescale_type"):
            io.write_image(tmp_path / "b.dcm", x, rescale_type=bad)
    with pytest.raises(ValueError, match="only recorded in DICOM"):
        io.write_image(tmp_path / "b.npy", x, rescale_type="HU")
