"""The black-box "vendor" style bank: 32 fixed, non-differentiable X-ray styles.

Stand-in for the proprietary 32-style vendor pipeline of the StyleX paper; see
:mod:`stylejax.pipeline.blackbox` for the operator families and chains.

Example::

    from stylejax import blackbox
    image = blackbox.apply(raw, 5)          # [H, W] float32 in [0, 1]
    print(blackbox.describe(5))
    train = blackbox.TRAIN_STYLES           # 28 styles; blackbox.HELD_OUT: the other 4
    new = blackbox.random_style(7)          # a new chain of the same operators
    image = blackbox.apply(raw, new)
"""

from stylejax.pipeline.blackbox import (
    FAMILIES,
    HELD_OUT,
    NUM_STYLES,
    TRAIN_STYLES,
    Style,
    apply,
    apply_batch,
    describe,
    family,
    normalized_log,
)
from stylejax.pipeline.vendor_random import random_style, random_styles

__all__ = [
    "FAMILIES",
    "HELD_OUT",
    "NUM_STYLES",
    "TRAIN_STYLES",
    "Style",
    "apply",
    "apply_batch",
    "describe",
    "family",
    "normalized_log",
    "random_style",
    "random_styles",
]
