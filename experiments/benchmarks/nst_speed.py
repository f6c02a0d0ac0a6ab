"""Gatys NST speed: the jitted stylejax step against a PyTorch implementation of the same loop.

Run:  python experiments/benchmarks/nst_speed.py [--size 512] [--rounds 3]
          [--xla-flags "--xla_cpu_..."] [--tag NAME] [--torch-device cuda]

On a GPU machine JAX uses the GPU by default; ``--torch-device cuda`` puts the
PyTorch side there too (both then use their default TF32 convolutions, so the
loss check allows 2e-2 instead of 1e-3). Every timed step ends in a host read of
the loss, which waits for the device on both sides.

Both sides run the identical iteration: VGG19 up to relu5_2 on a grayscale image
(repeated to RGB, ImageNet-normalised), content loss at relu5_2 (Eq. 2.2), Gram style
loss at relu1_1/relu2_1/relu3_1/relu5_1 (Eq. 2.3/2.4), backward to the image only, Adam
(lr 5e-3), clip to [0, 1]; same random VGG19 weights, same images, float32, batch 1.
The two are timed in alternating rounds in one process, so a busy shared CPU slows
both alike; the ratio is the median of the per-round ratios. Before timing, both
losses are evaluated on the same image and must agree (a check that the loops match).

The PyTorch side is optional: without ``torch`` the script times JAX alone and says so.
Writes ``results/nst_speed[_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu5_1")
CONTENT_TAPS = ("relu5_2",)
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (one step each side)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX side")
    p.add_argument("--remat", action="store_true", help="time the remat variant of the step")
    p.add_argument("--tag", default="", help="suffix of the results file")
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"))
    return p.parse_args()


def make_images(size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    content = 0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.05 * rng.standard_normal((size, size))
    style = rng.random((size, size)) ** 2
    return np.clip(content, 0, 1).astype(np.float32), style.astype(np.float32)


def jax_side(content, style, remat):
    """The stylejax step as ``stylejax nst`` runs it, with the raw thesis terms and weights
    (``normalize=False``) so the PyTorch loop can compute the same loss; returns
    (step_fn, loss_fn, tensors, config). ``remat`` checkpoints VGG's blocks
    (``stylejax.models.vgg.VGG(remat=True)``; the NST methods have no such option)."""
    import warnings

    import jax.numpy as jnp

    from stylejax.methods import engine, gatys
    from stylejax.models import features, vgg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = features.VGGFeatures(vgg.vgg19("random", seed=0, remat=remat))
    config = gatys.GatysConfig(steps=1, content_taps=CONTENT_TAPS, style_taps=STYLE_TAPS,
                               normalize=False, content_weight=engine.THESIS_CONTENT_WEIGHT,
                               style_weight=engine.THESIS_STYLE_WEIGHT)
    loss_fn, aux = gatys.prepare(content, style, extractor=net, config=config)
    step, init = engine.make_step(loss_fn, config.optimizer, config.learning_rate)
    image = jnp.array(content)
    holder = {"image": image, "state": engine.fresh_state(init, image)}

    def run_step():
        holder["image"], holder["state"], value = step(holder["image"], holder["state"], aux)
        return float(value)

    tensors = vgg.he_normal_tensors("vgg19", seed=0)
    return run_step, (lambda x: float(loss_fn(jnp.asarray(x), aux))), tensors, config


def torch_side(content, style, tensors, config, device="cpu"):
    """The same loop in PyTorch (NCHW, parameters frozen so only the image gets gradients)."""
    import numpy as np
    import torch

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    layers, cin, names, block, layer = [], 3, [], 1, 1
    for v in VGG19_CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
            names.append(f"pool{block}")
            block, layer = block + 1, 1
            continue
        conv = torch.nn.Conv2d(cin, v, 3, padding=1)
        kernel, bias = tensors[f"conv{block}_{layer}"]
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        conv.bias.data = torch.from_numpy(bias.copy())
        conv = conv.to(device)
        layers += [conv, torch.nn.ReLU()]
        names += [f"conv{block}_{layer}", f"relu{block}_{layer}"]
        cin, layer = v, layer + 1
    last = names.index(CONTENT_TAPS[0])
    net = torch.nn.Sequential(*layers[: last + 1]).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    wanted = set(STYLE_TAPS + CONTENT_TAPS)

    def features(x):
        x = (x.expand(-1, 3, -1, -1) - mean) / std
        out = {}
        for name, module in zip(names, net):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def gram(f):
        _, c, h, w = f.shape
        flat = f.reshape(c, h * w)
        return flat @ flat.T / (h * w)

    with torch.no_grad():
        sf = features(tensor(style)[None, None])
        targets = {t: gram(sf[t]) for t in STYLE_TAPS}
        content_target = features(tensor(content)[None, None])[CONTENT_TAPS[0]]

    def loss_of(x):
        f = features(x)
        loss = config.content_weight * 0.5 * ((f[CONTENT_TAPS[0]] - content_target) ** 2).mean()
        for t in STYLE_TAPS:
            c = targets[t].shape[0]
            loss = loss + config.style_weight * ((gram(f[t]) - targets[t]) ** 2).sum() / (2 * c * c)
        return loss

    image = tensor(content.copy())[None, None].requires_grad_(True)
    opt = torch.optim.Adam([image], lr=config.learning_rate)

    def run_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(image)
        loss.backward()
        opt.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        return loss.item()

    def eval_loss(x):
        with torch.no_grad():
            return float(loss_of(tensor(np.asarray(x, np.float32))[None, None]))

    return run_step, eval_loss, torch.__version__, torch.get_num_threads()


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    args = parse_args()
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    import jax
    import numpy as np

    content, style = make_images(args.size)
    jax_step, jax_loss, tensors, config = jax_side(content, style, args.remat)
    try:
        torch_step, torch_loss, torch_version, torch_threads = torch_side(
            content, style, tensors, config, args.torch_device)
    except ImportError:
        torch_step = None
        print("torch is not installed: timing the JAX side only "
              "(pip install torch==2.13.0 for the comparison)", file=sys.stderr)

    probe = np.clip(content + 0.05 * np.random.default_rng(1).standard_normal(content.shape),
                    0, 1).astype(np.float32)
    check = {"jax_loss": jax_loss(probe)}
    if torch_step is not None:
        check["torch_loss"] = torch_loss(probe)
        rel = abs(check["jax_loss"] - check["torch_loss"]) / abs(check["torch_loss"])
        check["relative_difference"] = rel
        if rel > (2e-2 if args.torch_device == "cuda" else 1e-3):
            raise SystemExit(f"the two loops disagree: {check}")

    compile_s = timed(jax_step)  # compilation + first step
    if torch_step is not None:
        torch_first = timed(torch_step)
    jax_times, torch_times, ratios = [], [], []
    for r in range(args.rounds):
        jt = timed(jax_step)
        jax_times.append(jt)
        if torch_step is not None:
            tt = timed(torch_step)
            torch_times.append(tt)
            ratios.append(tt / jt)
        print(f"round {r + 1}/{args.rounds}: jax {jt:.2f} s"
              + (f", torch {tt:.2f} s, speed-up {tt / jt:.2f}x" if torch_step else ""),
              file=sys.stderr)

    result = {
        "benchmark": "gatys_nst_step", "size": args.size, "rounds": args.rounds,
        "remat": args.remat, "torch_device": args.torch_device,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()][:1],
                    "loadavg_1min": os.getloadavg()[0]},
        "jax_version": jax.__version__, "loss_check": check,
        "jax_first_step_s": compile_s,
        "jax_step_s_median": statistics.median(jax_times),
        "jax_it_per_s": 1.0 / statistics.median(jax_times),
        "jax_step_s": jax_times,
    }
    if torch_step is not None:
        result.update({
            "torch_version": torch_version, "torch_threads": torch_threads,
            "torch_first_step_s": torch_first,
            "torch_step_s_median": statistics.median(torch_times),
            "torch_it_per_s": 1.0 / statistics.median(torch_times),
            "torch_step_s": torch_times,
            "speedup_jax_over_torch": statistics.median(ratios), "speedups": ratios,
        })
    print(f"\nGatys NST step, {args.size}x{args.size}, VGG19 to relu5_2, "
          f"{jax.default_backend()} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print(f"{'':10s} {'s/step':>8s} {'it/s':>8s}")
    print(f"{'jax':10s} {result['jax_step_s_median']:8.3f} {result['jax_it_per_s']:8.3f}")
    if torch_step is not None:
        print(f"{'torch':10s} {result['torch_step_s_median']:8.3f} {result['torch_it_per_s']:8.3f}")
        print(f"speed-up jax/torch (median of per-round ratios): "
              f"{result['speedup_jax_over_torch']:.2f}x")
    out = Path(__file__).parents[1] / "results" / f"nst_speed{'_' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
