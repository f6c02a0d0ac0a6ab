"""Image files: ``read_image`` / ``write_image`` for NPY, PNG, TIFF and DICOM.

Public names re-exported from ``stylejax.data.io``; the value conventions (native
units, DICOM rescale and orientation, [0, 1] normalisation) are documented there.
"""

from stylejax.data.io import (
    FORMATS,
    MAX_PIXELS,
    ImageInfo,
    check_output_path,
    read_image,
    read_image_info,
    read_image_with_info,
    to_unit_range,
    write_image,
)

__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "ImageInfo",
    "check_output_path",
    "read_image",
    "read_image_info",
    "read_image_with_info",
    "to_unit_range",
    "write_image",
]
