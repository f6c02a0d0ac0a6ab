"""``stylejax phantoms``: write synthetic raw mammograms, label maps and a preview grid."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """example:
  stylejax phantoms -n 4 --size 512 416 --view both --seed 0 -o phantoms/

writes, for each seed S and view V:
  phantom_SSSSSS_V.tif          raw detector counts, 16-bit TIFF (or .npy float32 / .dcm)
  phantom_SSSSSS_V_labels.png   tissue labels 0..5, 8-bit PNG (or .npy int32)
and preview.png: log display (top) and label colours (bottom) of up to 16 images.
labels: 0 background, 1 fat, 2 fibroglandular, 3 skin, 4 pectoral, 5 calcification."""

_RAW_SUFFIX = {"tiff": ".tif", "npy": ".npy", "dcm": ".dcm"}
_MAX_PREVIEW = 16


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "phantoms", help="write synthetic raw mammograms with tissue labels",
        description="Write synthetic raw ('for processing') mammograms, their tissue "
                    "label maps and a PNG preview grid.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--num", type=int, default=4, metavar="N",
                   help="number of seeds (default 4); --view both writes 2 images per seed")
    p.add_argument("--size", type=int, nargs=2, default=(512, 416), metavar=("H", "W"),
                   help="image height and width in pixels, each >= 16 (default 512 416)")
    p.add_argument("--view", choices=("cc", "mlo", "both"), default="both",
                   help="mammographic view (default both)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="first seed; seeds S, S+1, ..., S+N-1 are used (default 0)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--format", choices=tuple(_RAW_SUFFIX), default="tiff",
                   help="raw image format: 16-bit TIFF counts (default), float32 NPY, "
                        "or 16-bit 'for processing' DICOM")
    p.add_argument("--no-noise", action="store_true",
                   help="write the noise-free expected signal")
    p.add_argument("--no-preview", action="store_true", help="skip preview.png")
    p.set_defaults(func=run)


def _to_uint16(raw):
    import numpy as np

    return np.clip(np.rint(raw), 1, 65535).astype(np.uint16)


def _preview(path: Path, made) -> None:
    """Mosaic (no axes, no text): per image a log display above its label colours."""
    import numpy as np
    from matplotlib import image as mpimg

    from stylejax.data.phantom import label_rgb, log_display

    tiles = []
    for m in made[:_MAX_PREVIEW]:
        gray = np.repeat(log_display(m.raw, m.labels)[..., None], 3, axis=-1)
        tiles.append(np.concatenate([gray, np.ones((2,) + gray.shape[1:], np.float32),
                                     label_rgb(m.labels)], axis=0))
    cols = min(len(tiles), 8)
    rows = -(-len(tiles) // cols)
    h, w, _ = tiles[0].shape
    gap = 4
    canvas = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    mpimg.imsave(path, np.clip(canvas, 0, 1))


def run(args) -> int:
    import numpy as np

    from stylejax.cli import StylejaxError
    from stylejax.data.io import write_image
    from stylejax.data.phantom import VIEWS, mammogram

    if args.num < 1:
        raise StylejaxError(f"-n must be at least 1 (got {args.num})")
    if args.seed < 0:
        raise StylejaxError(f"--seed must be a non-negative integer (got {args.seed})")
    out = Path(args.out)
    views = VIEWS if args.view == "both" else (args.view,)
    made = []
    for seed in range(args.seed, args.seed + args.num):
        for view in views:
            m = mammogram(seed, size=tuple(args.size), view=view, noise=not args.no_noise)
            stem = out / f"phantom_{seed:06d}_{view}"
            raw_path = stem.with_name(stem.name + _RAW_SUFFIX[args.format])
            if args.format == "tiff":
                write_image(raw_path, _to_uint16(m.raw))
                write_image(stem.with_name(stem.name + "_labels.png"), m.labels.astype(np.uint8))
            elif args.format == "npy":
                write_image(raw_path, m.raw)
                write_image(stem.with_name(stem.name + "_labels.npy"), m.labels)
            else:
                write_image(raw_path, m.raw, for_processing=True)
                write_image(stem.with_name(stem.name + "_labels.png"), m.labels.astype(np.uint8))
            made.append(m)
    if not args.no_preview:
        _preview(out / "preview.png", made)
    print(f"wrote {len(made)} phantom(s) of {args.size[0]}x{args.size[1]} to {out}"
          + ("" if args.no_preview else f" (preview: {out / 'preview.png'})"))
    return 0
