"""stylejax.losses: style/content losses (:mod:`stylejax.losses.style`) and the contextual
loss (:mod:`stylejax.losses.contextual`)."""

from stylejax.losses.contextual import contextual_loss, contextual_similarity

__all__ = ["contextual_loss", "contextual_similarity"]
