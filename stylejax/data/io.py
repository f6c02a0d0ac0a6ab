"""Reading and writing grayscale images: NPY, PNG, TIFF (8/16 bit, float) and DICOM.

Value conventions
-----------------
``read_image`` returns ``float32 [H, W]`` in the file's *native units*:

* PNG/TIFF/NPY: the stored sample values (counts for integer files), unchanged.
* DICOM: the stored values passed through the modality LUT (``RescaleSlope`` and
  ``RescaleIntercept``, or a Modality LUT Sequence). Window centre/width (VOI LUT)
  is *not* applied: that is a display step. The orientation is then fixed:

  - "FOR PRESENTATION" images (and files that do not say): larger value = brighter
    on display. ``MONOCHROME1`` images (minimum shown as white) are inverted within
    their representable range ``[lo, hi]`` as ``lo + hi - value``, so every
    presentation image reads like ``MONOCHROME2``.
  - "FOR PROCESSING" raw images (``PresentationIntentType`` or ``ImageType`` says so):
    larger value = more X-ray intensity at the detector, the convention of
    ``stylejax.phantom`` raw images and of ``stylejax.lap.process`` (air is the
    brightest signal). ``PixelIntensityRelationshipSign`` -1 ("higher values mean
    less X-ray intensity") is inverted the same way; the photometric interpretation
    is ignored for raw images because it only describes how to *display* them.

``read_image(..., normalize=True)`` (or ``to_unit_range``) maps integer data to
[0, 1] over its representable range (``v / 255`` for 8-bit, ``v / 65535`` for
16-bit, ``(v - lo) / (hi - lo)`` for DICOM with ``BitsStored`` and rescale). Float
files have no fixed range: normalising them requires values already in [0, 1].

``write_image`` is the inverse: float data in [0, 1] becomes ``round(x * (2**bits - 1))``
counts in PNG (8 bit by default) and TIFF (16 bit by default), TIFF with ``bits=32``
stores float32 as is, integer arrays are stored as they are, NPY stores float32 (or
the integer dtype), and DICOM (Secondary Capture, ``MONOCHROME2``) stores floats as
16-bit counts with a rescale slope/intercept so that ``read_image`` returns the
original values to within half a count.

Limits: an image whose header declares more than ``MAX_PIXELS`` samples (all
channels and frames counted) is refused before any pixel is decoded, so a small
compressed file cannot expand into gigabytes. 16-bit colour PNGs are refused (the
PNG decoder would silently keep only 8 of their bits); store such images as 16-bit
grayscale PNG or TIFF.

Writing is atomic: ``write_image`` writes a temporary file next to the destination
and renames it over the destination only when it is complete, so a failure (full
disk, bad values, interruption) leaves any previous file intact and no partial file.

Errors: a missing file raises ``FileNotFoundError``; everything else (corrupt or
truncated file, unknown format, colour where grayscale is needed, empty image,
non-finite values, an image over the size limit) raises ``ValueError`` naming the
file and the problem.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from stylejax._checks import check_image

FORMATS = {".npy": "npy", ".png": "png", ".tif": "tiff", ".tiff": "tiff",
           ".dcm": "dicom", ".dicom": "dicom"}
"""File extensions understood by ``read_image`` and ``write_image`` (lower case).
Files with another extension are read as DICOM when they carry the DICOM magic."""

MAX_PIXELS = 200_000_000
"""Largest number of samples (height x width x channels x frames) a file may declare;
about 14000 x 14000 gray pixels, ten times a full-field mammogram. Raise it by assigning
``stylejax.data.io.MAX_PIXELS`` for larger images."""

_DEFAULT_BITS = {"png": 8, "tiff": 16, "dicom": 16}
_ALLOWED_BITS = {"png": (8, 16), "tiff": (8, 16, 32), "dicom": tuple(range(8, 17))}


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a file says about its image (no pixel values).

    Attributes:
      path: the file.
      format: "npy", "png", "tiff" or "dicom".
      shape: stored shape, ``(H, W)`` or ``(H, W, C)``.
      dtype: numpy dtype name of the stored samples.
      bits_stored: significant bits per sample (DICOM ``BitsStored``, PNG/TIFF bit
        depth, NPY item size), None for float data.
      value_range: ``(lo, hi)`` representable range in the units ``read_image``
        returns (what ``normalize=True`` maps to [0, 1]); None for float data.
      modality: DICOM ``Modality`` (e.g. "MG", "DX"), None otherwise.
      photometric: photometric interpretation ("MONOCHROME1", "MONOCHROME2", "RGB", ...).
      for_processing: True for raw "FOR PROCESSING" DICOM images.
      intensity_sign: DICOM ``PixelIntensityRelationshipSign`` (+1 or -1) or None.
      pixel_spacing: ``(row, column)`` spacing in mm (``PixelSpacing`` or
        ``ImagerPixelSpacing``), None when unknown.
      inverted: whether ``read_image`` inverts the values (see module docstring).
    """

    path: str
    format: str
    shape: tuple
    dtype: str
    bits_stored: int | None = None
    value_range: tuple[float, float] | None = None
    modality: str | None = None
    photometric: str | None = None
    for_processing: bool = False
    intensity_sign: int | None = None
    pixel_spacing: tuple[float, float] | None = None
    inverted: bool = False


