"""Image file bytes -> upright RGB uint8 ``[H, W, 3]``, or a specific, recorded error.

Batch inference must turn every bad file into one ``errors`` row and go on, so each failure
is an :class:`ImageDecodeError` whose ``error_type`` says what kind of bad it is:

- ``empty_file``: zero bytes.
- ``not_an_image``: no known image signature and Pillow cannot identify it (a text file
  named ``.jpg``).
- ``truncated``: the file ends before the pixel data does.
- ``corrupt``: an image header, but the data cannot be decoded.
- ``too_large``: more pixels than the limit (decompression bombs: a few kB that inflate to
  gigabytes); checked from the header, before any pixel is decoded.
- ``unsupported_mode``: pixels the model does not read: float, signed or 32-bit, Lab or HSV,
  a stack of planes.

Files are read by `mrcnn.images`, the reader of the converter and of training too, and
mapped to 0-255 by the model's own INTENSITY_NORMALIZATION (`mrcnn.intensity`), so the model
sees the same pixels at inference as in training: grey repeated to 3 channels, palettes
expanded, alpha dropped, CMYK/YCbCr converted, EXIF orientation applied first, so boxes,
masks and sizes refer to the picture as people see it.
"""

from __future__ import annotations

import numpy as np

from mrcnn.images import MAX_PIXELS, REASONS, UnreadableImage
from mrcnn.images import decode_image as decode_stored
from mrcnn.intensity import Normalization, to_rgb_uint8

ERROR_TYPES = REASONS
__all__ = ["ERROR_TYPES", "MAX_PIXELS", "ImageDecodeError", "decode_image"]


class ImageDecodeError(ValueError):
    """A file that cannot become an RGB image; ``error_type`` is one of ``ERROR_TYPES``."""

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error_type {error_type!r}; expected one of {ERROR_TYPES}")
        super().__init__(message)
        self.error_type = error_type


def decode_image(
    data: bytes,
    name: str = "image",
    max_pixels: int = MAX_PIXELS,
    normalization: Normalization | None = None,
) -> np.ndarray:
    """Decode an image file's bytes into the upright RGB array the model expects.

    Args:
        data: the file's content.
        name: how error messages refer to the file (its URI).
        max_pixels: largest accepted width * height.
        normalization: the model's (`Normalization.from_config`); default ``"scale"``.

    Returns:
        [H, W, 3] uint8 RGB, after EXIF orientation.

    Raises:
        ImageDecodeError: with ``error_type`` naming the problem (see the module docstring).
    """
    try:
        stored = decode_stored(data, name, max_pixels)
    except UnreadableImage as error:
        raise ImageDecodeError(error.reason, str(error)) from None
    return to_rgb_uint8(stored.upright, normalization)
