"""Multi-process training (issue 19): the small linear task of test_loop.py as 2
processes x 4 CPU devices (``jax.distributed`` with the coordinator on localhost,
gloo CPU collectives) gives the weights of plain gradient descent, as 1 process x
8 devices does; only process 0 writes the run's files."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from test_loop import _data, _numpy_descent, smoke

SCRIPT = """
import os, sys
pid, port, workdir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 4)
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=pid, initialization_timeout=120)
sys.path.insert(0, TESTS)
import numpy as np
from test_loop import LinearTask, _data, smoke
from stylejax.train import loop

class Task(LinearTask):
    def init(self, cfg, mesh):
        tx_w, tx_b = self._optimizers(cfg)
        w, b = np.zeros(3, np.float32), np.zeros((), np.float32)
        return loop.replicate(dict(w=w, b=b, opt_w=tx_w.init(w), opt_b=tx_b.init(b)), mesh)

    def batches(self, cfg, mesh, workdir):
        n = cfg.batch_size // jax.process_count()
        rows = (np.arange(cfg.batch_size) % len(self.x))[jax.process_index() * n:][:n]
        batch = loop.shard_batch(dict(x=self.x[rows], y=self.y[rows]), mesh, cfg.batch_size)
        return lambda step: batch

assert jax.process_count() == 2 and jax.device_count() == 8
result = loop.run(Task(*_data()), smoke(), workdir, progress=False)
np.save(out, np.asarray(loop.host_copy(result.state["w"])))
jax.distributed.shutdown()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_of_four_devices_train_like_one_of_eight(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT.replace("TESTS", repr(os.path.dirname(__file__))))
    workdir, port = tmp_path / "run", str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [subprocess.Popen([sys.executable, str(script), str(p), port, str(workdir),
                               str(tmp_path / f"w{p}.npy")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in (0, 1)]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    cfg = smoke()
    w, _, losses = _numpy_descent(*_data(), cfg, cfg.steps)
    for p in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"w{p}.npy"), w, rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, cfg.steps + 1))  # written once
    np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-5)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]
