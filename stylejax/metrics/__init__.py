"""stylejax.metrics: image-quality metrics (and, as they land, the StyleX metric).

``ssim``, ``ms_ssim``, ``psnr`` and ``cw_ssim`` (contrast-weighted SSIM) take images
``[H, W]`` or ``[N, H, W]`` in [0, 1]; see :mod:`stylejax.metrics.image`.
"""

from stylejax.metrics.image import (contrast_weight_map, cw_ssim, enhancement_mask, ms_ssim,
                                    psnr, ssim)

__all__ = ["ssim", "ms_ssim", "psnr", "cw_ssim", "contrast_weight_map", "enhancement_mask"]
