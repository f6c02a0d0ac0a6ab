"""Transform-network inference speed: stylejax (JAX) vs the same network in PyTorch, and
the speed-up over Gatys NST on the same image.

Run:  python experiments/benchmarks/transform_net_speed.py [--size 1000] [--rounds 5]
          [--batch 1] [--gatys-steps 2 | --gatys-steps 0] [--tag NAME]
          [--torch-device cuda]

Both sides run the identical network (``stylejax.models.transform_net.TransformNet``,
widths 32/64/128, 5 residual blocks, noise layers present but in deterministic mode): the
PyTorch model is written below layer by layer and gets the JAX model's weights (random
initialisation, with random instance-norm scales/shifts so the check is not trivial);
before timing, the two outputs on the same image must agree (max |difference| < 1e-4).
The input is a 1000x1000 low-quality synthetic ultrasound image
(``stylejax.data.ultrasound``). JAX runs the jit-compiled forward pass; PyTorch runs
``torch.inference_mode()`` in NCHW (its default) with its default threads. The two are
timed in alternating rounds in one process, so a busy shared CPU slows both alike; the
ratio is the median of the per-round ratios. Every timed call ends when the result is
on the host (``block_until_ready`` / ``.cpu()``).

``--xla-column`` adds the same JAX network with XLA's convolution everywhere
(``conv_method="xla"``), to show what the CPU GEMM formulations of
``stylejax.models.transform_net`` (stride-1 convolutions as one matrix product plus a
shifted sum; upsample + convolution at low resolution) contribute.

Gatys column: one Gatys NST step (``stylejax.methods.gatys``, VGG19 to relu5_2 with
random weights, Adam) on the same image, timed over ``--gatys-steps`` steps after the
compiling one; a full Gatys transfer runs 300 steps by default (``stylejax nst``) and 3000
in the thesis. If ``stylejax.methods.gatys`` cannot be imported, the column is skipped
and the JSON says why.

Writes ``results/transform_net_speed[_TAG].json``.
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

WIDTHS = (32, 64, 128)
NUM_RESIDUAL = 5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (one call each side)")
    p.add_argument("--gatys-steps", type=int, default=2,
                   help="timed Gatys steps after the first (0 skips the Gatys column)")
    p.add_argument("--noise", action="store_true",
                   help="also time the JAX network with noise injection (a key per call)")
    p.add_argument("--xla-column", action="store_true",
                   help="also time the JAX network with XLA's convolutions everywhere "
                        "(conv_method='xla'), i.e. without the CPU GEMM formulations")
    p.add_argument("--tag", default="", help="suffix of the results file")
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"))
    return p.parse_args()


def make_image(size):
    from stylejax.data.ultrasound import ultrasound

    return ultrasound(0, (size, size), "lq").image


def jax_side(images, noise, xla_column=False):
    """The jitted stylejax forward pass; returns (run, run_noise, run_xla, weights)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from stylejax.models import transform_net as tn

    model = tn.TransformNet(widths=WIDTHS, num_residual=NUM_RESIDUAL, noise=True,
                            rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    for path, param in nnx.iter_graph(model):
        if isinstance(param, tn.InstanceNorm):
            c = param.scale.shape[0]
            param.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
            param.bias[...] = jnp.asarray(rng.uniform(-0.2, 0.2, c), jnp.float32)
        if isinstance(param, tn.NoiseInjection):
            param.scale[...] = jnp.asarray(rng.uniform(0.05, 0.2, param.scale.shape[0]),
                                           jnp.float32)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    forward_noise = jax.jit(lambda s, x, k: nnx.merge(graphdef, s)(x, key=k))
    x = jnp.asarray(images)

    def run():
        return forward(state, x).block_until_ready()

    counter = [0]

    def run_noise():
        counter[0] += 1
        return forward_noise(state, x, jax.random.key(counter[0])).block_until_ready()

    plain = nnx.clone(model)
    for _, layer in nnx.iter_graph(plain):
        if isinstance(layer, tn.ConvLayer):
            layer.method = "xla"
    graphdef_xla, state_xla = nnx.split(plain)
    forward_xla = jax.jit(lambda s, x: nnx.merge(graphdef_xla, s)(x))

    def run_xla():
        return forward_xla(state_xla, x).block_until_ready()

    weights = {name: np.asarray(value) for name, value in _flat(nnx.to_pure_dict(
        nnx.state(model, nnx.Param)))}
    return run, (run_noise if noise else None), (run_xla if xla_column else None), weights


def _flat(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat(value, name + ".")
        else:
            yield name, value


def torch_side(images, weights, device="cpu"):
    """The same network in PyTorch (NCHW) with the JAX weights copied in."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    def t(a):
        return torch.from_numpy(np.array(a, copy=True)).to(device)

    def conv_w(prefix):
        return t(weights[f"{prefix}.kernel"].transpose(3, 2, 0, 1))   # HWIO -> OIHW

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = {}
            for name in ("conv1", "conv2", "conv3", "up1", "up2", "out"):
                self.p[name] = conv_w(name)
            self.p["out.bias"] = t(weights["out.bias"])
            for i in range(NUM_RESIDUAL):
                for j in (1, 2):
                    self.p[f"res{i}.conv{j}"] = conv_w(f"residual.{i}.conv{j}")
                    self.p[f"res{i}.norm{j}"] = (t(weights[f"residual.{i}.norm{j}.scale"]),
                                                 t(weights[f"residual.{i}.norm{j}.bias"]))
            for k in range(1, 6):
                self.p[f"norm{k}"] = (t(weights[f"norm{k}.scale"]), t(weights[f"norm{k}.bias"]))

        def conv(self, x, name, k, stride=1, bias=None):
            x = F.pad(x, (k // 2,) * 4, mode="reflect")
            return F.conv2d(x, self.p[name], bias, stride=stride)

        def norm(self, x, name):
            scale, bias = self.p[name]
            return F.instance_norm(x, weight=scale, bias=bias, eps=1e-5)

        def forward(self, x):
            size1 = x.shape[-2:]
            x = F.relu(self.norm(self.conv(x, "conv1", 9), "norm1"))
            size2 = ((size1[0] + 1) // 2, (size1[1] + 1) // 2)
            x = F.relu(self.norm(self.conv(x, "conv2", 3, 2), "norm2"))
            x = F.relu(self.norm(self.conv(x, "conv3", 3, 2), "norm3"))
            for i in range(NUM_RESIDUAL):
                y = F.relu(self.norm(self.conv(x, f"res{i}.conv1", 3), f"res{i}.norm1"))
                x = x + self.norm(self.conv(y, f"res{i}.conv2", 3), f"res{i}.norm2")
            x = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"), "up1", 3)
            x = F.relu(self.norm(x[..., : size2[0], : size2[1]], "norm4"))
            x = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"), "up2", 3)
            x = F.relu(self.norm(x[..., : size1[0], : size1[1]], "norm5"))
            return torch.sigmoid(self.conv(x, "out", 9, bias=self.p["out.bias"]))[:, 0]

    net = Net().eval()
    x = t(images[:, None])

    def run():
        with torch.inference_mode():
            return net(x).cpu().numpy()

    return run, torch.__version__, torch.get_num_threads()


def gatys_side(image, steps):
    """Seconds per Gatys step on ``image`` (VGG19 random weights), or (None, reason)."""
    try:
        import warnings

        from stylejax.methods import gatys as gatys_lib
        from stylejax.models import features
    except Exception as err:  # noqa: BLE001 - any import failure skips the column
        return None, f"stylejax.methods.gatys did not import: {type(err).__name__}: {err}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        extractor = features.vgg19_features("random")
    config = gatys_lib.GatysConfig(steps=steps + 1)
    result = gatys_lib.gatys(image, image[::-1].copy(), extractor=extractor, config=config)
    first = result.extra["first_step_seconds"]
    # seconds = first (compile + step 1) + steps more steps + one final loss evaluation.
    return {"first_step_s": first, "step_s": (result.seconds - first) / (steps + 1),
            "steps_timed": steps + 1, "config_steps": config.steps}, None


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    args = parse_args()
    import jax
    import numpy as np

    image = make_image(args.size)
    images = np.repeat(image[None], args.batch, axis=0)
    jax_run, jax_noise, jax_xla, weights = jax_side(images, args.noise, args.xla_column)
    try:
        torch_run, torch_version, torch_threads = torch_side(images, weights, args.torch_device)
    except ImportError:
        torch_run = None
        print("torch is not installed: timing the JAX side only", file=sys.stderr)

    compile_s, jax_out = timed(jax_run)
    check = {}
    if torch_run is not None:
        torch_first, torch_out = timed(torch_run)
        diff = float(np.max(np.abs(np.asarray(jax_out) - torch_out)))
        check = {"max_abs_difference": diff, "output_std": float(np.std(torch_out))}
        if diff > 1e-4:
            raise SystemExit(f"the two networks disagree: {check}")
    if jax_noise is not None:
        timed(jax_noise)
    if jax_xla is not None:
        _, xla_out = timed(jax_xla)
        check["xla_vs_default_max_abs_difference"] = float(
            np.max(np.abs(np.asarray(xla_out) - np.asarray(jax_out))))
    jax_times, torch_times, noise_times, xla_times, ratios = [], [], [], [], []
    for r in range(args.rounds):
        jt, _ = timed(jax_run)
        jax_times.append(jt)
        msg = f"round {r + 1}/{args.rounds}: jax {jt * 1000:.0f} ms"
        if torch_run is not None:
            tt, _ = timed(torch_run)
            torch_times.append(tt)
            ratios.append(tt / jt)
            msg += f", torch {tt * 1000:.0f} ms, speed-up {tt / jt:.2f}x"
        if jax_noise is not None:
            nt, _ = timed(jax_noise)
            noise_times.append(nt)
            msg += f", jax+noise {nt * 1000:.0f} ms"
        if jax_xla is not None:
            xt, _ = timed(jax_xla)
            xla_times.append(xt)
            msg += f", jax xla-convs {xt * 1000:.0f} ms"
        print(msg, file=sys.stderr)

    gatys, gatys_skipped = (None, "--gatys-steps 0")
    if args.gatys_steps > 0:
        print("timing Gatys NST steps on the same image ...", file=sys.stderr)
        gatys, gatys_skipped = gatys_side(image, args.gatys_steps)

    per_image = lambda s: s / args.batch  # noqa: E731
    result = {
        "benchmark": "transform_net_inference", "size": args.size, "batch": args.batch,
        "rounds": args.rounds, "widths": WIDTHS, "num_residual": NUM_RESIDUAL,
        "torch_device": args.torch_device,
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()][:1],
                    "loadavg_1min": os.getloadavg()[0]},
        "jax_version": jax.__version__, "output_check": check,
        "jax_first_call_s": compile_s,
        "jax_ms_per_image": 1000 * per_image(statistics.median(jax_times)),
        "jax_s": jax_times,
    }
    if noise_times:
        result["jax_noise_ms_per_image"] = 1000 * per_image(statistics.median(noise_times))
    if xla_times:
        result["jax_xla_convs_ms_per_image"] = 1000 * per_image(statistics.median(xla_times))
        result["jax_xla_convs_s"] = xla_times
    if torch_run is not None:
        result.update({
            "torch_version": torch_version, "torch_threads": torch_threads,
            "torch_first_call_s": torch_first,
            "torch_ms_per_image": 1000 * per_image(statistics.median(torch_times)),
            "torch_s": torch_times,
            "speedup_jax_over_torch": statistics.median(ratios), "speedups": ratios,
        })
    if gatys is not None:
        step_ms = 1000 * gatys["step_s"]
        result["gatys"] = dict(gatys, step_ms=step_ms,
                               speedup_one_step=step_ms / result["jax_ms_per_image"],
                               speedup_300_steps=300 * step_ms / result["jax_ms_per_image"],
                               speedup_3000_steps=3000 * step_ms / result["jax_ms_per_image"])
    else:
        result["gatys_skipped"] = gatys_skipped

    print(f"\nTransform net inference, {args.batch} x {args.size}x{args.size}, "
          f"{jax.default_backend()} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print(f"{'':22s} {'ms/image':>10s} {'vs jax':>8s}")
    jms = result["jax_ms_per_image"]
    print(f"{'jax (stylejax)':22s} {jms:10.1f} {1.0:8.2f}")
    if noise_times:
        nms = result["jax_noise_ms_per_image"]
        print(f"{'jax + noise':22s} {nms:10.1f} {nms / jms:8.2f}")
    if xla_times:
        xms = result["jax_xla_convs_ms_per_image"]
        print(f"{'jax, XLA convs only':22s} {xms:10.1f} {xms / jms:8.2f}")
    if torch_run is not None:
        print(f"{'torch':22s} {result['torch_ms_per_image']:10.1f} "
              f"{result['torch_ms_per_image'] / jms:8.2f}")
        print(f"speed-up jax/torch (median of per-round ratios): "
              f"{result['speedup_jax_over_torch']:.2f}x")
    if gatys is not None:
        g = result["gatys"]
        print(f"{'gatys, 1 step':22s} {g['step_ms']:10.1f} {g['speedup_one_step']:8.2f}")
        print(f"{'gatys, 300 steps':22s} {300 * g['step_ms']:10.1f} "
              f"{g['speedup_300_steps']:8.1f}")
        print(f"{'gatys, 3000 (thesis)':22s} {3000 * g['step_ms']:10.1f} "
              f"{g['speedup_3000_steps']:8.1f}")
    else:
        print(f"gatys column skipped: {gatys_skipped}")
    out = (Path(__file__).parents[1] / "results"
           / f"transform_net_speed{'_' + args.tag if args.tag else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
