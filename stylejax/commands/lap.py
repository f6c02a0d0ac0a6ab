"""``stylejax lap``: process a raw X-ray image with the LAP pipeline."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLE = """example:
  stylejax phantoms -n 1 -o phantoms/          # a synthetic raw mammogram to try
  stylejax lap phantoms/phantom_000000_cc.tif --w 7 --l 4 --h 8 -o styled.png
  stylejax lap scan.dcm --w 5 --l 5 --h 5 -o styled.tif   # 16-bit output

RAW is a linear "for processing" detector image (DICOM, TIFF, PNG or NPY);
values must be positive. OUT's extension picks the format (.png 8-bit,
.tif 16-bit, .npy float32, .dcm)."""


def register(subparsers):
    parser = subparsers.add_parser(
        "lap", help="process a raw image with LAP (w, l, h on 0..10)",
        description="Apply the differentiable Laplacian-pyramid pipeline (LAP) to a raw image.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", help="raw detector image (DICOM/TIFF/PNG/NPY)")
    for name, text in (("w", "window: contrast"), ("l", "low-to-mid frequency weight"),
                       ("h", "high-frequency weight")):
        parser.add_argument(f"--{name}", type=float, default=5.0,
                            help=f"{text}, 0..10 (default 5)")
    parser.add_argument("-o", "--output", required=True, help="output image path")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from stylejax.data import io
    from stylejax.pipeline import lap

    io.check_output_path(args.output)  # a bad extension or folder fails before any work
    params = lap.LAPParams(args.w, args.l, args.h).validate()
    raw = io.read_image(args.raw)
    if np.isfinite(raw).all() and raw.min() <= 0:
        raise ValueError(f"{args.raw}: raw values must be positive (minimum {raw.min():g}); "
                         "is this a 'for presentation' image rather than a raw one?")
    styled = np.asarray(lap.process(raw, params))
    path = io.write_image(args.output, styled)
    print(f"wrote {path} ({styled.shape[0]}x{styled.shape[1]}, w={args.w:g} l={args.l:g} "
          f"h={args.h:g})", file=sys.stderr)
    if args.json:
        print(json.dumps({"input": args.raw, "output": str(path), "params": params.to_dict(),
                          "shape": list(styled.shape)}))
    return 0
