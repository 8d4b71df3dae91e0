"""Image files as pixel arrays: any image, an instance label image, a binary mask.

TIFF is read with tifffile (8/16/32-bit integer and float pages, uncompressed, Deflate or
PackBits). Compressions tifffile decodes only with the optional ``imagecodecs`` package
(LZW, JPEG, ...) are read with Pillow's libtiff instead, so a TIFF either of them reads is
accepted. Every other format (PNG, JPEG, BMP, ...) is read with Pillow.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import PIL.Image
import scipy.ndimage
import tifffile

TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# Pillow's own limit (it warns above it; the converter refuses): decompression bombs.
MAX_PIXELS = PIL.Image.MAX_IMAGE_PIXELS
_UNREADABLE = (OSError, SyntaxError, ValueError, IndexError, KeyError, EOFError,
               PIL.Image.DecompressionBombWarning)


def is_tiff(data: bytes) -> bool:
    """Whether the bytes start like a TIFF file."""
    return data[:4] in TIFF_SIGNATURES


def decode_pixels(data: bytes, what: str) -> np.ndarray:
    """Decode an image file into its pixels ``[H, W]`` or ``[H, W, C]``, in the file's dtype.

    A TIFF's first series is read: one plane, grey or with samples per pixel (planar RGB is
    turned channels-last); a stack of planes (z, time, channels as pages) is refused.

    Args:
        data: the file's bytes.
        what: how errors name the file, e.g. ``"'a/b.tif'"`` or ``"label image"``.

    Raises:
        ValueError: ``<what> is not a readable image (<why>)``.
    """
    try:
        if is_tiff(data):
            pixels = _tiff_or_pillow(data)
        else:
            pixels = _pillow(data)
    except _UNREADABLE as error:
        raise ValueError(f"{what} is not a readable image ({why_unreadable(error)})") from None
    return pixels


def why_unreadable(error: BaseException) -> str:
    """A decoder's error as one line that names no memory address (reports stay the same
    bytes from run to run)."""
    if isinstance(error, PIL.UnidentifiedImageError):
        return "not an image file Pillow or tifffile knows"
    return " ".join(str(error).split()) or type(error).__name__


def label_pixels(data: bytes, name: str, what: str = "label image") -> np.ndarray:
    """A label image as integers ``[H, W]``: 0 background, each other value one object (or
    class). 8-bit grey or palette and 16-bit PNG; 8/16/32-bit integer TIFF.

    Args:
        data: the file's bytes.
        name: its path, for the errors.
        what: how errors name it.

    Raises:
        ValueError: unreadable, several channels, not integers, or negative values.
    """
    labels = decode_pixels(data, what)
    if labels.ndim != 2 or labels.dtype.kind not in "uib":
        raise ValueError(f"{what} must be one channel of integers, got "
                         f"{labels.dtype} {labels.shape} ({name})")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what} has negative values ({name})")
    return labels


def mask_pixels(data: bytes, what: str) -> np.ndarray:
    """A binary mask as bool ``[H, W]``: a pixel is inside when its value is not 0 (in any
    colour channel of an RGB(A) mask; alpha is not read).

    Raises:
        ValueError: unreadable.
    """
    pixels = decode_pixels(data, what)
    if pixels.ndim == 2:
        return pixels != 0
    colours = 3 if pixels.shape[2] >= 3 else 1  # RGB(A), or grey with alpha
    return np.any(pixels[..., :colours] != 0, axis=2)


def crop(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    """A bool mask's bounding-box crop and its ``(top, left)``; None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(columns[0])
    return mask[top:rows[-1] + 1, left:columns[-1] + 1].copy(), (top, left)


def label_crops(labels: np.ndarray) -> list[tuple[int, np.ndarray, tuple[int, int]]]:
    """Each non-zero value of a label image with its bool crop and ``(top, left)``, by value.

    One pass over the image (``scipy.ndimage.find_objects``) instead of one comparison of the
    whole image per object, and crops instead of full-size masks: a 2048 x 2048 label image
    of a thousand cells stays a few megabytes.
    """
    values = None
    if labels.size and labels.max() > 2 * labels.size:  # sparse 32-bit ids: renumber 1..K
        values, inverse = np.unique(labels, return_inverse=True)
        labels = inverse.reshape(labels.shape)
        if values[0] != 0:  # no background pixel: every value is an object
            values, labels = np.concatenate([[0], values]), labels + 1
    crops = []
    for index, box in enumerate(scipy.ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        value = index if values is None else int(values[index])
        crops.append((value, labels[box] == index, (box[0].start, box[1].start)))
    return crops


def _pillow(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image)


def _tiff_or_pillow(data: bytes) -> np.ndarray:
    try:
        return _tiff(data)
    except _UNREADABLE as tiff_error:
        if "imagecodecs" not in str(tiff_error):
            raise
        try:
            return _pillow(data)
        except _UNREADABLE:
            raise tiff_error from None


def _tiff(data: bytes) -> np.ndarray:
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        if not tiff.series:
            raise ValueError("no image in the TIFF file")
        series = tiff.series[0]
        if series.axes not in ("YX", "YXS", "SYX"):
            raise ValueError(f"a stack of planes, axes {series.axes} shape {list(series.shape)};"
                             " one 2-D image is read")
        pixel_count = math.prod(size for size, axis in zip(series.shape, series.axes)
                                if axis != "S")
        if pixel_count > MAX_PIXELS:
            raise ValueError(f"{pixel_count} pixels, more than the limit of {MAX_PIXELS}")
        pixels = series.asarray()
        if series.axes == "SYX":
            pixels = np.moveaxis(pixels, 0, -1)
    return pixels
