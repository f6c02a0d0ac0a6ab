"""Ultrasound task 1 (LQ -> HQ) on held-out simulated images: transform networks vs Gatys.

For held-out seeds (``HELDOUT_SEED0`` on, never used in training) it simulates paired
low-/high-quality B-mode images and reports, per method:

* SSIM and PSNR of the output against the paired HQ ground truth (mean over images);
* the Frechet distance between the outputs and the held-out HQ set in the pooled
  features of the shipped StyleX encoder (taps stage2 + stage3);
* seconds per image (median, compilation excluded for the networks; Gatys timed per image
  including its optimisation).

Methods: the input itself (identity baseline), every exported transform network given
with ``--net NAME=DIR`` (e.g. default, no-noise, single-style), and Gatys NST (content =
LQ image, style = the HQ image of another held-out seed, StyleX extractor).

    python experiments/ultrasound_tasks.py --net default=stylejax/assets/johnson_us \\
        --net no-noise=/tmp/us_runs/no-noise/export --n 16 --size 128 --gatys-steps 100

Writes ``experiments/results/ultrasound_tasks.json`` and
``experiments/figures/ultrasound_tasks.png``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stylejax.data.ultrasound import ultrasounds
from stylejax.evaluation import bench
from stylejax.methods.gatys import GatysConfig, gatys
from stylejax.metrics.frechet import frechet_distance_on
from stylejax.metrics.image import psnr, ssim
from stylejax.models.transform_net import stylize
from stylejax.train.transform_net import HELDOUT_SEED0, build_extractor, load


def quality(outputs, targets) -> dict:
    s = [float(ssim(o, t)) for o, t in zip(outputs, targets)]
    p = [float(psnr(o, t)) for o, t in zip(outputs, targets)]
    return {"ssim": float(np.mean(s)), "ssim_std": float(np.std(s)),
            "psnr": float(np.mean(p)), "psnr_std": float(np.std(p))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", action="append", default=[], help="NAME=DIR of an exported net")
    ap.add_argument("--n", type=int, default=16, help="held-out images")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--gatys-steps", type=int, default=100)
    ap.add_argument("--gatys-images", type=int, default=4, help="images Gatys runs on")
    ap.add_argument("--out", default="experiments/results/ultrasound_tasks.json")
    ap.add_argument("--fig", default="experiments/figures/ultrasound_tasks.png")
    args = ap.parse_args()

    seeds = list(range(HELDOUT_SEED0, HELDOUT_SEED0 + args.n))
    size = (args.size, args.size)
    lq = ultrasounds(seeds, size, "lq").images
    hq = ultrasounds(seeds, size, "hq").images
    # reference set for the Frechet distance: other held-out HQ images
    ref = ultrasounds(range(HELDOUT_SEED0 + 1000, HELDOUT_SEED0 + 1000 + args.n), size,
                      "hq").images
    ext = build_extractor("stylex")
    fd_taps = ("stage2", "stage3")

    def fd(images):
        return float(frechet_distance_on(ext, images, ref, tap=fd_taps))

    rows, shown = {}, {"LQ input": lq[0], "HQ ground truth": hq[0]}
    rows["lq-input"] = {**quality(lq, hq), "frechet": fd(lq), "seconds_per_image": 0.0}
    rows["hq-ground-truth"] = {**quality(hq, hq), "frechet": fd(hq), "seconds_per_image": 0.0}
    bench.log(f"input: {rows['lq-input']}")
    for spec in args.net:
        name, path = spec.split("=", 1)
        net, meta = load(path)
        out = stylize(net, lq)
        sec = bench.median_seconds(lambda: stylize(net, lq[:1]), repeats=5) 
        rows[f"johnson-{name}"] = {**quality(out, hq), "frechet": fd(out),
                                   "seconds_per_image": sec, "noise": meta["noise"],
                                   "style": (meta.get("task") or {}).get("style"),
                                   "steps": (meta.get("config") or {}).get("steps")}
        if meta["noise"]:
            outn = stylize(net, lq, key=__import__("jax").random.key(0))
            rows[f"johnson-{name}-sampled-noise"] = {**quality(outn, hq), "frechet": fd(outn),
                                                     "seconds_per_image": sec}
        shown[f"Johnson {name}"] = out[0]
        bench.log(f"{name}: {rows[f'johnson-{name}']}")
    if args.gatys_steps > 0 and args.gatys_images > 0:
        k = min(args.gatys_images, args.n)
        cfg = GatysConfig(steps=args.gatys_steps)
        outs, secs = [], []
        for i in range(k):
            t0 = time.perf_counter()
            res = gatys(lq[i], hq[(i + 1) % args.n], extractor=ext, config=cfg)
            secs.append(time.perf_counter() - t0)
            outs.append(np.clip(res.image, 0, 1))
        outs = np.stack(outs)
        rows["gatys"] = {**quality(outs, hq[:k]), "frechet": fd(outs) if k >= 2 else None,
                         "seconds_per_image": float(np.median(secs[1:] if k > 1 else secs)),
                         "images": k, "steps": args.gatys_steps, "extractor": "stylex"}
        shown["Gatys"] = outs[0]
        bench.log(f"gatys: {rows['gatys']}")

    payload = {"machine": bench.machine(), "heldout_seeds": [seeds[0], seeds[-1]],
               "size": args.size, "frechet_extractor": f"stylex {fd_taps}",
               "command": "python experiments/ultrasound_tasks.py " + " ".join(
                   f"--net {s}" for s in args.net) + f" --n {args.n} --size {args.size} "
               f"--gatys-steps {args.gatys_steps} --gatys-images {args.gatys_images}",
               "task1_lq_to_hq": rows,
               "not_run": ["task 2 (label map -> image)", "task 3 (simulated -> clinical)"]}
    bench.write_json(args.out, payload)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.9))
    for ax, (title, img) in zip(np.atleast_1d(axes), shown.items()):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        key = {"LQ input": "lq-input", "HQ ground truth": "hq-ground-truth", "Gatys": "gatys"}
        r = rows.get(key.get(title, "johnson-" + title.split(" ", 1)[-1]))
        ax.set_title(title + (f"\nSSIM {r['ssim']:.2f}" if r else ""), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.fig, dpi=110)
    print(f"wrote {args.out} and {args.fig}")


if __name__ == "__main__":
    main()
