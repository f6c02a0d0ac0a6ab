"""Batches of random raw crops from a random-access image source, sharded across hosts.

``RandomCrops`` turns a random-access source of raw images (a TFDS
``ArrayRecordDataSource`` from ``stylejax.data.datasets.load_raw_dataset``, a list of
arrays, or an array ``[N, H, W]``) into host-local batches ``[B, Ch, Cw]`` float32:

* **Deterministic**: the image order of an epoch depends only on ``(seed, epoch)``,
  and an image's crop position only on ``(seed, epoch, image index)``, so a restarted
  job (or any host count) sees the same crops for the same images.
* **Multi-host**: every host draws the same global permutation and reads its own
  contiguous slice of it, ``N // process_count`` images, so hosts read disjoint
  images and all produce the same number of batches (the remainders are dropped).
  ``batch_size`` is per host; the global batch is ``batch_size * process_count``.
* **Small images are rejected**, not padded: a padded crop would show mirrored
  anatomy or air that the detector never saw, which changes the very image
  statistics (style) the models learn. Choose a crop no larger than the smallest
  image.
* **Background-aware cropping** (optional): raw X-ray air is the brightest signal,
  so the brighter Otsu class of ``log(raw)`` is taken as air (``foreground_mask``); up to
  ``max_tries`` positions are drawn and the first whose non-air fraction reaches
  ``min_foreground`` is used (otherwise the best one seen).

``to_global_array`` puts one host-local batch into a global ``jax.Array`` sharded
over the mesh axis ``"data"`` with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stylejax._checks import check_image


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a positive integer or a pair of them (got {value!r})")
    return _positive_int(pair[0], name), _positive_int(pair[1], name)


def foreground_mask(raw: np.ndarray) -> np.ndarray:
    """Non-air pixels of a raw X-ray image, thresholding ``log(raw)``.

    The threshold lies midway between the means of the two Otsu classes of
    ``log(raw)`` (air is the brighter class).

    Args:
      raw: ``[H, W]`` linear raw signal (air brightest).
    Returns:
      bool ``[H, W]``, True where the beam was attenuated (tissue, implants, collimation).
    """
    from skimage.filters import threshold_otsu

    logs = np.log(np.maximum(raw, np.finfo(np.float32).tiny))
    step = max(1, int(np.sqrt(logs.size / 65536)))  # ~64k samples suffice for a histogram
    sample = logs[::step, ::step]
    if sample.max() == sample.min():
        return np.ones(raw.shape, bool)
    otsu = threshold_otsu(sample)
    # Otsu's value is a histogram-bin centre that can sit at the edge of a class;
    # midway between the two class means lies in the gap between air and tissue.
    threshold = 0.5 * (sample[sample <= otsu].mean() + sample[sample > otsu].mean())
    return logs <= threshold


class RandomCrops:
    """Iterable of host-local batches ``[batch_size, Ch, Cw]`` of random raw crops.

    Args:
      source: random-access images: ``len(source)`` and ``source[i]`` giving an array
        ``[H, W]`` or a dict holding one under ``feature``.
      batch_size: crops per batch on this host.
      crop_size: ``C`` or ``(Ch, Cw)``.
      seed: integer seed of the permutation and crop positions.
      feature: the key of the image in dict items.
      process_index, process_count: this host and the number of hosts (default
        ``jax.process_index()`` / ``jax.process_count()``).
      background_aware: avoid crops that are almost all air.
      min_foreground: non-air fraction a background-aware crop should reach.
      max_tries: crop positions drawn per image when background-aware.
      prefetch: batches prepared ahead by a background thread when iterating (0: none).
    """

    def __init__(self, source, *, batch_size: int, crop_size, seed: int = 0,
                 feature: str = "raw", process_index: int | None = None,
                 process_count: int | None = None, background_aware: bool = False,
                 min_foreground: float = 0.5, max_tries: int = 8, prefetch: int = 2):
        self.source = source
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.crop_size = _pair(crop_size, "crop_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
        self.seed = int(seed)
        self.feature = feature
        self.process_count = jax.process_count() if process_count is None else process_count
        self.process_index = jax.process_index() if process_index is None else process_index
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process_index {self.process_index} is not in "
                             f"0..{self.process_count - 1}")
        if not 0 <= min_foreground <= 1:
            raise ValueError(f"min_foreground must lie in [0, 1] (got {min_foreground})")
        self.background_aware = bool(background_aware)
        self.min_foreground = float(min_foreground)
        self.max_tries = _positive_int(max_tries, "max_tries")
        self.prefetch = int(prefetch)
        self.num_images = len(source)
        self.per_host = self.num_images // self.process_count
        if self.per_host // self.batch_size == 0:
            raise ValueError(
                f"source has {self.num_images} image(s): too few for {self.process_count} "
                f"host(s) x batch_size {self.batch_size}")

    def __len__(self) -> int:
        """Batches per epoch on this host (the same on every host)."""
        return self.per_host // self.batch_size

    def host_indices(self, epoch: int) -> np.ndarray:
        """Source indices this host reads in ``epoch``, in order (``len(self) * B`` of them)."""
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_images)
        start = self.process_index * self.per_host
        return perm[start:start + len(self) * self.batch_size]

    def _image(self, item, index: int) -> np.ndarray:
        image = item[self.feature] if isinstance(item, dict) else item
        image = np.asarray(image, dtype=np.float32)
        check_image(image, f"source image {index}", min_rank=2, max_rank=2)
        ch, cw = self.crop_size
        if image.shape[0] < ch or image.shape[1] < cw:
            raise ValueError(f"source image {index} is {image.shape[0]}x{image.shape[1]}, "
                             f"smaller than the {ch}x{cw} crop (small images are rejected, "
                             "not padded: use a smaller crop_size)")
        return image

    def crop_origin(self, image: np.ndarray, index: int, epoch: int) -> tuple[int, int]:
        """Top-left corner of the crop of source image ``index`` in ``epoch``."""
        ch, cw = self.crop_size
        h, w = image.shape
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        if not self.background_aware:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        fg = foreground_mask(image)
        # Summed-area table: foreground count of any crop in O(1).
        sat = np.zeros((h + 1, w + 1), np.int64)
        sat[1:, 1:] = fg.cumsum(0).cumsum(1)
        best, best_frac = None, -1.0
        for _ in range(self.max_tries):
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            count = sat[y + ch, x + cw] - sat[y, x + cw] - sat[y + ch, x] + sat[y, x]
            frac = count / (ch * cw)
            if frac > best_frac:
                best, best_frac = (y, x), frac
            if frac >= self.min_foreground:
                break
        return best

    def _read(self, indices: np.ndarray) -> list:
        getitems = getattr(self.source, "__getitems__", None)
        if getitems is not None:
            return list(getitems([int(i) for i in indices]))
        return [self.source[int(i)] for i in indices]

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """This host's batches of ``epoch``, computed in the calling thread.

        Yields:
          float32 ``[batch_size, Ch, Cw]`` crops.
        """
        ch, cw = self.crop_size
        for chunk in self.host_indices(epoch).reshape(len(self), self.batch_size):
            batch = np.empty((self.batch_size, ch, cw), np.float32)
            for k, (index, item) in enumerate(zip(chunk, self._read(chunk))):
                image = self._image(item, int(index))
                y, x = self.crop_origin(image, int(index), epoch)
                batch[k] = image[y:y + ch, x:x + cw]
            yield batch

    def __call__(self, start_epoch: int = 0,
                 num_epochs: int | None = None) -> Iterator[np.ndarray]:
        """Batches of epochs ``start_epoch, start_epoch + 1, ...`` (forever when
        ``num_epochs`` is None), prepared ahead by a background thread."""
        def batches():
            e = start_epoch
            while num_epochs is None or e < start_epoch + num_epochs:
                yield from self.epoch(e)
                e += 1
        return prefetch(batches(), self.prefetch) if self.prefetch > 0 else batches()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self()


_END = object()


def prefetch(iterable: Iterable, size: int = 2) -> Iterator:
    """Iterate ``iterable`` in a background thread, ``size`` items ahead.

    Errors raised while producing items are re-raised in the consumer; closing or
    dropping the returned iterator stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterable:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            put((_END, e))

    def consume():
        # Started on the first next(), so an iterator that is never used leaks no thread.
        thread = threading.Thread(target=work, name="stylejax-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item, error = q.get()
                if error is not None:
                    raise error
                if item is _END:
                    return
                yield item
        finally:
            stop.set()
            thread.join()

    return consume()


def _local_shards_along(mesh: Mesh, axis: str) -> int:
    """How many distinct positions along ``axis`` this process's devices occupy."""
    names = list(mesh.axis_names)
    if axis not in names:
        raise ValueError(f"mesh has no axis {axis!r} (axes: {names})")
    me = jax.process_index()
    positions = {pos[names.index(axis)] for pos, d in np.ndenumerate(mesh.devices)
                 if d.process_index == me}
    return len(positions)


def to_global_array(batch, mesh: Mesh, axis: str = "data") -> jax.Array:
    """Assemble host-local batches into one global array sharded on ``axis``.

    Args:
      batch: this host's ``[B, ...]`` numpy batch; ``B`` must be divisible by the
        number of this host's devices along ``axis``.
      mesh: the device mesh (e.g. ``jax.make_mesh((n,), ("data",))``).
      axis: mesh axis the leading (batch) dimension is split over; other mesh axes
        hold replicas.
    Returns:
      ``jax.Array`` of shape ``[B * process_count, ...]`` with sharding
      ``NamedSharding(mesh, P(axis))``.
    """
    batch = np.asarray(batch)
    shards = _local_shards_along(mesh, axis)
    if batch.ndim == 0 or batch.shape[0] % shards:
        raise ValueError(f"host-local batch of shape {batch.shape} cannot be split over this "
                         f"host's {shards} device(s) on mesh axis {axis!r}: the batch size "
                         f"must be a multiple of {shards}")
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(axis)), batch)


def global_batches(batches: Iterable, mesh: Mesh, axis: str = "data") -> Iterator[jax.Array]:
    """``to_global_array`` applied to every host-local batch of ``batches``."""
    for batch in batches:
        yield to_global_array(batch, mesh, axis)
