"""Per-chip memory of the StyleX ``paper`` and ``pod`` training steps on TPU, from an
ahead-of-time compile for a TPU topology on a machine without TPUs.

Needs ``libtpu`` (``pip install libtpu``; not a stylejax dependency):
``jax.experimental.topologies.get_topology_desc`` describes the slice and the step
(the loop's jitted step: state replicated, batch sharded on ``data``) is lowered and
compiled for it; ``memory_analysis()`` gives the bytes per chip. The in-memory
phantom pool (PhantomSource, copied to every chip when it gathers batches on the
accelerator) is added from its array sizes; ``--data`` streaming has no pool.

Command: ``python experiments/tpu_memory.py`` -> experiments/results/tpu_memory.json
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


def measure(name, topology):
    cfg = simsiam_configs.NAMED[name]()
    topo = topologies.get_topology_desc(topology, "tpu")
    mesh = jax.sharding.Mesh(np.array(topo.devices), ("data",))
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
    row = dict(config=name, topology=topology, chips=len(topo.devices), batch=b,
               per_chip_batch=b // len(topo.devices),
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


def main():
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
