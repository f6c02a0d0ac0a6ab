"""Public synthetic-data interface: mammograms (:mod:`stylejax.data.phantom`), CT slices
with reconstruction-kernel styles (:mod:`stylejax.data.ct`), DCE-MRI series with and
without contrast agent (:mod:`stylejax.data.dce`) and B-mode ultrasound at several
quality levels (:mod:`stylejax.data.ultrasound`).

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
from stylejax.data.ct import CT, CTSlices, ct, ct_kernels, ct_labels, ct_slices  # noqa: F401
from stylejax.data.ct import window as ct_window  # noqa: F401
from stylejax.data.dce import DCEBatch, DCESeries, dce, dce_labels, dce_series  # noqa: F401
from stylejax.data.dce import dce_times  # noqa: F401
from stylejax.data.dce import ENHANCEMENT_THRESHOLD as DCE_ENHANCEMENT_THRESHOLD  # noqa: F401
from stylejax.data.ultrasound import (Ultrasound, UltrasoundBatch, ultrasound,  # noqa: F401
                                      ultrasound_label_map, ultrasound_labels,
                                      ultrasound_qualities, ultrasounds)

__all__ = ["mammogram", "mammograms", "Mammogram", "MammogramBatch", "powerlaw_noise",
           "log_display", "label_rgb", "BACKGROUND", "FAT", "FIBROGLANDULAR", "SKIN",
           "PECTORAL", "CALCIFICATION", "LABEL_NAMES", "LABEL_COLORS", "VIEWS",
           "BETA_PRIOR", "MU",
           "ct", "ct_slices", "ct_kernels", "ct_labels", "ct_window", "CT", "CTSlices",
           "dce", "dce_series", "dce_labels", "dce_times", "DCE_ENHANCEMENT_THRESHOLD",
           "DCESeries", "DCEBatch",
           "ultrasound", "ultrasounds", "ultrasound_label_map", "ultrasound_labels",
           "ultrasound_qualities", "Ultrasound", "UltrasoundBatch"]