# ----------------------------------------------------------------------------- helpers


def _resolve(path) -> tuple[Path, str]:
    """Return the path and its format; raise for missing files and unknown formats."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"image file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, not an image file")
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        with open(p, "rb") as f:
            head = f.read(132)
        if head[128:132] == b"DICM":
            return p, "dicom"
        raise ValueError(f"{p}: unknown image format {p.suffix!r}; supported: "
                         f"{', '.join(sorted(FORMATS))} (or DICOM files without extension)")
    return p, fmt


def _check_size(p: Path, shape) -> None:
    """Refuse a declared image shape above ``MAX_PIXELS`` samples (before decoding)."""
    count = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if count > MAX_PIXELS:
        raise ValueError(f"{p}: the file declares an image of shape {tuple(shape)} "
                         f"({count:,} samples), above the limit of {MAX_PIXELS:,} "
                         "(stylejax.data.io.MAX_PIXELS); refusing to decode it")


def _integer_range(dtype) -> tuple[float, float] | None:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return None


def _to_gray(arr: np.ndarray, path: Path, grayscale: bool) -> np.ndarray:
    """Reduce ``[H, W, C]`` to ``[H, W]`` when the channels carry the same gray image."""
    if arr.ndim == 2:
        return arr
    channels = arr.shape[-1] if arr.ndim == 3 else 0
    if arr.ndim != 3 or channels > 4:
        raise ValueError(f"{path}: expected one 2-D image [H, W] (or [H, W, channels] with "
                         f"at most 4 channels), got an array of shape {arr.shape}"
                         + ("; a stack of images? give one image per file"
                            if arr.ndim > 2 else ""))
    if channels == 1:
        return arr[..., 0]
    if channels in (2, 4):  # gray+alpha or RGB+alpha: only an all-opaque alpha is harmless
        alpha = arr[..., -1]
        opaque = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1.0
        if grayscale and not np.all(alpha == opaque):
            raise ValueError(f"{path}: image has a transparency (alpha) channel that is "
                             "not fully opaque; a grayscale image is needed")
        arr = arr[..., :-1]
        if channels == 2:
            return arr[..., 0]
    if not grayscale:
        return arr
    if arr.shape[-1] != 3:
        raise ValueError(f"{path}: image has {channels} channels; a grayscale image is needed")
    if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
        raise ValueError(f"{path}: is a colour image (its RGB channels differ); "
                         "a grayscale image is needed")
    return arr[..., 0]


# ----------------------------------------------------------------------------- readers


def _read_npy(p: Path, pixels: bool):
    try:
        header = np.load(p, mmap_mode="r", allow_pickle=False)
        _check_size(p, header.shape)
        arr = np.array(header) if pixels else header
        expected = header.offset + header.nbytes
        actual = p.stat().st_size
        if actual != expected:  # np.load maps a longer file silently
            raise ValueError(f"file has {actual} bytes, but its header declares a "
                             f"{header.shape} {header.dtype} array ending at byte {expected}")
    except ValueError as e:
        if "MAX_PIXELS" in str(e):
            raise
        raise ValueError(f"{p}: not a readable .npy array ({e})") from e
    except Exception as e:  # numpy raises ValueError/OSError/EOFError for bad files
        raise ValueError(f"{p}: not a readable .npy array ({e})") from e
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{p}: .npy array has dtype {arr.dtype}; need a real numeric image")
    rng = _integer_range(arr.dtype)
    info = ImageInfo(str(p), "npy", tuple(arr.shape), arr.dtype.name,
                     bits_stored=arr.dtype.itemsize * 8 if rng else None, value_range=rng)
    return (np.asarray(arr) if pixels else None), info


class _Refused(Exception):
    """A readable file that is refused on purpose (not a corrupt one)."""


def _png_bit_depth(p: Path) -> int:
    """Bit depth from a PNG's IHDR chunk (byte 24 of the file)."""
    with open(p, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 else 0


def _read_png(p: Path, pixels: bool):
    from PIL import Image

    try:
        with Image.open(p) as im:
            fmt, mode, size = im.format, im.mode, im.size
            arr = None
            _check_size(p, (size[1], size[0], len(im.getbands())))
            if fmt == "PNG" and mode in ("RGB", "RGBA") and _png_bit_depth(p) == 16:
                raise _Refused(f"{p}: 16-bit colour PNG; its decoder keeps only 8 of the 16 "
                               "bits, so it is refused. Save it as a 16-bit grayscale PNG "
                               "or as TIFF")
            if pixels and fmt == "PNG":
                im.load()
                if mode == "1":
                    im = im.convert("L")
                elif mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.asarray(im)
    except (_Refused, ValueError) as e:
        if isinstance(e, _Refused) or "MAX_PIXELS" in str(e):
            raise ValueError(str(e)) from None
        raise ValueError(f"{p}: corrupt or truncated PNG file ({type(e).__name__}: {e})") from e
    except Exception as e:  # Pillow raises OSError/SyntaxError/zlib.error on damage
        raise ValueError(f"{p}: corrupt or truncated PNG file ({type(e).__name__}: {e})") from e
    if fmt != "PNG":
        raise ValueError(f"{p}: file content is {fmt}, not PNG")
    base = mode.split(";")[0]
    channels = {"L": 1, "1": 1, "I": 1, "LA": 2, "RGB": 3, "P": 3, "RGBA": 4}.get(base)
    if channels is None:
        raise ValueError(f"{p}: unsupported PNG pixel mode {mode!r}")
    bits = 16 if base == "I" else 8
    shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)
    info = ImageInfo(str(p), "png", shape, "uint16" if bits == 16 else "uint8",
                     bits_stored=bits, value_range=(0.0, float(2 ** bits - 1)),
                     photometric="MONOCHROME2" if channels == 1 else base)
    return arr, info


