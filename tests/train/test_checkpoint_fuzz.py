"""Fuzzing training checkpoints (issue 19): every file of the latest orbax checkpoint
emptied, cut short, overwritten with random bytes, bit-flipped or deleted; checkpoint
folders removed, replaced or joined by junk; ``checkpoint_digests.json`` garbled
(fixed seed). Uses the small linear task of test_loop.py (checkpoints at steps 2, 4).

Reading the run back (``loop.load_run``, the same verified restore a resume uses) may
only give (a) exactly the state saved at step 4, (b) exactly the state saved at step 2
with a RuntimeWarning naming the damaged checkpoint 4, or (c) a ValueError naming the
run folder; never another exception and never a state that was not saved.
"""

import os
import shutil
import warnings

import numpy as np
import pytest
from test_loop import LinearTask, _data, _numpy_descent, smoke

from stylejax.train import loop

SEED = 1919


def _task():
    return LinearTask(*_data())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ckpt") / "run"
    loop.run(_task(), smoke(), str(workdir), progress=False, steps=4)  # checkpoints 2, 4
    digests = {}
    for step in (2, 4):
        _, state, got = loop.load_run(_task(), str(workdir), step)
        assert got == step
        # The pristine checkpoints hold the numpy gradient descent's weights.
        np.testing.assert_allclose(np.asarray(state["w"]),
                                   _numpy_descent(*_data(), smoke(), step)[0],
                                   rtol=1e-5, atol=1e-6)
        digests[step] = loop.state_digest(state)
    return workdir, digests


def _files(workdir, step):
    root = os.path.join(workdir, "checkpoints", str(step))
    return sorted(os.path.relpath(os.path.join(d, f), workdir)
                  for d, _, fs in os.walk(root) for f in fs)


