"""Typed configurations of StyleX (SimSiam) training runs (task ``simsiam``).

A config is a frozen :class:`Config` dataclass extending the loop's
:class:`~stylejax.train.config.TrainConfig`. Named variants are the functions below
(``smoke``, ``cpu``, ``default``, ``vendor``, ``paper``, ``pod``); a config file is
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
from typing import ClassVar

from stylejax.train.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
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
      stream_pool: keep the phantom pools in files on local disk and read each
        step's rows (:class:`~stylejax.train.simsiam_stream.StreamSource`; host
        memory bounded by the batch) instead of holding them in memory and on
        the accelerators. Same batches either way, so a run may switch on resume.
    Optimisation (SimSiam recipe):
      base_lr: learning rate per 256 pairs (lr = base_lr * batch_size / 256), cosine decay.
      momentum, weight_decay: SGD settings.
      fix_pred_lr: keep the predictor's learning rate constant.
    Run (:class:`~stylejax.train.config.TrainConfig`): name, steps, batch_size
      (global batch of pairs), seed (initialisation and augmentation), rng_impl,
      log_every, plot_every, checkpoint_every, keep_checkpoints, distributed.
    """

    #: Fields that may differ between a run's saved config and the config used to
    #: resume it (everything else must match, or resuming raises).
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = TrainConfig.RESUMABLE_CHANGES + (
        "stream_pool",)

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
    stream_pool: bool = False
    base_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    fix_pred_lr: bool = True

    @property
    def lr(self) -> float:
        """Peak learning rate, ``base_lr * batch_size / 256``."""
        return self.base_lr * self.batch_size / 256

    def validate(self) -> "Config":
        """Raise ValueError naming the first inconsistent setting."""
        super().validate()
        need = self.need
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
        need(self.base_lr > 0, "base_lr must be > 0")
        return self


def smoke() -> Config:
    """Seconds on a CPU; used by the tests. A width-8 ResNet-18 on 32 px views.

    Command: ``stylejax train simsiam --config smoke --workdir /tmp/stylex_smoke``
    Expected: 6 steps, a finite loss near -0 .. -1, a checkpoint at step 6,
    ``metrics.jsonl`` and ``loss.png`` in the workdir.
    """
    return Config(name="smoke", width=8, dim=64, pred_dim=16, raw_size=64, num_raw=8,
                  image_size=32, crop_scale=(0.5, 0.5), embed_size=64, batch_size=8, steps=6,
                  base_lr=0.05, log_every=1, plot_every=3, checkpoint_every=3,
                  data_seed=2_000_000)


def default() -> Config:
    """The shipped model (``stylejax/assets/stylex_default``): one GPU, minutes
    (far too slow on a CPU: use :func:`cpu` there).

    ResNet-18 at half width (32; 2.8 M backbone parameters) + the 2048-d
    projector, on 128 px exact crops of 256 px phantoms (no resampling, so the
    finest LAP band that ``h`` controls is seen as evaluation will show it;
    a 128 px view also holds the coarse bands that ``l`` scales, which the
    64 px views of :func:`cpu` do not), placed on breast tissue
    (``min_tissue``), every pair of two different phantoms, 1024 phantoms of
    content, LAP training styles plus 25 % black-box vendor training styles
    (96 phantoms in every training style), batch 256, 4000 steps (1.02 M
    pairs), base lr 0.25.

    Command: ``stylejax train simsiam --config default --workdir /tmp/stylex_default
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

    The encoder has to learn many non-linear styles to place unseen vendor
    styles well (see ``docs/stylex.md``). Here half the pairs are vendor pairs,
    drawn from the 28 bank styles plus 512 random ones
    (:func:`stylejax.pipeline.vendor_random.random_style`) on 64 phantoms: a
    4.5 GB float16 pool, built once with all host cores and cached in the
    workdir, then kept on the accelerator, where each step's batch is gathered.

    Command: ``stylejax train simsiam --config vendor --workdir /tmp/stylex_vendor
    --export /tmp/stylex_vendor_export``, then ``stylejax evaluate-stylex --model
    /tmp/stylex_vendor_export --out /tmp/stylex_vendor_eval``.
    Expected: loss and ``z_std`` as in ``default``.
    """
    return dataclasses.replace(default(), name="vendor", vendor_fraction=0.5,
                               num_vendor_raw=64, vendor_random_styles=512)


