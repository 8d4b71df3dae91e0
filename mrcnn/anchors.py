"""Pyramid anchors in numpy, with matterport's numbers and order.

L pyramid levels, R ratios (width / height), A anchors in all. Anchors of one level are centred
on `(y, x) * feature_stride` for every `anchor_stride`-th feature cell and listed row by row,
then column, then anchor type (ratio, in the given order): the order in which the RPN head's
`[B, H, W, R * k]` outputs are flattened. Levels follow each other, finest first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from mrcnn.boxes import norm_boxes


def compute_backbone_shapes(image_shape: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """Feature-map sizes of each pyramid level.

    Args:
        image_shape: `(height, width, ...)` of the molded image.
        strides: `[L]` stride of each level in pixels, e.g. `[4, 8, 16, 32, 64]`.

    Returns:
        int `[L, (height, width)]`, `ceil(side / stride)` per level.
    """
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must be (height, width, ...), got {tuple(image_shape)}")
    h, w = image_shape[:2]
    return np.array([[math.ceil(h / s), math.ceil(w / s)] for s in strides], dtype=np.int64)


def generate_anchors(
    scales: float | Sequence[float],
    ratios: Sequence[float],
    shape: Sequence[int],
    feature_stride: int,
    anchor_stride: int,
) -> np.ndarray:
    """Anchors of one pyramid level.

    Args:
        scales: anchor side(s) in pixels (`sqrt(area)`); one per level in the pyramid.
        ratios: `[R]` width / height ratios, e.g. `(0.5, 1, 2)`.
        shape: `(height, width)` of the feature map.
        feature_stride: the level's stride in image pixels.
        anchor_stride: anchors on every `anchor_stride`-th feature cell.

    Returns:
        float64 `[cells * R * len(scales), (y1, x1, y2, x2)]` in pixels, ordered
        (y, x, ratio, scale).
    """
    if anchor_stride < 1 or feature_stride < 1:
        raise ValueError(f"strides must be >= 1, got {feature_stride=} {anchor_stride=}")
    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1, 1)
    scales = np.asarray(scales, dtype=np.float64).reshape(1, -1)
    heights = (scales / np.sqrt(ratios)).ravel()  # [R * S], ratio-major as matterport
    widths = (scales * np.sqrt(ratios)).ravel()
    ys = np.arange(0, shape[0], anchor_stride) * feature_stride
    xs = np.arange(0, shape[1], anchor_stride) * feature_stride
    # Broadcast to [Y, X, K]: rows, then columns, then anchor types.
    cy = np.broadcast_to(ys[:, None, None], (ys.size, xs.size, heights.size))
    cx = np.broadcast_to(xs[None, :, None], cy.shape)
    half_h = np.broadcast_to(0.5 * heights, cy.shape)
    half_w = np.broadcast_to(0.5 * widths, cy.shape)
    boxes = np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(
    scales: Sequence[float],
    ratios: Sequence[float],
    feature_shapes: Sequence[Sequence[int]],
    feature_strides: Sequence[int],
    anchor_stride: int,
) -> np.ndarray:
    """Anchors of all levels, one scale per level, concatenated in level order.

    Args:
        scales: `[L]` anchor side per level in pixels, e.g. `(32, 64, 128, 256, 512)`.
        ratios: `[R]` width / height ratios used on every level.
        feature_shapes: `[L, (height, width)]` from `compute_backbone_shapes`.
        feature_strides: `[L]` strides in pixels.
        anchor_stride: anchors on every `anchor_stride`-th feature cell.

    Returns:
        float64 `[A, (y1, x1, y2, x2)]` in pixels.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"need one scale, feature shape and stride per level, got {len(scales)} scales, "
            f"{len(feature_shapes)} shapes, {len(feature_strides)} strides"
        )
    levels = [
        generate_anchors(scale, ratios, shape, stride, anchor_stride)
        for scale, shape, stride in zip(scales, feature_shapes, feature_strides)
    ]
    return np.concatenate(levels, axis=0)


@functools.lru_cache(maxsize=16)
def _cached_anchors(
    image_shape: tuple[int, ...],
    scales: tuple[float, ...],
    ratios: tuple[float, ...],
    strides: tuple[int, ...],
    anchor_stride: int,
) -> np.ndarray:
    shapes = compute_backbone_shapes(image_shape, strides)
    anchors = generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    anchors = norm_boxes(anchors, image_shape[:2])
    anchors.flags.writeable = False  # shared by every caller of the cache
    return anchors


def get_anchors(
    image_shape: Sequence[int],
    scales: Sequence[float],
    ratios: Sequence[float],
    strides: Sequence[int],
    anchor_stride: int = 1,
) -> np.ndarray:
    """Normalized pyramid anchors for a molded image shape, cached per arguments.

    Args:
        image_shape: `(height, width, ...)` of the molded image.
        scales: `[L]` anchor side per level in pixels (`RPN_ANCHOR_SCALES`).
        ratios: `[R]` width / height ratios (`RPN_ANCHOR_RATIOS`).
        strides: `[L]` level strides in pixels (`BACKBONE_STRIDES`).
        anchor_stride: `RPN_ANCHOR_STRIDE`.

    Returns:
        read-only float32 `[A, (y1, x1, y2, x2)]` in normalized coordinates.
    """
    return _cached_anchors(
        tuple(int(s) for s in image_shape[:2]),
        tuple(float(s) for s in scales),
        tuple(float(r) for r in ratios),
        tuple(int(s) for s in strides),
        int(anchor_stride),
    )
