"""The ultrasound thesis' three tasks on held-out simulated images: transform nets vs Gatys.

Tasks (``--task``; input -> target of the same seed, so every output has ground truth):

* ``lq-to-hq``: low-quality -> high-quality B-mode image (thesis task 1);
* ``labels-to-hq``: tissue label map -> HQ image (task 2, "segmentation map to image");
* ``hq-to-clinical``: idealised simulation (``hq``) -> the ``clinical`` look (task 3).

For held-out seeds (``HELDOUT_SEED0`` on, never used in training) it reports per method:

* SSIM and PSNR of the output against the paired target (mean over images);
* ``ssim_smoothed``: SSIM after a Gaussian blur (sigma 2 px) of output and target, which
  compares anatomy and echogenicity but not the speckle grain: the LQ and HQ images of a
  seed are made from scatterer fields of 6 and 200 scatterers per resolution cell, so the
  HQ speckle pattern cannot be recovered pixel by pixel from the LQ image;
* the Frechet distance between the outputs and another held-out set of target images in
  the pooled features of the shipped StyleX encoder (taps stage2 + stage3);
* seconds per image (median; compilation excluded for the networks; Gatys timed per image
  including its optimisation).

Methods: the input itself (identity), the target blurred by 1 px (what a one-pixel loss of
speckle detail costs in SSIM), every exported transform network given with ``--net
NAME=DIR`` (its training task must be ``--task``; for nets with noise injection also with
sampled noise), and Gatys NST (content = the input, style = the target image of another
held-out seed, StyleX extractor).

    python experiments/ultrasound_tasks.py --task lq-to-hq \\
        --net default=stylejax/assets/johnson_us --net no-noise=RUN/export --n 16

Writes ``experiments/results/ultrasound_<task>.json`` and
``experiments/figures/ultrasound_<task>.png``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.ndimage import gaussian_filter

from stylejax.data.ultrasound import ultrasounds
from stylejax.evaluation import bench
from stylejax.methods.gatys import GatysConfig, gatys
from stylejax.metrics.frechet import frechet_distance_on
from stylejax.metrics.image import psnr, ssim
from stylejax.models.transform_net import stylize
from stylejax.train.transform_net import HELDOUT_SEED0, build_extractor, load, source_images

TASKS = {"lq-to-hq": ("lq", "hq"), "labels-to-hq": ("labels", "hq"),
         "hq-to-clinical": ("hq", "clinical")}


def quality(outputs, targets) -> dict:
    """Mean/std SSIM and PSNR against the targets, and SSIM of the 2-px-blurred pairs."""
    s = [float(ssim(o, t)) for o, t in zip(outputs, targets)]
    p = [float(psnr(o, t)) for o, t in zip(outputs, targets)]
    b = [float(ssim(gaussian_filter(o, 2.0), gaussian_filter(t, 2.0)))
         for o, t in zip(outputs, targets)]
    return {"ssim": float(np.mean(s)), "ssim_std": float(np.std(s)),
            "psnr": float(np.mean(p)), "psnr_std": float(np.std(p)),
            "ssim_smoothed": float(np.mean(b))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=tuple(TASKS), default="lq-to-hq")
    ap.add_argument("--net", action="append", default=[], help="NAME=DIR of an exported net")
    ap.add_argument("--n", type=int, default=16, help="held-out images")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--gatys-steps", type=int, default=100)
    ap.add_argument("--gatys-images", type=int, default=4, help="images Gatys runs on")
    ap.add_argument("--out", default=None, help="default experiments/results/ultrasound_<task>.json")
    ap.add_argument("--fig", default=None, help="default experiments/figures/ultrasound_<task>.png")
    args = ap.parse_args()
    out_path = args.out or f"experiments/results/ultrasound_{args.task}.json"
    fig_path = args.fig or f"experiments/figures/ultrasound_{args.task}.png"
    source, target = TASKS[args.task]

    seeds = list(range(HELDOUT_SEED0, HELDOUT_SEED0 + args.n))
    size = (args.size, args.size)
    x = source_images(seeds, size, source)
    y = ultrasounds(seeds, size, target).images
    ref = ultrasounds(range(HELDOUT_SEED0 + 1000, HELDOUT_SEED0 + 1000 + args.n), size,
                      target).images
    ext = build_extractor("stylex")
    fd_taps = ("stage2", "stage3")

    def fd(images):
        return float(frechet_distance_on(ext, images, ref, tap=fd_taps))

    rows = {"input": {**quality(x, y), "frechet": fd(x), "seconds_per_image": 0.0},
            "target": {**quality(y, y), "frechet": fd(y), "seconds_per_image": 0.0}}
    blurred = np.stack([gaussian_filter(t, 1.0) for t in y])
    rows["target-blurred-1px"] = {**quality(blurred, y), "frechet": fd(blurred),
                                  "seconds_per_image": 0.0}
    shown = {"input": x[0], "target": y[0]}
    bench.log(f"input: {rows['input']}")
    for spec in args.net:
        if "=" not in spec:
            raise SystemExit(f"--net takes NAME=DIR (got {spec!r})")
        name, path = spec.split("=", 1)
        net, meta = load(path)
        task = meta.get("task") or {}
        if (task.get("source"), task.get("target")) != (source, target):
            raise SystemExit(f"{path} was trained for {task.get('source')} -> "
                             f"{task.get('target')}, not {args.task}")
        out = stylize(net, x)
        sec = bench.median_seconds(lambda: stylize(net, x[:1]), repeats=5)
        rows[name] = {**quality(out, y), "frechet": fd(out), "seconds_per_image": sec,
                      "noise": meta["noise"], "style": task.get("style"),
                      "extractor": task.get("extractor"),
                      "steps": (meta.get("config") or {}).get("steps")}
        if meta["noise"]:
            outn = stylize(net, x, key=jax.random.key(0))
            rows[f"{name} (noise sampled)"] = {**quality(outn, y), "frechet": fd(outn),
                                               "seconds_per_image": sec}
        shown[name] = out[0]
        bench.log(f"{name}: {rows[name]}")
    if args.gatys_steps > 0 and args.gatys_images > 0:
        k = min(args.gatys_images, args.n)
        cfg = GatysConfig(steps=args.gatys_steps)
        outs, secs = [], []
        for i in range(k):
            t0 = time.perf_counter()
            res = gatys(x[i], y[(i + 1) % args.n], extractor=ext, config=cfg)
            secs.append(time.perf_counter() - t0)
            outs.append(np.clip(res.image, 0, 1))
        outs = np.stack(outs)
        rows["gatys"] = {**quality(outs, y[:k]), "frechet": fd(outs) if k >= 2 else None,
                         "seconds_per_image": float(np.median(secs[1:] if k > 1 else secs)),
                         "images": k, "steps": args.gatys_steps, "extractor": "stylex"}
        shown["gatys"] = outs[0]
        bench.log(f"gatys: {rows['gatys']}")

    payload = {"machine": bench.machine(), "task": args.task, "source": source,
               "target": target, "heldout_seeds": [seeds[0], seeds[-1]],
               "frechet_reference_seeds": [HELDOUT_SEED0 + 1000, HELDOUT_SEED0 + 999 + args.n],
               "size": args.size, "frechet_extractor": f"stylex {fd_taps}",
               "command": f"python experiments/ultrasound_tasks.py --task {args.task} " + " ".join(
                   f"--net {s}" for s in args.net) + f" --n {args.n} --size {args.size} "
               f"--gatys-steps {args.gatys_steps} --gatys-images {args.gatys_images}",
               "rows": rows}
    bench.write_json(out_path, payload)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.9))
    for ax, (title, img) in zip(np.atleast_1d(axes), shown.items()):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        r = rows.get(title)
        ax.set_title(title + (f"\nSSIM {r['ssim']:.2f}" if r else ""), fontsize=8)
        ax.axis("off")
    fig.suptitle(f"ultrasound {args.task}, held-out seed {seeds[0]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(fig_path, dpi=110)
    print(f"wrote {out_path} and {fig_path}")


if __name__ == "__main__":
    main()
