"""Segmentation metrics: pixel accuracy, per-class IoU and mean IoU.

All take integer label maps of the same shape (any rank; a leading batch axis is pooled
with the pixels): ``pred`` and ``target`` with values in ``[0, num_classes)``.

* ``pixel_accuracy = #(pred == target) / #pixels``.
* ``IoU_c = |pred == c and target == c| / |pred == c or target == c|`` from the confusion
  matrix; a class absent from both maps has no IoU (NaN) and is left out of
  ``mean_iou`` (the usual convention, e.g. the CT paper's segmentation experiment).
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "pixel_accuracy", "iou_per_class", "mean_iou"]


def _check(pred, target, num_classes):
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    if p.size == 0:
        raise ValueError("label maps are empty")
    for a, name in ((p, "pred"), (t, "target")):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer labels (got dtype {a.dtype})")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
            num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer (got {num_classes!r})")
    for a, name in ((p, "pred"), (t, "target")):
        if a.min() < 0 or a.max() >= num_classes:
            raise ValueError(f"{name} labels must lie in [0, {num_classes}) (got "
                             f"{a.min()}..{a.max()})")
    return p.ravel().astype(np.int64), t.ravel().astype(np.int64)


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts, rows = target, columns = prediction."""
    p, t = _check(pred, target, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def pixel_accuracy(pred, target) -> float:
    """Fraction of pixels whose predicted label equals the target."""
    p, t = np.asarray(pred), np.asarray(target)
    _check(p, t, int(max(p.max(initial=0), t.max(initial=0))) + 1 if p.size else 1)
    return float(np.mean(p == t))


def iou_per_class(pred, target, num_classes: int) -> np.ndarray:
    """``[num_classes]`` float64 IoU per class (NaN for a class absent from both)."""
    cm = confusion_matrix(pred, target, num_classes).astype(np.float64)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(pred, target, num_classes: int) -> float:
    """Mean of :func:`iou_per_class` over the classes present in ``pred`` or ``target``."""
    return float(np.nanmean(iou_per_class(pred, target, num_classes)))
