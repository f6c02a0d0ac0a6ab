"""Public StyleX interface (implementation in :mod:`stylejax.metrics.stylex`).

Example::

    from stylejax import stylex
    model = stylex.load_pretrained()
    z = model.embed(images)              # [N, H, W] in [0, 1] -> [N, 64] (style projection)
    d = model.distance(image_a, image_b) # 1 - cosine of the embeddings (paper Eq. 1)
    z_paper = model.without_projection().embed(images)   # the 2048-d projector output
"""

from stylejax.metrics.stylex import (  # noqa: F401
    MIN_SIZE, StyleX, from_run, load, load_pretrained)
from stylejax.models.simsiam import cosine_similarity  # noqa: F401

__all__ = ["StyleX", "load", "load_pretrained", "from_run", "cosine_similarity", "MIN_SIZE"]
