"""Peak memory of one Gatys NST step at 512, 1024 and 2048 pixels, with and without remat.

Run:  python experiments/benchmarks/nst_memory.py [--sizes 512 1024 2048]

The jitted step (VGG19 to relu5_2, thesis layers, Adam, the image and optimiser state
donated) is lowered and compiled for each size without running it; XLA's buffer
assignment then gives the exact sizes of the arguments, outputs and temporaries
(``compiled.memory_analysis()``). Peak = arguments + outputs + temporaries - donated
(aliased) bytes, i.e. what one iteration needs live at once (VGG19 weights included,
about 80 MB for the convolutional trunk). On a GPU the same numbers describe device
memory. "remat" is ``jax.checkpoint`` on every VGG block
(``stylejax.models.vgg.VGG(remat=True)``); it raised the peak at every size, which is why
the NST methods have no remat option. Writes ``results/nst_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

from nst_speed import CONTENT_TAPS, STYLE_TAPS  # noqa: E402

from stylejax.methods import engine, gatys  # noqa: E402
from stylejax.models import features, vgg  # noqa: E402

GIB = 1024 ** 3


def step_memory(size: int, remat: bool) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = features.VGGFeatures(vgg.vgg19("random", remat=remat))
    extraction, state = engine.Extraction.of(net)
    loss_fn = gatys.GatysLoss(extraction, CONTENT_TAPS, STYLE_TAPS)
    image = jax.ShapeDtypeStruct((size, size), jnp.float32)
    feats = jax.eval_shape(lambda x: extraction(state, x[None], STYLE_TAPS + CONTENT_TAPS),
                           image)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    aux = {"state": state,
           "content": {t: feats[t] for t in CONTENT_TAPS},
           "style": {t: jax.ShapeDtypeStruct((feats[t].shape[-1],) * 2, jnp.float32)
                     for t in STYLE_TAPS},
           "masks": None, "content_weights": {t: scalar for t in CONTENT_TAPS},
           "style_weights": {t: scalar for t in STYLE_TAPS}}
    step, init = engine.make_step(loss_fn)
    opt_state = jax.eval_shape(init, image)
    start = time.perf_counter()
    compiled = step.lower(image, opt_state, aux).compile()
    seconds = time.perf_counter() - start
    stats = compiled.memory_analysis()
    args, out = stats.argument_size_in_bytes, stats.output_size_in_bytes
    temp, alias = stats.temp_size_in_bytes, stats.alias_size_in_bytes
    return {"size": size, "remat": remat, "argument_bytes": args, "output_bytes": out,
            "temp_bytes": temp, "alias_bytes": alias, "peak_bytes": args + out + temp - alias,
            "peak_gib": (args + out + temp - alias) / GIB, "compile_seconds": seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        for remat in (False, True):
            rows.append(step_memory(size, remat))
            r = rows[-1]
            print(f"{size:5d} remat={str(remat):5s} peak {r['peak_gib']:6.2f} GiB "
                  f"(temporaries {r['temp_bytes'] / GIB:6.2f} GiB)", file=sys.stderr)
    print(f"\nPeak memory of one Gatys NST step (VGG19 to relu5_2), {jax.default_backend()}, "
          "from XLA buffer assignment")
    print(f"{'size':>6s} {'no remat GiB':>13s} {'remat GiB':>10s} {'saving':>7s}")
    for size in args.sizes:
        plain = next(r for r in rows if r["size"] == size and not r["remat"])
        rem = next(r for r in rows if r["size"] == size and r["remat"])
        print(f"{size:6d} {plain['peak_gib']:13.2f} {rem['peak_gib']:10.2f} "
              f"{plain['peak_gib'] / rem['peak_gib']:6.2f}x")
    result = {"benchmark": "nst_memory", "backend": jax.default_backend(),
              "jax_version": jax.__version__, "cpu_count": os.cpu_count(), "rows": rows}
    out = Path(__file__).parents[1] / "results" / "nst_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
