"""Public LAP interface (implementation in :mod:`stylejax.pipeline.lap`)."""

from stylejax.pipeline.lap import (  # noqa: F401
    PARAM_MAX, PARAM_MIN, PARAM_NAMES, LAPParams, band_groups, gain_h, gain_l, lap_grid,
    normalize_log, process, process_normalized, soft_window, window_width)

__all__ = ["LAPParams", "process", "process_normalized", "normalize_log", "soft_window",
           "gain_h", "gain_l", "window_width", "band_groups", "lap_grid",
           "PARAM_MIN", "PARAM_MAX", "PARAM_NAMES"]