def _outcome(workdir, digests, *, listed=True):
    """Read the run back: "error", or the step whose saved state came back exactly.
    A fallback to step 2 must warn about step 4 unless (``listed=False``) step 4 is no
    checkpoint at all to orbax (a plain file or empty folder: a half-written save)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, state, step = loop.load_run(_task(), str(workdir))
        except ValueError as err:
            assert str(workdir) in str(err), f"message does not name the run: {err}"
            return "error"
    assert step in digests, step
    assert loop.state_digest(state) == digests[step], f"step {step}: not the saved state"
    if step == 2 and listed:
        assert any(issubclass(w.category, RuntimeWarning) and "checkpoint 4 in" in
                   str(w.message) and "damaged" in str(w.message) for w in caught), \
            [str(w.message) for w in caught]
    return step


def _copy(saved_dir, dst):
    shutil.copytree(saved_dir, dst, symlinks=True)
    return dst


def test_damaged_files_of_the_latest_checkpoint(saved, tmp_path):
    workdir, digests = saved
    rng = np.random.default_rng(SEED)
    counts = {}
    k = 0
    for rel in _files(workdir, 4):
        data = (workdir / rel).read_bytes()
        variants = {"empty": b"", "random": rng.bytes(len(data)), "delete": None,
                    "cut": data[:int(rng.integers(1, len(data)))]}
        at = int(rng.integers(0, len(data)))
        variants["flip"] = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        for kind, blob in variants.items():
            k += 1
            run = _copy(workdir, tmp_path / f"r{k}")
            if blob is None:
                os.remove(run / rel)
            else:
                (run / rel).write_bytes(blob)
            result = _outcome(run, digests)
            counts[result] = counts.get(result, 0) + 1
            shutil.rmtree(run)
    # Most damage is caught (fallback to 2); harmless damage (e.g. commit markers)
    # still restores step 4 exactly; step 2 is intact, so never an error.
    assert "error" not in counts and counts.get(2, 0) >= 20, counts


def test_damaged_checkpoint_folders(saved, tmp_path):
    workdir, digests = saved
    ck = "checkpoints"

    def setup(run, how):
        if how == "no_default_4":
            shutil.rmtree(run / ck / "4" / "default")
        elif how == "empty_4":
            shutil.rmtree(run / ck / "4")
            (run / ck / "4").mkdir()
        elif how == "file_4":
            shutil.rmtree(run / ck / "4")
            (run / ck / "4").write_bytes(b"x")
        elif how == "junk_dirs":
            for name in ("abc", "9.orbax-checkpoint-tmp-1", "-3", "07x"):
                (run / ck / name).mkdir()
            (run / ck / "abc" / "x").write_bytes(b"x")
        elif how == "both_empty":
            for step in (2, 4):
                for rel in _files(run, step):
                    (run / rel).write_bytes(b"")
        elif how == "swapped":  # step 4's folder holds step 2's state: digest mismatch
            shutil.rmtree(run / ck / "4")
            shutil.copytree(run / ck / "2", run / ck / "4")
        elif how == "no_checkpoints":
            shutil.rmtree(run / ck)
            (run / ck).mkdir()
        return run

    expected = {"no_default_4": 2, "empty_4": 2, "file_4": 2, "junk_dirs": 4,
                "both_empty": "error", "swapped": 2, "no_checkpoints": "error"}
    for how, want in expected.items():
        run = setup(_copy(workdir, tmp_path / how), how)
        assert _outcome(run, digests, listed=how not in ("empty_4", "file_4")) == want, how


DIGEST_FILES = {
    "cut": lambda data, rng: data[:len(data) // 2],
    "random": lambda data, rng: rng.bytes(len(data)),
    "empty": lambda data, rng: b"",
    "list": lambda data, rng: b"[]",
    "null": lambda data, rng: b"null",
    "bad_key": lambda data, rng: b'{"abc": "x", "4.5": "y", "": "z"}',
    "int_value": lambda data, rng: b'{"4": 5, "2": null}',
    "wrong_digest": lambda data, rng: data.replace(data[data.index(b'"4": "') + 6:][:8],
                                                   b"00000000"),
    "huge": lambda data, rng: b'{"4": "' + b"0" * (3 << 20) + b'"}',
}


@pytest.mark.parametrize("kind", sorted(DIGEST_FILES) + ["directory", "dev_zero"])
def test_garbled_digest_file(saved, tmp_path, kind):
    workdir, digests = saved
    run = _copy(workdir, tmp_path / "run")
    path = run / loop.DIGEST_FILE
    if kind == "directory":
        path.unlink()
        path.mkdir()
    elif kind == "dev_zero":
        path.unlink()
        path.symlink_to("/dev/zero")  # endless: must not be read to the end
    else:
        path.write_bytes(DIGEST_FILES[kind](path.read_bytes(), np.random.default_rng(SEED)))
    # Unverifiable checkpoints are restored unverified (undamaged here, so step 4);
    # a digest that does not match makes step 4 count as damaged.
    assert _outcome(run, digests) == (2 if kind in ("wrong_digest", "int_value") else 4)


def test_resume_after_garbled_digests_and_damaged_latest(saved, tmp_path):
    """A resume (``loop.run``) with a digest file holding non-step keys and a latest
    checkpoint whose array data are random bytes: falls back to step 2 and trains on
    to the numpy result."""
    workdir, _ = saved
    run = _copy(workdir, tmp_path / "run")
    (run / loop.DIGEST_FILE).write_text(
        (run / loop.DIGEST_FILE).read_text().rstrip()[:-1] + ', "abc": "x"}')
    rng = np.random.default_rng(SEED)
    for rel in _files(run, 4):
        if "/d/" in rel:
            (run / rel).write_bytes(rng.bytes(os.path.getsize(run / rel)))
    with pytest.warns(RuntimeWarning, match=r"checkpoint 4 in .* is damaged"):
        result = loop.run(_task(), smoke(), str(run), progress=False)
    np.testing.assert_allclose(np.asarray(result.state["w"]),
                               _numpy_descent(*_data(), smoke(), 6)[0], rtol=1e-5, atol=1e-6)
    assert loop.load_run(_task(), str(run))[2] == 6
