"""Image and mask resizing, molding and `image_meta`, in numpy.

Images are `[H, W, C]` (RGB uint8 at the API), masks bool `[H, W, N]`. A window is the
`(y1, x1, y2, x2)` part of a molded image that holds the picture (exclusive y2/x2), padding is
`[(top, bottom), (left, right), (0, 0)]` and a crop is `(y, x, h, w)`, as in matterport.
`image_meta` rows are `[12 + NUM_CLASSES]`: id, original shape (3), molded shape (3),
window (4), scale, active class ids.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.ndimage
import skimage.transform

RESIZE_MODES = ("none", "square", "pad64", "crop")
META_SIZE_WITHOUT_CLASSES = 12


def resize(
    image: np.ndarray,
    output_shape: Sequence[int],
    order: int = 1,
    mode: str = "constant",
    cval: float = 0,
    clip: bool = True,
    preserve_range: bool = False,
    anti_aliasing: bool = False,
) -> np.ndarray:
    """`skimage.transform.resize` with matterport's defaults (bilinear, zero border, no
    anti-aliasing, which newer scikit-image would otherwise switch on when shrinking).

    Args:
        image: `[H, W]` or `[H, W, C]` array.
        output_shape: `(h, w)`; channels are kept.

    Returns:
        float array `[h, w(, C)]`.
    """
    return skimage.transform.resize(
        image,
        tuple(int(s) for s in output_shape),
        order=order,
        mode=mode,
        cval=cval,
        clip=clip,
        preserve_range=preserve_range,
        anti_aliasing=anti_aliasing,
    )


def _pad_to(height: int, width: int, target_h: int, target_w: int) -> list[tuple[int, int]]:
    top, left = (target_h - height) // 2, (target_w - width) // 2
    return [(top, target_h - height - top), (left, target_w - width - left), (0, 0)]


def resize_image(
    image: np.ndarray,
    min_dim: int | None = None,
    max_dim: int | None = None,
    min_scale: float | None = None,
    mode: str = "square",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, tuple[int, int, int, int], float, list[tuple[int, int]], Any]:
    """Resize an image keeping its aspect ratio, then pad or crop it (matterport's modes).

    Modes:
        none: unchanged.
        square: scale up so the short side reaches `min_dim` (never down), at least by
            `min_scale`, but cap the long side at `max_dim`; zero-pad to `max_dim²`, centred.
        pad64: scale as for square without the `max_dim` cap, then zero-pad each side to a
            multiple of 64 (`min_dim` must be a multiple of 64).
        crop: scale as for pad64, then take a random `min_dim²` crop (training only).

    Args:
        image: `[H, W, C]` image.
        min_dim, max_dim, min_scale: see the modes.
        mode: one of `RESIZE_MODES`.
        rng: random generator for the crop position (a fresh one when None).

    Returns:
        image: the resized image, same dtype (bilinear values truncated, as matterport).
        window: `(y1, x1, y2, x2)` of the picture inside the returned image.
        scale: the resize factor.
        padding: `[(top, bottom), (left, right), (0, 0)]`.
        crop: `(y, x, h, w)` for mode crop, else None.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape [H, W, C], got {image.shape}")
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    padding = [(0, 0), (0, 0), (0, 0)]
    if mode == "none":
        return image, window, 1, padding, None
    if mode == "square" and not max_dim:
        raise ValueError("mode 'square' needs max_dim")
    if mode in ("pad64", "crop") and not min_dim:
        raise ValueError(f"mode {mode!r} needs min_dim")
    if mode == "pad64" and min_dim % 64:
        raise ValueError(f"mode 'pad64' needs min_dim to be a multiple of 64, got {min_dim}")

    scale = max(1, min_dim / min(h, w)) if min_dim else 1
    if min_scale and scale < min_scale:
        scale = min_scale
    if mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    resized = image
    if scale != 1:
        resized = resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    h, w = resized.shape[:2]

    crop = None
    if mode == "square":
        padding = _pad_to(h, w, max_dim, max_dim)
    elif mode == "pad64":
        padding = _pad_to(h, w, -(-h // 64) * 64, -(-w // 64) * 64)
    else:
        if h < min_dim or w < min_dim:
            raise ValueError(f"cannot crop {min_dim}x{min_dim} from a {h}x{w} image")
        rng = rng if rng is not None else np.random.default_rng()
        y = int(rng.integers(0, h - min_dim + 1))
        x = int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        resized = resized[y : y + min_dim, x : x + min_dim]
        window = (0, 0, min_dim, min_dim)
    if mode != "crop":
        resized = np.pad(resized, padding, mode="constant", constant_values=0)
        (top, _), (left, _), _ = padding
        window = (top, left, top + h, left + w)
    return resized.astype(image.dtype), window, scale, padding, crop


def resize_mask(
    mask: np.ndarray,
    scale: float,
    padding: Sequence[Sequence[int]],
    crop: Sequence[int] | None = None,
) -> np.ndarray:
    """Resize masks with the scale and padding (or crop) returned by `resize_image`.

    Args:
        mask: `[H, W, N]` bool masks.
        scale: resize factor.
        padding: `[(top, bottom), (left, right), (0, 0)]`.
        crop: `(y, x, h, w)` or None.

    Returns:
        `[h, w, N]` masks of the same dtype (nearest-neighbour resize).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape [H, W, N], got {mask.shape}")
    if scale != 1:  # zoom by 1 is the identity, but a pass over every instance's pixels
        with warnings.catch_warnings():
            # scipy warns that it rounds the output shape; round() is what resize_image does too.
            warnings.simplefilter("ignore")
            mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    if crop is not None:
        y, x, h, w = crop
        return mask[y : y + h, x : x + w]
    return np.pad(mask, [tuple(p) for p in padding], mode="constant", constant_values=0)


def _mean_pixel(mean_pixel: Any) -> np.ndarray:
    # Accept a Config (matterport passes one) as well as the mean itself.
    return np.asarray(getattr(mean_pixel, "MEAN_PIXEL", mean_pixel), dtype=np.float64)


def mold_image(images: np.ndarray, mean_pixel: Any) -> np.ndarray:
    """Subtract the mean pixel: RGB `[..., 3]` → float32 network input.

    Args:
        images: `[..., H, W, 3]` images.
        mean_pixel: `[3]` RGB mean (`config.MEAN_PIXEL`) or an object with `MEAN_PIXEL`.
    """
    # As matterport: float32 pixels minus the float64 mean (in float64), then float32 for the
    # network; subtracting a float32 mean rounds differently for some pixel values.
    return (np.asarray(images).astype(np.float32) - _mean_pixel(mean_pixel)).astype(np.float32)


def unmold_image(normalized_images: np.ndarray, mean_pixel: Any) -> np.ndarray:
    """Add the mean pixel back: float32 network input → uint8 `[..., H, W, 3]` (inverse of
    `mold_image`; values are truncated to uint8 as matterport).
    """
    return (np.asarray(normalized_images) + _mean_pixel(mean_pixel)).astype(np.uint8)


def compose_image_meta(
    image_id: int,
    original_image_shape: Sequence[int],
    image_shape: Sequence[int],
    window: Sequence[int],
    scale: float,
    active_class_ids: Sequence[int],
) -> np.ndarray:
    """Pack the attributes of one image into a float32 `[12 + NUM_CLASSES]` vector.

    Args:
        image_id: index of the image in its dataset.
        original_image_shape: `[H, W, C]` before resizing and padding.
        image_shape: `[H, W, C]` after resizing and padding.
        window: `(y1, x1, y2, x2)` of the picture inside the molded image.
        scale: resize factor applied to the original image.
        active_class_ids: `[NUM_CLASSES]` 1 for classes of the image's dataset, else 0.
    """
    if len(original_image_shape) != 3 or len(image_shape) != 3 or len(window) != 4:
        raise ValueError(
            "original_image_shape and image_shape need 3 entries and window 4, got "
            f"{tuple(original_image_shape)}, {tuple(image_shape)}, {tuple(window)}"
        )
    parts = [[image_id], original_image_shape, image_shape, window, [scale], active_class_ids]
    return np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Unpack `[B, 12 + NUM_CLASSES]` image metas (see `compose_image_meta`).

    Returns:
        dict of `image_id` int32 `[B]`, `original_image_shape` int32 `[B, 3]`, `image_shape`
        int32 `[B, 3]`, `window` int32 `[B, 4]`, `scale` float32 `[B]`, `active_class_ids`
        int32 `[B, NUM_CLASSES]`.
    """
    meta = np.asarray(meta)
    if meta.ndim != 2 or meta.shape[1] < META_SIZE_WITHOUT_CLASSES:
        raise ValueError(f"meta must have shape [B, 12 + NUM_CLASSES], got {meta.shape}")
    return {
        "image_id": meta[:, 0].astype(np.int32),
        "original_image_shape": meta[:, 1:4].astype(np.int32),
        "image_shape": meta[:, 4:7].astype(np.int32),
        "window": meta[:, 7:11].astype(np.int32),
        "scale": meta[:, 11].astype(np.float32),
        "active_class_ids": meta[:, 12:].astype(np.int32),
    }
