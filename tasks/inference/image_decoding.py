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
- ``unsupported_mode``: a pixel format without a faithful 8-bit RGB rendering (float, Lab, HSV).

Supported modes are converted as the training reader (``mrcnn.dataset.read_rgb_image``) does,
so the model sees the same pixels at inference as in training: grayscale and bilevel are
repeated to 3 channels, palettes expanded, alpha dropped, CMYK/YCbCr converted by Pillow,
16-bit gray scaled by 1/257. EXIF orientation is applied first, so boxes, masks and sizes
refer to the picture as people see it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import PIL.Image
import PIL.ImageOps

ERROR_TYPES = ("empty_file", "not_an_image", "truncated", "corrupt", "too_large",
               "unsupported_mode")
MAX_PIXELS = 100_000_000  # 10,000 x 10,000: far above camera images, far below a bomb

_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX",
                              "CMYK", "YCbCr"})
# Leading bytes of the formats batch inference lists (jpg, png, bmp, tif, webp) and GIF.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")


class ImageDecodeError(ValueError):
    """A file that cannot become an RGB image; ``error_type`` is one of ``ERROR_TYPES``."""

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error_type {error_type!r}; expected one of {ERROR_TYPES}")
        super().__init__(message)
        self.error_type = error_type


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file's bytes into the upright RGB array the model expects.

    Args:
        data: the file's content.
        name: how error messages refer to the file (its URI).
        max_pixels: largest accepted width * height.

    Returns:
        [H, W, 3] uint8 RGB, after EXIF orientation.

    Raises:
        ImageDecodeError: with ``error_type`` naming the problem (see the module docstring).
    """
    if len(data) == 0:
        raise ImageDecodeError("empty_file", f"{name}: the file is empty (0 bytes)")
    with warnings.catch_warnings():
        # Our own limit replaces Pillow's warning; corrupt EXIF only warns and is ignored.
        warnings.simplefilter("ignore")
        image = _open(data, name, max_pixels)
        try:
            return _to_rgb(_upright(image, name), name)
        finally:
            image.close()


def _open(data: bytes, name: str, max_pixels: int) -> PIL.Image.Image:
    """Read the header and check the size, without decoding pixels."""
    try:
        image = PIL.Image.open(io.BytesIO(data))
    except PIL.Image.DecompressionBombError as error:
        raise ImageDecodeError("too_large", f"{name}: {error}") from None
    except PIL.UnidentifiedImageError:
        if data.startswith(_SIGNATURES) or _is_webp(data):
            raise ImageDecodeError("corrupt", f"{name}: the image header is damaged or cut "
                                   f"short ({len(data)} bytes)") from None
        raise ImageDecodeError("not_an_image", f"{name}: not an image file (unknown format, "
                               f"starts with {data[:8]!r})") from None
    except Exception as error:  # a malformed header can raise anything from the parser
        raise _classified(error, name) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageDecodeError("too_large", f"{name}: {width}x{height} = {width * height:,} "
                               f"pixels exceeds the limit of {max_pixels:,}")
    return image


def _upright(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Decode the pixels and apply the EXIF orientation tag (returns a loaded image)."""
    try:
        image.load()
        return PIL.ImageOps.exif_transpose(image)
    except Exception as error:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise _classified(error, name) from None


def _classified(error: Exception, name: str) -> ImageDecodeError:
    kind = "truncated" if "truncated" in str(error).lower() else "corrupt"
    return ImageDecodeError(kind, f"{name}: {type(error).__name__}: {error}")


def _to_rgb(image: PIL.Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 65535 / 257 = 255: the 16-bit range mapped linearly onto 8 bits.
        gray = np.clip(np.round(np.asarray(image, dtype=np.float64) / 257.0), 0, 255)
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if mode not in _EIGHT_BIT_MODES:
        raise ImageDecodeError("unsupported_mode", f"{name}: pixel mode {mode!r} has no "
                               "faithful 8-bit RGB conversion (float, Lab or HSV data)")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
