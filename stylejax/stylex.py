"""Public StyleX interface (implementation in :mod:`stylejax.metrics.stylex`).

Example::

    from stylejax import stylex
    model = stylex.load_pretrained()
    z = model.embed(images)              # [N, H, W] in [0, 1] -> [N, 64] (style projection)
    d = model.distance(image_a, image_b) # 1 - cosine of the embeddings (paper Eq. 1)
    z_paper = model.without_projection().embed(images)   # the 2048-d projector output

    # vendor styles the model never saw: channel statistics of the frozen encoder's
    # stages + a linear head fitted on training styles (docs/stylex.md, "Unseen vendor styles")
    stats = stylex.load_style_statistics()
    d_vendor = stats.distance(image_a, image_b)
    # both in one metric: the mean of the two distances (also `stylejax tune --metric combined`)
    both = stylex.load_combined()
    d_both = both.distance(image_a, image_b)
"""

from stylejax.metrics.style_combination import CombinedStyle  # noqa: F401
from stylejax.metrics.style_combination import load_pretrained as load_combined  # noqa: F401
from stylejax.metrics.style_statistics import StyleStatistics  # noqa: F401
from stylejax.metrics.style_statistics import load_pretrained as load_style_statistics  # noqa: F401
from stylejax.metrics.stylex import MIN_SIZE, StyleX, load_pretrained  # noqa: F401
from stylejax.models.simsiam import cosine_similarity  # noqa: F401


def load(path: str) -> StyleX:
    """A StyleX model from a saved model folder or a SimSiam training run folder.

    Args:
      path: a folder written by ``StyleX.save`` / ``stylejax train simsiam --export``, or
        a training run's workdir (its latest checkpoint).
    Returns:
      :class:`StyleX`.
    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` is neither a saved model nor a training run.
    """
    from stylejax.train.simsiam import load_model

    return load_model(path)


__all__ = ["StyleX", "load", "load_pretrained", "cosine_similarity", "MIN_SIZE",
           "StyleStatistics", "load_style_statistics", "CombinedStyle", "load_combined"]
