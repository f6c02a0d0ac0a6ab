"""Inputs of tuning: validated image lists and the style encoder.

Everything here raises ``ValueError`` naming the bad argument (or file, through
``labels``), so the CLI can print it without a traceback.
"""

from __future__ import annotations

import os

import numpy as np

from stylejax import _checks
from stylejax.pipeline import pyramid

#: Smallest image side accepted for the encoder when the model does not say
#: (a ResNet-18 reduces a side by 32).
MIN_IMAGE_SIZE = 32


def image_list(images, name: str, *, min_size: int, raw: bool,
               labels: list[str] | None = None) -> list[np.ndarray]:
    """Validate images and return them as a list of float32 ``[H, W]`` arrays.

    Args:
      images: one ``[H, W]`` image, a stack ``[N, H, W]``, or a sequence of
        ``[H, W]`` images (sizes may differ).
      name: argument name for error messages ("raw", "reference").
      min_size: smallest accepted side in pixels.
      raw: True for linear raw detector images (must be > 0); False for styled
        images (must lie in [0, 1]).
      labels: names for the items of a sequence in error messages (e.g. file
        names); default ``name[i]``.
    Returns:
      list of ``[H, W]`` float32 numpy arrays.
    Raises:
      ValueError naming the problem (empty, rank, size, non-finite, range, constant).
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"the {name} list is empty: give at least one {name} image")
        names = labels if labels is not None else [f"{name}[{i}]" for i in range(len(images))]
        items = list(zip(names, images))
        ranks = (2, 2)
    else:
        items = [(name, images)]
        ranks = (2, 3)
    out = []
    for label, im in items:
        _checks.check_image(im, label, min_rank=ranks[0], max_rank=ranks[1], min_size=min_size,
                            positive=raw, unit_range=not raw)
        _checks.check_not_constant(im, label)
        arr = np.asarray(im, np.float32)
        out += list(arr) if arr.ndim == 3 else [arr]
    return out


def min_image_size(model) -> int:
    """Smallest image side accepted for ``model`` (its ``min_size``/``MIN_SIZE``, at
    least the pyramid's and :data:`MIN_IMAGE_SIZE` when the model does not say)."""
    size = getattr(model, "min_size", getattr(model, "MIN_SIZE", MIN_IMAGE_SIZE))
    return max(pyramid.MIN_SIZE, int(size))


def group_by_shape(images: list[np.ndarray]) -> list[np.ndarray]:
    """``[H, W]`` images -> one ``[N, H, W]`` stack per distinct shape (first-seen order)."""
    groups: dict[tuple, list] = {}
    for im in images:
        groups.setdefault(im.shape, []).append(im)
    return [np.stack(g) for g in groups.values()]


def resolve_model(model):
    """The style encoder to use.

    Args:
      model: None (the StyleX model shipped with the package), a directory of a
        StyleX training run, or any object with a differentiable
        ``embed(images [N, H, W] in [0, 1]) -> [N, D]``.
    Returns:
      an object with ``embed``.
    Raises:
      ValueError: a path that is not a StyleX run, or an object without ``embed``.
    """
    if model is None:
        from stylejax.metrics import stylex
        return stylex.load_pretrained()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isdir(path):
            raise ValueError(f"model directory {path!r} does not exist (or is not a directory)")
        from stylejax.train.simsiam import load_model
        try:
            return load_model(path)
        except Exception as err:  # any loader failure means "not a run" to the user
            raise ValueError(f"model directory {path!r} is not a StyleX run: {err}") from err
    if not callable(getattr(model, "embed", None)):
        raise ValueError(f"model must have an embed(images) method (got {type(model).__name__})")
    return model
