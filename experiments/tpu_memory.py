"""Per-chip memory of the StyleX ``paper`` and ``pod`` training steps on TPU, from an
ahead-of-time compile for a TPU topology on a machine without TPUs.

Needs ``libtpu`` (``pip install libtpu``; not a stylejax dependency):
``jax.experimental.topologies.get_topology_desc`` describes the slice and the step
(the loop's jitted step: state replicated, batch sharded on ``data``) is lowered and
compiled for it; ``memory_analysis()`` gives the bytes per chip. The in-memory
phantom pool (PhantomSource, copied to every chip when it gathers batches on the
accelerator) is added from its array sizes; ``--data`` streaming has no pool.

Command: ``python experiments/tpu_memory.py`` -> experiments/results/tpu_memory.json

``--cpu B1 B2 ...`` instead compiles the same step for ONE CPU device at per-device
batches ``B1, B2, ...`` (XLA's CPU compiler, no TPU needed) and fits
``bytes = fixed + per_pair * batch`` to extrapolate to the per-chip batch of each case
(-> experiments/results/cpu_step_memory.json). XLA:CPU makes other fusion and layout
choices than XLA:TPU, so this is an estimate of the TPU figure, not a measurement of it.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import topologies
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.train import simsiam, simsiam_configs

CASES = [("paper", "v5e:2x4"), ("pod", "v4:2x2x4")]


def pool_bytes(cfg):
    side = cfg.raw_size ** 2
    vendor = cfg.num_vendor_raw * 28 * side * 2 if cfg.vendor_fraction > 0 else 0
    return cfg.num_raw * side * (4 + 1) + vendor


def measure(name, topology, batch=None):
    cfg = simsiam_configs.NAMED[name]()
    if topology == "cpu":
        import dataclasses
        devices = jax.devices("cpu")[:1]
        cfg = dataclasses.replace(cfg, batch_size=batch)
    else:
        devices = topologies.get_topology_desc(topology, "tpu").devices
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    cpu_mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    shapes = jax.eval_shape(lambda: simsiam.init_state(cfg, cpu_mesh))
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)
    b, r = cfg.batch_size, cfg.raw_size
    batch = dict(a=jax.ShapeDtypeStruct((b, r, r), jnp.float32, sharding=data),
                 b=jax.ShapeDtypeStruct((b, r, r), jnp.float32, sharding=data),
                 tissue_a=jax.ShapeDtypeStruct((b, r, r), jnp.uint8, sharding=data),
                 tissue_b=jax.ShapeDtypeStruct((b, r, r), jnp.uint8, sharding=data),
                 prestyled=jax.ShapeDtypeStruct((b,), jnp.bool_, sharding=data))
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep)
    step = simsiam.make_train_step(cfg)
    fn = jax.jit(lambda s, x, k, i: step(s, x, jax.random.fold_in(k, i)),
                 out_shardings=(rep, rep), donate_argnums=(0,))
    compiled = fn.lower(state, batch, key, jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
                        ).compile()
    m = compiled.memory_analysis()
    gib = 2.0 ** 30
    row = dict(config=name, topology=topology, chips=len(devices), batch=b,
               per_chip_batch=b // len(devices),
               arguments_gib=m.argument_size_in_bytes / gib,
               outputs_gib=m.output_size_in_bytes / gib,
               temporaries_gib=m.temp_size_in_bytes / gib,
               generated_code_gib=m.generated_code_size_in_bytes / gib,
               aliased_gib=m.alias_size_in_bytes / gib,
               step_peak_gib=(m.argument_size_in_bytes + m.output_size_in_bytes
                              - m.alias_size_in_bytes + m.temp_size_in_bytes) / gib,
               in_memory_pool_gib=pool_bytes(cfg) / gib)
    row["with_pool_on_chip_gib"] = row["step_peak_gib"] + row["in_memory_pool_gib"]
    return row


def cpu_estimate(batches):
    """Per-device step memory on XLA:CPU at small batches, extrapolated linearly."""
    import time
    rows, fits = [], []
    for b in batches:
        t = time.perf_counter()
        rows.append(measure("paper", "cpu", batch=b))
        rows[-1]["compile_s"] = time.perf_counter() - t
        print(json.dumps(rows[-1]), flush=True)
    x = np.array([r["batch"] for r in rows], float)
    for name, topology in CASES:
        cfg = simsiam_configs.NAMED[name]()
        chips = {"v5e:2x4": 8, "v4:2x2x4": 16}[topology]
        per_chip = cfg.batch_size // chips
        fit = dict(config=name, topology=topology, per_chip_batch=per_chip)
        for field in ("temporaries_gib", "step_peak_gib", "arguments_gib"):
            y = np.array([r[field] for r in rows])
            slope, fixed = np.polyfit(x, y, 1) if len(x) > 1 else (0.0, y[0])
            fit[f"{field}_fixed"], fit[f"{field}_per_pair"] = float(fixed), float(slope)
            fit[f"{field}_at_per_chip_batch"] = float(fixed + slope * per_chip)
        fits.append(fit)
        print(json.dumps(fit), flush=True)
    out = os.path.join(os.path.dirname(__file__), "results", "cpu_step_memory.json")
    with open(out, "w") as f:
        json.dump(dict(jax=jax.__version__, rows=rows, extrapolated=fits,
                       note="XLA:CPU compile of the paper step (1 device); an estimate of "
                            "the TPU figure"), f, indent=2)
    print(f"wrote {out}", file=sys.stderr)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu":
        return cpu_estimate([int(b) for b in sys.argv[2:]] or [1, 2])
    rows = []
    for name, topology in CASES:
        try:
            rows.append(measure(name, topology))
        except Exception as err:  # report what failed, keep the other case
            rows.append(dict(config=name, topology=topology,
                             error=f"{type(err).__name__}: {str(err)[:500]}"))
        print(json.dumps(rows[-1]), flush=True)
    out = os.path.join(os.path.dirname(__file__), "results", "tpu_memory.json")
    with open(out, "w") as f:
        json.dump(dict(jax=jax.__version__, rows=rows), f, indent=2)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
