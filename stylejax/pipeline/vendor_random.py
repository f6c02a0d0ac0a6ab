"""Random vendor styles: new operator chains drawn from the black-box bank's operators.

The bank (:mod:`stylejax.pipeline.blackbox`) has 32 fixed styles, 28 for training.
A style metric trained or fitted on 28 non-linear styles learns those 28; to
generalise to vendor styles it never saw, it needs many more. ``random_style(seed)``
draws one: a main operator from one of the bank's eight families with random
settings, optionally preceded by a denoiser and followed by sharpening, an
auto-window and a tone curve (posterisation always last, so its levels survive).
Settings are drawn from ranges that span the bank's own and are rounded to two
significant digits so that ``describe`` reads well.

Leakage: a drawn chain never has the operator sequence of a held-out bank style
(it is drawn again), so the held-out styles stay unseen as chains. Draws can still
come close to them in effect (the operators are the same);
``experiments/random_vendor_styles.py`` measures how close, against the training
styles' own distance to them.

Example::

    from stylejax.pipeline import blackbox, vendor_random
    style = vendor_random.random_style(7)
    print(blackbox.describe(style))
    image = blackbox.apply(raw, style)
"""

from __future__ import annotations

import numpy as np

from stylejax.pipeline import blackbox as _bank
from stylejax.pipeline.blackbox import FAMILIES, HELD_OUT, Style

_HELD_OUT_SEQUENCES = frozenset(tuple(name for name, _ in _bank._STYLES[s].chain)
                                for s in HELD_OUT)


def _r(value: float) -> float:
    """Two significant digits."""
    return float(f"{value:.2g}")


def _u(rng, lo, hi) -> float:
    return _r(rng.uniform(lo, hi))


def _tone(rng) -> tuple[str, dict]:
    kind = rng.integers(5)
    if kind == 0:
        return "gamma", dict(g=_u(rng, 0.6, 1.8))
    if kind == 1:
        return "sigmoid", dict(gain=_u(rng, 3.0, 10.0), centre=_u(rng, 0.45, 0.65))
    if kind == 2:
        x1, x2 = sorted(_u(rng, 0.1, 0.9) for _ in range(2))
        y1, y2 = sorted(_u(rng, 0.02, 0.98) for _ in range(2))
        if x2 <= x1:
            x2 = _r(x1 + 0.05)
        return "knee", dict(points=((0.0, 0.0), (x1, y1), (x2, y2), (1.0, _u(rng, 0.8, 1.0))))
    return ("log", "exp")[kind - 3], dict(k=_u(rng, 1.0, 3.0))


def _denoise(rng) -> tuple[str, dict]:
    kind = rng.integers(3)
    if kind == 0:
        return "median", dict(passes=int(rng.integers(1, 4)))
    if kind == 1:
        return "bilateral", dict(sigma_s=_u(rng, 1.0, 3.0), sigma_r=_u(rng, 0.04, 0.12))
    return "tv", dict(weight=_u(rng, 0.02, 0.12))


def _sharpen(rng) -> tuple[str, dict]:
    return "unsharp", dict(sigma=_r(np.exp(rng.uniform(np.log(0.8), np.log(8.0)))),
                           amount=_u(rng, 0.5, 2.5),
                           core=_u(rng, 0.01, 0.02) if rng.random() < 0.3 else 0.0,
                           limit=_u(rng, 0.03, 0.05) if rng.random() < 0.4 else None)


def _main(family: str, rng) -> tuple[str, dict]:
    if family == "tone":
        return _tone(rng)
    if family == "equalisation":
        if rng.random() < 0.6:
            return "equalize", dict(blend=_u(rng, 0.3, 1.0), nbins=int(rng.choice([64, 128, 256])))
        return "specify", dict(mean=_u(rng, 0.4, 0.6), sd=_u(rng, 0.12, 0.25))
    if family == "clahe":
        return "clahe", dict(tile=1.0 / int(rng.integers(4, 17)), clip=_u(rng, 0.005, 0.03),
                             blend=_u(rng, 0.5, 1.0))
    if family == "sharpening":
        return _sharpen(rng)
    if family == "denoising":
        return _denoise(rng)
    if family == "flattening":
        kind, scale = rng.integers(4), 1.0 / int(rng.integers(6, 17))
        if kind == 0:
            return "flatten", dict(scale=scale, strength=_u(rng, 0.5, 1.0))
        if kind == 1:
            return "peripheral", dict(scale=scale, strength=_u(rng, 0.6, 1.3))
        if kind == 2:
            return "local_norm", dict(sigma=_u(rng, 8.0, 32.0), blend=_u(rng, 0.3, 0.7))
        return "morph_contrast", dict(size=2 * int(rng.integers(2, 6)) + 1,
                                      amount=_u(rng, 0.5, 1.0))
    if family == "base-detail":
        if rng.random() < 0.6:
            base = dict(base="guided", r=int(rng.integers(4, 17)), eps=_u(rng, 0.005, 0.03))
        else:
            base = dict(base="bilateral", sigma_s=_u(rng, 2.0, 4.0), sigma_r=_u(rng, 0.05, 0.15))
        return "base_detail", dict(**base, detail_gain=_u(rng, 1.5, 3.5),
                                   base_gain=_u(rng, 0.5, 1.0),
                                   base_gamma=_u(rng, 1.0, 1.5) if rng.random() < 0.5 else 1.0)
    if family == "posterisation":
        return "posterize", dict(levels=int(rng.integers(8, 33)))
    raise ValueError(f"family must be one of {FAMILIES} (got {family!r})")


def _draw(rng) -> Style:
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    main = _main(family, rng)
    chain = [_denoise(rng)] if rng.random() < 0.4 else []
    chain.append(main)
    if family != "sharpening" and rng.random() < 0.3:
        chain.append(_sharpen(rng))
    if rng.random() < 0.6:
        chain.append(("window", dict(lo=_u(rng, 0.5, 10.0), hi=_u(rng, 99.0, 99.9))))
    if family != "tone" and rng.random() < 0.6:
        chain.append(_tone(rng))
    if family == "posterisation":
        chain.remove(main)
        chain.append(main)
    return Style(family, tuple(chain))


def random_style(seed: int) -> Style:
    """One random vendor style, a pure function of ``seed`` (an int >= 0).

    Never has the operator sequence of a held-out bank style (see the module doc).
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 (got {seed!r})")
    rng = np.random.default_rng([int(seed), 0x5EED])
    while True:
        style = _draw(rng)
        if tuple(name for name, _ in style.chain) not in _HELD_OUT_SEQUENCES:
            return style


def random_styles(count: int, seed: int = 0) -> list[Style]:
    """``count`` random styles, ``random_style(seed + i)`` for ``i < count``."""
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count})")
    return [random_style(seed + i) for i in range(count)]


def training_styles(random_count: int, seed: int) -> list:
    """What a StyleX run trains on: the bank's 28 training styles (ints), then
    ``random_count`` random styles ``random_style(seed + k)``."""
    from stylejax.pipeline.blackbox import TRAIN_STYLES
    return [int(s) for s in TRAIN_STYLES] + random_styles(random_count, seed=seed)
