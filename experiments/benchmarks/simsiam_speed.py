"""SimSiam training throughput: the jitted JAX/Flax step against an equivalent PyTorch step.

Both sides train the same network (ResNet-18 for 1-channel input at ``--width``,
zero-initialised residual BN, 512-512-2048 projector with non-affine last BN,
2048-512-2048 predictor), on the same batch of ``--batch`` pairs of
``--size`` px views, with the same step: two encoder passes (BatchNorm
statistics per view), symmetric negative-cosine loss with stop-gradient,
SGD momentum 0.9 with weight decay 1e-4. Pair making (LAP styling, crops) is
left out on both sides: the views are fixed random images.

Every variant runs in its own subprocess (XLA flags must be set before JAX
starts; PyTorch uses ``--threads`` threads), and PyTorch runs before and after
the JAX variants so that load from other processes on a shared machine shows
up as drift; ``--rounds`` repeats the whole alternation and each contender's
least disturbed run counts. Throughput is pairs per second from the median
step time after warm-up (compilation excluded), and from the fastest step
("best").

Variants (JAX):
  baseline   float32, default XLA CPU flags (what the trainer runs)
  fastmath   --xla_cpu_enable_fast_math=true (reassociation, approximate functions)
  onednn     --xla_cpu_experimental_onednn_custom_call=true (oneDNN kernels where XLA offers them)
  bf16       activations in bfloat16 (parameters float32)
  eigenconv  convolutions on XLA's multi-threaded Eigen path instead of its YNNPACK
             fusions (dots stay on YNNPACK; see stylejax._xla)

What was tried for the XLA CPU step (1 pinned core, fwd + bwd micro-benchmarks,
same results to float32 rounding) -- kept only what helped:

* stem 3x3/2 max pool with a custom VJP (9 strided slices + interior-padded
  adds instead of ``select_and_scatter``): kept in ``stylejax.models.resnet``;
* fast math, oneDNN custom calls (flags above): no gain (within noise);
* bfloat16 activations: slower on one core (no native bf16 arithmetic on AVX2),
  faster only when the 2 cores are contended;
* strided convolutions as space-to-depth + stride-1 convolutions (to avoid the
  input-dilated backward pass): 1.3-4x slower per layer;
* the 7x7 single-channel stem as im2col + matmul: 2.3x slower than XLA's conv;
* both views in one batch (per-view BatchNorm by grouping): no gain for
  3x3 convs at 16x16 and smaller, 2x slower at 32x32.

The remaining gap is XLA's CPU convolution kernels (Eigen) against PyTorch's
oneDNN kernels (``conv_profile.py`` breaks it down per layer: the weight gradients
of the 32x32 and 16x16 stages take XLA about 4x PyTorch's time; in one-off
micro-benchmarks not kept here, computing them as 9 shifted matrix products was up
to 2x faster on the 16x16 stage but no faster at 32x32, where copying the shifted
inputs costs as much as the products, and YNNPACK convolutions
(``--xla_cpu_experimental_ynn_fusion_type=+individual_convolution``) were slower); on a contended machine PyTorch's OpenMP thread barriers lose
far more than XLA does, so the 2-thread ratio swings with the load.

On a GPU (``--platform cuda``) both sides run on the device and every step
ends with a device synchronisation (``block_until_ready`` / ``torch.cuda.synchronize``).
Both use the frameworks' default float32 precision (TF32 convolutions on
Ampere and later in both; PyTorch's cuDNN autotuner ``cudnn.benchmark`` on, the
stronger baseline); the ``bf16`` JAX variant runs activations in bfloat16.

Optional dependency: ``pip install torch==2.13.0`` (CPU wheel).

Usage::

    python experiments/benchmarks/simsiam_speed.py            # default config's shape
    python experiments/benchmarks/simsiam_speed.py --width 64 --size 128 --batch 32
    # the paper config's view size on a GPU (ResNet-18 at full width, 400 px):
    python experiments/benchmarks/simsiam_speed.py --platform cuda --width 64 --size 400 \
        --batch 64 --steps 20 --warmup 3 --variants baseline,bf16 \
        --out experiments/results/simsiam_speed_gpu.json

Writes ``experiments/results/simsiam_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "results", "simsiam_speed.json")

GPU_VARIANTS = ("baseline", "bf16")
JAX_VARIANTS = {
    "baseline": dict(flags="", dtype="float32"),
    "fastmath": dict(flags="--xla_cpu_enable_fast_math=true", dtype="float32"),
    "onednn": dict(flags="--xla_cpu_experimental_onednn_custom_call=true", dtype="float32"),
    "bf16": dict(flags="", dtype="bfloat16"),
    "eigenconv": dict(flags="--xla_cpu_experimental_ynn_fusion_type="
                            "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT", dtype="float32"),
}


# ----------------------------------------------------------------------------- JAX
def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from stylejax.models.simsiam import SimSiam, simsiam_loss

    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else None
    model = SimSiam(width=args.width, dtype=dtype, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.05 * args.batch / 256, 0.9))
    opt = tx.init(params)

    def loss_fn(params, stats, x1, x2):
        m = nnx.merge(graphdef, params, stats, copy=True)
        p1, p2, z1, z2 = m(x1, x2)
        return simsiam_loss(p1, p2, z1, z2), nnx.state(m, nnx.BatchStat)

    def step(params, stats, opt, x1, x2):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x1, x2)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt, loss

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    k1, k2 = jax.random.split(jax.random.key(1))
    x1 = jax.random.uniform(k1, (args.batch, args.size, args.size))
    x2 = jax.random.uniform(k2, (args.batch, args.size, args.size))
    t0 = time.perf_counter()
    params, stats, opt, loss = step(params, stats, opt, x1, x2)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        params, stats, opt, loss = step(params, stats, opt, x1, x2)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    return dict(step_s=times[args.warmup:], first_step_s=compile_s, loss=float(loss),
                backend=jax.default_backend(), device=str(jax.devices()[0].device_kind),
                jax=jax.__version__)


# ------------------------------------------------------------------------- PyTorch
def run_torch(args) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if args.platform == "cuda" else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            nn.init.zeros_(self.bn2.weight)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    w = args.width
    layers = [nn.Conv2d(1, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = w
    for stage, mult in enumerate((1, 2, 4, 8)):
        for i in range(2):
            layers.append(Block(cin, w * mult, 2 if stage > 0 and i == 0 else 1))
            cin = w * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    f = 8 * w
    for m in layers:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    encoder = nn.Sequential(
        *layers,
        nn.Linear(f, f, bias=False), nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, f, bias=False), nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, 2048, bias=False), nn.BatchNorm1d(2048, affine=False)).to(device)
    predictor = nn.Sequential(nn.Linear(2048, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                              nn.Linear(512, 2048)).to(device)
    params = list(encoder.parameters()) + list(predictor.parameters())
    opt = torch.optim.SGD(params, lr=0.05 * args.batch / 256, momentum=0.9, weight_decay=1e-4)
    cos = nn.CosineSimilarity(dim=1)
    x1 = torch.rand(args.batch, 1, args.size, args.size, device=device)
    x2 = torch.rand(args.batch, 1, args.size, args.size, device=device)

    def step():
        z1, z2 = encoder(x1), encoder(x2)
        p1, p2 = predictor(z1), predictor(z2)
        loss = -(cos(p1, z2.detach()).mean() + cos(p2, z1.detach()).mean()) * 0.5
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    return dict(step_s=times[args.warmup:], first_step_s=first, loss=float(loss),
                torch=torch.__version__, threads=args.threads, device=str(device),
                gpu=torch.cuda.get_device_name() if device.type == "cuda" else None)


# --------------------------------------------------------------------------- driver
def _worker_cmd(args, worker, **extra):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker,
           "--batch", str(args.batch), "--size", str(args.size), "--width", str(args.width),
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--platform", args.platform]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    return cmd


def _spawn(cmd, platform_name, flags="", cpus=None):
    env = dict(os.environ, JAX_PLATFORMS=platform_name)
    env["XLA_FLAGS"] = flags
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=pin)
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pairs_per_s(res, batch, stat=statistics.median):
    return batch / stat(res["step_s"]) if "step_s" in res else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--width", type=int, default=32, help="ResNet-18 width (64 = full)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--pin", default="", metavar="CPUS",
                   help="comma-separated CPU ids to pin every worker to (e.g. 0 with --threads 1)")
    p.add_argument("--platform", choices=("cpu", "cuda"), default="cpu",
                   help="run both frameworks on the CPU or on the (first) CUDA GPU")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated JAX variants (default: all on cpu, "
                        f"{','.join(GPU_VARIANTS)} on cuda)")
    p.add_argument("--rounds", type=int, default=2,
                   help="repeat PyTorch + all variants this many times (best run counts)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "jax":
        print(json.dumps(run_jax(args)))
        return 0
    if args.worker == "torch":
        print(json.dumps(run_torch(args)))
        return 0

    cpus = {int(c) for c in args.pin.split(",") if c.strip()} or None
    variants = [v for v in (args.variants or ",".join(
        GPU_VARIANTS if args.platform == "cuda" else JAX_VARIANTS)).split(",") if v]
    unknown = [v for v in variants if v not in JAX_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(JAX_VARIANTS)}")
    results = {}
    print(f"SimSiam step on {args.platform}, ResNet-18 width {args.width}, batch {args.batch} "
          f"pairs, {args.size}x{args.size} px, {args.threads} threads"
          + (f", pinned to CPU {sorted(cpus)}" if cpus else ""), flush=True)
    # Rounds alternate PyTorch and every JAX variant, so a burst of load from
    # other processes hits one round, not one contender.
    for r in range(args.rounds):
        runs = [("torch", None)] + [(f"jax_{name}", JAX_VARIANTS[name]) for name in variants]
        if r == args.rounds - 1:
            runs.append(("torch", None))
        for key, v in runs:
            tag = f"{key}_r{r}" if key != "torch" or f"torch_r{r}" not in results else f"torch_r{r}b"
            if v is None:
                results[tag] = _spawn(_worker_cmd(args, "torch"), args.platform, cpus=cpus)
            else:
                results[tag] = _spawn(_worker_cmd(args, "jax", dtype=v["dtype"]), args.platform,
                                      v["flags"], cpus=cpus)
            err = results[tag].get("error")
            print(f"  {tag:20s} {_pairs_per_s(results[tag], args.batch):7.2f} pairs/s"
                  + (f"  ({err})" if err else ""), flush=True)

    def runs_of(key):
        return [v for k, v in results.items() if k.startswith(key + "_r") and "step_s" in v]

    # Per contender: the median step of its least disturbed run ("median"),
    # and its fastest single step ("best").
    def rates(key):
        rs = runs_of(key)
        if not rs:
            return float("nan"), float("nan")
        return (max(_pairs_per_s(x, args.batch) for x in rs),
                max(_pairs_per_s(x, args.batch, min) for x in rs))

    torch_rate, torch_best = rates("torch")
    table = {}
    for name in variants:
        rate, best = rates(f"jax_{name}")
        table[name] = dict(pairs_per_s=rate, ratio_vs_torch=rate / torch_rate,
                           best_pairs_per_s=best, best_ratio_vs_torch=best / torch_best)
    print("\nvariant     median pairs/s  ratio   best pairs/s  ratio")
    for name, row in table.items():
        print(f"{name:11s} {row['pairs_per_s']:14.2f}  {row['ratio_vs_torch']:5.2f}x "
              f"{row['best_pairs_per_s']:13.2f}  {row['best_ratio_vs_torch']:5.2f}x")
    print(f"{'pytorch':11s} {torch_rate:14.2f}  1.00x {torch_best:13.2f}  1.00x")
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    gpu = next((v.get("gpu") for v in results.values() if v.get("gpu")), None)
    out = dict(benchmark="simsiam_speed", platform=args.platform, gpu=gpu, batch=args.batch,
               size=args.size, width=args.width,
               steps=args.steps, warmup=args.warmup, threads=args.threads, rounds=args.rounds,
               pinned_cpus=sorted(cpus) if cpus else None,
               machine=dict(platform=platform.platform(), processor=platform.processor(),
                            cpu_count=os.cpu_count(), loadavg_at_end=load),
               torch_pairs_per_s=torch_rate, torch_best_pairs_per_s=torch_best, variants=table,
               raw=results)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
