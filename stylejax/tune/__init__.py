"""Gradient-based pipeline tuning with a style metric as the loss.

A radiologist picks reference images in the style they like; their content never
matches ours. Because the pipeline (LAP) and the style encoder (StyleX) are both
differentiable, the pipeline parameters that reproduce that style on our raw
images can be found by gradient-based optimisation of the StyleX distance between
the average styles (:mod:`stylejax.tune.objective`).

Modules:

* :mod:`~stylejax.tune.inputs`: image validation and the encoder (``resolve_model``);
* :mod:`~stylejax.tune.objective`: :class:`Objective`, the batched distance and its
  gradient;
* :mod:`~stylejax.tune.optimizers`: scipy's L-BFGS-B with the starts in lockstep
  threads (each round of evaluations one batch; the default) and optax's Adam on
  sigmoid-reparameterised parameters;
* :mod:`~stylejax.tune.fit`: :func:`fit`, start-point screening, :class:`TuneResult`;
* :mod:`~stylejax.tune.vendor_match`: tuning LAP toward black-box vendor styles.

Pipelines (:class:`Pipeline`, :data:`LAP`, :func:`extended_lap`, and any user
pipeline) live in :mod:`stylejax.pipeline`; a name registered in
:mod:`stylejax.pipeline.registry` can be passed as ``pipeline=`` to :func:`fit`.

Example::

    from stylejax import tune
    result = tune.fit(raw_images, reference_images)        # shipped StyleX, LAP
    styled = tune.apply(raw_images, result.params)
    wide = tune.fit(raw_images, reference_images, pipeline="extended-lap")
"""

from stylejax.pipeline.extended_lap import BAND_OCTAVES, ExtendedLAPParams, extended_lap
from stylejax.pipeline.tunable import LAP, Pipeline, apply
from stylejax.tune.fit import TuneResult, fit, initial_points
from stylejax.tune.inputs import MIN_IMAGE_SIZE, image_list, min_image_size, resolve_model
from stylejax.tune.objective import Objective, cosine_distance
from stylejax.tune.optimizers import (OPTIMIZERS, lbfgs_lockstep, to_bounded,
                                      to_unconstrained)

__all__ = [
    "fit", "TuneResult", "Objective", "apply", "Pipeline", "LAP", "extended_lap",
    "ExtendedLAPParams", "BAND_OCTAVES", "initial_points", "cosine_distance",
    "image_list", "min_image_size", "resolve_model", "MIN_IMAGE_SIZE", "OPTIMIZERS",
    "lbfgs_lockstep", "to_bounded", "to_unconstrained",
]
