"""The five Mask R-CNN losses as plain tensor functions.

Shapes: B images, A anchors, T sampled ROIs per image, NC classes, mh×mw mask size.
`rpn_match` holds 1 (positive), -1 (negative) and 0 (neutral) per anchor. Each loss is a
mean over the items that take part, and 0 when none do (so an image without objects trains).
"""

from __future__ import annotations

import tensorflow as tf


def smooth_l1(diff: tf.Tensor) -> tf.Tensor:
    """Huber loss with delta 1, elementwise."""
    diff = tf.abs(diff)
    return tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)


def _mean(values: tf.Tensor) -> tf.Tensor:
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


def rpn_class_loss(rpn_match: tf.Tensor, rpn_class_logits: tf.Tensor) -> tf.Tensor:
    """Object/background cross-entropy on non-neutral anchors.

    `rpn_match [B, A]`, `rpn_class_logits [B, A, 2]`.
    """
    rpn_match = tf.reshape(rpn_match, tf.shape(rpn_class_logits)[:2])
    used = tf.not_equal(rpn_match, 0)
    labels = tf.cast(tf.equal(tf.boolean_mask(rpn_match, used), 1), tf.int32)
    logits = tf.boolean_mask(rpn_class_logits, used)
    return _mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def rpn_bbox_loss(target_bbox: tf.Tensor, rpn_match: tf.Tensor, rpn_bbox: tf.Tensor) -> tf.Tensor:
    """Smooth-L1 on positive anchors.

    `target_bbox [B, N, 4]` lists the deltas of each image's positive anchors in anchor order
    (N ≥ positives, zero-padded), as the data generator writes them; `rpn_bbox [B, A, 4]`.
    """
    rpn_match = tf.reshape(rpn_match, tf.shape(rpn_bbox)[:2])
    positive = tf.equal(rpn_match, 1)
    # The k-th positive anchor of an image pairs with row k of that image's target_bbox.
    rank = tf.cumsum(tf.cast(positive, tf.int32), axis=1) - 1
    where = tf.where(positive)
    targets = tf.gather_nd(
        target_bbox, tf.stack([where[:, 0], tf.cast(tf.gather_nd(rank, where), tf.int64)], axis=1)
    )
    predictions = tf.gather_nd(rpn_bbox, where)
    return _mean(smooth_l1(targets - predictions))


def mrcnn_class_loss(
    target_class_ids: tf.Tensor, pred_class_logits: tf.Tensor, active_class_ids: tf.Tensor
) -> tf.Tensor:
    """Softmax cross-entropy over sampled ROIs (padding included, as background).

    Predictions of classes that are not in the image's source dataset (`active_class_ids
    [B, NC]` = 0) are not penalised, as matterport does for multi-source training.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=target_class_ids, logits=pred_class_logits
    )
    predicted = tf.argmax(pred_class_logits, axis=-1, output_type=tf.int32)
    active = tf.gather(tf.cast(active_class_ids, tf.float32), predicted, batch_dims=1)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * active), tf.reduce_sum(active))


def _positive_rois(target_class_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Indices `[n, 2]` (image, roi) of ROIs with a foreground target, and their class ids `[n]`."""
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    where = tf.where(target_class_ids > 0)
    return where, tf.gather_nd(target_class_ids, where)


def mrcnn_bbox_loss(
    target_bbox: tf.Tensor, target_class_ids: tf.Tensor, pred_bbox: tf.Tensor
) -> tf.Tensor:
    """Smooth-L1 of the true class's deltas on positive ROIs. `pred_bbox [B, T, NC, 4]`."""
    where, class_ids = _positive_rois(target_class_ids)
    predictions = tf.gather(tf.gather_nd(pred_bbox, where), class_ids, batch_dims=1)
    return _mean(smooth_l1(tf.gather_nd(target_bbox, where) - predictions))


def mrcnn_mask_loss(
    target_masks: tf.Tensor, target_class_ids: tf.Tensor, pred_masks: tf.Tensor
) -> tf.Tensor:
    """Binary cross-entropy of the true class's mask on positive ROIs.

    `pred_masks [B, T', mh, mw, NC]` may cover only the first T' ≤ T ROIs: positives come
    first, so the mask head only needs to run on the slots that can hold them.
    """
    rois = tf.shape(pred_masks)[1]
    target_class_ids = target_class_ids[:, :rois]
    where, class_ids = _positive_rois(target_class_ids)
    predictions = tf.gather(tf.gather_nd(pred_masks, where), class_ids, axis=-1, batch_dims=1)
    targets = tf.gather_nd(target_masks[:, :rois], where)
    predictions = tf.clip_by_value(predictions, 1e-7, 1.0 - 1e-7)
    bce = -(targets * tf.math.log(predictions) + (1.0 - targets) * tf.math.log(1.0 - predictions))
    return _mean(bce)
