"""Resharded resume (issue 19): a checkpoint written on 8 devices resumes on 4 and
on 1 with the same weights (the small linear task of test_loop.py)."""

import shutil

import jax
import numpy as np
import pytest
from test_loop import LinearTask, _data, _numpy_descent, smoke

from stylejax.train import loop


@pytest.mark.parametrize("n", [4, 1])
def test_checkpoint_from_8_devices_resumes_on_fewer(tmp_path, n):
    assert len(jax.devices()) == 8
    task, cfg, workdir = LinearTask(*_data()), smoke(), str(tmp_path / "run")
    loop.run(task, cfg, workdir, steps=4, progress=False, devices=jax.devices())
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "2")  # resume from the one at 4 only
    devices = jax.devices()[:n]
    seen = []
    result = loop.run(task, cfg, workdir, progress=False, devices=devices,
                      callback=lambda step, state: seen.append(step))
    assert seen == [5, 6]
    w, b, _ = _numpy_descent(*_data(), cfg, cfg.steps)
    np.testing.assert_allclose(np.asarray(result.state["w"]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(result.state["b"]), b, rtol=1e-5, atol=1e-6)
    assert {d for leaf in jax.tree.leaves(result.state) for d in leaf.devices()} == set(devices)
    # The restored step-4 state itself, on the new mesh, is the 8-device one.
    _, state, step = loop.load_run(task, workdir, 4, devices=devices)
    np.testing.assert_allclose(np.asarray(state["w"]), _numpy_descent(*_data(), cfg, 4)[0],
                               rtol=1e-5, atol=1e-6)
