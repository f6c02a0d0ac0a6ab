"""The combined style metric: the StyleX embedding and the style-statistics descriptor.

The shipped StyleX embedding (with its style projection) is best on LAP styles and
the vendor styles it was trained on; the style-statistics descriptor
(:mod:`stylejax.metrics.style_statistics`) is best on vendor styles neither saw in
training. Their combination keeps the first's LAP numbers and most of the second's
unseen-style numbers (measured in ``docs/stylex.md``, "Unseen vendor styles").

Embedding of one image (:class:`CombinedStyle`)::

    e = [unit(stylex.embed(x)), weight * unit(statistics.embed(x))] / sqrt(1 + weight**2)

a unit vector, so the cosine of two embeddings is the weighted mean of the two
metrics' cosines, ``(cos_stylex + weight**2 * cos_statistics) / (1 + weight**2)``,
and distances are ``1 - cosine`` as for StyleX. With ``weight = 1`` the distance is
the mean of the two distances. Differentiable in the images and jit-friendly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from stylejax.metrics import style_statistics as statistics_lib
from stylejax.metrics import stylex as stylex_lib
from stylejax.models.simsiam import cosine_similarity


def _unit(e):
    return e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


@jax.tree_util.register_pytree_node_class
class CombinedStyle:
    """StyleX embedding and style-statistics descriptor in one cosine metric.

    Args:
      stylex: a :class:`~stylejax.metrics.stylex.StyleX` model (its projection is used
        when it has one).
      statistics: a :class:`~stylejax.metrics.style_statistics.StyleStatistics`.
      weight: weight of the descriptor's unit vector (> 0; 1 = the mean of the two
        distances).
    Attributes:
      name ("stylex+stats"), metric ("cosine"), min_size, embedding_dim.
    """

    name = "stylex+stats"
    metric = "cosine"
    min_size = stylex_lib.MIN_SIZE

    def __init__(self, stylex, statistics, *, weight: float = 1.0):
        if not isinstance(stylex, stylex_lib.StyleX):
            raise ValueError(f"stylex must be a StyleX model (got {type(stylex).__name__})")
        if not isinstance(statistics, statistics_lib.StyleStatistics):
            raise ValueError("statistics must be a StyleStatistics descriptor "
                             f"(got {type(statistics).__name__})")
        weight = float(weight)
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight must be a finite number > 0 (got {weight})")
        self.stylex, self.statistics, self.weight = stylex, statistics, weight

    @property
    def embedding_dim(self) -> int:
        return self.stylex.embedding_dim + self.statistics.embedding_dim

    def tree_flatten(self):
        return (self.stylex, self.statistics), (self.weight,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)  # no checks: leaves may be tracers or placeholders
        obj.stylex, obj.statistics = children
        obj.weight = aux[0]
        return obj

    def embed(self, images):
        """Unit-length embeddings ``[N, embedding_dim]`` (``[embedding_dim]`` for one
        ``[H, W]`` image) of images in [0, 1], H, W >= 32; differentiable in ``images``.

        Raises:
          ValueError: wrong rank, too small, non-finite or outside [0, 1].
        """
        a = _unit(self.stylex.embed(images))
        b = _unit(self.statistics.embed(images))
        return jnp.concatenate([a, self.weight * b], axis=-1) / math.sqrt(1.0 + self.weight ** 2)

    def similarity(self, a, b):
        """Cosine of the embeddings of ``a`` and ``b`` (as :meth:`StyleX.similarity`)."""
        return cosine_similarity(self.embed(a), self.embed(b))

    def distance(self, a, b):
        """``1 - similarity(a, b)`` (0 = same style)."""
        return 1.0 - self.similarity(a, b)

    def __repr__(self):
        return (f"CombinedStyle(stylex={self.stylex!r}, statistics={self.statistics!r}, "
                f"weight={self.weight})")


def load_pretrained(*, weight: float = 1.0) -> CombinedStyle:
    """The shipped StyleX model (with its projection) combined with the shipped
    style-statistics head on the same encoder."""
    statistics = statistics_lib.load_pretrained()
    return CombinedStyle(statistics.model, statistics, weight=weight)
