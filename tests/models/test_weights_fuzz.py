"""Fuzzing the VGG weight-file loaders (issue 19): ``.safetensors`` (torchvision/timm
keys) and flaxmodels ``.h5`` files cut short, replaced by random bytes, bit-flipped,
or valid containers holding wrong dtypes, shapes, names, links, NaN weights and
huge declared shapes; generated from a fixed seed.

``weights.load_file`` (what ``vgg16(path)`` / ``vgg19(path)`` call) may only raise a
ValueError whose message names the file, or return exactly the saved weights; never
another exception, and never a large allocation for a tensor it refuses. A tiny
two-block architecture (patched into ``ARCHITECTURES``) keeps the files a few KB; the
loaders are generic over the architecture table.
"""

import json
import struct
import tracemalloc

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

from stylejax.models import vgg
from stylejax.models import weights as weight_io

SEED = 1919
ARCH = "tiny"
# conv1_1 (3->2), pool, conv2_1 (2->3), conv2_2 (3->3), pool; torchvision indices 0, 3, 5.
TINY = ((2,), (3, 3))
SHAPES = {"conv1_1": ((3, 3, 3, 2), (2,)), "conv2_1": ((3, 3, 2, 3), (3,)),
          "conv2_2": ((3, 3, 3, 3), (3,))}
INDEX = {"conv1_1": 0, "conv2_1": 3, "conv2_2": 5}


@pytest.fixture(autouse=True)
def tiny_arch(monkeypatch):
    monkeypatch.setitem(weight_io.ARCHITECTURES, ARCH, TINY)


def _reference():
    """Seeded ``{conv: (kernel HWIO, bias)}`` float32."""
    rng = np.random.default_rng(SEED)
    return {n: (rng.normal(size=k).astype(np.float32), rng.normal(size=b).astype(np.float32))
            for n, (k, b) in SHAPES.items()}


def _torch_keys(ref, prefix=""):
    out = {}
    for n, (k, b) in ref.items():
        out[f"{prefix}features.{INDEX[n]}.weight"] = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
        out[f"{prefix}features.{INDEX[n]}.bias"] = b
    return out


def _write_h5(path, ref, **override):
    """An h5 file with groups ``conv*`` holding ``weight``/``bias``; ``override`` maps
    ``"conv/dataset"`` to a callable ``(group, name)`` that writes something else."""
    with h5py.File(path, "w") as f:
        for n, (k, b) in ref.items():
            g = f.create_group(n)
            for ds, arr in (("weight", k), ("bias", b)):
                if f"{n}/{ds}" in override:
                    override[f"{n}/{ds}"](g, ds)
                else:
                    g[ds] = arr
    return path


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    ref = _reference()
    tensors = _torch_keys(ref)
    tensors["classifier.0.weight"] = np.ones((4, 2), np.float32)  # ignored
    save_file(tensors, str(d / "vgg.safetensors"))
    _write_h5(d / "vgg.h5", ref)
    return ref, {".safetensors": d / "vgg.safetensors", ".h5": d / "vgg.h5"}


def _load(path, ref, *, may_load=False):
    """A ValueError naming ``path`` ("error") or (``may_load``) the saved weights."""
    try:
        got = weight_io.load_file(path, ARCH)
    except ValueError as err:
        assert str(path) in str(err), f"{path.name}: message does not name the file: {err}"
        return "error"
    assert may_load, f"{path.name}: damaged file loaded"
    assert set(got) == set(ref), path.name
    for n, (k, b) in ref.items():
        assert got[n][0].dtype == np.float32 and got[n][1].dtype == np.float32
        np.testing.assert_array_equal(got[n][0], k, err_msg=f"{path.name} {n}")
        np.testing.assert_array_equal(got[n][1], b, err_msg=f"{path.name} {n}")
    return "loaded"


def test_valid_files_load_the_saved_weights(valid, tmp_path):
    ref, files = valid
    for path in files.values():
        assert _load(path, ref, may_load=True) == "loaded"
    # A prefix before "features." and float16/float64 storage are read too.
    half = {n: (k.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32))
            for n, (k, b) in ref.items()}
    save_file({k: v.astype(np.float16) for k, v in _torch_keys(ref, "module.").items()},
              str(tmp_path / "half.safetensors"))
    assert _load(tmp_path / "half.safetensors", half, may_load=True) == "loaded"
    save_file({k: v.astype(np.float64) for k, v in _torch_keys(ref).items()},
              str(tmp_path / "double.safetensors"))
    assert _load(tmp_path / "double.safetensors", ref, may_load=True) == "loaded"
    # An .h5 content under another name is recognised by its signature.
    (tmp_path / "weights.bin").write_bytes(files[".h5"].read_bytes())
    assert _load(tmp_path / "weights.bin", ref, may_load=True) == "loaded"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        weight_io.load_file(tmp_path / "missing.h5", ARCH)


