"""Feed-forward AdaIN transfer speed: stylejax (JAX, jit) against the same network in PyTorch.

Run:  python experiments/benchmarks/adain_speed.py [--arch shipped|relu4_1] [--size 512]
          [--batch 1] [--rounds 5] [--tag NAME] [--torch-device cpu|cuda] [--channels-last]

``--arch shipped`` (default): what ``stylejax nst --method adain`` runs with the shipped
CT decoders (``stylejax/assets/adain_ct/context-aware``): content and style reflect-padded
by the network's border margin, VGG19 ``conv1_1`` + ReLU (grayscale repeated to RGB,
ImageNet-normalised; the random encoder of the decoders), AdaIN at ``relu1_1`` with the
statistics of the unpadded positions, the three-convolution reflect-padded decoder and
the crop back (``AdaINNet.__call__(..., margin=net.border_margin())``).
``--arch relu4_1``: the AdaIN paper's network (VGG19 to ``relu4_1``, the mirrored
9-convolution decoder with nearest 2x upsampling, random decoder weights, no margin).

stylejax runs ``AdaINNet`` (``stylejax.models.adain``) jitted as one program; the
PyTorch side is written here with ``nn.Conv2d`` / ``nn.ReflectionPad2d`` / ``nn.Upsample``
/ ``F.pad(mode="reflect")`` and receives the *same* weights (HWIO -> OIHW). Both run
float32 inference (``torch.inference_mode``); outputs must agree before timing. The two
are timed in alternating rounds in one process, so a busy shared CPU slows both alike;
the ratio is the median of the per-round ratios (> 1: stylejax faster).

Writes ``results/adain_speed[_relu4_1][_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax.models import adain as am
from stylejax.models import vgg

VGG19_TO_RELU4_1 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512]


def make_images(size, batch, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    content = 0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.05 * rng.standard_normal(
        (batch, size, size))
    style = rng.random((1, size, size)) ** 2
    return np.clip(content, 0, 1).astype(np.float32), style.astype(np.float32)


def build_jax(arch, out_channels):
    """``(net, state, transfer, margin, encoder layer list)`` for ``arch``."""
    if arch == "shipped":
        from stylejax.methods.adain import load_network, shipped_decoder
        net, _ = load_network(shipped_decoder("context-aware"))
        margin, layers = net.border_margin(), [64]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            encoder = vgg.vgg19("random", seed=0)
        net = am.AdaINNet(encoder, out_channels=out_channels, seed=1)
        margin, layers = 0, VGG19_TO_RELU4_1
    graphdef, state = nnx.split(net)

    @jax.jit
    def transfer(state, content, style):
        return nnx.merge(graphdef, state)(content, style, margin=margin)

    return net, state, transfer, margin, layers


def build_torch(net, device, channels_last, margin, layer_list):
    import torch
    from torch import nn
    from torch.nn import functional as F

    mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    layers, cin, conv_names = [], 3, []
    block, idx = 1, 1
    for v in layer_list:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            block, idx = block + 1, 1
            continue
        conv = nn.Conv2d(cin, v, 3, padding=1)
        layers += [conv, nn.ReLU()]
        conv_names.append((conv, f"conv{block}_{idx}"))
        cin, idx = v, idx + 1
    encoder = nn.Sequential(*layers)
    trunk = getattr(net.extractor, "net", net.extractor)  # VGGFeatures wraps a VGG
    with torch.no_grad():
        for conv, name in conv_names:
            layer = getattr(trunk, name)
            conv.weight.copy_(torch.from_numpy(np.array(layer.kernel[...]).transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(np.array(layer.bias[...])))
    dec_layers = []
    for i, (conv, up) in enumerate(zip(net.decoder.convs, net.decoder._upsample_after)):
        k = np.array(conv.kernel[...])
        c = nn.Conv2d(k.shape[2], k.shape[3], 3)
        with torch.no_grad():
            c.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
            c.bias.copy_(torch.from_numpy(np.array(conv.bias[...])))
        dec_layers += [nn.ReflectionPad2d(1), c]
        if i < len(net.decoder.convs) - 1:
            dec_layers.append(nn.ReLU())
        if up:
            dec_layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    decoder = nn.Sequential(*dec_layers)
    encoder.eval().to(device)
    decoder.eval().to(device)
    mean, std = mean.to(device), std.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        encoder.to(memory_format=fmt)
        decoder.to(memory_format=fmt)
    m = margin

    def stats(x, eps=1e-5):
        core = x[:, :, m:x.shape[2] - m, m:x.shape[3] - m] if m else x
        mu = core.mean((2, 3), keepdim=True)
        return mu, (core.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()

    def prepare(images):
        x = (images.unsqueeze(1).repeat(1, 3, 1, 1) - mean) / std
        if m:
            x = F.pad(x, (m, m, m, m), mode="reflect")
        return x.contiguous(memory_format=fmt)

    def transfer(content, style):
        with torch.inference_mode():
            fc, fs = encoder(prepare(content)), encoder(prepare(style))
            (mc, sc), (ms, ss) = stats(fc), stats(fs)
            out = decoder(ss * (fc - mc) / sc + ms)
            return out[:, :, m:out.shape[2] - m, m:out.shape[3] - m] if m else out

    return transfer


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--arch", default="shipped", choices=("shipped", "relu4_1"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out-channels", type=int, default=1)
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tag", default="")
    args = p.parse_args()

    content, style = make_images(args.size, args.batch)
    net, state, jax_transfer, margin, layer_list = build_jax(args.arch, args.out_channels)
    cj, sj = jnp.asarray(content), jnp.asarray(style)
    start = time.perf_counter()
    out_jax = np.asarray(jax.block_until_ready(jax_transfer(state, cj, sj)))
    compile_s = time.perf_counter() - start

    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
               "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
               "load_average_at_start": os.getloadavg()}
    try:
        import torch
    except ImportError:
        torch = None
    result = {"arch": args.arch, "border_margin": margin, "size": args.size,
              "batch": args.batch, "jax_first_call_s": compile_s}
    if torch is None:
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            jax.block_until_ready(jax_transfer(state, cj, sj))
            times.append(time.perf_counter() - t)
        result.update(jax_s=statistics.median(times), torch="not installed")
        print(f"JAX alone: {args.batch / result['jax_s']:.3f} images/s (torch not installed)")
    else:
        machine["torch"] = torch.__version__
        machine["torch_threads"] = torch.get_num_threads()
        dev = args.torch_device
        torch_transfer = build_torch(net, dev, args.channels_last, margin, layer_list)
        ct, st = torch.from_numpy(content).to(dev), torch.from_numpy(style).to(dev)

        def run_torch():
            out = torch_transfer(ct, st)
            if dev == "cuda":
                torch.cuda.synchronize()
            return out

        out_torch = run_torch().permute(0, 2, 3, 1).cpu().numpy()
        scale = float(np.abs(out_torch).max())
        max_err = float(np.abs(out_torch - out_jax).max()) / scale
        tol = 2e-2 if dev == "cuda" or machine["backend"] == "gpu" else 2e-3
        assert max_err < tol, f"outputs differ: max relative error {max_err:.2e}"
        jt, tt, ratios = [], [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            jax.block_until_ready(jax_transfer(state, cj, sj))
            jt.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_torch()
            tt.append(time.perf_counter() - t)
            ratios.append(tt[-1] / jt[-1])
        result.update(jax_s=statistics.median(jt), torch_s=statistics.median(tt),
                      jax_images_per_s=args.batch / statistics.median(jt),
                      torch_images_per_s=args.batch / statistics.median(tt),
                      speed_ratio_jax_over_torch=statistics.median(ratios),
                      round_ratios=ratios, max_relative_output_difference=max_err,
                      torch_device=dev, channels_last=args.channels_last)
        print(f"AdaIN transfer ({args.arch}) {args.size}x{args.size}, batch {args.batch}, "
              f"{machine['backend']} / torch {dev}")
        print(f"{'':10s} {'s/transfer':>11s} {'images/s':>9s}")
        print(f"{'stylejax':10s} {result['jax_s']:>11.3f} {result['jax_images_per_s']:>9.3f}")
        print(f"{'pytorch':10s} {result['torch_s']:>11.3f} {result['torch_images_per_s']:>9.3f}")
        print(f"ratio (stylejax speed / PyTorch speed, median of rounds): "
              f"{result['speed_ratio_jax_over_torch']:.2f}x; outputs agree to {max_err:.1e}")
    machine["load_average_at_end"] = os.getloadavg()
    name = "adain_speed" + ("_relu4_1" if args.arch == "relu4_1" else "") + \
        (f"_{args.tag}" if args.tag else "") + ".json"
    out = Path(__file__).parents[1] / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "result": result}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
