"""Checking image files: decodable, their size, EXIF orientation."""

from __future__ import annotations

import io
import warnings

import numpy as np
import PIL.Image
import PIL.ImageOps
from PIL import ExifTags

from .paths import parent_of
from .pixels import decode_pixels, is_tiff, why_unreadable
from .records import Fetch

# TIFF pixel types the converter accepts: 8 and 16-bit, as cameras write them (float or
# 32-bit images have no agreed intensity range to train on).
TIFF_DTYPES = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.uint16))


def fetch_image(fetch: Fetch, relative: str, referenced_by: str) -> bytes:
    """Read an image file, turning a missing file into a clear ValueError.

    Raises:
        ValueError: if the file does not exist.
    """
    try:
        return fetch(relative)
    except FileNotFoundError:
        raise ValueError(f"image {relative!r} not found ({referenced_by})") from None


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """Decode an image fully and return its ``(height, width)``.

    TIFF is read as ``tasks.annotations.pixels`` reads it and must hold one plane of 8- or
    16-bit unsigned integers (grey, grey and alpha, RGB or RGBA); other formats, anything
    Pillow reads.

    Raises:
        ValueError: if ``data`` is not a readable image (wrong type, truncated, corrupt), or a
            TIFF of another pixel type.
    """
    if is_tiff(data):
        pixels = decode_pixels(data, repr(name))
        if pixels.dtype not in TIFF_DTYPES:
            raise ValueError(f"{name!r} has {pixels.dtype} pixels; TIFF images must be 8- or "
                             "16-bit unsigned integers")
        return pixels.shape[0], pixels.shape[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
                return image.height, image.width
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombWarning) as error:
        raise ValueError(f"{name!r} is not a readable image ({why_unreadable(error)})") from None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1 to 8) of an image Pillow reads; 1 (as stored) when it has
    none, or when only tifffile reads the file (tifffile does not apply the tag)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError):
        return 1
    return orientation if orientation in _TURNS else 1


def exif_upright(data: bytes) -> bytes | None:
    """Re-encode an image whose EXIF orientation tag rotates or mirrors it.

    labelme shows (and its coordinates refer to) the image turned upright by its EXIF tag,
    while most loaders ignore the tag; writing the upright pixels keeps masks aligned.

    Returns:
        The upright image in its own format (JPEG at quality 95, as labelme re-encodes), or
        None when no orientation change is needed.
    """
    if exif_orientation(data) == 1:
        return None
    with PIL.Image.open(io.BytesIO(data)) as image:
        upright = PIL.ImageOps.exif_transpose(image)
        buffer = io.BytesIO()
        options = {"quality": 95} if image.format == "JPEG" else {}
        upright.save(buffer, format=image.format, **options)
    return buffer.getvalue()


def turn_upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels ``[H, W, ...]`` stored under EXIF ``orientation`` as
    ``PIL.ImageOps.exif_transpose`` turns the image, e.g. a mask drawn on the stored grid."""
    return _TURNS[orientation](array)


def upright_image(data: bytes, name: str) -> tuple[int, int, bytes | None]:
    """``(height, width, upright bytes or None)`` of an image as shown turned upright.

    The bytes are None when the file needs no turn (see :func:`exif_upright`).
    """
    height, width = image_size(data, name)  # names an unreadable file first
    upright = exif_upright(data)
    if upright is not None:
        height, width = image_size(upright, name)
    return height, width, upright


def find_image_near(fetch: Fetch, folder: str, file_name: str) -> tuple[str, bytes]:
    """An image an annotation file names, looked for as exports of COCO and CVAT place it:
    beside the file, one folder up, at the root, and in an ``images/`` folder of each.

    Returns:
        ``(path relative to the input root, bytes)``.

    Raises:
        ValueError: naming every place looked at.
    """
    bases = dict.fromkeys([folder, parent_of(folder), ""])
    candidates = list(dict.fromkeys(f"{base}/{sub}{file_name}".lstrip("/")
                                    for base in bases for sub in ("", "images/")))
    for candidate in candidates:
        try:
            return candidate, fetch(candidate)
        except FileNotFoundError:
            continue
    raise ValueError(f"image {file_name!r} not found (looked for {', '.join(candidates)})")


# EXIF orientation (tag 0x0112) -> the turn PIL.ImageOps.exif_transpose applies to show the
# image upright; rows are axis 0, columns axis 1.
_TURNS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