def test_cut_random_and_flipped_files_are_refused(valid, tmp_path):
    ref, files = valid
    rng = np.random.default_rng(SEED)
    counts = {"error": 0, "loaded": 0}
    k = 0
    for ext, path in files.items():
        data = path.read_bytes()
        cuts = sorted(set(rng.integers(0, len(data), 30).tolist()) | {0, 1, 7, 8, len(data) - 1})
        blobs = [data[:c] for c in cuts]
        blobs += [rng.bytes(n) for n in (1, 8, 100, 5000)]
        blobs += [weight_io._HDF5_MAGIC + rng.bytes(2000), data[:8] + rng.bytes(len(data) - 8)]
        for blob in blobs:
            k += 1
            p = tmp_path / f"c{k}{ext}"
            p.write_bytes(blob)
            counts[_load(p, ref)] += 1
        # Single-byte flips anywhere: refused, or (a flip in padding/unused metadata, or a
        # value byte: neither format has a checksum) loaded with the right shapes and dtype.
        for at in rng.integers(0, len(data), 25):
            k += 1
            p = tmp_path / f"f{k}{ext}"
            p.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
            try:
                got = weight_io.load_file(p, ARCH)
            except ValueError as err:
                assert str(p) in str(err), err
                continue
            assert {n: (v[0].shape, v[1].shape) for n, v in got.items()} == SHAPES
            assert all(np.isfinite(a).all() and a.dtype == np.float32
                       for v in got.values() for a in v)
    assert counts == {"error": k - 50, "loaded": 0}


