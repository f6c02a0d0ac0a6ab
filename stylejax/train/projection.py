"""Fitting a StyleX model's style projection on its training styles.

The projection itself (Fisher LDA on embeddings: within-style scatter is content,
between-style scatter is style) is :func:`stylejax.metrics.style_projection.fit_lda`.
Its fitting set (:func:`fitting_set`): the 216 LAP training styles (even values),
each on a random half of the phantoms, and the vendor training styles the model
was trained with (the 28 bank styles plus its random ones) on every phantom;
phantoms from the model's own training pool (seeds ``data_seed + i``), so
evaluation content stays unseen.

Example::

    from stylejax.train import projection, simsiam
    raw_model = simsiam.load_model("runs/a").without_projection()
    model = projection.fit(raw_model)
    model.save("runs/a_projected")
"""

from __future__ import annotations

import numpy as np

from stylejax.metrics.style_projection import DIMS, SHRINKAGE, fit_lda

#: Training phantoms in the shipped model's fitting set.
PHANTOMS = 16


def fitting_set(encoder, *, data_seed: int, raw_size: int, vendor_styles=(),
                phantoms: int = PHANTOMS, seed: int = 0, progress=None):
    """Embeddings of the training styles on training phantoms.

    Args:
      encoder: anything with ``embed(images [N, H, W]) -> [N, D]`` (a StyleX model
        without projection, or a baseline descriptor).
      data_seed, raw_size: the training pool: phantoms ``data_seed + i`` of
        ``raw_size`` px, CC and MLO views alternating (as the trainer builds them).
      vendor_styles: vendor styles to include, each on every phantom (bank indices
        or :class:`~stylejax.pipeline.blackbox.Style`; the model's own:
        :func:`model_vendor_styles`).
      phantoms: number of phantoms used.
      seed: which half of the phantoms each LAP style is applied to.
      progress: a tqdm-like object with ``update(n)`` (one per style), or None.
    Returns:
      ``(embeddings [N, D], styles [N])``: LAP styles labelled 0..215, the ``k``-th
      vendor style ``1000 + k``.
    """
    from stylejax.data import phantom
    from stylejax.pipeline import blackbox, lap

    if phantoms < 4:
        raise ValueError(f"phantoms must be >= 4 (got {phantoms})")
    raws = np.stack([phantom.mammogram(int(data_seed) + i, size=(raw_size, raw_size),
                                       view="cc" if i % 2 == 0 else "mlo").raw
                     for i in range(phantoms)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    z, labels = [], []
    for k, params in enumerate(lap.lap_grid()):
        idx = np.sort(rng.choice(phantoms, phantoms // 2, replace=False))
        images = np.asarray(lap.process(raws[idx], lap.LAPParams.from_array(params)))
        z.append(np.asarray(encoder.embed(images)))
        labels += [k] * len(idx)
        if progress is not None:
            progress.update(1)
    for k, style in enumerate(vendor_styles):
        z.append(np.asarray(encoder.embed(blackbox.apply_batch(raws, style))))
        labels += [1000 + k] * phantoms
        if progress is not None:
            progress.update(1)
    return np.concatenate(z), np.asarray(labels)


def model_vendor_styles(info: dict) -> list:
    """The vendor styles a model was trained on, from its ``info``: none, or the 28
    bank training styles plus its ``vendor_random_styles`` random ones (seeds
    ``data_seed + k``, as the trainer draws them)."""
    from stylejax.pipeline import vendor_random
    if not float(info.get("vendor_fraction", 0.0)) > 0:
        return []
    return vendor_random.training_styles(int(info.get("vendor_random_styles", 0)),
                                         int(info["data_seed"]))


def fit(model, *, dims: int = DIMS, shrinkage: float = SHRINKAGE, phantoms: int = PHANTOMS,
        progress: bool = True):
    """``model`` with a style projection fitted on its training styles (see the module doc).

    Args:
      model: a :class:`~stylejax.metrics.stylex.StyleX` whose ``info`` names its
        training data (``data_seed``, ``raw_size``, ``vendor_fraction``; every
        trained or exported model's does); a projection it has is replaced.
      dims, shrinkage: see :func:`fit_lda`.
      phantoms: training phantoms in the fitting set (see :func:`fitting_set`).
      progress: show a progress bar on stderr.
    Returns:
      A :class:`~stylejax.metrics.stylex.StyleX` sharing ``model``'s weights, its
      ``info`` extended with ``projection`` (dims, shrinkage, phantoms).
    Raises:
      ValueError: the model's info does not name its training data.
    """
    from tqdm import tqdm

    from stylejax.pipeline import lap
    info = model.info or {}
    missing = [k for k in ("data_seed", "raw_size") if k not in info]
    if missing:
        raise ValueError(f"the model's info does not name its training data ({missing}); "
                         f"a style projection is fitted on the training phantoms")
    vendor = model_vendor_styles(info)
    total = len(lap.lap_grid()) + len(vendor)
    with tqdm(total=total, desc="style projection", unit="style", disable=not progress,
              dynamic_ncols=True) as bar:
        z, labels = fitting_set(model.without_projection(), data_seed=info["data_seed"],
                                raw_size=info["raw_size"], vendor_styles=vendor, phantoms=phantoms,
                                progress=bar)
    projection = fit_lda(z, labels, dims=dims, shrinkage=shrinkage)
    info = dict(model.info, projection=dict(dims=int(projection[1].shape[1]),
                                            shrinkage=float(shrinkage), phantoms=int(phantoms)))
    return model.replace(projection=projection, info=info)
