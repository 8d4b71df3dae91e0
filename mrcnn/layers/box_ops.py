"""Box arithmetic on tensors: the graph twins of `mrcnn.boxes`.

Boxes are `[..., (y1, x1, y2, x2)]` in normalized coordinates unless a function says otherwise.
"""

from __future__ import annotations

import tensorflow as tf

# Largest log-scale change applied to a box side: an untrained head can predict huge deltas,
# and exp() of them would overflow to inf/NaN boxes (torchvision clamps at the same value).
MAX_LOG_SCALE = 4.135166556742356  # log(1000 / 16)


def apply_box_deltas(boxes: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Shift and scale `boxes [..., 4]` by `deltas [..., (dy, dx, log(dh), log(dw))]`."""
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    half_height = 0.5 * height * tf.exp(tf.minimum(deltas[..., 2], MAX_LOG_SCALE))
    half_width = 0.5 * width * tf.exp(tf.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return tf.stack(
        [
            center_y - half_height,
            center_x - half_width,
            center_y + half_height,
            center_x + half_width,
        ],
        axis=-1,
    )


def clip_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Clip `boxes [..., 4]` to `window [..., (y1, x1, y2, x2)]`, broadcastable to `boxes`."""
    low = tf.concat([window[..., :2], window[..., :2]], axis=-1)
    high = tf.concat([window[..., 2:], window[..., 2:]], axis=-1)
    return tf.minimum(tf.maximum(boxes, low), high)


def pairwise_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU matrix `[N1, N2]` of `boxes1 [N1, 4]` against `boxes2 [N2, 4]`."""
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    inter_h = tf.maximum(
        tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0.0
    )
    inter_w = tf.maximum(
        tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0.0
    )
    intersection = inter_h * inter_w
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return tf.math.divide_no_nan(intersection, union)


def box_deltas(boxes: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
    """Deltas `[..., 4]` that turn `boxes` into `gt_boxes` (inverse of `apply_box_deltas`)."""
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    gt_height = gt_boxes[..., 2] - gt_boxes[..., 0]
    gt_width = gt_boxes[..., 3] - gt_boxes[..., 1]
    dy = (gt_boxes[..., 0] + 0.5 * gt_height - boxes[..., 0] - 0.5 * height) / height
    dx = (gt_boxes[..., 1] + 0.5 * gt_width - boxes[..., 1] - 0.5 * width) / width
    return tf.stack(
        [dy, dx, tf.math.log(gt_height / height), tf.math.log(gt_width / width)], axis=-1
    )


def norm_boxes(boxes: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """Pixel boxes → normalized, matterport's rule: (box - [0,0,1,1]) / [h-1, w-1, h-1, w-1]."""
    h = tf.cast(image_shape[0], tf.float32)
    w = tf.cast(image_shape[1], tf.float32)
    scale = tf.stack([h, w, h, w]) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return (tf.cast(boxes, tf.float32) - shift) / scale


def non_zero_rows(boxes: tf.Tensor) -> tf.Tensor:
    """Bool `[N]`: rows of `boxes [N, 4]` that are not all-zero padding."""
    return tf.reduce_any(tf.not_equal(boxes, 0.0), axis=-1)
