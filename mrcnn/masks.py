"""Instance masks in numpy: mini-masks, mask IoU and pasting small masks into the image.

H, W image size; N instances; h, w small-mask size (e.g. 28×28 from the mask head, 56×56
mini-masks). Boxes are int pixel `[N, (y1, x1, y2, x2)]` with exclusive y2/x2. Resizing is
matterport's: bilinear, pixel-centre aligned, zeros beyond the edge (skimage `mode="constant"`),
no anti-aliasing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from mrcnn.boxes import extract_bboxes
from mrcnn.transform import resize

# Bounds each float32 scratch array of a `paste_masks` chunk, [n, canvas_h, canvas_w] <= [n, H, W].
_PASTE_CHUNK_BYTES = 64 * 2**20


def _check_instances(bbox: np.ndarray, masks: np.ndarray, name: str) -> np.ndarray:
    bbox = np.asarray(bbox)
    if bbox.ndim != 2 or bbox.shape[1] < 4 or bbox.shape[0] != masks.shape[-1]:
        raise ValueError(
            f"bbox must have shape [N, 4] with N = {masks.shape[-1]} ({name} instances), "
            f"got {bbox.shape}"
        )
    return bbox[:, :4].astype(np.int64)


def minimize_mask(bbox: np.ndarray, mask: np.ndarray, mini_shape: Sequence[int]) -> np.ndarray:
    """Crop each mask to its box and resize it to `mini_shape` to save memory.

    The same masks as resizing each crop with `mrcnn.transform.resize` and rounding, but each
    resize is two small matrix products with bilinear weights (`_resize_matrix`) instead of a
    scikit-image call, whose fixed cost per call dominated images holding hundreds of
    instances.

    Args:
        bbox: `[N, (y1, x1, y2, x2)]` int pixel boxes, as from `extract_bboxes`.
        mask: `[H, W, N]` masks (bool, or any dtype where non-zero is inside).
        mini_shape: `(h, w)`, e.g. `MINI_MASK_SHAPE`.

    Returns:
        bool `[h, w, N]` mini-masks.

    Raises:
        ValueError: for a box of zero area.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape [H, W, N], got {mask.shape}")
    bbox = _check_instances(bbox, mask, "mask")
    mini_h, mini_w = (int(v) for v in mini_shape)
    mini_mask = np.zeros((mask.shape[-1], mini_h, mini_w), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(bbox):
        crop = mask[y1:y2, x1:x2, i] != 0
        if crop.size == 0:
            raise ValueError(f"instance {i} has a box of zero area: {(y1, x1, y2, x2)}")
        if crop.all():
            # skimage clips to the input's range: an all-inside crop keeps its whole mini-mask,
            # although edge pixels blend with the zero border.
            mini_mask[i] = True
            continue
        rows = _resize_matrix(crop.shape[0], mini_h)
        cols = _resize_matrix(crop.shape[1], mini_w)
        value = rows @ crop.astype(np.float64) @ cols.T
        # skimage returns float32 for a float32 crop; round there, then > 0.5 as np.around.
        mini_mask[i] = value.astype(np.float32) > 0.5
    return np.ascontiguousarray(mini_mask.transpose(1, 2, 0))


@functools.lru_cache(maxsize=128)
def _resize_matrix(length: int, size: int) -> np.ndarray:
    """float64 `[size, length]`: bilinear resize of one axis from `length` to `size` pixels.

    Output pixel `p` reads input coordinate `(p + 0.5) * length / size - 0.5` (skimage's grid
    alignment), blending its two neighbours; a neighbour beyond the edge is a zero (skimage's
    `mode="constant"`), so its weight is dropped. Cached read-only: crop sizes repeat.
    """
    coords = (np.arange(size, dtype=np.float64) + 0.5) * (length / size) - 0.5
    low = np.floor(coords)
    upper_weight = coords - low
    low = low.astype(np.int64)
    matrix = np.zeros((size, length + 2), dtype=np.float64)  # columns 0 and length + 1: the border
    matrix[np.arange(size), low + 1] = 1.0 - upper_weight
    matrix[np.arange(size), low + 2] += upper_weight
    matrix = matrix[:, 1:-1].copy()
    matrix.flags.writeable = False
    return matrix


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Resize mini-masks back into their boxes in a full-size image (undoes `minimize_mask`).

    Args:
        bbox: `[N, (y1, x1, y2, x2)]` int pixel boxes.
        mini_mask: `[h, w, N]` bool mini-masks.
        image_shape: `(H, W, ...)`.

    Returns:
        bool `[H, W, N]` masks.
    """
    mini_mask = np.asarray(mini_mask)
    if mini_mask.ndim != 3:
        raise ValueError(f"mini_mask must have shape [h, w, N], got {mini_mask.shape}")
    bbox = _check_instances(bbox, mini_mask, "mini_mask")
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(bbox):
        m = resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1))
        mask[y1:y2, x1:x2, i] = np.around(m) > 0
    return mask


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU matrix between two sets of masks.

    Args:
        masks1: `[H, W, N1]` masks (bool, or floats thresholded at 0.5).
        masks2: `[H, W, N2]` masks of the same image size.

    Returns:
        float32 `[N1, N2]` IoU; zeros when either set is empty.
    """
    masks1, masks2 = np.asarray(masks1), np.asarray(masks2)
    if masks1.ndim != 3 or masks2.ndim != 3:
        raise ValueError(f"masks must be [H, W, N], got {masks1.shape} and {masks2.shape}")
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), np.float32)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"mask sizes differ: {masks1.shape[:2]} vs {masks2.shape[:2]}")
    on1, on2 = masks1 > 0.5, masks2 > 0.5
    # A dense product costs pixels × N1 × N2 (94 GFLOP for 400 × 300 nuclei in a 0.8 MP
    # image); instances that touch are few, so only pairs whose boxes meet are compared,
    # each inside the intersection of the two boxes.
    boxes1, boxes2 = extract_bboxes(on1), extract_bboxes(on2)
    top = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    left = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    bottom = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    right = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    intersection = np.zeros((n1, n2), np.float64)
    for i, j in zip(*np.nonzero((bottom > top) & (right > left))):
        y1, x1, y2, x2 = top[i, j], left[i, j], bottom[i, j], right[i, j]
        intersection[i, j] = np.count_nonzero(on1[y1:y2, x1:x2, i] & on2[y1:y2, x1:x2, j])
    union = on1.sum(axis=(0, 1))[:, None] + on2.sum(axis=(0, 1))[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, 0).astype(np.float32)