def vendor_finetune() -> Config:
    """The shipped encoder fine-tuned on many vendor styles: the CPU route of issue 20.

    Starts from the shipped weights (``default``'s architecture and 128 px views of
    256 px phantoms, so the exported model embeds as the shipped one does), with
    three quarters of the pairs in the 28 bank + 512 random vendor styles on 32
    phantoms (a 2.3 GB float16 pool, about 10 minutes to build on 2 busy cores,
    cached in the workdir) and the rest in LAP training styles (what the shipped
    model does well, kept in the batches). Batch 64, base lr 0.1 (lr 0.025, a tenth
    of ``default``'s peak), 3000 steps (192 k pairs), checkpoints every 50 steps.

    The run starts from a step-0 checkpoint holding the shipped encoder, written by
    ``experiments/stylex_finetune_init.py`` (a fresh workdir would train from scratch).

    Command::

        python experiments/stylex_finetune_init.py --config vendor-finetune \
            --workdir /work/runs/stylex_ft --predictor-steps 50
        nohup nice -n 10 stylejax train simsiam --config vendor-finetune \
            --workdir /work/runs/stylex_ft > /work/runs/stylex_ft.log 2>&1 &

    (re-running the second command resumes; ``--export DIR`` at the end fits the
    style projection and saves the model). Expected: see ``docs/stylex.md``
    ("Fine-tuning on vendor styles on the CPU").
    """
    return dataclasses.replace(default(), name="vendor-finetune", num_raw=512,
                               vendor_fraction=0.75, num_vendor_raw=32,
                               vendor_random_styles=512, batch_size=64, steps=3000,
                               base_lr=0.1, log_every=5, plot_every=50, checkpoint_every=50,
                               keep_checkpoints=3)


def cpu() -> Config:
    """A StyleX model small enough to train on a 2-core CPU.

    ResNet-18 at quarter width (16; 0.7 M backbone parameters) + the 2048-d
    projector, on 64 px exact crops of 256 px phantoms placed on breast tissue,
    every pair of two different phantoms, LAP training styles plus 25 %
    black-box vendor training styles, batch 64, 3000 steps (192 k pairs), base
    lr 0.25 (raised over the SimSiam recipe's 0.05 for the short schedule).

    Traded for the CPU budget: view size and width; a 64 px view holds too little
    of the coarse bands ``l`` scales (see ``docs/stylex.md`` for its evaluation).

    Command: ``stylejax train simsiam --config cpu --workdir /tmp/stylex_cpu
    --export /tmp/stylex_cpu_export``
    Expected: the loss falls from about -0.2 to about -0.8 while ``z_std`` stays
    near 0.022.
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
    The pools (512 normalised phantoms, 5.2 GB float32; their tissue masks,
    1.3 GB uint8; 32 of them in the 28 vendor styles, 4.6 GB float16) are
    streamed (``stream_pool``): built once, one phantom at a time, into files in
    the workdir's ``cache`` (``~/.cache/stylejax/simsiam_pools`` for a ``gs://``
    workdir), from which each step reads its rows; host memory holds about one
    batch (see ``docs/large_runs.md``), whatever ``num_raw`` is.

    Command: ``stylejax train simsiam --config paper --workdir gs://BUCKET/stylex_paper``
    (or a local directory) on one accelerator host.
    Expected: loss below -0.9 after a few thousand steps.
    """
    return Config(name="paper", width=64, raw_size=1600, num_raw=512, image_size=400,
                  crop_scale=(0.5, 0.5), embed_size=800, different_content=0.75,
                  vendor_fraction=0.25, num_vendor_raw=32, batch_size=200, steps=20000,
                  base_lr=0.05, log_every=20, plot_every=500, checkpoint_every=1000,
                  keep_checkpoints=3, stream_pool=True)


def pod() -> Config:
    """Multi-host TPU pod variant of ``paper`` (data parallel, batch 1024).

    Command: the same on every host of the slice, e.g. for a v4-32::

        gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \\
          "stylejax train simsiam --config pod --workdir gs://BUCKET/stylex_pod"

    ``distributed=True`` makes every process call ``jax.distributed.initialize()``;
    each process builds only its rows of the global batch and only process 0
    writes metrics and plots (checkpoints are written collectively by orbax).
    Expected: the ``paper`` result.
    """
    return dataclasses.replace(paper(), name="pod", batch_size=1024, steps=8000,
                               checkpoint_every=500, distributed=True)


NAMED = {"smoke": smoke, "cpu": cpu, "default": default, "vendor": vendor,
         "vendor-finetune": vendor_finetune, "paper": paper, "pod": pod}


def get(name_or_file: str) -> Config:
    """A named config (``smoke``, ``cpu``, ``default``, ``vendor``, ``paper``, ``pod``) or a
    Python file defining ``get_config()`` (see :func:`stylejax.train.config.load_config`).

    Raises:
      ValueError: unknown name, or a file without ``get_config`` returning a Config.
      FileNotFoundError: a path that does not exist.
    """
    import types

    from stylejax.train.config import load_config
    return load_config(types.SimpleNamespace(name="simsiam", configs=NAMED), name_or_file)
