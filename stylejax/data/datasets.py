"""TFDS data sets of raw X-ray images, stored as ``array_record`` and read without TensorFlow.

Two builders:

* ``SyntheticMammograms`` (``"synthetic_mammograms"``): raw mammograms made locally
  by ``stylejax.data.phantom.mammogram``; nothing is downloaded. Configs ``smoke``
  (64x64), ``default`` (512x512) and ``paper`` (2048x1664, the StyleX paper's split
  sizes). Features: ``raw`` float32 [H, W], ``labels`` int32 [H, W], ``view`` (text,
  "cc" or "mlo", alternating with the seed) and ``seed`` (int64). Each example is
  exactly ``mammogram(seed, size=(H, W), view=view)``; the splits use disjoint seed
  ranges (``SPLIT_SEEDS``).
* ``RawXrayFolder`` (``"raw_xray_folder"``): the user's own raw X-ray files (DICOM,
  PNG, TIFF, NPY; e.g. MBTST "for processing" mammograms) in a folder passed as the
  manual directory. Files are read with ``stylejax.data.io.read_image`` (native raw
  units). Sub-folders named ``train``/``validation``/``test`` become those splits;
  otherwise every file goes to ``train``. Features: ``raw`` float32 [H, W],
  ``filename`` (path relative to the folder), ``for_processing`` (bool) and
  ``pixel_spacing`` float32 [2] in mm (NaN when the file does not say).

Without TensorFlow: with tensorflow-datasets 4.9.10, ``GeneratorBasedBuilder.
download_and_prepare(file_format="array_record")`` and ``as_data_source()`` work
with TensorFlow absent, provided the builder builds its ``DatasetInfo`` directly
(``dataset_info_from_configs`` looks for metadata files next to the module) and
2-D tensors of unknown shape are ``zlib``-encoded. One more workaround: for a
builder defined inside an installed package, tfds 4.9.10's ``code_path`` touches the
``importlib_resources`` back-port, which it only declares for Python < 3.9; the
builders here answer ``code_path`` themselves (``_PackageBuilder``), so that package
is not needed. ``load_raw_dataset`` also turns off the GCS look-up, so nothing
touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from stylejax.data import io

log = logging.getLogger(__name__)

SPLIT_SEEDS = {"train": 0, "validation": 100_000_000, "test": 200_000_000}
"""First phantom seed of each split; split ``s`` uses seeds ``SPLIT_SEEDS[s] + i``."""

VIEWS = ("cc", "mlo")
"""Synthetic view of seed ``s``: ``VIEWS[s % 2]``."""

SPLIT_DIRS = ("train", "validation", "test")


class _PackageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the builders here: answers ``code_path`` without ``importlib_resources``."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    """Image size and number of images per split of ``SyntheticMammograms``."""

    height: int = 512
    width: int = 512
    num_train: int = 1024
    num_validation: int = 128
    num_test: int = 128


def _phantom_arrays(m, seed: int, size: tuple[int, int]):
    """(raw, labels, view) of a phantom, checked against the requested size."""
    raw = np.asarray(m.raw, dtype=np.float32)
    labels = np.asarray(m.labels, dtype=np.int32)
    if raw.shape != tuple(size) or labels.shape != tuple(size):
        raise ValueError(f"phantom seed {seed} has shape {raw.shape}, expected {tuple(size)}")
    return raw, labels, m.view


class SyntheticMammograms(_PackageBuilder):
    """Synthetic raw mammograms with tissue labels (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name="smoke", description="64x64, 16/4/4 images: for tests and CI.",
                        height=64, width=64, num_train=16, num_validation=4, num_test=4),
        SyntheticConfig(name="default", description="512x512, 1024/128/128 images.",
                        height=512, width=512, num_train=1024, num_validation=128,
                        num_test=128),
        SyntheticConfig(name="paper", description=(
            "2048x1664 (about 0.12 mm pixels), 4558/506/2171 images: the StyleX paper's "
            "70/30 split of 7235 MBTST mammograms. About 13.6 MB per image (~100 GB); "
            "build with workers > 1."),
            height=2048, width=1664, num_train=4558, num_validation=506, num_test=2171),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *, workers: int = 1, **kwargs):
        """Args: workers: processes that make phantoms while building (1 = in process);
        other keyword arguments go to ``tfds.core.GeneratorBasedBuilder``."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer (got {workers!r})")
        self._workers = workers
        self._pool = None
        super().__init__(**kwargs)

    def download_and_prepare(self, *args, **kwargs):
        """``tfds`` ``download_and_prepare``; with ``workers > 1`` one process pool makes
        the phantoms of every split."""
        if self._workers == 1:
            return super().download_and_prepare(*args, **kwargs)
        # "spawn": forking a process that has started JAX/XLA threads is unsafe. The
        # workers import only the (numpy) phantom module.
        with ProcessPoolExecutor(self._workers, mp_context=get_context("spawn")) as pool:
            self._pool = pool
            try:
                return super().download_and_prepare(*args, **kwargs)
            finally:
                self._pool = None

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        shape = (c.height, c.width)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic raw ('for processing') mammograms from stylejax.phantom.",
            features=tfds.features.FeaturesDict({
                "raw": tfds.features.Tensor(shape=shape, dtype=np.float32, encoding="zlib"),
                "labels": tfds.features.Tensor(shape=shape, dtype=np.int32, encoding="zlib"),
                "view": tfds.features.Text(),
                "seed": tfds.features.Scalar(dtype=np.int64),
            }),
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        counts = {"train": c.num_train, "validation": c.num_validation, "test": c.num_test}
        gap = min(b - a for a, b in zip(SPLIT_SEEDS.values(), list(SPLIT_SEEDS.values())[1:]))
        for split, n in counts.items():
            if not 0 < n <= gap:
                raise ValueError(f"config {c.name!r}: {split} must have 1..{gap} images "
                                 f"(got {n})")
        return {split: self._generate_examples(SPLIT_SEEDS[split], n)
                for split, n in counts.items()}

    def _generate_examples(self, first_seed: int, count: int):
        from stylejax.data import phantom

        c = self.builder_config
        seeds = list(range(first_seed, first_seed + count))
        size = (c.height, c.width)
        views = [VIEWS[s % 2] for s in seeds]
        if self._pool is None:
            made = (phantom.mammogram(s, size=size, view=v) for s, v in zip(seeds, views))
        else:
            made = self._pool.map(phantom.mammogram, seeds, [size] * count, views, chunksize=2)
        yield from self._examples(seeds, size, made)

    @staticmethod
    def _examples(seeds, size, made):
        for seed, m in zip(seeds, made):
            raw, labels, view = _phantom_arrays(m, seed, size)
            yield seed, {"raw": raw, "labels": labels, "view": view, "seed": seed}


# ----------------------------------------------------------------------------- folder


def _candidates(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively), skipping hidden files and folders."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def _describe_skipped(skipped: list[tuple[str, str]], limit: int = 20) -> str:
    lines = [f"  {name}: {why}" for name, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)


class RawXrayFolder(_PackageBuilder):
    """The user's raw X-ray files from a manual directory (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put raw X-ray images (DICOM, PNG, TIFF or NPY; e.g. MBTST 'for processing' "
        "mammograms) in a folder, optionally in sub-folders train/validation/test, and "
        "pass it as tfds.download.DownloadConfig(manual_dir=FOLDER) or use "
        "stylejax.data.datasets.load_raw_dataset(FOLDER).")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Raw X-ray images from a local folder, read with stylejax.io.",
            features=tfds.features.FeaturesDict({
                "raw": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                            encoding="zlib"),
                "filename": tfds.features.Text(),
                "for_processing": tfds.features.Scalar(dtype=np.bool_),
                "pixel_spacing": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            }),
        )

    def _split_generators(self, dl_manager):
        try:
            folder = Path(dl_manager.manual_dir)
        except AssertionError as e:  # tfds reports a missing/empty manual_dir this way
            raise ValueError(f"raw X-ray folder is missing or empty: {e}") from e
        subdirs = [d for d in SPLIT_DIRS if (folder / d).is_dir()]
        if subdirs:
            return {d: self._generate_examples(folder, folder / d) for d in subdirs}
        return {"train": self._generate_examples(folder, folder)}

    def _generate_examples(self, root: Path, folder: Path):
        skipped: list[tuple[str, str]] = []
        yielded = 0
        for path in _candidates(folder):
            name = path.relative_to(root).as_posix()
            try:
                raw, info = io.read_image_with_info(path)
            except (ValueError, OSError) as e:
                skipped.append((name, str(e).replace(f"{path}: ", "")))
                continue
            spacing = info.pixel_spacing or (np.nan, np.nan)
            yielded += 1
            yield name, {"raw": raw, "filename": name, "for_processing": info.for_processing,
                         "pixel_spacing": np.asarray(spacing, np.float32)}
        if skipped:
            log.warning("skipped %d file(s) in %s:\n%s", len(skipped), folder,
                        _describe_skipped(skipped))
        if not yielded:
            detail = (f"; skipped:\n{_describe_skipped(skipped)}" if skipped
                      else " (it has no files)")
            raise ValueError(f"no readable image in raw X-ray folder {folder}{detail}")


