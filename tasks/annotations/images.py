"""Checking image files: decodable, their size, EXIF orientation."""

from __future__ import annotations

import io
import warnings

import PIL.Image
import PIL.ImageOps
from PIL import ExifTags

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
    """Decode an image fully and return its ``(height, width)``.

    Raises:
        ValueError: if ``data`` is not a readable image (wrong type, truncated, corrupt).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
                return image.height, image.width
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombWarning) as error:
        raise ValueError(f"{name!r} is not a readable image ({error})") from None


def exif_upright(data: bytes) -> bytes | None:
    """Re-encode an image whose EXIF orientation tag rotates or mirrors it.

    labelme shows (and its coordinates refer to) the image turned upright by its EXIF tag,
    while most loaders ignore the tag; writing the upright pixels keeps masks aligned.

    Returns:
        The upright image in its own format (JPEG at quality 95, as labelme re-encodes), or
        None when no orientation change is needed.
    """
    with PIL.Image.open(io.BytesIO(data)) as image:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (None, 1):
            return None
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
    candidates = list(dict.fromkeys(f"{base}/{sub}{file_name}".lstrip("/")
                                    for base in bases for sub in ("", "images/")))
    for candidate in candidates:
        try:
            return candidate, fetch(candidate)
        except FileNotFoundError:
            continue
    raise ValueError(f"image {file_name!r} not found (looked for {', '.join(candidates)})")
