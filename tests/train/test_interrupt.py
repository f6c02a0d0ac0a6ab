"""A real interruption (issue 19): ``stylejax train simsiam`` in a subprocess is
killed with SIGKILL right after its first checkpoint appears; the same command run
again resumes from the saved step, and the run ends with the metrics and weights of
an uninterrupted run, every step logged once and no partial checkpoint left."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_loop import LinearTask, _data, _numpy_descent, smoke

from stylejax.train import loop, registry, simsiam_configs

STEPS = 12
CONFIG = f"""
import dataclasses
from stylejax.train import simsiam_configs

def get_config():
    return dataclasses.replace(simsiam_configs.smoke(), steps={STEPS}, checkpoint_every=2)
"""


def _command(config, workdir):
    return [sys.executable, "-c", "import sys; from stylejax.cli import main; "
            "sys.exit(main(sys.argv[1:]))", "train", "simsiam", "--config", str(config),
            "--workdir", str(workdir), "--no-progress"]


def _env(cache):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _steps_saved(workdir):
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


LINEAR = """
import sys, time
sys.path.insert(0, {tests!r})
from test_loop import LinearTask, _data, smoke
import dataclasses
from stylejax.train import loop
cfg = dataclasses.replace(smoke(), steps=40, checkpoint_every=2)
loop.run(LinearTask(*_data()), cfg, sys.argv[1], progress=False,
         callback=lambda step, state: time.sleep(float(sys.argv[2])))
"""


def test_sigkill_of_a_small_task_then_resume(tmp_path):
    """The same with the small linear task of test_loop.py (seconds): killed while
    it trains, the rerun resumes and ends where plain gradient descent does."""
    script, workdir = tmp_path / "train.py", tmp_path / "run"
    script.write_text(LINEAR.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, str(script), str(workdir), "0.05"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _steps_saved(workdir):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.12)  # mid-training, possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and _steps_saved(workdir)[-1] < 40
    done = subprocess.run([sys.executable, str(script), str(workdir), "0"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(n.isdigit() for n in os.listdir(workdir / "checkpoints"))
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, 41))
    cfg = dataclasses.replace(smoke(), steps=40)
    w, b, losses = _numpy_descent(*_data(), cfg, 40)
    np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-4, atol=1e-6)
    _, state, step = loop.load_run(LinearTask(*_data()), str(workdir))
    assert step == 40
    np.testing.assert_allclose(np.asarray(state["w"]), w, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # about a minute on 2 cores: python -m pytest -m slow
def test_sigkill_after_the_first_checkpoint_then_resume(tmp_path):
    config, workdir, cache = tmp_path / "config.py", tmp_path / "run", tmp_path / "cache"
    config.write_text(CONFIG)
    proc = subprocess.Popen(_command(config, workdir), env=_env(cache),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not _steps_saved(workdir):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = _steps_saved(workdir)
    assert proc.returncode == -signal.SIGKILL and killed_at and killed_at[-1] < STEPS

    done = subprocess.run(_command(config, workdir), env=_env(cache), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stderr.strip().splitlines()[-1])["step"] == STEPS
    names = os.listdir(workdir / "checkpoints")
    assert all(n.isdigit() for n in names), names  # no partial (tmp) checkpoint left
    assert _steps_saved(workdir)[-1] == STEPS
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))

    # The same run uninterrupted, in this process (in memory).
    task = registry.get("simsiam")
    cfg = simsiam_configs.smoke()
    whole = loop.run(task, cfg, None, steps=STEPS, progress=False)
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in whole.history],
                               rtol=1e-5, atol=1e-6)
    _, state, step = loop.load_run(task, str(workdir), devices=jax.devices())
    assert step == STEPS
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(whole.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
