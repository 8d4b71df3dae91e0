"""Checking image files: decodable, their size, EXIF orientation.

An image is accepted when `mrcnn.images`, the model's reader, reads it: 8 or 16-bit grey,
grey and alpha, palette, RGB or RGBA (float or 32-bit images have no agreed intensity range to
train on). Its EXIF orientation is the one that reader applies (none for TIFF).
"""

from __future__ import annotations

import io

import PIL.Image
import PIL.ImageOps

from mrcnn import images
from mrcnn.images import (
    exif_orientation,
    turn_upright,  # noqa: F401 - re-exported for the readers
)

from . import pixels
from .paths import parent_of
from .records import Fetch


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
    """Decode an image fully, as the model will read it, and return its stored
    ``(height, width)``.

    Raises:
        ValueError: if ``data`` is not a readable image (wrong type, truncated, corrupt), or one
            of a pixel type the model does not read (float, signed, 32-bit, a stack of planes).
    """
    stored = images.decode_image(data, repr(name), pixels.MAX_PIXELS).pixels
    return stored.shape[0], stored.shape[1]


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
    candidates = list(
        dict.fromkeys(
            f"{base}/{sub}{file_name}".lstrip("/") for base in bases for sub in ("", "images/")
        )
    )
    for candidate in candidates:
        try:
            return candidate, fetch(candidate)
        except FileNotFoundError:
            continue
    raise ValueError(f"image {file_name!r} not found (looked for {', '.join(candidates)})")
