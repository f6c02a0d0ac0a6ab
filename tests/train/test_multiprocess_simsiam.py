"""Multi-process StyleX training (issue 19): ``smoke`` SimSiam as 2 processes x 4 CPU
devices (``jax.distributed`` on localhost, gloo collectives; each process builds only
its rows of each batch, here from a streamed pool both processes build into the same
cache folder at once) gives the weights of 1 process x 8 devices on the same global
batches (BatchNorm statistics and gradients reduced across processes). Slow: three
compilations of the SimSiam step."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from stylejax.train import simsiam, simsiam_configs

pytestmark = pytest.mark.slow

STEPS = 3
SCRIPT = """
import dataclasses, sys
pid, port, workdir, out, steps = (int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4],
                                  int(sys.argv[5]))
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 4)
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=pid, initialization_timeout=120)
import numpy as np
from stylejax.train import loop, simsiam, simsiam_configs

assert jax.process_count() == 2 and jax.device_count() == 8
cfg = dataclasses.replace(simsiam_configs.smoke(), stream_pool=True)
result = simsiam.train(cfg, workdir, steps=steps, progress=False)
leaves = jax.tree.leaves(loop.host_copy(result.state.params))
np.savez(out, *[np.asarray(x) for x in leaves])
jax.distributed.shutdown()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_simsiam_like_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    workdir, port = tmp_path / "run", str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [subprocess.Popen([sys.executable, str(script), str(p), port, str(workdir),
                               str(tmp_path / f"w{p}.npz"), str(STEPS)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in (0, 1)]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    cfg = simsiam_configs.smoke()
    assert jax.device_count() == 8
    ref = simsiam.train(cfg, str(tmp_path / "ref"), steps=STEPS, progress=False)
    want = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(ref.state.params))]
    for p in (0, 1):
        got = np.load(tmp_path / f"w{p}.npz")
        got = [got[f"arr_{i}"] for i in range(len(got.files))]
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Only process 0 wrote the log; the same losses as the one-process run.
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in rows], [h["loss"] for h in ref.history],
                               rtol=1e-4, atol=1e-5)
    # The pool files both processes built at once are whole, with no temporaries left.
    cache = sorted(os.listdir(workdir / "cache"))
    assert cache and not any(".tmp" in f for f in cache), cache
    assert dataclasses.replace(cfg, stream_pool=True).computation_key() == cfg.computation_key()
