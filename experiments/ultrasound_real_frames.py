"""The shipped ultrasound transform network on the real ultrasound frames pydicom ships.

pydicom's test data holds three real ultrasound images: ``examples_ybr_color.dcm`` (a
30-frame cine, YBR colour; frame 0), ``examples_jpeg2k.dcm`` (JPEG 2000, RGB) and
``examples_palette.dcm`` (palette colour). Each becomes grey (RGB by luma weights
0.299/0.587/0.114; the palette through its lookup table first), is scaled to [0, 1] and
runs through the network (``--network DIR``, default the shipped LQ -> HQ net). There is no
ground truth for real frames: the script reports sizes, time per frame and the change of
simple image statistics (mean, standard deviation, and the speckle grain as the
autocorrelation width in pixels), and draws input and output side by side.

    python experiments/ultrasound_real_frames.py

Writes ``experiments/results/ultrasound_real_frames.json`` and
``experiments/figures/ultrasound_real_frames.png``.
"""

from __future__ import annotations

import argparse

import numpy as np

from stylejax.evaluation import bench
from stylejax.methods.johnson import shipped_network
from stylejax.models.transform_net import stylize
from stylejax.train.transform_net import load

FILES = ("examples_ybr_color.dcm", "examples_jpeg2k.dcm", "examples_palette.dcm")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grey_frame(path: str) -> np.ndarray:
    """Frame 0 of an ultrasound DICOM as a grey float32 image in [0, 1].

    Raises:
      ValueError: a constant frame or an unsupported photometric interpretation.
    """
    import pydicom
    from pydicom.pixels import apply_color_lut
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    kind = str(ds.PhotometricInterpretation)
    if kind == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    elif kind not in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT",
                      "MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"{path}: unsupported photometric interpretation {kind!r}")
    img = np.asarray(pixels, np.float32)
    if img.ndim == 3:
        img = img[..., :3] @ LUMA
    if kind == "MONOCHROME1":
        img = img.max() - img
    lo, hi = float(img.min()), float(img.max())
    if not hi > lo:
        raise ValueError(f"{path}: constant frame")
    return (img - lo) / (hi - lo)


def grain_px(img: np.ndarray) -> float:
    """Speckle grain: the lag (px) where the horizontal autocorrelation falls below 1/2."""
    x = img - img.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(x, n=2 * x.shape[1], axis=1)) ** 2
    ac = np.fft.irfft(power, axis=1)[:, : x.shape[1]].mean(axis=0)
    ac = ac / ac[0]
    below = np.nonzero(ac < 0.5)[0]
    return float(below[0]) if below.size else float(x.shape[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", default=None, help="exported net (default: the shipped one)")
    ap.add_argument("--out", default="experiments/results/ultrasound_real_frames.json")
    ap.add_argument("--fig", default="experiments/figures/ultrasound_real_frames.png")
    args = ap.parse_args()
    from pydicom.data import get_testdata_file
    net, meta = load(args.network or shipped_network())
    rows, shown = {}, []
    for name in FILES:
        path = get_testdata_file(name, download=False)
        if not path:
            raise SystemExit(f"pydicom's {name} is not installed (pydicom ships it in its wheel)")
        x = grey_frame(path)
        y = stylize(net, x[None])[0]
        sec = bench.median_seconds(lambda: stylize(net, x[None]), repeats=3)
        rows[name] = {"shape": list(x.shape), "seconds": sec,
                      "input": {"mean": float(x.mean()), "std": float(x.std()),
                                "grain_px": grain_px(x)},
                      "output": {"mean": float(y.mean()), "std": float(y.std()),
                                 "grain_px": grain_px(y)}}
        shown.append((name, x, y))
        bench.log(f"{name}: {rows[name]}")
    bench.write_json(args.out, {"machine": bench.machine(), "network": args.network or
                                "shipped", "network_task": meta.get("task"), "frames": rows,
                                "command": "python experiments/ultrasound_real_frames.py"})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(shown), 2, figsize=(8, 3.2 * len(shown)))
    for (name, x, y), row in zip(shown, axes):
        row[0].imshow(x, cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"{name} (grey)", fontsize=8)
        row[1].imshow(y, cmap="gray", vmin=0, vmax=1)
        row[1].set_title("transform net output", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.fig, dpi=90)
    print(f"wrote {args.out} and {args.fig}")


if __name__ == "__main__":
    main()
