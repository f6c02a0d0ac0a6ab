"""Shared helpers of the scripts in ``experiments/``: timing, machine description, JSON.

The experiment and benchmark scripts import these instead of repeating them (and
instead of inserting folders into ``sys.path``)::

    from stylejax.evaluation import bench

    seconds = bench.median_seconds(lambda: step().block_until_ready(), repeats=5)
    bench.write_json(args.out, {"machine": bench.machine(), "results": rows})
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls.

    Args:
      fn: a callable that blocks until its work is done (call ``block_until_ready``
        inside it for JAX).
      repeats: timed calls, >= 1.
      warmup: untimed calls first (compilation, caches).
    Returns:
      seconds.
    Raises:
      ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine(**extra) -> dict:
    """What a result was measured on: platform, CPUs, load, JAX backend and versions.

    Args:
      **extra: more entries (e.g. ``torch=torch.__version__``).
    Returns:
      a JSON-serialisable dict.
    """
    info = {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if "jax" in sys.modules:  # describe JAX only when the script uses it
        import jax

        device = jax.devices()[0]
        info.update(jax=jax.__version__, backend=jax.default_backend(),
                    device=getattr(device, "device_kind", str(device)),
                    devices=jax.device_count())
    info.update(extra)
    return info


def write_json(path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, creating folders; atomically (temp + rename).

    Returns:
      the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def log(message: str) -> None:
    """A progress line on stderr with the wall-clock time (stdout stays for tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def encoder_at_size(model, size: int):
    """A StyleX model that shows ``size`` px images to its encoder without resampling
    (its ``embed_size`` set to ``size``, tiles no larger than the image); other
    encoders are returned unchanged."""
    if hasattr(model, "tile_size") and getattr(model, "embed_size", size) != size:
        tile = None if model.tile_size is None else min(model.tile_size, size)
        return model.replace(embed_size=size, tile_size=tile)
    return model
