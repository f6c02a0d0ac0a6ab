"""StyleX training pools streamed from local disk (``Config.stream_pool``).

:class:`StreamSource` gives :class:`~stylejax.train.simsiam_data.PhantomSource`'s
batches, but its pools (normalised phantoms, tissue masks, vendor-styled images)
live in ``.npy`` files written one phantom at a time and read one row at a time,
so host memory stays about one batch whatever the pool's size. Measured in
``docs/large_runs.md`` (``experiments/stream_memory.py``).
"""

from __future__ import annotations

import os

import numpy as np

from stylejax.train.simsiam_configs import Config
from stylejax.train.simsiam_data import PhantomSource, make_vendor_pool


def default_cache_dir() -> str:
    """Local folder for streamed pools when the workdir is not local
    (``$XDG_CACHE_HOME/stylejax/simsiam_pools``, else ``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stylejax", "simsiam_pools")


class _RowFile:
    """A ``.npy`` file read (or written) one leading-axis row at a time.

    Reading copies single rows with positioned reads (no memory map), so the
    process holds only the rows it asked for, whatever the file's size.
    """

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
            except ValueError as err:
                raise ValueError(f"{path}: not a readable .npy pool file ({err})") from None
            self.offset = f.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{path}: pool files must be C-ordered plain arrays")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_size = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_size
        if os.path.getsize(path) != expected:
            raise ValueError(f"{path}: {os.path.getsize(path)} bytes, expected {expected} "
                             f"for a {self.shape} {dtype} array (truncated?)")
        self._fd = os.open(path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def read(self, index: int, out: np.ndarray | None = None, sub: int | None = None
             ) -> np.ndarray:
        """Row ``index`` (shape ``shape[1:]``), or with ``sub`` its ``sub``-th row
        (``shape[2:]``), into ``out`` if given (cast on copy)."""
        shape, size, start = self.shape[1:], self.row_size, int(index) * self.row_size
        if sub is not None:
            shape, size = shape[1:], size // self.shape[1]
            start += int(sub) * size
        data = os.pread(self._fd, size, self.offset + start)
        if len(data) != size:
            raise ValueError(f"{self.path}: short read at row {index} (file changed?)")
        row = np.frombuffer(data, self.dtype).reshape(shape)
        if out is None:
            return row.copy()
        out[...] = row
        return out

    @staticmethod
    def write(path: str, shape: tuple, dtype, rows):
        """Write the rows yielded by ``rows`` (each ``shape[1:]``) as one ``.npy``
        array (:class:`_RowWriter`)."""
        writer = _RowWriter(path, shape, dtype)
        try:
            for row in rows:
                writer.append(row)
            writer.close()
        finally:
            writer.abort()


class _RowWriter:
    """Writes a ``.npy`` array of ``shape`` row by row to a temporary file that
    :meth:`close` renames to ``path`` once all ``shape[0]`` rows are in; :meth:`abort`
    (a no-op after ``close``) removes it."""

    def __init__(self, path: str, shape: tuple, dtype):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.tmp, self.count = f"{path}.tmp{os.getpid()}", 0
        self.file = open(self.tmp, "wb")
        np.lib.format.write_array_header_2_0(self.file, dict(
            descr=np.lib.format.dtype_to_descr(self.dtype), fortran_order=False,
            shape=self.shape))

    def append(self, row):
        row = np.ascontiguousarray(row, self.dtype)
        if row.shape != self.shape[1:]:
            raise ValueError(f"{self.path}: row of shape {row.shape}, expected {self.shape[1:]}")
        self.file.write(row.tobytes())
        self.count += 1

    def close(self):
        self.file.close()
        if self.count != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.count} rows, expected {self.shape[0]}")
        os.replace(self.tmp, self.path)

    def abort(self):
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


class StreamSource(PhantomSource):
    """:class:`PhantomSource`'s batches with the pools on local disk instead of in memory.

    The pools (normalised phantoms float32, tissue masks uint8, vendor-styled
    images float16, each as one ``.npy`` file) are built once, one phantom at a time,
    into ``cache_dir``; every step then reads only its batch's rows. Host memory is
    one batch plus one phantom's vendor styles while building, whatever ``num_raw``
    is. The batches equal :class:`PhantomSource`'s (same draws from ``(seed,
    step)``, same images). Chosen by ``Config.stream_pool`` (``paper``, ``pod``).

    Args:
      cfg: the run's :class:`Config`.
      cache_dir: local folder for the pool files (default :func:`default_cache_dir`);
        files already there with the right shape are reused.
    """

    on_device_pools = False

    def __init__(self, cfg: Config, cache_dir: str | None = None):
        from stylejax.pipeline import vendor_random
        self.cfg = cfg
        cache_dir = default_cache_dir() if cache_dir is None or "://" in str(cache_dir) \
            else os.fspath(cache_dir)
        tag = f"{cfg.data_seed}_{cfg.num_raw}_{cfg.raw_size}"
        side = (cfg.raw_size, cfg.raw_size)
        self.vendor_styles = tuple(vendor_random.training_styles(
            cfg.vendor_random_styles, cfg.data_seed) if cfg.vendor_fraction > 0 else ())
        n, r = cfg.num_vendor_raw, cfg.vendor_random_styles
        paths = dict(normalized=os.path.join(cache_dir, f"stream_normalized_{tag}.npy"),
                     tissue=os.path.join(cache_dir, f"stream_tissue_{tag}.npy"))
        shapes = dict(normalized=((cfg.num_raw,) + side, np.float32),
                      tissue=((cfg.num_raw,) + side, np.uint8))
        if self.vendor_styles:
            paths["vendor"] = os.path.join(
                cache_dir, f"stream_vendor_{tag}_{n}" + (f"_random{r}" if r else "") + ".npy")
            shapes["vendor"] = ((n, len(self.vendor_styles)) + side, np.float16)
        files = {k: self._open(p, *shapes[k]) for k, p in paths.items()}
        if any(f is None for f in files.values()):
            self._build({k: p for k, p in paths.items() if files[k] is None}, shapes)
            files = {k: self._open(p, *shapes[k]) for k, p in paths.items()}
        self.normalized, self.tissue = files["normalized"], files["tissue"]
        self.vendor = files.get("vendor")

    @staticmethod
    def _open(path, shape, dtype):
        if not os.path.exists(path):
            return None
        f = _RowFile(path)
        if f.shape != tuple(shape) or f.dtype != np.dtype(dtype):
            raise ValueError(f"{path}: holds a {f.shape} {f.dtype} array, expected "
                             f"{tuple(shape)} {np.dtype(dtype)}; delete it to rebuild")
        return f

    def _build(self, paths: dict, shapes: dict):
        """Write the missing pool files in one pass over the phantoms, one at a time."""
        from stylejax.data import phantom
        from stylejax.train import pairs
        cfg = self.cfg
        writers = {}
        try:
            for k, p in paths.items():
                writers[k] = _RowWriter(p, *shapes[k])
            count = cfg.num_raw if set(writers) - {"vendor"} else cfg.num_vendor_raw
            for i in range(count):
                m = phantom.mammogram(cfg.data_seed + i, size=(cfg.raw_size, cfg.raw_size),
                                      view="cc" if i % 2 == 0 else "mlo")
                raw = m.raw.astype(np.float32)
                if "normalized" in writers:
                    writers["normalized"].append(pairs.normalize(raw[None])[0])
                if "tissue" in writers:
                    writers["tissue"].append(m.labels != phantom.BACKGROUND)
                if "vendor" in writers and i < cfg.num_vendor_raw:
                    writers["vendor"].append(make_vendor_pool(raw[None], self.vendor_styles)[0])
            for w in writers.values():
                w.close()
        finally:
            for w in writers.values():
                w.abort()

    def pools(self) -> dict:
        raise ValueError("a StreamSource reads its pools from disk; it has no in-memory pools")

    def local_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of the global batch of ``step``, as
        :meth:`PhantomSource.local_batch` (read from the pool files)."""
        idx = self.local_indices(step, process_index, process_count)
        rows = len(idx["a"])
        shape = (rows, self.cfg.raw_size, self.cfg.raw_size)
        out = {}
        for which in ("a", "b"):
            images = np.empty(shape, np.float32)
            tissue = np.empty(shape, np.uint8)
            for row, (i, vendor, style) in enumerate(zip(idx[which], idx["vendor"],
                                                         idx["style"])):
                if vendor:
                    self.vendor.read(i, images[row], sub=style)
                else:
                    self.normalized.read(i, images[row])
                self.tissue.read(i, tissue[row])
            out[which], out[f"tissue_{which}"] = images, tissue
        return dict(a=out["a"], b=out["b"], tissue_a=out["tissue_a"], tissue_b=out["tissue_b"],
                    prestyled=idx["vendor"].copy())
