"""Fuzzing saved StyleX model folders (issue 19): ``stylex.json`` and
``weights.safetensors`` cut short, replaced by random bytes, or with JSON values and
safetensors headers mutated at random (fixed seed). ``stylex.load`` may only raise a
ValueError naming the folder or the file, or load a model whose weights are the saved
ones; never another exception."""

import json
import struct

import jax
import numpy as np
import pytest
from flax import nnx

from stylejax.metrics import stylex
from stylejax.models.simsiam import StyleEncoder

SEED = 1919


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    # Shapes only, then seeded positive values: an eager init costs seconds on a CPU.
    abstract = nnx.eval_shape(lambda: StyleEncoder(width=4, dim=16, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(SEED)
    state = jax.tree.map(lambda s: rng.uniform(0.05, 0.2, s.shape).astype(s.dtype), state)
    encoder = nnx.merge(graphdef, state)
    model = stylex.StyleX.from_encoder(encoder, embed_size=32, info={"config": "test"})
    out = tmp_path_factory.mktemp("model") / "m"
    model.save(str(out), dtype="float32")
    weights = {k: np.asarray(v) for k, v in model.flat_weights().items()}
    return out, weights


def _load(folder, weights, *, may_load: bool):
    """Load ``folder``: a ValueError naming it or its file, or (``may_load``) a model
    with the saved weights."""
    try:
        model = stylex.load(str(folder))
    except ValueError as err:
        assert str(folder) in str(err), f"message does not name {folder}: {err}"
        return "error"
    assert may_load, f"{folder}: damaged model loaded"
    got = model.flat_weights()
    assert set(got) == set(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(np.asarray(got[k]), v, err_msg=k)
    return "loaded"


def _copy(src, dst, **replace):
    dst.mkdir()
    for name in (stylex.MODEL_FILE, stylex.WEIGHTS_FILE):
        (dst / name).write_bytes(replace.get(name, (src / name).read_bytes()))
    return dst


def _mutations(value, rng):
    """Random replacements of a JSON value of another type or an absurd size."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return [None, "x" * 50, 10 ** 9, [1, 2], float("nan"),
            -value if numeric else int(rng.integers(-5, 5))]


def test_damaged_files_are_refused(saved, tmp_path):
    folder, weights = saved
    rng = np.random.default_rng(SEED)
    counts = {"error": 0, "loaded": 0}
    k = 0
    for name in (stylex.MODEL_FILE, stylex.WEIGHTS_FILE):
        data = (folder / name).read_bytes()
        cuts = sorted(set(rng.integers(0, len(data), 25).tolist()) | {0, 1, len(data) - 1})
        for cut in cuts:
            k += 1
            counts[_load(_copy(folder, tmp_path / f"c{k}", **{name: data[:cut]}), weights,
                         may_load=False)] += 1
        for size in (1, 8, 100, 2000):
            k += 1
            counts[_load(_copy(folder, tmp_path / f"r{k}", **{name: rng.bytes(size)}),
                         weights, may_load=False)] += 1
    assert counts["error"] >= 60, counts


def test_mutated_descriptions_are_refused_or_harmless(saved, tmp_path):
    folder, weights = saved
    rng = np.random.default_rng(SEED + 1)
    meta = json.loads((folder / stylex.MODEL_FILE).read_text())
    k = 0
    for key in sorted(meta):
        variants = [{kk: vv for kk, vv in meta.items() if kk != key}]  # key missing
        variants += [dict(meta, **{key: v}) for v in _mutations(meta[key], rng)]
        for variant in variants:
            k += 1
            text = json.dumps(variant, allow_nan=True).encode()
            # Weights unchanged, so a load that works must give the saved weights.
            _load(_copy(folder, tmp_path / f"j{k}", **{stylex.MODEL_FILE: text}), weights,
                  may_load=True)
    for text in (b"[]", b"null", b"1", b'"x"', b"{", b"{}", b'{"a": }'):
        k += 1
        _load(_copy(folder, tmp_path / f"j{k}", **{stylex.MODEL_FILE: text}), weights,
              may_load=False)
    assert k > 30


def test_mutated_safetensors_headers_are_refused(saved, tmp_path):
    folder, weights = saved
    rng = np.random.default_rng(SEED + 2)
    data = (folder / stylex.WEIGHTS_FILE).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")

    def write(k, new_header, new_body=body):
        raw = json.dumps(new_header).encode()
        blob = struct.pack("<Q", len(raw)) + raw + new_body
        return _copy(folder, tmp_path / f"h{k}", **{stylex.WEIGHTS_FILE: blob})

    cases = []
    for name in rng.choice(names, 6, replace=False):
        entry = header[name]
        begin, end = entry["data_offsets"]
        cases += [
            {**header, name: dict(entry, dtype="I8")},
            {**header, name: dict(entry, dtype="BOOL")},
            {**header, name: dict(entry, dtype="NOPE")},
            {**header, name: dict(entry, shape=[10 ** 6, 10 ** 6])},
            {**header, name: dict(entry, shape=[-1])},
            {**header, name: dict(entry, data_offsets=[begin, end + 4])},
            {**header, name: dict(entry, data_offsets=[end, begin])},
            {k: v for k, v in header.items() if k != name},
        ]
    for k, new_header in enumerate(cases):
        _load(write(k, new_header), weights, may_load=False)
    # NaN weights of the right dtype and size.
    name = names[0]
    begin, end = header[name]["data_offsets"]
    nan_body = body[:begin] + np.full((end - begin) // 4, np.nan, np.float32).tobytes() + body[end:]
    _load(write(len(cases), header, nan_body), weights, may_load=False)
    assert len(cases) == 48
