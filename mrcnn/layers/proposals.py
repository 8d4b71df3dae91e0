"""Proposal layer: RPN scores and deltas → the top non-overlapping ROIs per image.

Shapes: B images, A anchors, K = min(pre_nms_limit, A), R = `proposal_count`.
Output: `[B, R, (y1, x1, y2, x2)]` normalized, zero-padded where NMS keeps fewer than R.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import apply_box_deltas


def nms_padded(boxes: tf.Tensor, scores: tf.Tensor, max_output: int, iou_threshold: float,
               score_threshold: float = float("-inf")) -> tuple[tf.Tensor, tf.Tensor]:
    """NMS on one image: `(indices [max_output], valid [max_output] bool)`, indices padded with 0."""
    keep = tf.image.non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold)
    count = tf.shape(keep)[0]
    keep = tf.pad(keep, [[0, max_output - count]])
    return keep, tf.range(max_output) < count


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Decode anchors with RPN deltas, clip to the image, and keep the best after NMS."""

    def __init__(self, proposal_count: int, nms_threshold: float, pre_nms_limit: int,
                 rpn_bbox_std_dev, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)
        self.supports_jit = False  # XLA has no kernel for NonMaxSuppressionV3
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in rpn_bbox_std_dev]

    def call(self, inputs):
        rpn_probs, rpn_deltas, anchors = inputs
        scores = rpn_probs[:, :, 1]
        deltas = rpn_deltas * tf.constant(self.rpn_bbox_std_dev, tf.float32)
        k = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[0])
        scores, order = tf.math.top_k(scores, k, sorted=True)
        deltas = tf.gather(deltas, order, batch_dims=1)
        boxes = apply_box_deltas(tf.gather(anchors, order), deltas)
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)

        def select(args):
            image_boxes, image_scores = args
            keep, valid = nms_padded(image_boxes, image_scores, self.proposal_count, self.nms_threshold)
            return tf.gather(image_boxes, keep) * tf.cast(valid, tf.float32)[:, None]

        spec = tf.TensorSpec([self.proposal_count, 4], tf.float32)
        # Proposals are treated as constants by the heads (no gradient through NMS).
        return tf.stop_gradient(tf.map_fn(select, (boxes, scores), fn_output_signature=spec))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self) -> dict:
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": self.rpn_bbox_std_dev}
