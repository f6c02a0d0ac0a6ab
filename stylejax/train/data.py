"""Host-side data for StyleX training: an in-memory pool of synthetic raw phantoms.

The pool holds ``num_raw`` raw mammograms (:func:`stylejax.data.phantom.mammogram`,
alternating CC and MLO views, seed ``data_seed + i``) and, when vendor styles
are used, the first ``num_vendor_raw`` of them pre-styled with every black-box
training style (:data:`stylejax.pipeline.blackbox.TRAIN_STYLES`; numpy, not
differentiable, so it runs once on the host). LAP styling, crops and flips
happen later on the accelerator (:mod:`stylejax.data.pairs`).

A batch is fully determined by ``(seed, step)``, so a resumed run sees exactly
the batches it would have seen, and every process of a multi-host run draws
the same global batch and keeps only its own rows.
"""

from __future__ import annotations

import os

import numpy as np

from stylejax.train.configs import Config


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
    """``[N, len(styles), H, W]`` float16: each raw image in each vendor style, in [0, 1].

    Runs on all host cores (numpy releases the GIL in the filters).
    """
    from concurrent.futures import ThreadPoolExecutor

    from stylejax.pipeline import blackbox
    out = np.empty((raw.shape[0], len(styles)) + raw.shape[1:], np.float16)

    def fill(ij):
        i, j = ij
        out[i, j] = blackbox.apply(raw[i], int(styles[j]))

    jobs = [(i, j) for i in range(raw.shape[0]) for j in range(len(styles))]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, jobs))
    return out


class PhantomSource:
    """Deterministic pair batches from an in-memory phantom pool.

    Args:
      cfg: the run's :class:`Config`.
      cache_dir: directory for ``.npy`` caches of the pools (local paths only;
        ``None`` disables caching).
    """

    def __init__(self, cfg: Config, cache_dir: str | None = None):
        self.cfg = cfg
        tag = f"{cfg.data_seed}_{cfg.num_raw}_{cfg.raw_size}"
        pool = []  # built at most once, for whichever cache file is missing

        def built(k):
            pool[:] = pool or make_raw_pool(cfg)
            return pool[k]

        raw = _cached(_cache_path(cache_dir, f"raw_{tag}.npy"), lambda: built(0))
        self.tissue = _cached(_cache_path(cache_dir, f"tissue_{tag}.npy"), lambda: built(1))
        self.vendor_styles = ()
        self.vendor = None
        if cfg.vendor_fraction > 0:
            from stylejax.pipeline import blackbox
            self.vendor_styles = tuple(int(s) for s in blackbox.TRAIN_STYLES)
            n = cfg.num_vendor_raw
            self.vendor = _cached(_cache_path(cache_dir, f"vendor_{tag}_{n}.npy"),
                                  lambda: make_vendor_pool(raw[:n], self.vendor_styles))
        from stylejax.data import pairs
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

    def local_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of the global batch of ``step``.

        Returns:
          dict with ``a``, ``b`` ``[rows, raw_size, raw_size]`` float32
          (normalised raw images, :func:`stylejax.data.pairs.normalize`, or
          vendor-styled images in [0, 1] where ``prestyled``), their tissue
          masks ``tissue_a``, ``tissue_b`` (uint8, same shape) and
          ``prestyled`` ``[rows]`` bool.
        """
        n = self.cfg.batch_size
        if n % process_count:
            raise ValueError(f"batch_size {n} is not divisible by {process_count} processes")
        rows = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
        idx = {k: v[rows] for k, v in self.indices(step).items()}

        def images(which):
            # Each row copied once into the batch (gathering all rows and then
            # overwriting the vendor ones copied those twice; whole local_batch
            # 40 -> 32 ms at 25 % vendor pairs, 66 -> 48 ms at 50 %:
            # experiments/benchmarks/batch_gather.py).
            out = np.empty((n // process_count,) + self.normalized.shape[1:], np.float32)
            for row, (i, vendor, style) in enumerate(zip(idx[which], idx["vendor"],
                                                         idx["style"])):
                out[row] = self.vendor[i, style] if vendor else self.normalized[i]
            return out

        return dict(a=images("a"), b=images("b"), tissue_a=self.tissue[idx["a"]],
                    tissue_b=self.tissue[idx["b"]], prestyled=idx["vendor"].copy())
