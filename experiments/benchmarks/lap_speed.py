"""LAP speed: stylejax (JAX, jit) against scikit-image + numpy doing the same work.

Run:  python experiments/benchmarks/lap_speed.py [--sizes 512 2048] [--repeats 10]

Both sides take a raw image and run: -log, percentile normalisation, a
6-band Laplacian pyramid, band gains, reconstruction and a tanh window.
The reference side decomposes with ``skimage.transform.pyramid_laplacian``
(Gaussian smoothing + ``resize``) and reconstructs with ``resize`` upsampling in
numpy. Also timed: stylejax forward + gradient of a scalar loss with respect to
(w, l, h). Prints a table and writes results/lap_speed.json (median seconds of
``--repeats`` runs after a warm-up, and the ratios).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from skimage.transform import pyramid_laplacian, resize

from stylejax import lap, phantom
from stylejax.evaluation import bench
from stylejax.pipeline import pyramid


def skimage_lap(raw, w, l, h, levels):
    """The LAP computation with scikit-image's pyramid and a numpy reconstruction."""
    x = -np.log(raw)
    s = max(1, min(x.shape) // 128)
    lo, hi = np.percentile(x[::s, ::s], (1, 99))
    x = (x - lo) / (hi - lo)
    layers = list(pyramid_laplacian(x, max_layer=levels, downscale=2, preserve_range=True))
    n_high = int(np.ceil(levels / 3))
    gh, gl = 2.0 ** ((h - 5) / 2.5), 2.0 ** ((l - 5) / 3.5)
    y = layers[-1]
    for k in reversed(range(levels)):
        gain = gh if k < n_high else gl
        y = layers[k] * gain + resize(y, layers[k].shape, order=1, preserve_range=True,
                                      anti_aliasing=False)
    width = 0.6 * 2.0 ** ((5 - w) / 3.5)
    return 0.5 + 0.5 * np.tanh((y - 0.5) / width)


def measure(size, repeats):
    raw = phantom.mammogram(0, size=(size, size), view="cc").raw.astype(np.float32)
    levels = pyramid.default_levels(raw.shape)
    raw_j = jnp.asarray(raw)
    params = jnp.asarray([6.0, 4.0, 7.0], jnp.float32)

    @jax.jit
    def forward(r, p):
        return lap.process_normalized(lap.normalize_log(r), lap.LAPParams.from_array(p))

    @jax.jit
    def forward_and_grad(r, p):
        def loss(q):
            out = lap.process_normalized(lap.normalize_log(r), lap.LAPParams.from_array(q))
            return jnp.mean((out - 0.5) ** 2)
        return jax.value_and_grad(loss)(p)

    ref = skimage_lap(raw.astype(np.float64), 6.0, 4.0, 7.0, levels)
    # Not the same pyramid (Gaussian sigma + resize vs 5-tap binomial): similar, not equal.
    agreement = float(np.corrcoef(ref.ravel(), np.asarray(forward(raw_j, params)).ravel())[0, 1])
    t_sk = bench.median_seconds(lambda: skimage_lap(raw.astype(np.float64), 6.0, 4.0, 7.0, levels),
                          repeats)
    t_fwd = bench.median_seconds(lambda: forward(raw_j, params).block_until_ready(), repeats)
    t_grad = bench.median_seconds(lambda: jax.block_until_ready(forward_and_grad(raw_j, params)),
                            repeats)
    return {"size": size, "levels": levels, "skimage_numpy_s": t_sk, "stylejax_forward_s": t_fwd,
            "stylejax_forward_grad_s": t_grad, "speedup_forward_vs_skimage": t_sk / t_fwd,
            "grad_over_forward": t_grad / t_fwd, "output_correlation": agreement}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "results" / "lap_speed.json"))
    args = parser.parse_args()
    machine = bench.machine()
    rows = [measure(s, args.repeats) for s in args.sizes]
    print(f"machine: {machine['cpus']} CPUs, {machine['backend']} ({machine['device']}), "
          f"jax {machine['jax']}")
    print(f"{'size':>6} {'skimage+np':>11} {'LAP fwd':>9} {'fwd+grad':>9} "
          f"{'fwd speedup':>12} {'grad/fwd':>9}")
    for r in rows:
        print(f"{r['size']:>6} {r['skimage_numpy_s']*1e3:>9.1f}ms {r['stylejax_forward_s']*1e3:>7.1f}ms "
              f"{r['stylejax_forward_grad_s']*1e3:>7.1f}ms {r['speedup_forward_vs_skimage']:>11.2f}x "
              f"{r['grad_over_forward']:>8.2f}x")
    bench.write_json(args.out, {"machine": machine, "results": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
