"""Reading the two files of an exported network folder safely: its JSON description and
its safetensors weights.

An exported folder may come from anywhere (a colleague, a download, a damaged disk), so
both readers bound what they read and turn every failure into a ``ValueError`` that names
the file: a JSON description larger than :data:`MAX_JSON_BYTES` (e.g. a link to
``/dev/zero``), garbled or not an object; a weights file that safetensors cannot parse,
or that holds non-floating-point or non-finite tensors.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["MAX_JSON_BYTES", "read_json", "read_weights"]

#: Largest JSON description :func:`read_json` reads (bytes).
MAX_JSON_BYTES = 1 << 20

_FLOATS = (np.float16, np.float32, np.float64)


def read_json(path: str, *, limit: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in ``path``.

    Raises:
      ValueError: naming ``path``, when it is not a regular file, is larger than ``limit``
        bytes, is not valid JSON or does not hold a JSON object.
    """
    try:
        if not os.path.isfile(path):
            raise ValueError("not a regular file")
        with open(path, "rb") as f:
            text = f.read(limit + 1)
        if len(text) > limit:
            raise ValueError(f"larger than {limit} bytes")
        value = json.loads(text)
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{path}: not a readable JSON description ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_weights(path: str) -> dict[str, np.ndarray]:
    """All tensors of the safetensors file ``path``, as numpy arrays.

    Raises:
      ValueError: naming ``path``, when the file is unreadable or damaged, or a tensor is
        not floating point (float16/32/64) or holds NaN/inf.
    """
    from safetensors.numpy import load_file
    try:
        tensors = load_file(path)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"{path}: unreadable safetensors file "
                         f"({type(err).__name__}: {err})") from None
    for name, value in tensors.items():
        if value.dtype.type not in _FLOATS:
            raise ValueError(f"{path}: tensor {name!r} has dtype {value.dtype}; "
                             "floating-point weights are needed")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: tensor {name!r} holds NaN or inf")
    return tensors