def test_mutated_safetensors_headers_are_refused(valid, tmp_path):
    ref, files = valid
    data = files[".safetensors"].read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]

    def write(k, new_header, new_body=body):
        raw = json.dumps(new_header).encode()
        p = tmp_path / f"h{k}.safetensors"
        p.write_bytes(struct.pack("<Q", len(raw)) + raw + new_body)
        return p

    cases = []
    for name in sorted(k for k in header if k.startswith("features.")):
        entry = header[name]
        begin, end = entry["data_offsets"]
        cases += [
            {**header, name: dict(entry, dtype=dtype)} for dtype in ("I8", "BOOL", "NOPE", "")]
        cases += [
            {**header, name: dict(entry, dtype="I32")},  # same byte size, wrong type
            {**header, name: dict(entry, shape=[10 ** 6, 10 ** 6, 3, 3])},
            {**header, name: dict(entry, shape=[-1])},
            {**header, name: dict(entry, shape=list(reversed(entry["shape"])) + [1])},
            {**header, name: dict(entry, data_offsets=[begin, end + 4])},
            {**header, name: dict(entry, data_offsets=[end, begin])},
            {**header, name: "x"},
            {k: v for k, v in header.items() if k != name},
            {**{k: v for k, v in header.items() if k != name}, name + "x": entry},
        ]
    for k, new_header in enumerate(cases):
        assert _load(write(k, new_header), ref) == "error"
    # Header length larger than the file, or absurd.
    for k, length in enumerate((n + 1, len(data), 2 ** 40, 2 ** 64 - 1)):
        p = tmp_path / f"len{k}.safetensors"
        p.write_bytes(struct.pack("<Q", length) + data[8:])
        assert _load(p, ref) == "error"
    # NaN / inf weights of the right dtype and size.
    for k, bad in enumerate((np.nan, np.inf)):
        name = sorted(header)[k + 1]
        begin, end = header[name]["data_offsets"]
        fill = np.full((end - begin) // 4, bad, np.float32).tobytes()
        assert _load(write(f"nan{k}", header, body[:begin] + fill + body[end:]), ref) == "error"
    assert len(cases) == 6 * 13


def _huge(group, name):
    # A chunked, compressed dataset declaring 3.2 TB of float32 in a few KB of file.
    group.create_dataset(name, shape=(3, 3, 10 ** 5, 10 ** 6), dtype="f4", chunks=(1, 1, 8, 8),
                         compression="gzip")


def _wrong_shape_compressed(group, name):
    # The right size in elements, another shape.
    group.create_dataset(name, data=np.zeros((9, 6), np.float32), compression="gzip")


H5_MUTATIONS = {
    "int8": lambda g, n: g.create_dataset(n, data=np.ones((3, 3, 3, 2), np.int8)),
    "bool": lambda g, n: g.create_dataset(n, data=np.ones((3, 3, 3, 2), bool)),
    "bytes": lambda g, n: g.create_dataset(n, data=np.full((3, 3, 3, 2), b"ab")),
    "complex": lambda g, n: g.create_dataset(n, data=np.ones((3, 3, 3, 2), np.complex64)),
    "compound": lambda g, n: g.create_dataset(
        n, data=np.zeros((3, 3, 3, 2), dtype=[("a", "f4"), ("b", "i4")])),
    "vlen": lambda g, n: g.create_dataset(n, shape=(3, 3, 3, 2),
                                          dtype=h5py.vlen_dtype(np.float32)),
    "scalar": lambda g, n: g.create_dataset(n, data=np.float32(1)),
    "empty": lambda g, n: g.create_dataset(n, shape=(0, 3, 3, 2), dtype="f4"),
    "null": lambda g, n: g.create_dataset(n, data=h5py.Empty("f4")),
    "huge": _huge,
    "reshaped": _wrong_shape_compressed,
    "group": lambda g, n: g.create_group(n),
    "missing": lambda g, n: None,
    "renamed": lambda g, n: g.create_dataset(n + "s", data=np.ones((3, 3, 3, 2), np.float32)),
    "soft_cycle": lambda g, n: g.__setitem__(n, h5py.SoftLink(f"{g.name}/{n}")),
    "soft_dangling": lambda g, n: g.__setitem__(n, h5py.SoftLink("/nowhere")),
    "external_missing": lambda g, n: g.__setitem__(n, h5py.ExternalLink("/no/such.h5", "/x")),
    "external_devzero": lambda g, n: g.__setitem__(n, h5py.ExternalLink("/dev/zero", "/x")),
    "nan": lambda g, n: g.create_dataset(n, data=np.full((3, 3, 3, 2), np.nan, np.float32)),
    "inf": lambda g, n: g.create_dataset(n, data=np.full((3, 3, 3, 2), -np.inf, np.float32)),
}


@pytest.mark.parametrize("mutation", sorted(H5_MUTATIONS))
def test_mutated_h5_datasets_are_refused(valid, tmp_path, mutation):
    ref, _ = valid
    write = H5_MUTATIONS[mutation]
    # In place of the first conv's kernel, and of the last conv's bias (where the 4-D
    # writers are also misshapen: refused either way).
    for target in ("conv1_1/weight", "conv2_2/bias"):
        p = _write_h5(tmp_path / f"{target.replace('/', '_')}.h5", ref, **{target: write})
        tracemalloc.start()
        try:
            assert _load(p, ref) == "error"
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{mutation}: {peak} bytes allocated to refuse {p.name}"


def test_whole_file_mutations_through_the_public_constructor(valid, tmp_path):
    """Real VGG16 shapes: a small h5 declaring a huge conv1_1 is refused by ``vgg16``
    without decoding it; an HDF5 file without any conv group, a JSON file, a directory."""
    huge = tmp_path / "huge.h5"
    with h5py.File(huge, "w") as f:
        _huge(f.create_group("conv1_1"), "weight")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["weight"] = np.zeros((3, 3, 3, 64), np.float32)
    (tmp_path / "meta.safetensors").write_text(json.dumps({"features.0.weight": [1, 2]}))
    (tmp_path / "dir.h5").mkdir()
    tracemalloc.start()
    try:
        for name in ("huge.h5", "flat.h5", "meta.safetensors"):
            with pytest.raises(ValueError) as info:
                vgg.vgg16(str(tmp_path / name))
            assert str(tmp_path / name) in str(info.value), info.value
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    assert "misshapen" in str(pytest.raises(ValueError, vgg.vgg16, str(huge)).value)
    with pytest.raises(FileNotFoundError, match="dir.h5"):
        vgg.vgg16(str(tmp_path / "dir.h5"))
