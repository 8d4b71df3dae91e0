"""Proposal layer: RPN scores and deltas → the top non-overlapping ROIs per image.

Shapes: B images, A anchors, K = min(pre_nms_limit, A), R = `proposal_count`.
Output: `[B, R, (y1, x1, y2, x2)]` normalized, zero-padded where NMS keeps fewer than R.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import apply_box_deltas


def nms_padded(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    max_output: int,
    iou_threshold: float,
    score_threshold: float = float("-inf"),
) -> tuple[tf.Tensor, tf.Tensor]:
    """NMS on one image: `(indices [max_output], valid [max_output] bool)`, padded with 0."""
    keep = tf.image.non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold)
    count = tf.shape(keep)[0]
    keep = tf.pad(keep, [[0, max_output - count]])
    return keep, tf.range(max_output) < count


def top_k_indices(scores: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """Indices of the k best of `scores [A]`, best first, equal scores by index: `tf.math.top_k`'s.

    Computed in two steps, so that no sort over all A anchors has to keep the order of ties:
    the k-th best value (a top-k whose indices are not used), then a stable sort of the few
    scores at least that good. A runtime may then run the large top-k with its faster
    unstable kernel (OpenVINO: ≈ 1.4 s → milliseconds over the 65k anchors of a 512² image)
    and still pick the anchors TensorFlow picks.
    """
    kth_best = tf.reduce_min(tf.math.top_k(scores, k, sorted=False).values)
    candidates = tf.where(scores >= kth_best)[:, 0]  # in index order
    order = tf.argsort(tf.gather(scores, candidates), direction="DESCENDING", stable=True)
    return tf.gather(candidates, order[:k])


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Decode anchors with RPN deltas, clip to the image, and keep the best after NMS."""

    def __init__(
        self,
        proposal_count: int,
        nms_threshold: float,
        pre_nms_limit: int,
        rpn_bbox_std_dev,
        **kwargs,
    ):
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

        def select(args):
            image_scores, image_deltas = args
            order = top_k_indices(image_scores, k)
            boxes = apply_box_deltas(tf.gather(anchors, order), tf.gather(image_deltas, order))
            boxes = tf.clip_by_value(boxes, 0.0, 1.0)
            keep, valid = nms_padded(
                boxes, tf.gather(image_scores, order), self.proposal_count, self.nms_threshold
            )
            return tf.gather(boxes, keep) * tf.cast(valid, tf.float32)[:, None]

        spec = tf.TensorSpec([self.proposal_count, 4], tf.float32)
        # Proposals are treated as constants by the heads (no gradient through NMS).
        return tf.stop_gradient(tf.map_fn(select, (scores, deltas), fn_output_signature=spec))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "proposal_count": self.proposal_count,
            "nms_threshold": self.nms_threshold,
            "pre_nms_limit": self.pre_nms_limit,
            "rpn_bbox_std_dev": self.rpn_bbox_std_dev,
        }
