"""DCE-MRI MUNIT (AdaConv + bidirectional ConvLSTM): JAX/Flax against an equivalent PyTorch model.

Both sides run the same networks with the same weights (the JAX initialisation, copied into
PyTorch) on the same synthetic DCE-MRI series (``stylejax.data.dce``):

* **inference**: translate one non-CE series of ``--frames`` frames into CE with the
  per-frame styles of a CE series (non-CE content encoder + ConvLSTM, CE style encoder,
  CE AdaConv decoder), batch ``--batch``;
* **training step**: one MUNIT iteration on a (CE, non-CE) pair of series: the
  discriminator update (LSGAN on real and translated frames, both domains, multi-scale
  PatchGAN) then the generator update (L1 image reconstruction x10, L1 style and content
  reconstruction x1, LSGAN x1, random styles drawn from N(0, I)), Adam 1e-4, betas
  (0.5, 0.999) for both. The perceptual and Gram losses of the paper (VGG features) are
  left out here; they add the same VGG cost to both sides.

Before timing, one process loads both frameworks and checks that they agree: the
translated series, both losses of the first step, and the gradient norms (the PyTorch
model mirrors the Flax module tree, so the weights map one to one: conv HWIO -> OIHW,
linear transposed; ``load_state_dict(strict=True)`` proves full coverage).

PyTorch's per-sample AdaConv uses the usual batch-folded grouped ``conv2d``; JAX uses
``stylejax.models.adaconv`` (shifted multiply-adds with a custom VJP).

Every contender runs in its own subprocess, PyTorch before and after the JAX variants in
each of ``--rounds`` rounds; each contender's least disturbed run counts (the machine may be
shared). Rates are series per second from the median time after warm-up.

JAX variants:
  baseline       float32; the translation jitted with the library's
                 ``stylejax._xla.cpu_convolution_options()`` (XLA CPU: convolutions
                 on Eigen's multi-threaded path instead of single-threaded YNNPACK fusions);
                 the whole training step jitted with XLA's defaults and donated buffers
  ynn_inference  the translation jitted with XLA's defaults (what the options buy)
  no_donate      the step jitted without buffer donation (what donation buys)

Levers tried for the XLA CPU side (same results to float32 rounding), kept only what helped
(per-lever figures from interleaved pilot runs outside this script):

* the decoder's nearest-2x up-sampling + reflect-padded 5x5 convolution computed as one
  3x3 convolution of the low-resolution input with 4x the outputs (one per output phase)
  plus exact borders (``stylejax.models.munit.upsample_conv``): kept; XLA's direct 5x5
  convolution with 16-32 output channels ran its forward pass ~10x slower than oneDNN,
  and this was the largest single cost of both the inference and the training step;
* AdaConv's per-sample grouped convolution as shifted multiply-adds with a custom VJP
  (``stylejax.models.adaconv``): kept; XLA's batch-folded grouped convolution, the usual
  PyTorch formulation, was orders of magnitude slower on the CPU backend;
* the ConvLSTM's input-to-hidden convolution of all frames as one batched convolution
  outside the (unrolled) recurrence: kept;
* XLA's CPU backend (jax 0.10) runs every convolution it hands to YNNPACK on one thread,
  so the inference (a chain of mostly dependent convolutions) left the second core idle;
  jitting the translation with ``cpu_convolution_options()`` (convolutions on Eigen,
  which splits each over the thread pool, and needed less time per core here too): kept,
  inference ~1.5x faster on 2 threads (the ``ynn_inference`` variant shows the
  difference). The same options made the training step ~5 % slower (its independent
  convolutions already fill both cores, and YNNPACK's kernels do less work), so the
  step keeps XLA's defaults; ``xla_cpu_multi_thread_eigen=false`` changed neither;
* buffer donation (the ``no_donate`` variant): no measurable effect;
* NCHW layout for the 5x5 convolutions, XLA's oneDNN flags, the concurrency-optimised
  scheduler, strided 4x4 convolutions as space-to-depth + 2x2 convolutions,
  im2col / shifted-matmul convolutions: no gain (not kept);
* the 4x4 stride-2 convolutions with hand-written gradients (space-to-depth form; kernel
  gradient as one contraction per tap, or as one contraction against the stacked shifted
  output gradients), the one-channel 7x7 stems in space-to-depth phase form and the
  decoder's 7x7 convolution to one channel as a ``C -> 49`` contraction plus shifted sum,
  each with the other's form as its input gradient: 2-5x faster as single layers, but in
  the whole model the training step was unchanged on one core (3.72-3.76 s against
  3.73-3.84 s) and the networks' backward passes got slower (content encoder 146 -> 157
  ms, decoder 346 -> 378 ms, one core; in the step's profile the per-tap kernel
  gradients became transposed copies of the tap slices that cost more than the
  convolutions they replaced, and neighbouring fusions grew). Inference gained ~3 %.
  Not kept;
* the 4x4 stride-2 convolutions with XLA's forward pass and space-to-depth gradients
  (``stylejax.models.munit.conv_stride2``): the input gradient as one stride-1
  convolution of the padded output gradient + depth-to-space, the kernel gradient as the
  stride-1 kernel gradient on the space-to-depth input in chunks of 16 output channels
  (XLA sends convolutions with at most 16 input and output features to Eigen, which
  splits them over the threads, instead of single-threaded YNNPACK): first layer alone,
  input gradient 15-19 -> 2.5 ms, kernel gradient 12-16 -> 4.6 ms (2 threads; PyTorch 3.1
  and 2.1 ms); kept;
* the generators' encoders and decoder over two halves of the frames (exact: every layer
  is per sample). XLA's CPU runtime moves ready work to a second thread only when more
  than 8 operations are ready (``ExecuteSession::kSplitThreshold``) and runs YNNPACK
  convolutions on the calling thread, so independent convolutions of the two domains
  often ran one after another on one core; kept. With the previous item: step 1.96-2.08 ->
  1.84-1.89 s in interleaved runs. Three parts: the same; five parts, the ConvLSTM's
  input convolution in halves, the discriminator in the stride-2 form or in halves, and
  chunked kernel gradients for the stride-1 and up-sampling convolutions: no gain;
* ``upsample_conv``'s border rows and columns from the up-sampled outer ``K // 2`` input
  rows and columns instead of the whole reflect-padded up-sampled image: kept (step
  1.82-1.94 -> 1.75-1.86 s in interleaved runs);
* XLA's oneDNN convolutions (``xla_cpu_experimental_onednn_custom_call``): not built into
  the jaxlib wheel (needs ``ENABLE_ONEDNN_ASYNC``), the flag changes nothing.

What remains for the training step is XLA's per-core speed against oneDNN and its
runtime's use of the second core (about 1.5 of 2 cores busy in a profile of the step). On a contended machine PyTorch's OpenMP threads
lose far more than XLA does, so the 2-thread ratio swings with the load; ``--fifo``
(timed loops at real-time priority, for a machine whose other jobs are niced) or
``--threads 1 --pin 0`` give steadier numbers.

Optional dependency: ``pip install torch`` (CPU wheel).

Usage::

    python experiments/benchmarks/munit_speed.py                    # 128 px, 5 frames, batch 1
    python experiments/benchmarks/munit_speed.py --size 64 --steps 3 --rounds 1   # quick
    python experiments/benchmarks/munit_speed.py --threads 1 --pin 0 \
        --out experiments/results/munit_speed_1core.json            # one core each
    python experiments/benchmarks/munit_speed.py --parts            # per-network timings
    python experiments/benchmarks/munit_speed.py --fifo     # as root, the other jobs niced

``--parts`` times each network of one domain separately on one series (content encoder,
style encoder, bidirectional ConvLSTM, AdaConv decoder, multi-scale discriminator): the
forward pass (JAX: jitted with ``cpu_convolution_options()``) and forward + backward
(gradient of the sum of squared outputs with respect to the weights and the input; XLA's
default options), JAX jitted per network, and writes
``experiments/results/munit_speed_parts.json``.

Writes ``experiments/results/munit_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "results", "munit_speed.json")
DEFAULT_PARTS_OUT = os.path.join(HERE, "..", "results", "munit_speed_parts.json")
JAX_VARIANTS = ("baseline", "ynn_inference", "no_donate")
LOSS_W = dict(gan=1.0, recon_x=10.0, recon_s=1.0, recon_c=1.0)


def _gen_kwargs(args):
    return dict(dim=args.dim, n_down=2, n_res=args.n_res, style_dim=args.style_dim,
                n_style_down=4, mlp_dim=64)


def _dis_kwargs(args):
    return dict(in_channels=1, dim=args.dis_dim, n_layers=4, num_scales=3)


def _fifo(args, on: bool) -> None:
    """``--fifo``: move every thread of this process to SCHED_FIFO priority 1 (or back to
    SCHED_OTHER), via ``chrt -a``. Called around the timed loops only, after compilation."""
    if args.fifo:
        policy = ["-f", "-p", "1"] if on else ["-o", "-p", "0"]
        subprocess.run(["chrt", "-a", *policy, str(os.getpid())], check=True,
                       capture_output=True)


# ----------------------------------------------------------------------------- data
def make_inputs(args) -> dict:
    """CE / non-CE series (different seeds: unpaired, as in training) and random styles."""
    from stylejax.data.dce import dce

    def series(seed0):
        return np.stack([dce(seed0 + i, (args.size, args.size), args.frames).ce
                         for i in range(args.batch)]).astype(np.float32)

    a = series(0)
    b = np.stack([dce(1000 + i, (args.size, args.size), args.frames).non_ce
                  for i in range(args.batch)]).astype(np.float32)
    rng = np.random.default_rng(0)
    shape = (args.batch, args.frames, 3, 3, args.style_dim)
    return dict(x_ce=a, x_non_ce=b, s_ce=rng.standard_normal(shape).astype(np.float32),
                s_non_ce=rng.standard_normal(shape).astype(np.float32))


# ----------------------------------------------------------------------------- JAX
def _jax_modules(args, weights=None):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from stylejax.models.discriminator import MultiScaleDiscriminator
    from stylejax.models.munit import MUNIT

    class Discriminators(nnx.Module):
        def __init__(self, rngs):
            self.ce = MultiScaleDiscriminator(**_dis_kwargs(args), rngs=rngs)
            self.non_ce = MultiScaleDiscriminator(**_dis_kwargs(args), rngs=rngs)

    def build():
        rngs = nnx.Rngs(jax.random.key(args.seed, impl="rbg"))
        return MUNIT(rngs=rngs, **_gen_kwargs(args)), Discriminators(rngs)

    if weights is None:
        return build()
    gen, dis = nnx.eval_shape(build)
    out = []
    for prefix, module in (("gen", gen), ("dis", dis)):
        graphdef, state = nnx.split(module)
        flat = [(path, jnp.asarray(weights[prefix + "." + ".".join(map(str, path))]))
                for path, _ in nnx.to_flat_state(state)]
        out.append(nnx.merge(graphdef, nnx.from_flat_state(flat)))
    return tuple(out)


def jax_weights(args) -> dict:
    """Flat ``{"gen.ce.content_encoder.stem.conv.kernel": array, ...}`` of a fresh model."""
    from flax import nnx

    gen, dis = _jax_modules(args)
    out = {}
    for prefix, module in (("gen", gen), ("dis", dis)):
        for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param)):
            out[prefix + "." + ".".join(map(str, path))] = np.asarray(v[...])
    return out


def jax_functions(args, weights, donate=True, inference_options=True):
    """``(translate, step, state)``: jitted inference and training step, initial state.

    ``inference_options``: jit the translation with the library's
    ``cpu_convolution_options()`` (as ``stylejax dce`` does) or XLA's defaults."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from stylejax.losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss
    from stylejax._xla import cpu_convolution_options

    gen, dis = _jax_modules(args, weights)
    g_def, g_params = nnx.split(gen)
    d_def, d_params = nnx.split(dis)
    tx = optax.adam(1e-4, b1=0.5, b2=0.999)

    def flat(x):
        return x.reshape((-1,) + x.shape[2:])

    def l1(a, b):
        return jnp.mean(jnp.abs(a - b))

    @functools.partial(jax.jit, compiler_options=(cpu_convolution_options()
                                                  if inference_options else None))
    def translate(g_params, x_non_ce, style_ce):
        g = nnx.merge(g_def, g_params)
        return g.translate(x_non_ce, to="ce", style_series=style_ce)

    def dis_loss(d_params, g_params, x_a, x_b, s_a, s_b):
        g, d = nnx.merge(g_def, g_params), nnx.merge(d_def, d_params)
        c_a = g.ce.encode_content(x_a)
        c_b = g.non_ce.encode_content(x_b)
        x_ba = jax.lax.stop_gradient(g.ce.decode(c_b, s_a))
        x_ab = jax.lax.stop_gradient(g.non_ce.decode(c_a, s_b))
        return (lsgan_discriminator_loss(d.ce(flat(x_a)), d.ce(flat(x_ba)))
                + lsgan_discriminator_loss(d.non_ce(flat(x_b)), d.non_ce(flat(x_ab))))

    def gen_loss(g_params, d_params, x_a, x_b, s_a, s_b):
        g, d = nnx.merge(g_def, g_params), nnx.merge(d_def, d_params)
        c_a, s_a_prime = g.ce.encode(x_a)
        c_b, s_b_prime = g.non_ce.encode(x_b)
        x_a_recon = g.ce.decode(c_a, s_a_prime)
        x_b_recon = g.non_ce.decode(c_b, s_b_prime)
        x_ba = g.ce.decode(c_b, s_a)
        x_ab = g.non_ce.decode(c_a, s_b)
        c_b_recon, s_a_recon = g.ce.encode(x_ba)
        c_a_recon, s_b_recon = g.non_ce.encode(x_ab)
        w = LOSS_W
        return (w["recon_x"] * (l1(x_a_recon, x_a) + l1(x_b_recon, x_b))
                + w["recon_s"] * (l1(s_a_recon, s_a) + l1(s_b_recon, s_b))
                + w["recon_c"] * (l1(c_a_recon, c_a) + l1(c_b_recon, c_b))
                + w["gan"] * (lsgan_generator_loss(d.ce(flat(x_ba)))
                              + lsgan_generator_loss(d.non_ce(flat(x_ab)))))

    def step(g_params, d_params, g_opt, d_opt, x_a, x_b, s_a, s_b):
        d_l, d_grads = jax.value_and_grad(dis_loss)(d_params, g_params, x_a, x_b, s_a, s_b)
        updates, d_opt = tx.update(d_grads, d_opt, d_params)
        d_params = optax.apply_updates(d_params, updates)
        g_l, g_grads = jax.value_and_grad(gen_loss)(g_params, d_params, x_a, x_b, s_a, s_b)
        updates, g_opt = tx.update(g_grads, g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        norms = (optax.global_norm(d_grads), optax.global_norm(g_grads))
        return g_params, d_params, g_opt, d_opt, (d_l, g_l) + norms

    step = jax.jit(step, donate_argnums=(0, 1, 2, 3) if donate else ())
    state = (g_params, d_params, tx.init(g_params), tx.init(d_params))
    return translate, step, state


def run_jax(args, weights, inputs) -> dict:
    import jax

    translate, step, state = jax_functions(args, weights, donate=args.variant != "no_donate",
                                           inference_options=args.variant != "ynn_inference")
    x_a, x_b, s_a, s_b = (jax.numpy.asarray(inputs[k])
                          for k in ("x_ce", "x_non_ce", "s_ce", "s_non_ce"))
    g_params = state[0]
    t0 = time.perf_counter()
    translate(g_params, x_b, x_a).block_until_ready()
    compile_inf = time.perf_counter() - t0
    state = jax.tree.map(lambda a: a.copy(), state)     # the step donates its inputs
    t0 = time.perf_counter()
    *state, aux = step(*state, x_a, x_b, s_a, s_b)
    jax.block_until_ready(aux)
    compile_step = time.perf_counter() - t0
    _fifo(args, True)
    inf = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        translate(g_params, x_b, x_a).block_until_ready()
        inf.append(time.perf_counter() - t0)
    steps = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        *state, aux = step(*state, x_a, x_b, s_a, s_b)
        jax.block_until_ready(aux)
        steps.append(time.perf_counter() - t0)
    _fifo(args, False)
    return dict(inference_s=inf[args.warmup:], step_s=steps[args.warmup:],
                first_inference_s=compile_inf, first_step_s=compile_step,
                backend=jax.default_backend(), jax=jax.__version__)


# ----------------------------------------------------------------------------- PyTorch
def torch_model(args):
    """PyTorch mirror of the Flax modules (same attribute names, NCHW)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def inorm(x):
        return F.instance_norm(x, eps=1e-5)

    class Conv(nn.Module):
        def __init__(self, cin, cout, k, stride=1, pad=None):
            super().__init__()
            self.pad = k // 2 if pad is None else pad
            self.conv = nn.Conv2d(cin, cout, k, stride)

        def forward(self, x):
            if self.pad:
                x = F.pad(x, (self.pad,) * 4, mode="reflect")
            return self.conv(x)

    class LayerNorm2d(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))

        def forward(self, x):
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * torch.rsqrt(var + 1e-5)
            return x * self.scale[None, :, None, None] + self.bias[None, :, None, None]

    class ResBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.conv2 = Conv(c, c, 3), Conv(c, c, 3)

        def forward(self, x):
            return x + inorm(self.conv2(torch.relu(inorm(self.conv1(x)))))

    class ContentEncoder(nn.Module):
        def __init__(self, dim, n_down, n_res):
            super().__init__()
            self.stem = Conv(1, dim, 7)
            self.down = nn.ModuleList([Conv(dim * 2 ** i, dim * 2 ** (i + 1), 4, 2, 1)
                                       for i in range(n_down)])
            self.res = nn.ModuleList([ResBlock(dim * 2 ** n_down) for _ in range(n_res)])

        def forward(self, x):
            x = torch.relu(inorm(self.stem(x)))
            for c in self.down:
                x = torch.relu(inorm(c(x)))
            for b in self.res:
                x = b(x)
            return x

    class StyleEncoder(nn.Module):
        def __init__(self, dim, n_down, style_dim, size):
            super().__init__()
            widths = [dim] + [dim * 2 ** min(i + 1, 2) for i in range(n_down)]
            self.stem = Conv(1, dim, 7)
            self.down = nn.ModuleList([Conv(a, b, 4, 2, 1) for a, b in zip(widths[:-1], widths[1:])])
            self.out = nn.Conv2d(widths[-1], style_dim, 1)
            self.size = size

        def forward(self, x):
            x = torch.relu(self.stem(x))
            for c in self.down:
                x = torch.relu(c(x))
            return self.out(F.adaptive_avg_pool2d(x, self.size))

    class AdaConv(nn.Module):
        def __init__(self, c, s, k=3):
            super().__init__()
            self.c, self.k, self.p, self.q = c, k, 1, 8 if c >= 8 else c
            self.groups_p = c // self.q
            self.spatial_pred = nn.Conv2d(s, c * self.p, k, padding=k // 2)
            self.pointwise_pred = nn.Linear(s, c * self.q)
            self.bias_pred = nn.Linear(s, c)

        def forward(self, x, style):
            b, c, h, w = x.shape
            k, p, q = self.k, self.p, self.q
            spatial = self.spatial_pred(style).view(b, p, c, k, k).permute(0, 2, 1, 3, 4)
            spatial = spatial.reshape(b * c, p, k, k) / math.sqrt(k * k * p)
            pooled = style.mean(dim=(2, 3))
            pw = self.pointwise_pred(pooled).view(b, self.groups_p, q, q).permute(0, 1, 3, 2)
            pw = pw.reshape(b * c, q, 1, 1) / math.sqrt(q)
            y = F.pad(inorm(x).reshape(1, b * c, h, w), (k // 2,) * 4, mode="reflect")
            y = F.conv2d(y, spatial, groups=b * c // p)
            y = F.conv2d(y, pw, groups=b * self.groups_p).view(b, c, h, w)
            return y + self.bias_pred(pooled)[:, :, None, None]

    class StyleBlock(nn.Module):
        def __init__(self, c, s):
            super().__init__()
            self.mod1, self.mod2 = AdaConv(c, s), AdaConv(c, s)
            self.conv1, self.conv2 = Conv(c, c, 3), Conv(c, c, 3)

        def forward(self, x, style):
            h = self.conv1(torch.relu(self.mod1(x, style)))
            return x + self.conv2(self.mod2(h, style))

    class Decoder(nn.Module):
        def __init__(self, c, n_up, n_res, s):
            super().__init__()
            self.blocks = nn.ModuleList([StyleBlock(c, s) for _ in range(n_res)])
            self.up = nn.ModuleList([Conv(c // 2 ** i, c // 2 ** (i + 1), 5) for i in range(n_up)])
            self.norms = nn.ModuleList([LayerNorm2d(c // 2 ** (i + 1)) for i in range(n_up)])
            self.out = Conv(c // 2 ** n_up, 1, 7)

        def forward(self, x, style):
            for b in self.blocks:
                x = b(x, style)
            for conv, norm in zip(self.up, self.norms):
                x = torch.relu(norm(conv(F.interpolate(x, scale_factor=2, mode="nearest"))))
            return 0.5 * (torch.tanh(self.out(x)[:, 0]) + 1.0)

    class Cell(nn.Module):
        def __init__(self, cin, f):
            super().__init__()
            self.ih = nn.Conv2d(cin, 4 * f, 3, padding=1)
            self.hh = nn.Conv2d(f, 4 * f, 3, padding=1)
            self.f = f

        def run(self, x, reverse):                          # x [B, T, C, h, w]
            b, t, c, h, w = x.shape
            pre = self.ih(x.reshape(b * t, c, h, w)).view(b, t, 4 * self.f, h, w)
            cs = x.new_zeros(b, self.f, h, w)
            hs = x.new_zeros(b, self.f, h, w)
            out = [None] * t
            for i in (reversed(range(t)) if reverse else range(t)):
                gi, gg, gf, go = torch.chunk(pre[:, i] + self.hh(hs), 4, dim=1)
                cs = torch.sigmoid(gf + 1.0) * cs + torch.sigmoid(gi) * torch.tanh(gg)
                hs = torch.sigmoid(go) * torch.tanh(cs)
                out[i] = hs
            return torch.stack(out, 1)

    class BiConvLSTM(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.forward_cell, self.backward_cell = Cell(c, c), Cell(c, c)
            self.merge = nn.Conv2d(2 * c, c, 1)

        def forward(self, x):
            b, t, c, h, w = x.shape
            both = torch.cat([self.forward_cell.run(x, False), self.backward_cell.run(x, True)], 2)
            return x + self.merge(both.reshape(b * t, 2 * c, h, w)).view(b, t, c, h, w)

    class Generator(nn.Module):
        def __init__(self, dim, n_down, n_res, style_dim, n_style_down, **_):
            super().__init__()
            c = dim * 2 ** n_down
            self.content_encoder = ContentEncoder(dim, n_down, n_res)
            self.style_encoder = StyleEncoder(dim, n_style_down, style_dim, 3)
            self.lstm = BiConvLSTM(c)
            self.decoder = Decoder(c, n_down, n_res, style_dim)

        def encode_content(self, x):                        # [B, T, H, W]
            b, t, h, w = x.shape
            c = self.content_encoder(x.reshape(b * t, 1, h, w))
            return self.lstm(c.view((b, t) + c.shape[1:]))

        def encode_style(self, x):
            b, t, h, w = x.shape
            s = self.style_encoder(x.reshape(b * t, 1, h, w))
            return s.view((b, t) + s.shape[1:])

        def encode(self, x):
            return self.encode_content(x), self.encode_style(x)

        def decode(self, content, style):                   # [B, T, C, h, w], [B, T, S, k, k]
            b, t = content.shape[:2]
            y = self.decoder(content.reshape((b * t,) + content.shape[2:]),
                             style.reshape((b * t,) + style.shape[2:]))
            return y.view((b, t) + y.shape[1:])

    class MUNIT(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.ce, self.non_ce = Generator(**kw), Generator(**kw)

    class Patch(nn.Module):
        def __init__(self, cin, dim, n_layers):
            super().__init__()
            widths = [cin] + [dim * 2 ** i for i in range(n_layers)]
            self.layers = nn.ModuleList([nn.Conv2d(a, b, 4, 2) for a, b in zip(widths[:-1], widths[1:])])
            self.out = nn.Conv2d(widths[-1], 1, 1)

        def forward(self, x):
            for c in self.layers:
                x = F.leaky_relu(c(F.pad(x, (1,) * 4, mode="reflect")), 0.2)
            return self.out(x)

    class MultiScale(nn.Module):
        def __init__(self, in_channels, dim, n_layers, num_scales):
            super().__init__()
            self.scales = nn.ModuleList([Patch(in_channels, dim, n_layers) for _ in range(num_scales)])

        def forward(self, x):
            outs = []
            for i, d in enumerate(self.scales):
                if i:
                    x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
                outs.append(d(x))
            return outs

    class Discriminators(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.ce, self.non_ce = MultiScale(**kw), MultiScale(**kw)

    return MUNIT(**_gen_kwargs(args)), Discriminators(**_dis_kwargs(args))


def load_torch_weights(gen, dis, weights):
    import torch

    for prefix, module in (("gen", gen), ("dis", dis)):
        sd = {}
        for key, v in weights.items():
            if not key.startswith(prefix + "."):
                continue
            name = key[len(prefix) + 1:]
            if name.endswith(".kernel"):
                name = name[:-len("kernel")] + "weight"
                v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
            sd[name] = torch.from_numpy(np.array(v, dtype=np.float32))
        module.load_state_dict(sd, strict=True)


def torch_functions(args, weights):
    import torch

    gen, dis = torch_model(args)
    load_torch_weights(gen, dis, weights)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(dis.parameters(), lr=1e-4, betas=(0.5, 0.999))

    def nchw_style(s):                                   # [B, T, k, k, S] -> [B, T, S, k, k]
        return s.permute(0, 1, 4, 2, 3)

    def flat(x):
        return x.reshape((-1, 1) + x.shape[2:])

    def lsgan_d(real, fake):
        return sum(((r - 1) ** 2).mean() + (f ** 2).mean() for r, f in zip(real, fake))

    def lsgan_g(fake):
        return sum(((f - 1) ** 2).mean() for f in fake)

    def l1(a, b):
        return (a - b).abs().mean()

    def translate(x_non_ce, style_ce):
        return gen.ce.decode(gen.non_ce.encode_content(x_non_ce), gen.ce.encode_style(style_ce))

    def step(x_a, x_b, s_a, s_b):
        s_a, s_b = nchw_style(s_a), nchw_style(s_b)
        with torch.no_grad():
            x_ba = gen.ce.decode(gen.non_ce.encode_content(x_b), s_a)
            x_ab = gen.non_ce.decode(gen.ce.encode_content(x_a), s_b)
        opt_d.zero_grad(set_to_none=True)
        d_l = (lsgan_d(dis.ce(flat(x_a)), dis.ce(flat(x_ba)))
               + lsgan_d(dis.non_ce(flat(x_b)), dis.non_ce(flat(x_ab))))
        d_l.backward()
        d_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in dis.parameters()))
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        c_a, s_a_prime = gen.ce.encode(x_a)
        c_b, s_b_prime = gen.non_ce.encode(x_b)
        x_a_recon = gen.ce.decode(c_a, s_a_prime)
        x_b_recon = gen.non_ce.decode(c_b, s_b_prime)
        x_ba = gen.ce.decode(c_b, s_a)
        x_ab = gen.non_ce.decode(c_a, s_b)
        c_b_recon, s_a_recon = gen.ce.encode(x_ba)
        c_a_recon, s_b_recon = gen.non_ce.encode(x_ab)
        w = LOSS_W
        g_l = (w["recon_x"] * (l1(x_a_recon, x_a) + l1(x_b_recon, x_b))
               + w["recon_s"] * (l1(s_a_recon, s_a) + l1(s_b_recon, s_b))
               + w["recon_c"] * (l1(c_a_recon, c_a) + l1(c_b_recon, c_b))
               + w["gan"] * (lsgan_g(dis.ce(flat(x_ba))) + lsgan_g(dis.non_ce(flat(x_ab)))))
        g_l.backward()
        g_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in gen.parameters()))
        opt_g.step()
        return d_l.detach(), g_l.detach(), d_norm.detach(), g_norm.detach()

    return translate, step


def run_torch(args, weights, inputs) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    translate, step = torch_functions(args, weights)
    x_a, x_b, s_a, s_b = (torch.from_numpy(inputs[k]) for k in ("x_ce", "x_non_ce", "s_ce", "s_non_ce"))
    _fifo(args, True)
    with torch.inference_mode():
        t0 = time.perf_counter()
        translate(x_b, x_a)
        first_inf = time.perf_counter() - t0
        inf = []
        for _ in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            translate(x_b, x_a)
            inf.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    step(x_a, x_b, s_a, s_b)
    first_step = time.perf_counter() - t0
    steps = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step(x_a, x_b, s_a, s_b)
        steps.append(time.perf_counter() - t0)
    _fifo(args, False)
    return dict(inference_s=inf[args.warmup:], step_s=steps[args.warmup:],
                first_inference_s=first_inf, first_step_s=first_step,
                torch=torch.__version__, threads=args.threads)


# ----------------------------------------------------------------------------- parts
PARTS = ("content_encoder", "style_encoder", "lstm", "decoder", "discriminator")


def _part_inputs(args, inputs):
    """NHWC inputs of each network for one series (frames as the batch)."""
    n, h = args.batch * args.frames, args.size // 4
    c = args.dim * 4
    rng = np.random.default_rng(1)
    x = inputs["x_ce"].reshape(n, args.size, args.size, 1)
    content = rng.standard_normal((n, h, h, c)).astype(np.float32)
    style = rng.standard_normal((n, 3, 3, args.style_dim)).astype(np.float32)
    return dict(content_encoder=(x,), style_encoder=(x,),
                lstm=(content.reshape(args.batch, args.frames, h, h, c),),
                decoder=(content, style), discriminator=(x,))


def _time(fn, args):
    fn()
    times = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[args.warmup:]


def run_jax_parts(args, weights, inputs) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from stylejax._xla import cpu_convolution_options

    gen, dis = _jax_modules(args, weights)
    modules = dict(content_encoder=gen.ce.content_encoder, style_encoder=gen.ce.style_encoder,
                   lstm=gen.ce.lstm, decoder=gen.ce.decoder, discriminator=dis.ce)
    out = {}
    for name, xs in _part_inputs(args, inputs).items():
        graphdef, state = nnx.split(modules[name])
        xs = tuple(jnp.asarray(v) for v in xs)

        def loss(state, *xs, graphdef=graphdef):
            y = nnx.merge(graphdef, state)(*xs)
            return sum(jnp.sum(v * v) for v in (y if isinstance(y, list) else [y]))

        fwd = jax.jit(loss, compiler_options=cpu_convolution_options())
        grad = jax.jit(jax.grad(loss, argnums=tuple(range(1 + len(xs)))))
        out[name] = dict(
            forward_s=_time(lambda: jax.block_until_ready(fwd(state, *xs)), args),
            forward_backward_s=_time(lambda: jax.block_until_ready(grad(state, *xs)), args))
    return out


def run_torch_parts(args, weights, inputs) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    gen, dis = torch_model(args)
    load_torch_weights(gen, dis, weights)
    modules = dict(content_encoder=gen.ce.content_encoder, style_encoder=gen.ce.style_encoder,
                   lstm=gen.ce.lstm, decoder=gen.ce.decoder, discriminator=dis.ce)
    out = {}
    for name, xs in _part_inputs(args, inputs).items():
        module = modules[name]
        nchw = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(v, -1, -3))) for v in xs]

        def loss(*xs, module=module):
            y = module(*xs)
            return sum((v * v).sum() for v in (y if isinstance(y, list) else [y]))

        def forward(nchw=nchw, loss=loss):
            with torch.no_grad():
                loss(*nchw)

        leaves = [v.clone().requires_grad_(True) for v in nchw]

        def forward_backward(leaves=leaves, loss=loss, module=module):
            module.zero_grad(set_to_none=True)
            for v in leaves:
                v.grad = None
            loss(*leaves).backward()

        out[name] = dict(forward_s=_time(forward, args),
                         forward_backward_s=_time(forward_backward, args))
    return out


def run_parts(args, data) -> dict:
    """Per-network timings, JAX and PyTorch workers alternating for ``--rounds`` rounds."""
    results = {}
    for r in range(args.rounds):
        for kind in ("torch_parts", "jax_parts"):
            results[f"{kind}_r{r}"] = _worker(args, kind, data)
            if "error" in results[f"{kind}_r{r}"]:
                raise SystemExit(f"{kind} failed: {results[f'{kind}_r{r}']['error']}")
    table = {}
    print("\nnetwork          pass              JAX ms  PyTorch ms   ratio")
    for name in PARTS:
        table[name] = {}
        for field in ("forward_s", "forward_backward_s"):
            best = {k: min(statistics.median(v[name][field]) for key, v in results.items()
                           if key.startswith(k))
                    for k in ("jax_parts", "torch_parts")}
            table[name][field[:-2]] = dict(jax_ms=best["jax_parts"] * 1e3,
                                           torch_ms=best["torch_parts"] * 1e3,
                                           ratio_vs_torch=best["torch_parts"] / best["jax_parts"])
            row = table[name][field[:-2]]
            print(f"{name:16s} {field[:-2]:16s} {row['jax_ms']:8.1f} {row['torch_ms']:10.1f} "
                  f"{row['ratio_vs_torch']:6.2f}x")
    return dict(parts=table, raw=results)


# ----------------------------------------------------------------------------- check
def check_agreement(args, weights, inputs) -> dict:
    """Same weights, same inputs: translated series, first-step losses and gradient norms."""
    import jax
    import torch

    torch.set_num_threads(args.threads)
    j_translate, j_step, j_state = jax_functions(args, weights, donate=False)
    t_translate, t_step = torch_functions(args, weights)
    x = {k: v for k, v in inputs.items()}
    j_out = np.asarray(j_translate(j_state[0], x["x_non_ce"], x["x_ce"]))
    with torch.no_grad():
        t_out = t_translate(torch.from_numpy(x["x_non_ce"]), torch.from_numpy(x["x_ce"])).numpy()
    *_, j_aux = j_step(*j_state, x["x_ce"], x["x_non_ce"], x["s_ce"], x["s_non_ce"])
    t_aux = t_step(*(torch.from_numpy(x[k]) for k in ("x_ce", "x_non_ce", "s_ce", "s_non_ce")))
    j_aux = [float(v) for v in j_aux]
    t_aux = [float(v) for v in t_aux]
    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(j_aux, t_aux)]
    out = dict(translate_max_abs_diff=float(np.abs(j_out - t_out).max()),
               translate_range=[float(t_out.min()), float(t_out.max())],
               losses_jax=dict(zip(("dis", "gen", "dis_grad_norm", "gen_grad_norm"), j_aux)),
               losses_torch=dict(zip(("dis", "gen", "dis_grad_norm", "gen_grad_norm"), t_aux)),
               max_rel_diff=max(rel), jax_devices=str(jax.devices()[0]))
    out["agree"] = bool(out["translate_max_abs_diff"] < 1e-4 and out["max_rel_diff"] < 1e-3)
    return out


# --------------------------------------------------------------------------- driver
def _worker(args, kind, data_path, **extra):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--data", data_path]
    for k in ("size", "frames", "batch", "dim", "n_res", "style_dim", "dis_dim", "steps",
              "warmup", "threads", "seed"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    if args.fifo:
        cmd.append("--fifo")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cpus = {int(c) for c in args.pin.split(",") if c.strip()}
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=pin)
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dim", type=int, default=16, help="first encoder width (MUNIT: 64)")
    p.add_argument("--n-res", type=int, default=2)
    p.add_argument("--style-dim", type=int, default=8)
    p.add_argument("--dis-dim", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pin", default="", metavar="CPUS",
                   help="comma-separated CPU ids to pin every worker to (e.g. 0 with --threads 1)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", default="baseline,ynn_inference",
                   help=f"comma-separated JAX variants out of {','.join(JAX_VARIANTS)}")
    p.add_argument("--out", default=None,
                   help="JSON path (default experiments/results/munit_speed.json, "
                        "munit_speed_parts.json with --parts)")
    p.add_argument("--fifo", action="store_true",
                   help="time under SCHED_FIFO priority 1 (chrt, needs root): on a machine whose "
                        "other jobs are niced this approximates an idle CPU; compilation runs "
                        "at normal priority")
    p.add_argument("--parts", action="store_true",
                   help="time each network separately (forward, forward + backward)")
    p.add_argument("--worker", choices=("init", "check", "jax", "torch", "jax_parts",
                                        "torch_parts"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="baseline", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "init":
        data = {"w." + k: v for k, v in jax_weights(args).items()}
        data.update({"x." + k: v for k, v in make_inputs(args).items()})
        np.savez(args.data, **data)
        print(json.dumps(dict(arrays=len(data))))
        return 0
    if args.worker:
        with np.load(args.data) as f:
            weights = {k[2:]: f[k] for k in f.files if k.startswith("w.")}
            inputs = {k[2:]: f[k] for k in f.files if k.startswith("x.")}
        fn = dict(check=check_agreement, jax=run_jax, torch=run_torch, jax_parts=run_jax_parts,
                  torch_parts=run_torch_parts)[args.worker]
        print(json.dumps(fn(args, weights, inputs)))
        return 0

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in JAX_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(JAX_VARIANTS)}")
    print(f"MUNIT (AdaConv + BiConvLSTM), {args.size}x{args.size} px, {args.frames} frames, "
          f"batch {args.batch}, dim {args.dim}, n_res {args.n_res}, {args.threads} threads"
          + (f", pinned to CPU(s) {args.pin}" if args.pin else ""), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        init = _worker(args, "init", data)
        if "error" in init:
            raise SystemExit(f"init failed: {init['error']}")
        if args.parts:
            parts = run_parts(args, data)
        else:
            check = _worker(args, "check", data)
            print("agreement:", json.dumps(check), flush=True)
        results = {}
        for r in range(0 if args.parts else args.rounds):
            runs = ["torch"] + [f"jax_{v}" for v in variants]
            if r == args.rounds - 1:
                runs.append("torch")
            for key in runs:
                tag = f"{key}_r{r}" + ("b" if f"{key}_r{r}" in results else "")
                if key == "torch":
                    results[tag] = _worker(args, "torch", data)
                else:
                    results[tag] = _worker(args, "jax", data, variant=key[4:])
                res = results[tag]
                if "error" in res:
                    print(f"  {tag:18s} error: {res['error']}", flush=True)
                else:
                    print(f"  {tag:18s} inference {statistics.median(res['inference_s']) * 1e3:8.1f} ms"
                          f"   step {statistics.median(res['step_s']) * 1e3:8.1f} ms", flush=True)

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    machine = dict(platform=platform.platform(), processor=platform.processor(),
                   cpu_count=os.cpu_count(), loadavg_at_end=load)
    if args.parts:
        out = dict(benchmark="munit_speed_parts", size=args.size, frames=args.frames,
                   batch=args.batch, dim=args.dim, n_res=args.n_res, style_dim=args.style_dim,
                   dis_dim=args.dis_dim, steps=args.steps, warmup=args.warmup,
                   threads=args.threads, rounds=args.rounds, pinned_cpus=args.pin or None,
                   fifo=args.fifo, machine=machine, **parts)
        return _write(out, args.out or DEFAULT_PARTS_OUT)

    def best(key, field):
        runs = [v for k, v in results.items() if k.startswith(key + "_r") and field in v]
        return min((statistics.median(v[field]) for v in runs), default=float("nan"))

    table = {}
    t_inf, t_step = best("torch", "inference_s"), best("torch", "step_s")
    for v in variants:
        j_inf, j_step = best(f"jax_{v}", "inference_s"), best(f"jax_{v}", "step_s")
        table[v] = dict(inference_series_per_s=args.batch / j_inf,
                        inference_ratio_vs_torch=t_inf / j_inf,
                        step_series_per_s=args.batch / j_step,
                        step_ratio_vs_torch=t_step / j_step)
    print("\nvariant      inference series/s  ratio    train step series/s  ratio")
    for v, row in table.items():
        print(f"{v:12s} {row['inference_series_per_s']:18.2f}  {row['inference_ratio_vs_torch']:5.2f}x"
              f" {row['step_series_per_s']:20.3f}  {row['step_ratio_vs_torch']:5.2f}x")
    print(f"{'pytorch':12s} {args.batch / t_inf:18.2f}  1.00x {args.batch / t_step:20.3f}  1.00x")
    out = dict(benchmark="munit_speed", size=args.size, frames=args.frames, batch=args.batch,
               dim=args.dim, n_res=args.n_res, style_dim=args.style_dim, dis_dim=args.dis_dim,
               steps=args.steps, warmup=args.warmup, threads=args.threads, rounds=args.rounds,
               pinned_cpus=args.pin or None, fifo=args.fifo, machine=machine, agreement=check,
               torch_inference_s=t_inf, torch_step_s=t_step, variants=table, raw=results)
    return _write(out, args.out or DEFAULT_OUT)


def _write(out: dict, path: str) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
