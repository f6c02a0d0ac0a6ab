"""Pilot for the offline AdaIN encoder on synthetic CT (forward passes only, no training).

For each candidate encoder (random He-normal VGG19 up to relu3_1 or relu4_1, the shipped
StyleX encoder up to stage2 or stage3) on ``--seeds`` phantom seeds x all six kernels:

* ``kernel_accuracy``: leave-one-seed-out nearest-centroid classification of the kernel
  from the AdaIN style statistics (per-channel mean and std at the style taps, each
  feature z-scored over the pool) -- can the encoder *see* the kernel?
* ``content_margin``: at the content tap, mean cosine similarity of the same seed under
  different kernels minus that of different seeds under the same kernel -- does the
  content code keep the anatomy and ignore the kernel?
* ``content_res``: the content tap's resolution relative to the image (finer = the
  decoder has less to invent), and ``ms_per_image``.

Images are mapped to [0, 1] as the AdaIN method maps them (per-image 0.5/99.5 % range).

    python experiments/ct_encoder_pilot.py --seeds 8 --size 128
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

from stylejax.data.ct import ct_kernels, ct_slices
from stylejax.train.adain import to_unit
from stylejax.models import features


def candidates():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = features.vgg19_features("random", seed=0)
    from stylejax.metrics.stylex import load_pretrained
    sx = features.StyleXFeatures(load_pretrained().encoder())
    return {
        "vgg19-random relu3_1": (vgg, ("relu1_1", "relu2_1", "relu3_1"), "relu3_1"),
        "vgg19-random relu4_1": (vgg, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"), "relu4_1"),
        "stylex stage2": (sx, ("stem", "stage1", "stage2"), "stage2"),
        "stylex stage3": (sx, ("stem", "stage1", "stage2", "stage3"), "stage3"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default="experiments/results/ct_encoder_pilot.json")
    a = ap.parse_args()
    kernels = ct_kernels()
    data = ct_slices(range(10_000, 10_000 + a.seeds), (a.size, a.size))
    imgs = np.stack([to_unit(im)[0] for im in data.images.reshape(-1, a.size, a.size)])
    n, k = a.seeds, len(kernels)
    rows = {}
    for name, (enc, style_taps, content_tap) in candidates().items():
        taps = tuple(dict.fromkeys(style_taps + (content_tap,)))
        feats = enc(imgs[:2], taps)  # compile
        t0 = time.perf_counter()
        feats = {t: np.asarray(v) for t, v in enc(imgs, taps).items()}
        ms = 1000 * (time.perf_counter() - t0) / len(imgs)
        stats = np.concatenate([np.concatenate([f.mean((1, 2)), f.std((1, 2))], -1)
                                for t, f in feats.items() if t in style_taps], -1)
        stats = (stats - stats.mean(0)) / (stats.std(0) + 1e-8)
        stats = stats.reshape(n, k, -1)
        correct = 0
        for s in range(n):
            cent = np.delete(stats, s, 0).mean(0)  # [k, D]
            d = ((stats[s][:, None] - cent[None]) ** 2).sum(-1)
            correct += int((d.argmin(1) == np.arange(k)).sum())
        c = feats[content_tap].reshape(n, k, -1)
        c = c / np.linalg.norm(c, axis=-1, keepdims=True)
        same_seed = np.mean([c[s, i] @ c[s, j] for s in range(n) for i in range(k)
                             for j in range(k) if i != j])
        same_kernel = np.mean([c[s, i] @ c[t, i] for s in range(n) for t in range(n)
                               if s != t for i in range(k)])
        rows[name] = dict(kernel_accuracy=correct / (n * k), content_margin=float(
            same_seed - same_kernel), same_seed_cos=float(same_seed),
            other_seed_cos=float(same_kernel),
            content_res=feats[content_tap].shape[1] / a.size, ms_per_image=ms)
        print(f"{name:24s} " + " ".join(f"{kk}={v:.3f}" for kk, v in rows[name].items()),
              flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(dict(seeds=a.seeds, size=a.size, kernels=kernels, encoders=rows), f, indent=1)


if __name__ == "__main__":
    main()
