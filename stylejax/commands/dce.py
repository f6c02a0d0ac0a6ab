"""``stylejax dce``: translate a DCE-MRI series between contrast-enhanced and non-enhanced."""

from __future__ import annotations

import argparse
import json
import os

EXAMPLE = """examples:
  stylejax dce --series ce.npy --reference non_ce_ref.npy -o non_ce.npy
  stylejax dce --series pre.tif --reference ce_ref.tif --direction non-ce-to-ce -o ce.tif

Series are [T, H, W] stacks: .npy, multi-page .tif/.tiff or multi-frame .dcm. The reference
is a series of the target domain (any patient) with the same shape; it supplies the
per-frame contrast style. The output format follows the extension of -o (.npy, .tif)."""

SERIES_EXTENSIONS = (".npy", ".tif", ".tiff", ".dcm")


def read_series(path: str):
    """A ``[T, H, W]`` float32 array from .npy, multi-page TIFF or multi-frame DICOM.

    Raises:
      FileNotFoundError: no such file; ValueError: unknown extension or unreadable file.
    """
    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"series file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            a = np.load(path, allow_pickle=False)
        elif ext in (".tif", ".tiff"):
            import tifffile
            a = tifffile.imread(path)
        elif ext == ".dcm":
            import pydicom
            ds = pydicom.dcmread(path)
            a = ds.pixel_array.astype(np.float32)
            a = a * float(getattr(ds, "RescaleSlope", 1.0)) + float(
                getattr(ds, "RescaleIntercept", 0.0))
        else:
            raise ValueError(f"{path}: unknown series format {ext!r} (use one of "
                             f"{', '.join(SERIES_EXTENSIONS)})")
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError) and "unknown series format" in str(e):
            raise
        raise ValueError(f"{path}: cannot read a series ({e})") from None
    return np.asarray(a)


def write_series(path: str, series) -> str:
    """Write ``[T, H, W]`` float32 as .npy or multi-page TIFF; returns the path."""
    import numpy as np

    ext = os.path.splitext(path)[1].lower()
    a = np.asarray(series, np.float32)
    if ext == ".npy":
        np.save(path, a)
    elif ext in (".tif", ".tiff"):
        import tifffile
        tifffile.imwrite(path, a)
    else:
        raise ValueError(f"output {path}: use a .npy or .tif extension")
    return path


def register(subparsers):
    from stylejax.methods.dce import DIRECTIONS  # light: no model loading

    parser = subparsers.add_parser(
        "dce", help="DCE-MRI series: remove or add contrast enhancement (MUNIT, AdaConv)",
        description="Translate a DCE-MRI series [T, H, W] between contrast-enhanced (CE) and "
                    "non-enhanced (non-CE) with a trained MUNIT (AdaConv decoders, "
                    "bidirectional ConvLSTM over time).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", required=True, help="input series (.npy, .tif, .dcm)")
    parser.add_argument("--reference", required=True,
                        help="reference series of the target domain (same shape)")
    parser.add_argument("--direction", choices=DIRECTIONS, default="ce-to-non-ce",
                        help="ce-to-non-ce (default) or non-ce-to-ce")
    parser.add_argument("--network", default=None,
                        help="exported model directory (default: the shipped one)")
    parser.add_argument("-o", "--output", required=True, help="output series (.npy or .tif)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def run(args) -> int:
    import time

    from stylejax.methods.dce import translate

    if os.path.splitext(args.output)[1].lower() not in (".npy", ".tif", ".tiff"):
        raise ValueError(f"output {args.output}: use a .npy or .tif extension")
    series = read_series(args.series)
    reference = read_series(args.reference)
    t0 = time.perf_counter()
    out = translate(series, reference, direction=args.direction, network=args.network)
    path = write_series(args.output, out)
    summary = {"output": path, "direction": args.direction, "shape": list(out.shape),
               "seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {path} ({args.direction}, {out.shape[0]} frames)")
    return 0
