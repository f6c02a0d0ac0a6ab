"""Hardening of saved StyleX model folders: atomic save, untrusted folders rejected
with a ValueError naming the folder or file (issue 19, items 3, 6, 7)."""

import json
import os

import numpy as np
import pytest
from flax import nnx

from stylejax.metrics import stylex
from stylejax.models.simsiam import StyleEncoder


@pytest.fixture(scope="module")
def model():
    encoder = StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(0))
    return stylex.StyleX.from_encoder(encoder, embed_size=32, info={"config": "test"})


@pytest.fixture
def saved(model, tmp_path):
    out = tmp_path / "m"
    model.save(str(out), dtype="float32")
    return out


def _weights(model):
    return model.flat_weights()


def test_save_swaps_a_whole_folder_and_keeps_other_files(model, saved, monkeypatch):
    (saved / "README.md").write_text("notes")
    other = model.replace(embed_size=48)
    # A save killed after the weights were written leaves the old model loadable.
    real_dump = json.dump

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stylex.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        other.save(str(saved))
    monkeypatch.setattr(stylex.json, "dump", real_dump)
    assert stylex.load(str(saved)).embed_size == 32
    assert sorted(os.listdir(saved.parent)) == ["m"]  # no half-written folder left
    other.save(str(saved))  # in place over the folder it came from
    back = stylex.load(str(saved))
    assert back.embed_size == 48
    assert (saved / "README.md").read_text() == "notes"
    assert sorted(os.listdir(saved.parent)) == ["m"]
    mode = 0o666 & ~_umask()
    assert os.stat(saved / stylex.WEIGHTS_FILE).st_mode & 0o777 == mode


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_save_checks_the_destination_first(model, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        model.save(str(f / "model"))
    with pytest.raises(ValueError, match="not a folder"):
        model.save(str(f))


def _rewrite_weights(folder, change):
    from safetensors.numpy import load_file, save_file
    path = str(folder / stylex.WEIGHTS_FILE)
    w = load_file(path)
    change(w)
    save_file(w, path)


@pytest.mark.parametrize("change, message", [
    (lambda w: w.update({k: v.astype(np.int8) for k, v in w.items()}), "int8"),
    (lambda w: w.update({k: v.astype(bool) for k, v in w.items()}), "bool"),
    (lambda w: next(v for v in w.values() if v.size > 1).__setitem__(
        (0,) * next(v for v in w.values() if v.size > 1).ndim, np.nan), "NaN"),
    (lambda w: w.pop(next(iter(w))), "missing"),
])
def test_bad_weights_are_refused(saved, change, message):
    _rewrite_weights(saved, change)
    with pytest.raises(ValueError, match=message) as err:
        stylex.load(str(saved))
    assert str(saved) in str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(embed_size=1000000), "embed_size"),
    (lambda m: m.update(width="4"), "width"),
    (lambda m: m.pop("dim"), "dim"),
    (lambda m: m.update(tile_size=[1]), "tile_size"),
    (lambda m: m.update(tile_size=9), "tile_size"),
])
def test_bad_descriptions_are_refused(saved, edit, message):
    path = saved / stylex.MODEL_FILE
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as err:
        stylex.load(str(saved))
    assert str(saved) in str(err.value)


def test_hostile_files_are_refused_quickly(saved):
    meta = saved / stylex.MODEL_FILE
    meta.write_text("{" + " " * (stylex.MAX_META_BYTES + 10) + "}")
    with pytest.raises(ValueError, match="bytes"):
        stylex.load(str(saved))
    meta.write_text('{"format": "stylejax.stylex/1", "width": 4,')
    with pytest.raises(ValueError, match=str(meta)):
        stylex.load(str(saved))
    meta.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        stylex.load(str(saved))
    meta.unlink()
    meta.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="regular file"):
        stylex.load(str(saved))
    meta.unlink()
    meta.write_text(json.dumps(dict(format=stylex.FORMAT, width=4, dim=16, embed_size=32)))
    (saved / stylex.WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="safetensors"):
        stylex.load(str(saved))
