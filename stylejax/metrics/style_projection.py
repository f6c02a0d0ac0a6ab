"""The style projection of a StyleX model: linear discriminant analysis on its embeddings.

SimSiam training makes two views of one style agree, but nothing in it makes the
2048-d embedding ignore content: some of its directions still vary with the
anatomy. After training, the embeddings of the training styles on training
phantoms show which: the *within-style* scatter (one style, many phantoms) is
content, the *between-style* scatter is style. Fisher's linear discriminant keeps
the directions where the ratio of the two is largest:

1. centre: ``z - mean`` (``mean`` over all fitting embeddings);
2. whiten by the within-style covariance, shrunk toward a multiple of the identity
   (``Sw + shrinkage * trace(Sw) / dim * I``: 2048 dimensions, a few thousand
   samples), so that content directions are scaled down;
3. keep the ``dims`` leading eigenvectors of the covariance of the whitened style
   means (the between-style scatter, each style counted once).

The result is one matrix, ``(z - mean) @ matrix``; StyleX compares projected
embeddings by their cosine as before. Nothing else changes: the encoder's weights
stay as trained. Fitting set (:func:`fitting_set`): the 216 LAP training styles
(even values), each on a random half of the phantoms, and the 28 vendor training
styles on every phantom when the model was trained with them; phantoms from the
model's own training pool (seeds ``data_seed + i``), so evaluation content stays
unseen.

Example::

    from stylejax import stylex
    from stylejax.metrics import style_projection
    raw_model = stylex.load("runs/a").without_projection()
    model = style_projection.fit(raw_model)      # about a minute on 2 CPU cores
    model.save("runs/a_projected")
"""

from __future__ import annotations

import numpy as np

#: Defaults of the shipped model's projection (chosen on the evaluation phantoms and
#: checked on a second set, see the README's StyleX section).
DIMS = 64
SHRINKAGE = 0.1
PHANTOMS = 16


def fit_lda(embeddings, styles, *, dims: int = DIMS, shrinkage: float = SHRINKAGE):
    """Fisher LDA projection of ``embeddings`` labelled by ``styles``.

    Args:
      embeddings: ``[N, D]`` finite floats.
      styles: ``[N]`` style labels (at least 2 styles, each with at least 2 samples).
      dims: number of discriminant directions kept (at most ``min(D, styles - 1)``;
        larger values are cut to that).
      shrinkage: weight of the identity in the within-style covariance, relative
        to its mean variance (> 0 keeps it invertible).
    Returns:
      ``(mean [D], matrix [D, k])`` float32 with ``k = min(dims, D, styles - 1)``.
      Projected fitting embeddings ``(z - mean) @ matrix`` have a within-style
      covariance of identity (up to the shrinkage) along the kept directions,
      ordered by decreasing between-style variance.
    Raises:
      ValueError: bad shapes, non-finite values, too few styles or samples.
    """
    z = np.asarray(embeddings, np.float64)
    labels = np.asarray(styles)
    if z.ndim != 2 or labels.shape != (z.shape[0],):
        raise ValueError(f"embeddings must be [N, D] and styles [N] "
                         f"(got {z.shape} and {labels.shape})")
    if not np.all(np.isfinite(z)):
        raise ValueError("embeddings contain NaN or inf")
    if not shrinkage > 0:
        raise ValueError(f"shrinkage must be > 0 (got {shrinkage})")
    if dims < 1:
        raise ValueError(f"dims must be >= 1 (got {dims})")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        raise ValueError(f"need at least 2 styles with at least 2 embeddings each "
                         f"(got {len(classes)} styles, smallest has {counts.min()})")
    mean = z.mean(axis=0)
    means = np.zeros((len(classes), z.shape[1]))
    np.add.at(means, inverse, z)
    means /= counts[:, None]
    within = z - means[inverse]
    sw = within.T @ within / len(z)
    sw += shrinkage * np.trace(sw) / len(sw) * np.eye(len(sw))
    values, vectors = np.linalg.eigh(sw)
    whiten = (vectors / np.sqrt(values)) @ vectors.T
    centred = (means - mean) @ whiten
    sb = centred.T @ centred / len(classes)
    k = min(dims, z.shape[1], len(classes) - 1)
    between, directions = np.linalg.eigh(sb)
    matrix = whiten @ directions[:, ::-1][:, :k]
    return mean.astype(np.float32), matrix.astype(np.float32)


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
    from stylejax import blackbox, lap
    from stylejax.data import phantom

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

    from stylejax import lap
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
