"""Image files as pixel arrays for the converter: instance label images, binary masks, crops.

The files are decoded by `mrcnn.images`, the reader of the model side too, so the converter
accepts exactly the images training and inference read. TIFF goes through tifffile (Pillow's
libtiff for compressions tifffile needs ``imagecodecs`` for), every other format through
Pillow.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import scipy.ndimage

from mrcnn import images

# Pillow's own limit (it warns above it; the converter refuses): decompression bombs.
MAX_PIXELS = PIL.Image.MAX_IMAGE_PIXELS


def decode_pixels(data: bytes, what: str) -> np.ndarray:
    """Decode an image file into the samples it stores, ``[H, W]`` or ``[H, W, C]``, in the
    file's dtype (`mrcnn.images.decode_pixels`: palette indices kept, no EXIF turn).

    Args:
        data: the file's bytes.
        what: how errors name the file, e.g. ``"'a/b.tif'"`` or ``"label image"``.

    Raises:
        ValueError: ``<what> is not a readable image (<why>)``, or a stack of planes.
    """
    return images.decode_pixels(data, what, MAX_PIXELS)


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
        raise ValueError(
            f"{what} must be one channel of integers, got {labels.dtype} {labels.shape} ({name})"
        )
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
    return mask[top : rows[-1] + 1, left : columns[-1] + 1].copy(), (top, left)


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
