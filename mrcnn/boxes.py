"""Bounding-box geometry in numpy.

Boxes are `[N, (y1, x1, y2, x2)]`. In pixel coordinates (y2, x2) is one past the box, as in
matterport's `extract_bboxes`; normalized coordinates follow matterport's rule
`norm = (box - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1]`. Deltas are
`[N, (dy, dx, log(dh), log(dw))]`: center shifts in units of the box size, then log size ratios.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SHIFT = np.array([0, 0, 1, 1])


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {boxes.shape}")
    return boxes


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes `[N, (y1, x1, y2, x2)]` → `[N]` (negative sizes are not clamped)."""
    boxes = _check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes around instance masks.

    Args:
        mask: `[H, W, N]` bool (or 0/1) masks, instances last.

    Returns:
        int32 `[N, (y1, x1, y2, x2)]` with exclusive y2/x2; all zeros for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape [H, W, N], got {mask.shape}")
    if mask.shape[0] == 0 or mask.shape[1] == 0:
        return np.zeros((mask.shape[2], 4), np.int32)
    rows = mask.any(axis=1)  # [H, N]: row y holds a pixel of instance n
    cols = mask.any(axis=0)  # [W, N]
    present = rows.any(axis=0)
    y1 = rows.argmax(axis=0)
    x1 = cols.argmax(axis=0)
    # The last True of each column: search the reversed axis.
    y2 = rows.shape[0] - rows[::-1].argmax(axis=0)
    x2 = cols.shape[0] - cols[::-1].argmax(axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1)
    return np.where(present[:, None], boxes, 0).astype(np.int32)


def compute_iou(
    box: np.ndarray, boxes: np.ndarray, box_area: float, boxes_area: np.ndarray
) -> np.ndarray:
    """IoU of one box with many.

    Args:
        box: `[(y1, x1, y2, x2)]`.
        boxes: `[N, (y1, x1, y2, x2)]`.
        box_area: area of `box`.
        boxes_area: `[N]` areas of `boxes` (passed in so callers compute them once).

    Returns:
        `[N]` IoU values.
    """
    boxes = _check_boxes(boxes, "boxes")
    y1 = np.maximum(box[0], boxes[:, 0])
    x1 = np.maximum(box[1], boxes[:, 1])
    y2 = np.minimum(box[2], boxes[:, 2])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    return intersection / (box_area + boxes_area - intersection)


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU matrix between two sets of boxes.

    Args:
        boxes1: `[N1, (y1, x1, y2, x2)]`.
        boxes2: `[N2, (y1, x1, y2, x2)]`.

    Returns:
        `[N1, N2]` IoU, in the floating type of the inputs (at least float32).
    """
    boxes1 = _check_boxes(boxes1, "boxes1")
    boxes2 = _check_boxes(boxes2, "boxes2")
    dtype = np.result_type(boxes1, boxes2, np.float32)
    b1 = boxes1.astype(dtype, copy=False)
    b2 = boxes2.astype(dtype, copy=False)
    # In-place updates keep the number of [N1, N2] temporaries at three; N1 may be ~260k anchors.
    height = np.minimum(b1[:, None, 2], b2[None, :, 2])
    height -= np.maximum(b1[:, None, 0], b2[None, :, 0])
    np.maximum(height, 0, out=height)
    width = np.minimum(b1[:, None, 3], b2[None, :, 3])
    width -= np.maximum(b1[:, None, 1], b2[None, :, 1])
    np.maximum(width, 0, out=width)
    intersection = np.multiply(height, width, out=height)
    union = np.add(box_area(b1)[:, None], box_area(b2)[None, :], out=width)
    union -= intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(intersection, union, out=intersection)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS: keep the best box, drop those overlapping it with IoU > threshold, repeat.

    Args:
        boxes: `[N, (y1, x1, y2, x2)]`.
        scores: `[N]` box scores.
        threshold: IoU above which a lower-scored box is suppressed.

    Returns:
        int32 indices of the kept boxes, highest score first.
    """
    boxes = _check_boxes(boxes, "boxes").astype(np.float32, copy=False)
    scores = np.asarray(scores)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape [{boxes.shape[0]}], got {scores.shape}")
    areas = box_area(boxes)
    # Stable sort reversed: among equal scores the later index comes first, as matterport's.
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[~(iou > threshold)]
    return np.array(keep, dtype=np.int32)


