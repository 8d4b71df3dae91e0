"""RPN training targets in numpy: match anchors to ground truth, then sample them.

A anchors, G ground-truth boxes, both pixel `[*, (y1, x1, y2, x2)]`. `rpn_match` marks each
anchor 1 (positive), -1 (negative) or 0 (ignored); `rpn_bbox` holds the deltas
`[(dy, dx, log(dh), log(dw))] / std_dev` of the positives, in anchor order, zero-padded.
Negative class ids mark crowd regions and class 0 padding, as in matterport.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrcnn.boxes import box_refinement, compute_overlaps

POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3
CROWD_IOU = 0.001


def _negatives_allowed(anchors: np.ndarray, crowd_boxes: np.ndarray) -> np.ndarray:
    """`[A]` bool: False for anchors touching a crowd region (they are never negatives)."""
    if crowd_boxes.shape[0] == 0:
        return np.ones(anchors.shape[0], dtype=bool)
    return compute_overlaps(anchors, crowd_boxes).max(axis=1) < CROWD_IOU


def _subsample(rpn_match: np.ndarray, label: int, keep: int, rng: np.random.Generator) -> None:
    """Reset randomly chosen anchors with `label` to 0 until at most `keep` remain."""
    ids = np.flatnonzero(rpn_match == label)
    extra = ids.size - keep
    if extra > 0:
        rpn_match[rng.choice(ids, extra, replace=False)] = 0


def build_rpn_targets(
    anchors: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_boxes: np.ndarray,
    anchors_per_image: int = 256,
    bbox_std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label anchors for the RPN losses and compute the box targets of the positives.

    An anchor is positive at IoU >= 0.7 with a GT box, and so is each GT box's best anchor
    (all tied best anchors); negative at IoU < 0.3 unless it touches a crowd box
    (IoU >= 0.001). At most half of `anchors_per_image` are positive, the rest of the budget
    goes to negatives; extra anchors of each kind are dropped at random.

    Args:
        anchors: `[A, (y1, x1, y2, x2)]` pixel anchors.
        gt_class_ids: `[G]` int class ids; < 0 crowd, 0 padding (ignored).
        gt_boxes: `[G, (y1, x1, y2, x2)]` pixel boxes.
        anchors_per_image: anchors sampled for the loss (`RPN_TRAIN_ANCHORS_PER_IMAGE`).
        bbox_std_dev: `[4]` divisor of the deltas (`RPN_BBOX_STD_DEV`).
        rng: random generator for the subsampling (a fresh one when None).

    Returns:
        rpn_match: int32 `[A]` in {1, -1, 0}.
        rpn_bbox: float32 `[anchors_per_image, (dy, dx, log(dh), log(dw))]`, positives first.
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    if gt_class_ids.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            f"gt_class_ids has {gt_class_ids.shape[0]} entries but gt_boxes has "
            f"{gt_boxes.shape[0]} rows"
        )
    rng = rng if rng is not None else np.random.default_rng()
    allow_negative = _negatives_allowed(anchors, gt_boxes[gt_class_ids < 0])
    gt_boxes = gt_boxes[gt_class_ids > 0]

    rpn_match = np.zeros(anchors.shape[0], dtype=np.int32)
    rpn_bbox = np.zeros((anchors_per_image, 4), dtype=np.float32)
    if gt_boxes.shape[0] == 0:
        rpn_match[allow_negative] = -1
        _subsample(rpn_match, -1, anchors_per_image, rng)
        return rpn_match, rpn_bbox

    overlaps = compute_overlaps(anchors, gt_boxes)  # [A, G]
    best_gt = overlaps.argmax(axis=1)
    best_iou = overlaps[np.arange(anchors.shape[0]), best_gt]
    # Negatives first: the positive rules below override them.
    rpn_match[(best_iou < NEGATIVE_IOU) & allow_negative] = -1
    # Each GT box's best anchors, ties included; a GT box no anchor touches gets none.
    gt_best_iou = overlaps.max(axis=0)
    is_best = (overlaps == gt_best_iou) & (gt_best_iou > 0)
    rpn_match[is_best.any(axis=1)] = 1
    rpn_match[best_iou >= POSITIVE_IOU] = 1

    _subsample(rpn_match, 1, anchors_per_image // 2, rng)
    _subsample(rpn_match, -1, anchors_per_image - int(np.sum(rpn_match == 1)), rng)

    positive = np.flatnonzero(rpn_match == 1)
    deltas = box_refinement(anchors[positive], gt_boxes[best_gt[positive]])
    rpn_bbox[: positive.size] = deltas / np.asarray(bbox_std_dev, dtype=np.float32)
    return rpn_match, rpn_bbox
