"""stylejax.metrics: image-quality, segmentation and distribution metrics (the StyleX
metric itself is :mod:`stylejax.metrics.stylex`).

``ssim``, ``ms_ssim``, ``psnr`` and ``cw_ssim`` (contrast-weighted SSIM) take images
``[H, W]`` or ``[N, H, W]`` in [0, 1]; see :mod:`stylejax.metrics.image`.
"""

from stylejax.metrics.frechet import frechet_distance, frechet_distance_on
from stylejax.metrics.image import (contrast_weight_map, cw_ssim, enhancement_mask, ms_ssim,
                                    psnr, ssim)
from stylejax.metrics.segmentation import (confusion_matrix, iou_per_class, mean_iou,
                                           pixel_accuracy)

__all__ = ["ssim", "ms_ssim", "psnr", "cw_ssim", "contrast_weight_map", "enhancement_mask",
           "frechet_distance", "frechet_distance_on", "pixel_accuracy", "mean_iou",
           "iou_per_class", "confusion_matrix"]