def _read_tiff(p: Path, pixels: bool):
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            n_pages, page = len(tf.pages), tf.pages[0]
            shape, dtype = tuple(page.shape), np.dtype(page.dtype)
            photometric = page.photometric.name
            _check_size(p, shape)
            arr = page.asarray() if pixels and n_pages == 1 else None
    except ValueError as e:
        if "MAX_PIXELS" in str(e):
            raise
        raise ValueError(f"{p}: corrupt or truncated TIFF file ({type(e).__name__}: {e})") from e
    except Exception as e:  # tifffile raises TiffFileError/ValueError/OSError on damage
        raise ValueError(f"{p}: corrupt or truncated TIFF file ({type(e).__name__}: {e})") from e
    if n_pages != 1:
        raise ValueError(f"{p}: TIFF has {n_pages} pages; need a single 2-D image")
    if dtype.kind not in "iuf":
        raise ValueError(f"{p}: TIFF samples have dtype {dtype}; need a real numeric image")
    if photometric == "MINISWHITE":
        raise ValueError(f"{p}: TIFF photometric MINISWHITE (inverted gray) is not supported")
    rng = _integer_range(dtype)
    info = ImageInfo(str(p), "tiff", shape, dtype.name,
                     bits_stored=dtype.itemsize * 8 if rng else None, value_range=rng,
                     photometric="MONOCHROME2" if photometric == "MINISBLACK" else photometric)
    return arr, info


