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
stay as trained.

This module is the linear algebra (:func:`fit_lda`); fitting a model's projection on
its training styles and phantoms is :func:`stylejax.train.projection.fit`.
"""

from __future__ import annotations

import numpy as np

#: Defaults of the shipped model's projection (see ``docs/stylex.md``).
DIMS = 64
SHRINKAGE = 0.1


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
