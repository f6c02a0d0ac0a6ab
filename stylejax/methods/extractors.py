"""The feature-extractor registry: build any extractor of :mod:`stylejax.models.features`
by name.

``build_extractor("vgg19", "random")``, ``build_extractor("vgg16", "vgg16.safetensors")``,
``build_extractor("stylex", None)`` (the shipped StyleX model's encoder) or
``build_extractor("stylex", "runs/stylex")`` (a saved model or training run).
Importing this module is light (no JAX), so command-line parsers can list
:data:`EXTRACTORS`.
"""

from __future__ import annotations

import importlib

#: Extractor names, in the order ``--help`` lists them.
EXTRACTORS = ("vgg19", "vgg16", "stylex")


def extractor_taps(name: str) -> dict[str, tuple[str, ...]]:
    """``{"valid": ..., "style": ..., "content": ...}`` tap names of an extractor, without
    building it (no weights needed)."""
    from stylejax.models import features

    if name in ("vgg19", "vgg16"):
        from stylejax.models import vgg

        return {"valid": features.vgg_taps(name), "style": tuple(vgg.STYLE_TAPS),
                "content": tuple(vgg.CONTENT_TAPS)}
    if name == "stylex":
        return {"valid": features.STYLEX_TAPS, "style": features.STYLEX_STYLE_TAPS,
                "content": features.STYLEX_CONTENT_TAPS}
    raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")


def build_extractor(name: str, weights: str | None = None, seed: int = 0):
    """A :class:`stylejax.models.features.FeatureExtractor` by name.

    Args:
      name: ``"vgg19"``, ``"vgg16"`` or ``"stylex"``.
      weights: VGG: a ``.safetensors``/``.h5`` path, ``"imagenet"`` (download once,
        cached; the default when None) or ``"random"`` (He-normal, warns); StyleX: a saved
        model or training-run directory, or None / ``"default"`` for the shipped model.
      seed: initialisation seed of random VGG weights.
    Returns:
      :class:`~stylejax.models.features.VGGFeatures` or
      :class:`~stylejax.models.features.StyleXFeatures`.
    Raises:
      ValueError: unknown name, weights that do not fit the extractor, or a StyleX
        metric missing from this build.
      FileNotFoundError: a weights path that does not exist.
    """
    from stylejax.models import features

    if name in ("vgg19", "vgg16"):
        build = features.vgg19_features if name == "vgg19" else features.vgg16_features
        return build(weights or "imagenet", seed=seed)
    if name == "stylex":
        if weights in ("imagenet", "random"):
            raise ValueError(f"--weights {weights} is for VGG; the StyleX extractor takes a "
                             "model directory (or nothing, for the shipped model)")
        try:
            stylex = importlib.import_module("stylejax.metrics.stylex")
        except ModuleNotFoundError as err:
            if err.name == "stylejax.metrics.stylex":
                raise ValueError("the StyleX metric is not available in this build of "
                                 "stylejax; use extractor vgg19 or vgg16") from None
            raise
        if weights in (None, "default"):
            model = stylex.load_pretrained()
        else:  # a saved model folder or a training run folder
            from stylejax.train.simsiam import load_model
            model = load_model(weights)
        return stylex_features(model)
    raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")


def stylex_features(model):
    """The :class:`~stylejax.models.features.StyleXFeatures` of a StyleX metric model
    (``stylejax.metrics.stylex.StyleX``, through its public ``encoder``)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"{type(model).__name__} exposes no StyleX encoder")
    if callable(encoder) and not hasattr(encoder, "backbone"):
        encoder = encoder()  # StyleX.encoder is a method returning the module
    from stylejax.models.features import StyleXFeatures

    return StyleXFeatures(encoder)
