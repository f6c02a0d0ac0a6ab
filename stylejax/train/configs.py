"""Typed configurations of StyleX (SimSiam) training runs.

A config is a frozen :class:`Config` dataclass. Named variants are the
functions below (``smoke``, ``cpu``, ``default``, ``paper``, ``pod``); a config file is
any Python file defining ``get_config() -> Config`` (start from one of these
with ``dataclasses.replace``). Each variant's docstring gives the command that
runs it and the result to expect.

Geometry of the data (all sizes in pixels)::

    raw phantom [raw_size, raw_size] --LAP or vendor style--> styled image
      --square crop, side = crop_scale * raw_size--> resampled to image_size
      --> encoder (training view)

    StyleX.embed(images [N, H, W]): resized so that min(H, W) == embed_size,
    cut into tiles of image_size (the training view size), the tiles' unit-length
    encoder outputs averaged.

Keep ``embed_size = raw_size * image_size / crop side`` so that embedded
images have the pixel scale of the training views.
With ``crop_scale == (image_size / raw_size,) * 2`` the views are exact crops
(no resampling) and ``embed_size = raw_size`` shows the encoder images at
the pixel scale it was trained on: the finest LAP bands (the ``h`` parameter)
stay intact. The paper instead crops 800 px and halves them to 400 px.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

#: Fields that may differ between a run's saved config and the config used to
#: resume it (everything else must match, or resuming raises).
RESUMABLE_CHANGES = ("name", "steps", "log_every", "plot_every", "checkpoint_every",
                     "keep_checkpoints", "distributed")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a StyleX training run.

    Model:
      width: ResNet-18 base width (64 = the real ResNet-18).
      dim, pred_dim: projector output (embedding) and predictor bottleneck widths.
      compute_dtype: "float32" or "bfloat16" for activations (parameters stay float32).
    Data:
      raw_size: side of the synthetic raw phantoms.
      num_raw: number of raw phantoms (training content).
      image_size: side of a training view (encoder input).
      crop_scale: (low, high) crop side as a fraction of ``raw_size``.
      embed_size: ``StyleX.embed`` resizes images so their shorter side is this.
      min_tissue: crops are placed where at least this fraction of them is
        breast tissue (0: anywhere, air included).
      different_content: probability that a pair's views come from two
        different raw images (otherwise two crops of one image).
      vendor_fraction: fraction of pairs styled with a black-box vendor training
        style (precomputed on the host) instead of LAP.
      num_vendor_raw: phantoms (the first of the pool) styled with every vendor
        training style.
      vendor_random_styles: random vendor styles
        (:func:`stylejax.pipeline.vendor_random.random_style`, seeds ``data_seed +
        k``) added to the 28 bank training styles, so the metric meets many
        non-linear styles instead of 28 (host memory: ``num_vendor_raw x styles x
        raw_size^2`` float16).
      data_seed: phantom ``i`` uses seed ``data_seed + i`` (kept far from the
        small seeds evaluation uses, so evaluation content is unseen).
    Optimisation (SimSiam recipe):
      batch_size: global batch of pairs.
      steps: training steps.
      base_lr: learning rate per 256 pairs (lr = base_lr * batch_size / 256), cosine decay.
      momentum, weight_decay: SGD settings.
      fix_pred_lr: keep the predictor's learning rate constant.
    Run:
      seed: initialisation and augmentation seed.
      log_every, plot_every, checkpoint_every, keep_checkpoints: bookkeeping intervals.
      distributed: call ``jax.distributed.initialize()`` (multi-host).
    """

    name: str = "custom"
    width: int = 64
    dim: int = 2048
    pred_dim: int = 512
    compute_dtype: str = "float32"
    raw_size: int = 256
    num_raw: int = 512
    image_size: int = 128
    crop_scale: tuple[float, float] = (0.5, 0.5)
    embed_size: int = 256
    min_tissue: float = 0.8
    different_content: float = 0.75
    vendor_fraction: float = 0.0
    num_vendor_raw: int = 0
    vendor_random_styles: int = 0
    data_seed: int = 1_000_000
    batch_size: int = 64
    steps: int = 1000
    base_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    fix_pred_lr: bool = True
    seed: int = 0
    log_every: int = 10
    plot_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    distributed: bool = False

    @property
    def lr(self) -> float:
        """Peak learning rate, ``base_lr * batch_size / 256``."""
        return self.base_lr * self.batch_size / 256

    def validate(self) -> "Config":
        """Raise ValueError naming the first inconsistent setting."""
        def need(ok, msg):
            if not ok:
                raise ValueError(f"config {self.name!r}: {msg}")
        need(self.width >= 1 and self.dim >= 1 and self.pred_dim >= 1, "widths must be >= 1")
        need(self.compute_dtype in ("float32", "bfloat16"), "compute_dtype must be float32 or bfloat16")
        need(self.image_size >= 32, f"image_size must be >= 32 (got {self.image_size})")
        need(self.embed_size >= 32, f"embed_size must be >= 32 (got {self.embed_size})")
        need(self.image_size <= self.embed_size,
             f"image_size ({self.image_size}) must be <= embed_size ({self.embed_size}): "
             f"StyleX.embed cuts embedded images into tiles of image_size")
        need(self.raw_size >= 32, f"raw_size must be >= 32 (got {self.raw_size})")
        lo, hi = self.crop_scale
        need(0 < lo <= hi <= 1, f"crop_scale must satisfy 0 < low <= high <= 1 (got {self.crop_scale})")
        need(self.num_raw >= 2, "num_raw must be >= 2")
        need(0.0 <= self.min_tissue <= 1.0, "min_tissue must lie in [0, 1]")
        need(0.0 <= self.different_content <= 1.0, "different_content must lie in [0, 1]")
        need(0.0 <= self.vendor_fraction <= 1.0, "vendor_fraction must lie in [0, 1]")
        need(self.vendor_fraction == 0 or 2 <= self.num_vendor_raw <= self.num_raw,
             "vendor_fraction > 0 needs 2 <= num_vendor_raw <= num_raw")
        need(self.vendor_random_styles >= 0, "vendor_random_styles must be >= 0")
        need(self.vendor_random_styles == 0 or self.vendor_fraction > 0,
             "vendor_random_styles needs vendor_fraction > 0")
        need(self.batch_size >= 1 and self.steps >= 1, "batch_size and steps must be >= 1")
        need(self.base_lr > 0, "base_lr must be > 0")
        need(min(self.log_every, self.plot_every, self.checkpoint_every, self.keep_checkpoints) >= 1,
             "log/plot/checkpoint intervals and keep_checkpoints must be >= 1")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        values = dict(values)
        if "crop_scale" in values:
            values["crop_scale"] = tuple(float(v) for v in values["crop_scale"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def smoke() -> Config:
    """Seconds on a CPU; used by the tests. A width-8 ResNet-18 on 32 px views.

    Command: ``stylejax train-stylex --config smoke --workdir /tmp/stylex_smoke``
    Expected: 6 steps, a finite loss near -0 .. -1, a checkpoint at step 6,
    ``metrics.jsonl`` and ``loss.png`` in the workdir.
    """
    return Config(name="smoke", width=8, dim=64, pred_dim=16, raw_size=64, num_raw=8,
                  image_size=32, crop_scale=(0.5, 0.5), embed_size=64, batch_size=8, steps=6,
                  base_lr=0.05, log_every=1, plot_every=3, checkpoint_every=3,
                  data_seed=2_000_000)


def default() -> Config:
    """The shipped model (``stylejax/assets/stylex_default``): one GPU, minutes.

    ResNet-18 at half width (32; 2.8 M backbone parameters) + the 2048-d
    projector, on 128 px exact crops of 256 px phantoms (no resampling, so the
    finest LAP band that ``h`` controls is seen as evaluation will show it;
    a 128 px view also holds the coarse bands that ``l`` scales, which the
    64 px views of :func:`cpu` do not), placed on breast tissue
    (``min_tissue``), every pair of two different phantoms, 1024 phantoms of
    content, LAP training styles plus 25 % black-box vendor training styles
    (96 phantoms in every training style), batch 256, 4000 steps (1.02 M
    pairs), base lr 0.25.

    Trained on one H100 in 7.5 minutes (6 min 40 s of steps at ~2600
    pairs/s, after ~25 s building the phantom pool and ~25 s compiling).
    On a 2-core CPU the same config runs for more than a day (estimate
    from the per-pair cost of the measured ``cpu`` config scaled by pixels
    and width): use :func:`cpu` there.

    Command: ``stylejax train-stylex --config default --workdir /tmp/stylex_default
    --export stylejax/assets/stylex_default``
    Expected: the loss falls from about 0 to about -0.89 while ``z_std`` stays
    near 1/sqrt(2048) = 0.022 (no collapse).
    """
    return Config(name="default", width=32, raw_size=256, num_raw=1024, image_size=128,
                  crop_scale=(0.5, 0.5), embed_size=256, min_tissue=0.8,
                  different_content=1.0, vendor_fraction=0.25, num_vendor_raw=96,
                  batch_size=256, steps=4000, base_lr=0.25, log_every=10, plot_every=250,
                  checkpoint_every=250, keep_checkpoints=2)


def vendor() -> Config:
    """``default`` with many vendor styles: the run the held-out vendor target needs.

    The shipped model saw 28 non-linear vendor styles and clusters 4 unseen ones
    poorly (held-out silhouette 0.08); fitting its projection on 500 random
    styles only reached 0.15 (``experiments/random_vendor_styles.py``), so the
    encoder itself has to learn from many. Here half the pairs are vendor pairs,
    drawn from the 28 bank styles plus 512 random ones
    (:func:`stylejax.pipeline.vendor_random.random_style`) on 64 phantoms: a
    4.5 GB float16 pool, built once with all host cores and cached in the
    workdir, then kept on the accelerator, where each step's batch is gathered.

    Not trained yet (no GPU was lent when it was written); two steps ran end to
    end on the 2-core CPU (``--steps 2``: 3.5 minutes, most of it building the
    pool; loss and ``z_std`` as at the start of ``default``). Expect about the
    ``default`` run's time on one H100 plus a minute or two building the pool
    on its host's cores.

    Command: ``stylejax train-stylex --config vendor --workdir /tmp/stylex_vendor
    --export /tmp/stylex_vendor_export``, then ``stylejax evaluate-stylex --model
    /tmp/stylex_vendor_export --out /tmp/stylex_vendor_eval``.
    """
    return dataclasses.replace(default(), name="vendor", vendor_fraction=0.5,
                               num_vendor_raw=64, vendor_random_styles=512)


def cpu() -> Config:
    """A StyleX model trained on a 2-core CPU in about 25 minutes (the shipped
    model before one was trained on a GPU).

    ResNet-18 at quarter width (16; 0.7 M backbone parameters) + the 2048-d
    projector, on 64 px exact crops of 256 px phantoms placed on breast tissue,
    every pair of two different phantoms, LAP training styles plus 25 %
    black-box vendor training styles, batch 64, 3000 steps (192 k pairs), base
    lr 0.25 (raised over the SimSiam recipe's 0.05 for the short schedule).

    Traded for the CPU budget: view size and width. It orders the w and h
    sweeps (|Spearman| 0.97 / 0.98 in ``evaluate-stylex``) but not l (0.76):
    a 64 px view holds too little of the coarse bands l scales. What mattered
    most (600-step pilots, ``experiments/stylex_pilots/``): placing crops on
    tissue took the h sweep's |Spearman| from 0.10 to 0.75 and LAP-x retrieval
    from 0.56 to 1.0; about half of a phantom is air, and an air crop paired
    with a tissue crop shares no visible style.

    Command: ``stylejax train-stylex --config cpu --workdir /tmp/stylex_cpu
    --export /tmp/stylex_cpu_export``
    Expected: about 25 minutes on 2 CPU cores (133 pairs/s,
    ``experiments/benchmarks/trainer_step.py --config cpu``); the loss falls
    from about -0.2 to about -0.8 while ``z_std`` stays near 0.022.
    """
    return Config(name="cpu", width=16, raw_size=256, num_raw=384, image_size=64,
                  crop_scale=(0.25, 0.25), embed_size=256, min_tissue=0.8,
                  different_content=1.0, vendor_fraction=0.25, num_vendor_raw=48,
                  batch_size=64, steps=3000, base_lr=0.25, log_every=10, plot_every=100,
                  checkpoint_every=100, keep_checkpoints=2)


def paper() -> Config:
    """The paper's setting, for a GPU/TPU: ResNet-18, batch 200, 800 px crops resized to 400 px.

    Phantoms are 1600 px; views are 800 px crops halved to 400 px, and
    ``embed`` resizes images to an 800 px shorter side (whole 1600 px images
    halved: the pixel scale the encoder was trained at).
    SimSiam recipe unchanged (base lr 0.05, cosine, fixed predictor lr).
    The in-memory pool holds 512 normalised phantoms (5.2 GB float32), their
    tissue masks (1.3 GB uint8) and 32 of them in the 28 vendor styles (4.6 GB
    float16), built once and cached in the workdir;
    more content needs a streaming source passed to ``trainer.train(source=...)``.

    Command: ``stylejax train-stylex --config paper --workdir gs://BUCKET/stylex_paper``
    (or a local directory) on one accelerator host.
    Expected: loss below -0.9 after a few thousand steps; about 15-20 pairs/s per
    V100-class GPU.
    """
    return Config(name="paper", width=64, raw_size=1600, num_raw=512, image_size=400,
                  crop_scale=(0.5, 0.5), embed_size=800, different_content=0.75,
                  vendor_fraction=0.25, num_vendor_raw=32, batch_size=200, steps=20000,
                  base_lr=0.05, log_every=20, plot_every=500, checkpoint_every=1000,
                  keep_checkpoints=3)


def pod() -> Config:
    """Multi-host TPU pod variant of ``paper`` (data parallel, batch 1024).

    Command: the same on every host of the slice, e.g. for a v4-32::

        gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \\
          "stylejax train-stylex --config pod --workdir gs://BUCKET/stylex_pod"

    ``distributed=True`` makes every process call ``jax.distributed.initialize()``;
    each process builds only its rows of the global batch and only process 0
    writes metrics and plots (checkpoints are written collectively by orbax).
    Expected: the ``paper`` result in about a fifth of the steps' wall time.
    """
    return dataclasses.replace(paper(), name="pod", batch_size=1024, steps=8000,
                               checkpoint_every=500, distributed=True)


NAMED = {"smoke": smoke, "cpu": cpu, "default": default, "vendor": vendor, "paper": paper,
         "pod": pod}


def get(name_or_file: str) -> Config:
    """A named config (``smoke``, ``cpu``, ``default``, ``vendor``, ``paper``, ``pod``) or a
    Python file defining ``get_config()``.

    Raises:
      ValueError: unknown name, or a file without ``get_config`` returning a Config.
      FileNotFoundError: a path that does not exist.
    """
    if name_or_file in NAMED:
        return NAMED[name_or_file]().validate()
    if not name_or_file.endswith(".py"):
        raise ValueError(f"unknown config {name_or_file!r}: use one of {', '.join(NAMED)} "
                         "or a .py file defining get_config()")
    if not os.path.isfile(name_or_file):
        raise FileNotFoundError(f"config file not found: {name_or_file}")
    spec = importlib.util.spec_from_file_location("stylex_user_config", name_or_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{name_or_file} does not define get_config()")
    cfg = module.get_config()
    if not isinstance(cfg, Config):
        raise ValueError(f"{name_or_file}: get_config() must return a stylejax.train.configs.Config "
                         f"(got {type(cfg).__name__})")
    return cfg.validate()
