"""Host-side data for StyleX training: an in-memory pool of synthetic raw phantoms.

The pool holds ``num_raw`` raw mammograms (:func:`stylejax.data.phantom.mammogram`,
alternating CC and MLO views, seed ``data_seed + i``) and, when vendor styles
are used, the first ``num_vendor_raw`` of them pre-styled with every black-box
training style (:data:`stylejax.pipeline.blackbox.TRAIN_STYLES`, plus
``vendor_random_styles`` random ones; numpy, not differentiable, so it runs once
on the host). LAP styling, crops and flips
happen later on the accelerator (:mod:`stylejax.train.pairs`).

A batch is fully determined by ``(seed, step)``, so a resumed run sees exactly
the batches it would have seen, and every process of a multi-host run draws
the same global batch and keeps only its own rows.

Configs with ``stream_pool`` keep these pools in files on disk instead
(:class:`stylejax.train.simsiam_stream.StreamSource`).

Two ways to a batch of images: :meth:`PhantomSource.local_batch` gathers the rows
on the host (168 MB per ``default`` batch), while on GPUs and TPUs the trainer copies
the pools to the accelerators once (:meth:`PhantomSource.pools`) and sends only the
rows' indices (:meth:`PhantomSource.local_indices`, a few KB); :func:`gather_batch`
then builds the same batch inside a jitted function.
"""

from __future__ import annotations

import os

import numpy as np

from stylejax.train.simsiam_configs import Config


def _cache_path(cache_dir, name):
    if cache_dir is None or "://" in str(cache_dir):
        return None
    return os.path.join(cache_dir, name)


def _cached(path, build):
    """Load ``path`` if it exists, else build and (atomically) save it."""
    if path is not None and os.path.exists(path):
        return np.load(path)
    data = build()
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}.npy"
        np.save(tmp, data)
        os.replace(tmp, path)
    return data


