"""Short AdaIN decoder trainings for diagnosis: which setting draws stripes?

Trains one decoder of ``stylejax train adain`` for a few hundred steps with config
overrides (JSON), then restyles 4 held-out seeds (100000..100003, 128 px) for three
kernel pairs and reports SSIM (model scale) of the output to the true target kernel,
of the ``alpha = 0`` output to the content (how well the decoder inverts the encoder),
and the identity's SSIM; saves a figure (content, true, alpha 0, alpha 1 per pair) to
look for artefacts.

    python experiments/ct_decoder_probe.py adain_sw0 300 '{"variant": "adain", "style_weight": 0}'
    python experiments/ct_decoder_probe.py r11 300 '{"variant": "adain", "content_tap": "relu1_1",
        "style_taps": ["relu1_1"], "decoder_widths": [], "decoder_convs": [3]}'

Workdir ``--root/ct_probe_NAME`` (resumed if it exists); writes
``experiments/results/ct_decoder_probe_NAME.json`` and
``experiments/figures/ct_decoder_probe_NAME.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import numpy as np

from stylejax.data.ct import ct_slices, window
from stylejax.metrics.image import ssim
from stylejax.models.adain import AdaINNet
from stylejax.train import adain as T

PAIRS = (("soft", "lung"), ("lung", "soft"), ("standard", "bone"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("steps", type=int)
    ap.add_argument("overrides", nargs="?", default="{}",
                    help="JSON dict of AdaINConfig fields (and 'variant')")
    ap.add_argument("--root", default="/tmp")
    a = ap.parse_args()
    over = json.loads(a.overrides)
    variant = over.pop("variant", "adain")
    cfg = dataclasses.replace(T.default_for(variant), **{
        k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
    workdir = os.path.join(a.root, f"ct_probe_{a.name}")
    t0 = time.time()
    res = T.train(cfg, workdir, steps=a.steps, progress=False)
    seconds = time.time() - t0
    net = AdaINNet(T.TASK.encoder(cfg), content_tap=cfg.content_tap,
                   style_taps=cfg.style_taps, decoder=T.decoder_from_state(cfg, res.state))
    fwd = jax.jit(lambda c, s, alpha: net(c, s, alpha=alpha)[..., 0])
    d = ct_slices(range(100_000, 100_004), (128, 128))
    k = list(d.kernels)
    unit = lambda x: (x + 1000.0) / 2000.0  # noqa: E731
    rows, ims = [], []
    for ka, kb in PAIRS:
        c, tr = unit(d.images[:, k.index(ka)]), unit(d.images[:, k.index(kb)])
        s = np.roll(tr, 1, axis=0)  # another seed's kernel-B slice as style
        o1, o0 = np.asarray(fwd(c, s, 1.0)), np.asarray(fwd(c, s, 0.0))
        rows.append(dict(pair=f"{ka}->{kb}",
                         ssim_out_true=float(np.mean([ssim(o1[i], tr[i]) for i in range(4)])),
                         ssim_alpha0_content=float(np.mean([ssim(o0[i], c[i])
                                                            for i in range(4)])),
                         ssim_identity=float(np.mean([ssim(c[i], tr[i]) for i in range(4)]))))
        ims.append((c[0], tr[0], o0[0], o1[0]))
        print("{pair}: SSIM(out, true) {ssim_out_true:.3f}  SSIM(alpha 0, content) "
              "{ssim_alpha0_content:.3f}  identity {ssim_identity:.3f}".format(**rows[-1]))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        hist = [json.loads(line) for line in f]
    last = {m: float(np.mean([h[m] for h in hist[-50:]])) for m in ("loss", "content", "style")}
    print("loss, mean of the last 50 steps:", last)
    os.makedirs("experiments/results", exist_ok=True)
    with open(f"experiments/results/ct_decoder_probe_{a.name}.json", "w") as f:
        json.dump(dict(command="python experiments/ct_decoder_probe.py " + a.name + " " +
                       str(a.steps) + " '" + a.overrides + "'", config=dataclasses.asdict(cfg),
                       rows=rows, last_losses=last, train_seconds=seconds), f, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(len(ims), 4, figsize=(10, 2.6 * len(ims)))
    for r, im in enumerate(ims):
        for j, (x, t) in enumerate(zip(im, ("content", "true", "alpha 0", "alpha 1"))):
            ax[r, j].imshow(window(x * 2000.0 - 1000.0), cmap="gray", vmin=0, vmax=1)
            ax[r, j].set_title(f"{PAIRS[r][0]}->{PAIRS[r][1]} {t}", fontsize=8)
            ax[r, j].axis("off")
    fig.tight_layout()
    os.makedirs("experiments/figures", exist_ok=True)
    fig.savefig(f"experiments/figures/ct_decoder_probe_{a.name}.png", dpi=70)


if __name__ == "__main__":
    main()
