"""Reading exported network folders: bounded JSON, damaged/non-float/non-finite safetensors,
and the three exported-network loaders refusing garbled descriptions by name."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from stylejax.models import export_files


def test_read_json_refuses_by_name(tmp_path):
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"a": [1, 2]}))
    assert export_files.read_json(str(good)) == {"a": [1, 2]}
    cases = {"garbled.json": b'{"a": [1, 2', "list.json": b"[1, 2]",
             "big.json": b'{"a": "' + b"x" * 2000 + b'"}', "empty.json": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in cases:
        with pytest.raises(ValueError, match=name):
            export_files.read_json(str(tmp_path / name), limit=1000)
    os.symlink("/dev/zero", tmp_path / "zero.json")  # a character device: never read
    with pytest.raises(ValueError, match="zero.json"):
        export_files.read_json(str(tmp_path / "zero.json"))
    with pytest.raises(ValueError, match="missing.json"):
        export_files.read_json(str(tmp_path / "missing.json"))


def test_read_weights_refuses_damaged_and_non_float_files(tmp_path):
    rng = np.random.default_rng(0)
    w = {"conv.kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float16),
         "conv.bias": np.zeros(4, np.float32)}
    path = tmp_path / "w.safetensors"
    save_file(w, str(path))
    got = export_files.read_weights(str(path))
    for k in w:
        np.testing.assert_array_equal(got[k], w[k])
    data = path.read_bytes()
    for i, cut in enumerate(np.linspace(0, len(data) - 1, 12).astype(int)):
        bad = tmp_path / f"cut{i}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{i}.safetensors"):
            export_files.read_weights(str(bad))
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="noise.safetensors"):
        export_files.read_weights(str(noise))
    for name, tensor, msg in [("int", np.ones((2, 2), np.int8), "dtype int8"),
                              ("nan", np.array([1.0, np.nan], np.float32), "NaN or inf")]:
        save_file({"t": tensor}, str(tmp_path / f"{name}.safetensors"))
        with pytest.raises(ValueError, match=msg):
            export_files.read_weights(str(tmp_path / f"{name}.safetensors"))


@pytest.mark.parametrize("module, meta, weights", [
    ("stylejax.train.adain", "adain.json", "decoder.safetensors"),
    ("stylejax.train.dce", "dce.json", "munit.safetensors"),
    ("stylejax.train.transform_net", "transform_net.json", "transform_net.safetensors"),
])
def test_exported_network_loaders_refuse_garbled_descriptions(tmp_path, module, meta, weights):
    import importlib
    mod = importlib.import_module(module)
    assert (mod.META_FILE, getattr(mod, "DECODER_FILE", None) or mod.WEIGHTS_FILE) == (meta,
                                                                                      weights)
    (tmp_path / meta).write_bytes(b'{"architecture": ')
    save_file({"t": np.zeros(2, np.float32)}, str(tmp_path / weights))
    with pytest.raises(ValueError, match=meta):
        mod.load(str(tmp_path))
