"""Damaged run folders (issue 19, items 4, 9, 10): a half-written metrics line, a
truncated or bit-flipped checkpoint (verified by its digest, the previous one used
instead), a failed resume that leaves config.json alone, ``steps`` below the saved
step. Uses the small linear task of test_loop.py."""

import dataclasses
import json
import os

import numpy as np
import pytest
from test_loop import LinearTask, _data, _numpy_descent, smoke

from stylejax.train import loop


def _run(workdir, **kw):
    return loop.run(LinearTask(*_data()), smoke(), str(workdir), progress=False, **kw)


def _weights(steps):
    return _numpy_descent(*_data(), smoke(), steps)[0]


def _checkpoint_files(workdir, step):
    root = os.path.join(workdir, "checkpoints", str(step))
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def test_half_written_metrics_line_is_dropped_with_a_warning(tmp_path):
    workdir = tmp_path / "run"
    _run(workdir, steps=4)
    metrics = workdir / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 5, "loss": 0.1')  # killed mid-line
    with pytest.warns(RuntimeWarning, match="metrics.jsonl: dropped a half-written"):
        _run(workdir)
    rows = [json.loads(line) for line in open(metrics)]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    # A damaged line in the middle is an error naming the file.
    metrics.write_text('{"step": 1, "loss": 1}\nxx\n{"step": 2, "loss": 1}\n')
    with pytest.raises(ValueError, match="metrics.jsonl: line 2"):
        loop._truncate_metrics(str(metrics), 6)


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    workdir = tmp_path / "run"
    _run(workdir, steps=4)  # checkpoints 2 and 4
    files = [f for f in _checkpoint_files(workdir, 4) if os.path.getsize(f) > 0]
    if damage == "truncate":
        for f in files:
            if "ocdbt" in f or f.endswith(("data", ".data")) or "/d/" in f:
                with open(f, "r+b") as fh:
                    fh.truncate(os.path.getsize(f) // 2)
    else:
        # Flip bits in the saved w and b: restore still succeeds, with other values.
        cfg, state, step = loop.load_run(LinearTask(*_data()), str(workdir), 4)
        digest_before = loop.state_digest(state)
        flipped = False
        for f in files:
            data = bytearray(open(f, "rb").read())
            w = np.asarray(state["w"], np.float32).tobytes()
            at = data.find(w)
            if at >= 0:
                data[at + 2] ^= 0x40
                open(f, "wb").write(bytes(data))
                flipped = True
        if not flipped:  # stored compressed: flip a byte of the largest data file
            f = max(files, key=os.path.getsize)
            data = bytearray(open(f, "rb").read())
            data[len(data) // 2] ^= 0xFF
            open(f, "wb").write(bytes(data))
        assert digest_before
    with pytest.warns(RuntimeWarning, match=r"checkpoint 4 in .* is damaged"):
        result = _run(workdir)
    np.testing.assert_allclose(np.asarray(result.state["w"]), _weights(6), rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    # The run is whole again: it loads without a warning.
    assert loop.load_run(LinearTask(*_data()), str(workdir))[2] == 6


def test_failed_resume_leaves_config_alone_and_short_steps_are_refused(tmp_path):
    workdir = tmp_path / "run"
    _run(workdir, steps=4)
    saved = (workdir / "config.json").read_text()
    with pytest.raises(ValueError, match=r"steps=2 is below the step already saved .* \(4\)"):
        _run(workdir, steps=2)
    assert (workdir / "config.json").read_text() == saved
    # A resume that fails while restoring (here: every checkpoint damaged).
    for step in (2, 4):
        for f in _checkpoint_files(workdir, step):
            open(f, "wb").close()
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="no usable checkpoint"):
        loop.run(LinearTask(*_data()), dataclasses.replace(smoke(), steps=9), str(workdir),
                 progress=False)
    assert (workdir / "config.json").read_text() == saved


def test_garbled_config_json_is_named(tmp_path):
    workdir = tmp_path / "run"
    _run(workdir, steps=2)
    (workdir / "config.json").write_text('{"name": "smoke", "steps": ')
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON"):
        _run(workdir)
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON"):
        loop.load_run(LinearTask(*_data()), str(workdir))
    (workdir / "config.json").write_text('{"bogus": 1}')
    with pytest.raises(ValueError, match=r"config\.json: unknown config field"):
        loop.load_run(LinearTask(*_data()), str(workdir))
