"""The style-transfer methods the library offers; ``stylejax nst`` only reads this table.

:data:`METHODS` maps a name to a :class:`stylejax.methods.base.Method`. The command
generates each method's flags from its config dataclass (:func:`stylejax.methods.base.options`)
and its extra inputs (``inputs``), so adding a method needs no CLI code.

How to add a method:

* **Optimisation-based** (like :mod:`stylejax.methods.gatys`): subclass
  :class:`stylejax.methods.engine.OptimizationConfig` with your fields (each declared
  with :func:`stylejax.methods.base.option`, immutable defaults, checks in
  ``__post_init__``), write a pure hashable ``loss_fn(image, aux)`` and call
  :func:`stylejax.methods.engine.optimize`; take features from a
  :class:`stylejax.models.features.FeatureExtractor` (the ``extractor`` argument).
* **Feed-forward** (a trained network, e.g. an AdaIN decoder or a Johnson transform net):
  put the network in ``stylejax/models/``, its training task in ``stylejax/train/``, and
  here a method whose frozen config names the trained weights (e.g. a ``weights: str``
  field, the run directory or exported file) and whose ``run`` loads them (cache the
  loaded network on the method object if it is expensive) and returns the forward pass
  as a :class:`stylejax.methods.base.TransferResult` with ``steps=0``, ``history`` =
  ``[loss, loss]`` of whatever objective it reports (or ``[nan, nan]``).
  ``needs_extractor(config)`` returns False unless the forward pass uses an extractor
  from the command line; a network with its own encoder builds it from its weights.

Then add an instance to :data:`METHODS`, a test in ``tests/methods/``, and a line to the
docs. A field name shared by several methods becomes one shared flag (same type
required); per-method defaults then apply when the flag is not given.
"""

from __future__ import annotations

from stylejax.methods.adain import AdaIN
from stylejax.methods.base import Method
from stylejax.methods.dce import DCE
from stylejax.methods.gatys import Gatys
from stylejax.methods.johnson import Johnson
from stylejax.methods.mr2nst import Mr2NST

#: Every method by name, in the order ``--help`` lists them.
METHODS: dict[str, Method] = {m.name: m for m in (Gatys(), Mr2NST(), AdaIN(), DCE(), Johnson())}


def get_method(name: str) -> Method:
    """The registered method ``name``; ValueError listing the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
