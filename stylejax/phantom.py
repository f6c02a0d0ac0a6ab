"""Public synthetic-mammogram interface (implementation in :mod:`stylejax.data.phantom`).

Example::

    from stylejax import phantom
    m = phantom.mammogram(0, size=(512, 416), view="mlo")
    m.raw      # float32 [512, 416], linear raw detector counts (> 0)
    m.labels   # int32 [512, 416], phantom.BACKGROUND .. phantom.CALCIFICATION
"""

from stylejax.data.phantom import (  # noqa: F401
    BACKGROUND, BETA_PRIOR, CALCIFICATION, FAT, FIBROGLANDULAR, LABEL_COLORS, LABEL_NAMES,
    MU, PECTORAL, SKIN, VIEWS, Mammogram, MammogramBatch, label_rgb, log_display,
    mammogram, mammograms, powerlaw_noise)

__all__ = ["mammogram", "mammograms", "Mammogram", "MammogramBatch", "powerlaw_noise",
           "log_display", "label_rgb", "BACKGROUND", "FAT", "FIBROGLANDULAR", "SKIN",
           "PECTORAL", "CALCIFICATION", "LABEL_NAMES", "LABEL_COLORS", "VIEWS",
           "BETA_PRIOR", "MU"]