def _dicom_info(p: Path, ds, pixels: bool) -> ImageInfo:
    from pydicom.pixels import apply_modality_lut

    def text(keyword):
        value = ds.get(keyword)
        return None if value is None or value == "" else str(value).strip().upper()

    if pixels and "PixelData" not in ds:
        raise ValueError(f"{p}: DICOM file has no pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1))
        bits = int(ds.BitsStored)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{p}: DICOM image attributes are missing or invalid ({e})") from e
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_size(p, (rows, cols, samples, max(frames, 1)))
    if frames != 1:
        raise ValueError(f"{p}: multi-frame DICOM ({frames} frames); need a single 2-D image")
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2 ** bits - 1])
    rescaled = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    value_range = (float(rescaled.min()), float(rescaled.max()))
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    for_processing = (text("PresentationIntentType") == "FOR PROCESSING"
                      or "FOR PROCESSING" in image_type)
    sign = ds.get("PixelIntensityRelationshipSign")
    sign = None if sign is None or sign == "" else int(sign)
    photometric = text("PhotometricInterpretation")
    inverted = (sign == -1) if for_processing else (photometric == "MONOCHROME1")
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    spacing = (float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else None
    shape = (rows, cols) if samples == 1 else (rows, cols, samples)
    dtype = f"{'int' if signed else 'uint'}{int(ds.get('BitsAllocated', 16))}"
    return ImageInfo(str(p), "dicom", shape, dtype, bits_stored=bits, value_range=value_range,
                     modality=text("Modality"), photometric=photometric,
                     for_processing=for_processing, intensity_sign=sign,
                     pixel_spacing=spacing, inverted=inverted)


def _read_dicom(p: Path, pixels: bool):
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=not pixels)
    except Exception as e:  # InvalidDicomError, EOFError, struct errors on truncation
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e})") from e
    info = _dicom_info(p, ds, pixels)
    if not pixels:
        return None, info
    if info.photometric == "PALETTE COLOR":
        raise ValueError(f"{p}: palette-colour DICOM (PhotometricInterpretation PALETTE "
                         "COLOR): its pixel values index a colour table and are not "
                         "intensities; convert it to a grayscale image first")
    try:
        arr = ds.pixel_array
    except Exception as e:  # truncated pixel data, unsupported compression, ...
        raise ValueError(f"{p}: cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    if arr.ndim == 3 and info.shape[-1:] != arr.shape[-1:]:
        raise ValueError(f"{p}: DICOM pixel data has shape {arr.shape}; need a single 2-D image")
    arr = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if info.inverted:
        lo, hi = info.value_range
        arr = (lo + hi) - arr
    return arr, info


_READERS = {"npy": _read_npy, "png": _read_png, "tiff": _read_tiff, "dicom": _read_dicom}


# ----------------------------------------------------------------------------- public API


def read_image_info(path) -> ImageInfo:
    """Read what a file says about its image, without decoding all pixels.

    Args:
      path: an image file (.npy, .png, .tif/.tiff, .dcm/.dicom or DICOM without extension).
    Returns:
      ``ImageInfo``.
    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is unreadable or of an unknown format.
    """
    p, fmt = _resolve(path)
    return _READERS[fmt](p, False)[1]


def read_image_with_info(path, *, grayscale: bool = True,
                         normalize: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """Read an image and its ``ImageInfo`` in one pass (see ``read_image``)."""
    p, fmt = _resolve(path)
    arr, info = _READERS[fmt](p, True)
    arr = _to_gray(np.asarray(arr), p, grayscale)
    if arr.size == 0:
        raise ValueError(f"{p}: image is empty (shape {arr.shape})")
    if normalize:
        if info.value_range is not None:
            lo, hi = info.value_range
            arr = (np.asarray(arr, np.float64) - lo) / (hi - lo)
        else:
            lo, hi = float(np.min(arr)), float(np.max(arr))
            if lo < 0 or hi > 1:
                raise ValueError(f"{p}: float image with values {lo:g}..{hi:g} has no fixed "
                                 "range to normalise; only float data in [0, 1] can be")
    out = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise ValueError(f"{p}: image contains {bad} non-finite value(s) (NaN or inf)")
    return out, info


def read_image(path, *, grayscale: bool = True, normalize: bool = False) -> np.ndarray:
    """Read an image file as float32 (conventions in the module docstring).

    Args:
      path: an image file (.npy, .png, .tif/.tiff, .dcm/.dicom or DICOM without extension).
      grayscale: require one gray channel (RGB with identical channels and an opaque
        alpha channel are accepted); with False colour images come back as ``[H, W, C]``.
      normalize: map integer data from its representable range to [0, 1].
    Returns:
      float32 ``[H, W]`` (``[H, W, C]`` for colour with ``grayscale=False``).
    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: corrupt/truncated file, unknown format, colour image, empty image or
        non-finite values; the message names the file.
    """
    return read_image_with_info(path, grayscale=grayscale, normalize=normalize)[0]


def to_unit_range(array, bits: int) -> np.ndarray:
    """Map unsigned ``bits``-bit counts ``[0, 2**bits - 1]`` to float32 [0, 1].

    Args:
      array: integer or float array of counts, any shape.
      bits: bit depth, 1..32 (8 for 8-bit display images, 16 for 16-bit, 12 for 12-bit DICOM).
    Returns:
      float32 array of the same shape, ``array / (2**bits - 1)``.
    Raises:
      ValueError: bad ``bits`` or values outside the representable range.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 1..32 (got {bits!r})")
    values = np.asarray(array, dtype=np.float64)
    top = float(2 ** int(bits) - 1)
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0
                        or values.max() > top):
        raise ValueError(f"array values {np.nanmin(values):g}..{np.nanmax(values):g} are not "
                         f"{bits}-bit counts in [0, {top:g}]")
    return (values / top).astype(np.float32)


def _counts(arr: np.ndarray, bits: int, path: Path) -> np.ndarray:
    """Float [0, 1] -> rounded counts; integers checked against the bit depth."""
    top = 2 ** bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{path}: float image values {lo:g}..{hi:g} are outside [0, 1]; "
                             "scale them to [0, 1], pass integer counts, or write raw data "
                             "to .npy, .dcm or .tif with bits=32")
        return np.round(arr.astype(np.float64) * top).astype(dtype)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > top:
        raise ValueError(f"{path}: integer values {lo}..{hi} do not fit in {bits}-bit "
                         f"unsigned samples [0, {top}]")
    return arr.astype(dtype)


def _write_dicom(p: Path, arr: np.ndarray, bits: int, for_processing: bool,
                 rescale_type: str) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    from pydicom.valuerep import format_number_as_ds

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.PatientName, ds.PatientID, ds.StudyID = "", "", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    if for_processing:
        ds.PresentationIntentType = "FOR PROCESSING"
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0  # same counts as PNG/TIFF for unit-range images
        top = 2 ** bits - 1
        slope_text = format_number_as_ds((hi - lo) / top if hi > lo else 1.0)
        intercept_text = format_number_as_ds(lo)
        slope, intercept = float(slope_text), float(intercept_text)
        stored = np.clip(np.round((arr.astype(np.float64) - intercept) / slope), 0, top)
        stored = stored.astype(np.uint8 if bits <= 8 else np.uint16)
        ds.RescaleSlope, ds.RescaleIntercept = slope_text, intercept_text
        ds.RescaleType = rescale_type
    else:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            half = 2 ** (bits - 1)
            if lo < -half or hi > half - 1:
                raise ValueError(f"{p}: integer values {lo}..{hi} do not fit in {bits}-bit "
                                 "signed samples")
            stored = arr.astype(np.int8 if bits <= 8 else np.int16)
        else:
            stored = _counts(arr, bits, p)
    ds.set_pixel_data(stored, "MONOCHROME2", bits)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(p, enforce_file_format=True)


def write_image(path, array, *, bits: int | None = None, for_processing: bool = False,
                rescale_type: str = "US") -> Path:
    """Write a 2-D grayscale image (conventions in the module docstring).

    Args:
      path: destination; the extension picks the format (.npy, .png, .tif/.tiff,
        .dcm/.dicom). Missing parent folders are created. The file is written
        atomically (temporary file, then rename) with the umask's permissions.
      array: ``[H, W]`` real array, finite. Floats must lie in [0, 1] for PNG/TIFF
        (8/16 bit); any finite floats for .npy, .dcm and TIFF with ``bits=32``.
      bits: PNG 8 (default) or 16; TIFF 8, 16 (default) or 32 (float32 samples);
        DICOM 8..16 (default 16). Integer input is stored as is: 8 bits when its
        dtype is 8-bit, otherwise 16 bits. Ignored for .npy.
      for_processing: DICOM only: mark the image as a raw "FOR PROCESSING" image with
        linear intensity (``PixelIntensityRelationshipSign`` +1).
      rescale_type: DICOM, float input only: the units of the rescaled values
        (``RescaleType``; "US" = unspecified, "HU" = Hounsfield units); up to 16
        upper-case letters, digits, spaces or underscores.
    Returns:
      The path written.
    Raises:
      ValueError: unknown extension, bad array (rank, empty, non-finite), values
        that do not fit the bit depth, or an unwritable destination; the message
        names the file.
    """
    p = Path(os.fspath(path))
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: unknown image format {p.suffix!r}; supported: "
                         f"{', '.join(sorted(FORMATS))}")
    arr = np.asarray(array)
    check_image(arr, f"image written to {p}", min_rank=2, max_rank=2)
    if for_processing and fmt != "dicom":
        raise ValueError(f"{p}: for_processing is only recorded in DICOM files")
    if (not isinstance(rescale_type, str) or not 1 <= len(rescale_type) <= 16
            or not all(c.isdigit() or c in " _" or "A" <= c <= "Z" for c in rescale_type)):
        raise ValueError(f"{p}: rescale_type must be 1-16 upper-case letters, digits, spaces "
                         f"or underscores (got {rescale_type!r})")
    if rescale_type != "US" and fmt != "dicom":
        raise ValueError(f"{p}: rescale_type is only recorded in DICOM files")
    if fmt != "npy":
        if bits is None:
            integer = np.issubdtype(arr.dtype, np.integer)
            bits = (8 if arr.dtype.itemsize == 1 else 16) if integer else _DEFAULT_BITS[fmt]
        if isinstance(bits, bool) or bits not in _ALLOWED_BITS[fmt]:
            raise ValueError(f"{p}: bits={bits!r} is not supported for {fmt.upper()}; "
                             f"choose one of {_ALLOWED_BITS[fmt]}")
    check_output_path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    # Same suffix as the destination: writers pick details from it (np.save appends .npy).
    tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
    try:
        if fmt == "npy":
            np.save(tmp, arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating)
                    else arr)
        elif fmt == "dicom":
            _write_dicom(tmp, arr, bits, for_processing, rescale_type)
        elif fmt == "png":
            from PIL import Image

            Image.fromarray(_counts(arr, bits, p)).save(tmp, format="PNG")
        else:
            import tifffile

            data = arr.astype(np.float32) if bits == 32 else _counts(arr, bits, p)
            tifffile.imwrite(tmp, data, photometric="minisblack")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(path) -> Path:
    """Check, before any work, that ``path`` can be written as an image.

    Args:
      path: destination file.
    Returns:
      the path as a ``Path``.
    Raises:
      ValueError: unknown extension, the path is a directory, a parent is a file, or
        the nearest existing parent folder is not writable; the message names the path.
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        raise ValueError(f"{p}: is a directory; give a file name for the image")
    if FORMATS.get(p.suffix.lower()) is None:
        raise ValueError(f"{p}: unknown image format {p.suffix!r}; supported: "
                         f"{', '.join(sorted(FORMATS))}")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{p}: cannot create it, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{p}: folder {parent} is not writable")
    return p
