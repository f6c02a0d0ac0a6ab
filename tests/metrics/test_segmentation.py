"""Segmentation metrics against a plain-Python transcription of the definitions."""

import numpy as np
import pytest

from stylejax.metrics import segmentation as seg


def _reference(pred, target, num_classes):
    """Pixel accuracy and mean IoU with Python loops over pixels and classes."""
    p, t = list(np.ravel(pred)), list(np.ravel(target))
    acc = sum(1 for a, b in zip(p, t) if a == b) / len(p)
    ious = []
    for c in range(num_classes):
        inter = sum(1 for a, b in zip(p, t) if a == c and b == c)
        union = sum(1 for a, b in zip(p, t) if a == c or b == c)
        if union:
            ious.append(inter / union)
    return acc, sum(ious) / len(ious), ious


def test_against_reference_with_absent_class():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (3, 9, 7))      # class 4 absent from both maps
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape))
    acc, miou, ious = _reference(pred, target, 5)
    assert seg.pixel_accuracy(pred, target) == pytest.approx(acc, abs=1e-12)
    assert seg.mean_iou(pred, target, 5) == pytest.approx(miou, abs=1e-12)
    per = seg.iou_per_class(pred, target, 5)
    np.testing.assert_allclose(per[:4], ious, atol=1e-12)
    assert np.isnan(per[4])
    cm = seg.confusion_matrix(pred, target, 5)
    assert cm.sum() == target.size and cm[1, 2] == np.sum((target == 1) & (pred == 2))


def test_perfect_and_disjoint():
    t = np.array([[0, 1], [2, 2]])
    assert seg.pixel_accuracy(t, t) == 1.0 and seg.mean_iou(t, t, 3) == 1.0
    assert seg.mean_iou((t + 1) % 3, t, 3) == 0.0


def test_bad_input():
    t = np.zeros((4, 4), int)
    with pytest.raises(ValueError, match="differ in shape"):
        seg.mean_iou(t, t[:2], 2)
    with pytest.raises(ValueError, match="integer"):
        seg.pixel_accuracy(t.astype(float), t)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        seg.mean_iou(t + 2, t, 2)
    with pytest.raises(ValueError, match="num_classes"):
        seg.mean_iou(t, t, 0)