def make_raw_pool(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Raw phantoms (CC/MLO alternating) ``[num_raw, raw_size, raw_size]`` float32
    and their tissue masks (1 where not air), same shape, uint8."""
    from stylejax.data import phantom
    size = (cfg.raw_size, cfg.raw_size)
    images = [phantom.mammogram(cfg.data_seed + i, size=size, view="cc" if i % 2 == 0 else "mlo")
              for i in range(cfg.num_raw)]
    return (np.stack([m.raw for m in images]).astype(np.float32),
            np.stack([m.labels != phantom.BACKGROUND for m in images]).astype(np.uint8))


def make_vendor_pool(raw: np.ndarray, styles) -> np.ndarray:
    """``[N, len(styles), H, W]`` float16: each raw image in each vendor style (a bank
    index or a :class:`~stylejax.pipeline.blackbox.Style`), in [0, 1].

    Runs on all host cores (numpy releases the GIL in the filters).
    """
    from concurrent.futures import ThreadPoolExecutor

    from stylejax.pipeline import blackbox
    out = np.empty((raw.shape[0], len(styles)) + raw.shape[1:], np.float16)

    def fill(ij):
        i, j = ij
        out[i, j] = blackbox.apply(raw[i], styles[j])

    jobs = [(i, j) for i in range(raw.shape[0]) for j in range(len(styles))]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, jobs))
    return out


class PhantomSource:
    """Deterministic pair batches from an in-memory phantom pool.

    ``on_device_pools`` (True here, False for the streaming subclasses) says whether
    the trainer may copy :meth:`pools` to the accelerators.

    Args:
      cfg: the run's :class:`Config`.
      cache_dir: directory for ``.npy`` caches of the pools (local paths only;
        ``None`` disables caching).
    """

    on_device_pools = True

    def __init__(self, cfg: Config, cache_dir: str | None = None):
        self.cfg = cfg
        tag = f"{cfg.data_seed}_{cfg.num_raw}_{cfg.raw_size}"
        pool = []  # built at most once, for whichever cache file is missing

        def built(k):
            pool[:] = pool or make_raw_pool(cfg)
            return pool[k]

        raw = _cached(_cache_path(cache_dir, f"raw_{tag}.npy"), lambda: built(0))
        self.tissue = _cached(_cache_path(cache_dir, f"tissue_{tag}.npy"), lambda: built(1))
        from stylejax.pipeline import vendor_random
        self.vendor_styles = tuple(vendor_random.training_styles(
            cfg.vendor_random_styles, cfg.data_seed) if cfg.vendor_fraction > 0 else ())
        self.vendor = None
        if self.vendor_styles:
            n, r = cfg.num_vendor_raw, cfg.vendor_random_styles
            name = f"vendor_{tag}_{n}.npy" if r == 0 else f"vendor_{tag}_{n}_random{r}.npy"
            self.vendor = _cached(_cache_path(cache_dir, name),
                                  lambda: make_vendor_pool(raw[:n], self.vendor_styles))
        from stylejax.train import pairs
        # LAP's style-free normalisation, once per image instead of in every step
        # (only the normalised images are kept).
        self.normalized = pairs.normalize(raw)

    def indices(self, step: int) -> dict:
        """The global batch of ``step`` as indices.

        Returns:
          dict of ``[batch_size]`` arrays: ``a``, ``b`` (pool indices; equal for
          same-content pairs), ``vendor`` (bool) and ``style`` (vendor style
          column, -1 for LAP pairs).
        """
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, int(step)])
        n = cfg.batch_size
        vendor = rng.random(n) < cfg.vendor_fraction if self.vendor is not None else np.zeros(n, bool)
        pool = np.where(vendor, cfg.num_vendor_raw, cfg.num_raw)
        a = (rng.random(n) * pool).astype(np.int64)
        # A different image: shift by 1..pool-1 so b != a without rejection sampling.
        shift = 1 + (rng.random(n) * (pool - 1)).astype(np.int64)
        different = rng.random(n) < cfg.different_content
        b = np.where(different, (a + shift) % pool, a)
        style = np.where(vendor, (rng.random(n) * max(len(self.vendor_styles), 1)).astype(np.int64), -1)
        return dict(a=a, b=b, vendor=vendor, style=style)

    def local_indices(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of :meth:`indices` (``a``, ``b``, ``style`` int32,
        ``vendor`` bool), for :func:`gather_batch` on the accelerator."""
        n = self.cfg.batch_size
        if n % process_count:
            raise ValueError(f"batch_size {n} is not divisible by {process_count} processes")
        rows = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
        return {k: (v[rows] if v.dtype == bool else v[rows].astype(np.int32))
                for k, v in self.indices(step).items()}

    def pools(self) -> dict:
        """The arrays :func:`gather_batch` reads: ``normalized`` ``[num_raw, H, W]``
        float32, ``tissue`` uint8 (same shape), ``vendor`` ``[num_vendor_raw, styles,
        H, W]`` float16 (``[1, 1, H, W]`` zeros when the run has no vendor styles)."""
        vendor = self.vendor
        if vendor is None:
            vendor = np.zeros((1, 1) + self.normalized.shape[1:], np.float16)
        return dict(normalized=self.normalized, tissue=self.tissue, vendor=vendor)

    def local_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of the global batch of ``step``.

        Returns:
          dict with ``a``, ``b`` ``[rows, raw_size, raw_size]`` float32
          (normalised raw images, :func:`stylejax.train.pairs.normalize`, or
          vendor-styled images in [0, 1] where ``prestyled``), their tissue
          masks ``tissue_a``, ``tissue_b`` (uint8, same shape) and
          ``prestyled`` ``[rows]`` bool.
        """
        n = self.cfg.batch_size
        idx = self.local_indices(step, process_index, process_count)

        def images(which):
            # Each row copied once into the batch (gathering all rows and then
            # overwriting the vendor ones copied those twice).
            out = np.empty((n // process_count,) + self.normalized.shape[1:], np.float32)
            for row, (i, vendor, style) in enumerate(zip(idx[which], idx["vendor"],
                                                         idx["style"])):
                out[row] = self.vendor[i, style] if vendor else self.normalized[i]
            return out

        return dict(a=images("a"), b=images("b"), tissue_a=self.tissue[idx["a"]],
                    tissue_b=self.tissue[idx["b"]], prestyled=idx["vendor"].copy())


def gather_batch(pools: dict, idx: dict) -> dict:
    """:meth:`PhantomSource.local_batch`'s batch from its pools and indices, in jax.

    Args:
      pools: :meth:`PhantomSource.pools` (as device arrays).
      idx: :meth:`PhantomSource.local_indices` (or the global batch's indices).
    Returns:
      dict ``a``, ``b`` float32, ``tissue_a``, ``tissue_b`` uint8 ``[rows, H, W]``
      and ``prestyled`` ``[rows]`` bool, equal to ``local_batch``'s.
    """
    import jax.numpy as jnp
    vendor = idx["vendor"]
    style = jnp.where(vendor, idx["style"], 0)

    def images(i):
        lap_rows = jnp.take(pools["normalized"], i, axis=0)
        vendor_rows = pools["vendor"][jnp.where(vendor, i, 0), style].astype(jnp.float32)
        return jnp.where(vendor[:, None, None], vendor_rows, lap_rows)

    return dict(a=images(idx["a"]), b=images(idx["b"]),
                tissue_a=jnp.take(pools["tissue"], idx["a"], axis=0),
                tissue_b=jnp.take(pools["tissue"], idx["b"], axis=0), prestyled=vendor)


def prepare_raw(raw, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A raw X-ray image of any size -> ``(raw [size, size] float32, tissue uint8)``:
    the central square, resized (area average) to ``size``; tissue is where the
    image is below 90 % of its 99th-percentile signal (air passes the most X-rays,
    so it is the brightest raw signal)."""
    from PIL import Image
    raw = np.asarray(raw, np.float32)
    if raw.ndim != 2 or min(raw.shape) < 8 or not np.all(np.isfinite(raw)):
        raise ValueError(f"raw image must be a finite 2-D array of at least 8x8 "
                         f"(got shape {raw.shape})")
    h, w = raw.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = raw[top:top + side, left:left + side]
    if side != size:
        square = np.asarray(Image.fromarray(square, mode="F").resize(
            (size, size), Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR),
            np.float32)
    square = np.maximum(square, 1e-6)
    tissue = (square < 0.9 * np.percentile(square, 99)).astype(np.uint8)
    return square, tissue


class FolderSource(PhantomSource):
    """Pair batches streamed from a raw-image data set instead of an in-memory pool.

    ``data`` is a folder of raw DICOM/TIFF/PNG/NPY files or a data set name
    (:func:`stylejax.data.datasets.load_raw_dataset`: built once as an array_record
    TFDS data set, then read with random access). Examples are read through a Grain
    ``MapDataset`` (:func:`prepare_raw` as its map) only for the rows of this
    process's share of each step's batch, so host memory does not grow with the
    data set. Pairs are drawn as in :class:`PhantomSource` (``num_raw`` = the data
    set's size) from ``(seed, step)``, so the data order is a function of the step:
    a resumed run, on any number of processes, reads exactly what an uninterrupted
    run would. Vendor styles are not available (``vendor_fraction`` must be 0).

    Args:
      cfg: the run's :class:`Config` (``raw_size`` is the side images are resized to).
      data: folder or data set name.
      data_dir: where TFDS keeps built data sets (default: TFDS's).
    """

    def __init__(self, cfg: Config, data: str, data_dir: str | None = None):
        import dataclasses

        import grain

        from stylejax.data import datasets
        if cfg.vendor_fraction > 0:
            raise ValueError(f"--data {data}: vendor_fraction must be 0 with a raw-image "
                             f"data set (got {cfg.vendor_fraction})")
        source = datasets.load_raw_dataset(data, "train", data_dir=data_dir)
        if len(source) < 2:
            raise ValueError(f"--data {data}: need at least 2 training images "
                             f"(found {len(source)})")
        size = cfg.raw_size
        self.data = data
        self.dataset = grain.MapDataset.source(source).map(
            lambda example: prepare_raw(example["raw"], size))
        self.cfg = dataclasses.replace(cfg, num_raw=len(source))
        self.vendor_styles, self.vendor = (), None

    on_device_pools = False

    def __len__(self) -> int:
        return len(self.dataset)

    def pools(self) -> dict:
        raise ValueError("a FolderSource streams its images; it has no in-memory pools")

    def local_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of ``step``'s batch, as :meth:`PhantomSource.local_batch`."""
        from stylejax.train import pairs
        idx = self.local_indices(step, process_index, process_count)
        wanted = sorted(set(idx["a"].tolist()) | set(idx["b"].tolist()))
        read = {i: self.dataset[i] for i in wanted}
        stack = np.stack([read[i][0] for i in wanted])
        rows = 2 * len(idx["a"])  # one shape per run: a single compilation
        stack = np.concatenate([stack, np.repeat(stack[-1:], rows - len(stack), axis=0)])
        normalized = dict(zip(wanted, pairs.normalize(stack)[:len(wanted)]))
        return dict(a=np.stack([normalized[i] for i in idx["a"]]),
                    b=np.stack([normalized[i] for i in idx["b"]]),
                    tissue_a=np.stack([read[i][1] for i in idx["a"]]),
                    tissue_b=np.stack([read[i][1] for i in idx["b"]]),
                    prestyled=idx["vendor"].copy())