def _centers_sizes(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * height, boxes[:, 1] + 0.5 * width, height, width


def box_refinement(box: np.ndarray, gt_box: np.ndarray) -> np.ndarray:
    """Deltas that move `box` onto `gt_box`.

    Args:
        box: `[N, (y1, x1, y2, x2)]`.
        gt_box: `[N, (y1, x1, y2, x2)]`, the targets of the same rows.

    Returns:
        float32 `[N, (dy, dx, log(dh), log(dw))]`.
    """
    box = _check_boxes(box, "box").astype(np.float32)
    gt_box = _check_boxes(gt_box, "gt_box").astype(np.float32)
    if box.shape != gt_box.shape:
        raise ValueError(f"box {box.shape} and gt_box {gt_box.shape} must have the same shape")
    cy, cx, h, w = _centers_sizes(box)
    gt_cy, gt_cx, gt_h, gt_w = _centers_sizes(gt_box)
    deltas = [(gt_cy - cy) / h, (gt_cx - cx) / w, np.log(gt_h / h), np.log(gt_w / w)]
    return np.stack(deltas, axis=1)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of `box_refinement`.

    Args:
        boxes: `[N, (y1, x1, y2, x2)]`.
        deltas: `[N, (dy, dx, log(dh), log(dw))]`.

    Returns:
        float32 `[N, (y1, x1, y2, x2)]` refined boxes.
    """
    boxes = _check_boxes(boxes, "boxes").astype(np.float32)
    deltas = _check_boxes(deltas, "deltas")
    if boxes.shape != deltas.shape:
        raise ValueError(f"boxes {boxes.shape} and deltas {deltas.shape} must have the same shape")
    cy, cx, h, w = _centers_sizes(boxes)
    cy = cy + deltas[:, 0] * h
    cx = cx + deltas[:, 1] * w
    h = h * np.exp(deltas[:, 2])
    w = w * np.exp(deltas[:, 3])
    y1 = cy - 0.5 * h
    x1 = cx - 0.5 * w
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(np.float32)


def _shape_scale(shape: Sequence[int]) -> np.ndarray:
    if len(shape) < 2:
        raise ValueError(f"shape must be (height, width, ...), got {tuple(shape)}")
    h, w = shape[:2]
    return np.array([h - 1, w - 1, h - 1, w - 1])


def norm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pixel boxes (exclusive y2/x2) → normalized boxes.

    Args:
        boxes: `[N, (y1, x1, y2, x2)]` in pixels.
        shape: `(height, width)` of the image in pixels (extra entries are ignored).

    Returns:
        float32 `[N, (y1, x1, y2, x2)]` in normalized coordinates.
    """
    boxes = _check_boxes(boxes, "boxes")
    return ((boxes - _SHIFT) / _shape_scale(shape)).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Normalized boxes → int32 pixel boxes (exclusive y2/x2); inverse of `norm_boxes`.

    Args:
        boxes: `[N, (y1, x1, y2, x2)]` in normalized coordinates.
        shape: `(height, width)` of the image in pixels (extra entries are ignored).

    Returns:
        int32 `[N, (y1, x1, y2, x2)]` in pixels.
    """
    boxes = _check_boxes(boxes, "boxes")
    return np.around(boxes * _shape_scale(shape) + _SHIFT).astype(np.int32)


def clip_boxes(boxes: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Clip boxes to a window.

    Args:
        boxes: `[N, (y1, x1, y2, x2)]`.
        window: `(y1, x1, y2, x2)`, in the same coordinates as `boxes`.

    Returns:
        `[N, (y1, x1, y2, x2)]` of the same dtype, every coordinate inside the window.
    """
    boxes = _check_boxes(boxes, "boxes")
    wy1, wx1, wy2, wx2 = window
    low = np.array([wy1, wx1, wy1, wx1])
    high = np.array([wy2, wx2, wy2, wx2])
    return np.clip(boxes, low, high).astype(boxes.dtype)


def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Drop all-zero rows (zero padding) from `[rows, columns]`."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [rows, columns], got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]