# ----------------------------------------------------------------------------- loading

BUILDERS = {"synthetic_mammograms": SyntheticMammograms, "raw_xray_folder": RawXrayFolder}


def folder_config(folder) -> tfds.core.BuilderConfig:
    """A ``RawXrayFolder`` config named after ``folder`` and a fingerprint of its files.

    The fingerprint covers the absolute path and each file's relative name, size and
    modification time, so a changed folder gets a new config (and a fresh build)
    instead of silently reusing stale data.
    """
    folder = Path(os.fspath(folder)).resolve()
    digest = hashlib.sha1(str(folder).encode())
    for path in _candidates(folder):
        st = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0"
                      f"{st.st_mtime_ns}\n".encode())
    slug = re.sub(r"[^a-z0-9]+", "_", folder.name.lower()).strip("_") or "folder"
    return tfds.core.BuilderConfig(name=f"{slug[:40]}_{digest.hexdigest()[:12]}",
                                   description=f"Raw X-ray images from {folder}")


def load_raw_dataset(name_or_dir, split: str = "train", *, data_dir=None, workers: int = 1):
    """Build a raw-image data set if needed and return a random-access source.

    Args:
      name_or_dir: ``"synthetic_mammograms"`` or ``"synthetic_mammograms/<config>"``
        (configs ``smoke``, ``default``, ``paper``), or a folder of raw X-ray files.
      split: ``"train"``, ``"validation"`` or ``"test"`` (any TFDS split spec, e.g.
        ``"train[:10%]"``).
      data_dir: where TFDS stores built data sets (default: TFDS's, normally
        ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
      workers: processes making phantoms when building a synthetic data set.
    Returns:
      A sequence with ``len()`` and ``source[i]`` -> dict of numpy features (``raw`` is
      float32 [H, W]); a ``tfds`` ``ArrayRecordDataSource``.
    Raises:
      ValueError: unknown name, missing folder, folder without readable images, or an
        unknown split.
    """
    text = os.fspath(name_or_dir)
    name, _, config = text.partition("/")
    kwargs = dict(data_dir=None if data_dir is None else os.fspath(data_dir),
                  file_format="array_record")
    download = tfds.download.DownloadConfig(try_download_gcs=False)
    if name == "synthetic_mammograms":
        known = [c.name for c in SyntheticMammograms.BUILDER_CONFIGS]
        if config and config not in known:
            raise ValueError(f"unknown synthetic_mammograms config {config!r} "
                             f"(configs: {', '.join(known)})")
        builder = SyntheticMammograms(config=config or None, workers=workers, **kwargs)
    elif name in BUILDERS:
        raise ValueError(f"{name!r} reads a folder: pass the folder itself to load_raw_dataset")
    elif Path(text).is_dir():
        builder = RawXrayFolder(config=folder_config(text), **kwargs)
        download = tfds.download.DownloadConfig(try_download_gcs=False,
                                                manual_dir=str(Path(text).resolve()))
    elif Path(text).exists():
        raise ValueError(f"{text}: not a folder; load_raw_dataset takes a data set name or "
                         "a folder of raw X-ray files")
    else:
        raise ValueError(f"unknown data set or missing folder {text!r}; names: "
                         "synthetic_mammograms[/smoke|/default|/paper]")
    builder.download_and_prepare(download_config=download)
    available = list(builder.info.splits.keys())
    if split.split("[")[0] not in available:
        raise ValueError(f"split {split!r} not in {text!r} (splits: {', '.join(available)})")
    return builder.as_data_source(split=split)