def unmold_mask(mask: np.ndarray, bbox: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    """Resize one small float mask to its box and place it in a full-size image.

    Args:
        mask: `[h, w]` float mask (mask-head probabilities), e.g. 28×28.
        bbox: `(y1, x1, y2, x2)` int pixel box inside the image.
        image_shape: `(H, W, ...)`.

    Returns:
        bool `[H, W]`, True where the resized mask is >= 0.5.
    """
    y1, x1, y2, x2 = (int(v) for v in bbox)
    small = resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1))
    full_mask = np.zeros(tuple(image_shape[:2]), dtype=bool)
    full_mask[y1:y2, x1:x2] = small >= 0.5
    return full_mask


def _taps(
    pixels: np.ndarray, starts: np.ndarray, stops: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear taps of image pixels into one axis of small masks padded with a zero each side.

    Pixel `p` of a box side `[start, stop)` of length `L` reads source coordinate
    `(p - start + 0.5) * size / L - 0.5` (skimage's grid alignment), so samples beyond the edge
    blend with the zero padding.

    Args:
        pixels: `[n, P]` int image coordinates, each >= its box start.
        starts, stops: `[n]` box sides.
        size: length of the small masks along this axis (without padding).

    Returns:
        int `[n, P]` padded index of the lower tap and float32 `[n, P]` weight of the upper one.
    """
    lengths = np.maximum(stops - starts, 1)[:, None]
    coords = (pixels - starts[:, None] + 0.5) * (size / lengths) - 0.5
    low = np.floor(coords)
    index = np.clip(low.astype(np.int64) + 1, 0, size)
    return index, (coords - low).astype(np.float32)


def paste_masks(
    masks: np.ndarray,
    boxes: np.ndarray,
    image_shape: Sequence[int],
    threshold: float = 0.5,
) -> np.ndarray:
    """Resize small float masks to their boxes and paste them into full-size masks, vectorised.

    Same result as stacking `unmold_mask` over instances. Instances are sorted by box size and
    resized in chunks, each chunk on a canvas as large as its largest visible box: a separable
    bilinear resize done with gathers and broadcasting (no BLAS, whose threads stall when other
    processes share the cores). Only the copy of each canvas into place is per instance.

    Args:
        masks: `[N, h, w]` float masks (mask-head probabilities).
        boxes: `[N, (y1, x1, y2, x2)]` int pixel boxes; parts outside the image are cut off.
        image_shape: `(H, W, ...)`.
        threshold: probability at or above which a pixel belongs to the instance, in (0, 1].

    Returns:
        bool `[H, W, N]` (`[H, W, 0]` when N = 0).
    """
    masks = np.asarray(masks, dtype=np.float32)
    boxes = np.asarray(boxes)
    if masks.ndim != 3 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(
            f"masks must be [N, h, w] and boxes [N, 4], got {masks.shape} and {boxes.shape}"
        )
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    height, width = (int(v) for v in image_shape[:2])
    n, h, w = masks.shape
    out = np.zeros((height, width, n), dtype=bool)
    boxes = boxes.astype(np.int64)
    # Visible part of each box: [top, bottom) x [left, right).
    top, left = np.clip(boxes[:, 0], 0, height), np.clip(boxes[:, 1], 0, width)
    bottom = np.maximum(np.clip(boxes[:, 2], 0, height), top)
    right = np.maximum(np.clip(boxes[:, 3], 0, width), left)
    order = np.argsort((bottom - top) * (right - left), kind="stable")
    chunk = max(1, _PASTE_CHUNK_BYTES // (4 * max(height * width, 1)))
    for start in range(0, n, chunk):
        ids = order[start : start + chunk]
        k = np.arange(ids.size)[:, None]
        ys = top[ids, None] + np.arange(int((bottom - top)[ids].max()))  # [n, canvas_h]
        xs = left[ids, None] + np.arange(int((right - left)[ids].max()))  # [n, canvas_w]
        y_index, y_frac = _taps(ys, boxes[ids, 0], boxes[ids, 2], h)
        x_index, x_frac = _taps(xs, boxes[ids, 1], boxes[ids, 3], w)
        padded = np.pad(masks[ids], ((0, 0), (1, 1), (1, 1))).transpose(0, 2, 1)  # [n, w+2, h+2]
        # Along x first, while the data is small; then transpose so that the gather along y
        # copies whole canvas rows.
        lo, hi = padded[k, x_index], padded[k, x_index + 1]  # [n, canvas_w, h + 2]
        by_x = np.ascontiguousarray((lo + (hi - lo) * x_frac[:, :, None]).transpose(0, 2, 1))
        lo, hi = by_x[k, y_index], by_x[k, y_index + 1]  # [n, canvas_h, canvas_w]
        hi -= lo
        hi *= y_frac[:, :, None]
        hi += lo
        pasted = hi >= threshold
        # skimage clips the resized mask to the input's range: a mask whose minimum passes the
        # threshold fills its whole box, although edge pixels blend with the zero border.
        pasted[masks[ids].min(axis=(1, 2)) >= threshold] = True
        for j, i in enumerate(ids):
            out[top[i] : bottom[i], left[i] : right[i], i] = pasted[
                j, : bottom[i] - top[i], : right[i] - left[i]
            ]
    return out
