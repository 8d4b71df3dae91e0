"""Detection layer (inference): refine ROIs, pick each one's class, per-class NMS, keep the best.

Shapes: B images, R ROIs, NC classes, D = `max_instances`.
Output: `[B, D, (y1, x1, y2, x2, class_id, score)]` normalized boxes, sorted by score and
zero-padded (class_id 0) where fewer than D survive.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import apply_box_deltas, clip_boxes
from mrcnn.layers.proposals import nms_padded

# Boxes are normalized (0..1): moved by CLASS_OFFSET per class id, boxes of two classes never
# overlap, so one NMS over all ROIs suppresses within each class only.
CLASS_OFFSET = 2.0


def normalized_window(image_meta: tf.Tensor) -> tf.Tensor:
    """The real-image window `[B, 4]` of each molded image, in normalized coordinates."""
    h = image_meta[:, 4]
    w = image_meta[:, 5]
    scale = tf.stack([h, w, h, w], axis=1) - 1.0
    return (image_meta[:, 7:11] - tf.constant([0.0, 0.0, 1.0, 1.0])) / scale


def per_class_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    class_ids: tf.Tensor,
    max_instances: int,
    iou_threshold: float,
) -> tf.Tensor:
    """matterport's per-class NMS and top-k on one image's ROIs, as one NMS.

    Args:
        boxes: `[R, 4]` refined boxes; scores `[R]` (0 for ROIs not to keep); class_ids `[R]`.

    Returns:
        `[max_instances, (y1, x1, y2, x2, class_id, score)]`, best first, zero rows after the
        last detection. A single `NonMaxSuppressionV3` (not `CombinedNonMaxSuppression`) is an
        op that every runtime we export to converts: ONNX, OpenVINO.
    """
    shifted = boxes + CLASS_OFFSET * tf.cast(class_ids, tf.float32)[:, None]
    keep, valid = nms_padded(shifted, scores, max_instances, iou_threshold, score_threshold=0.0)
    kept_scores = tf.gather(scores, keep)
    valid = valid & (kept_scores > 0.0)  # whatever a runtime's threshold rule, no zero score
    rows = tf.concat(
        [
            tf.gather(boxes, keep),
            tf.cast(tf.gather(class_ids, keep), tf.float32)[:, None],
            kept_scores[:, None],
        ],
        axis=1,
    )
    return rows * tf.cast(valid, tf.float32)[:, None]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Inputs: `[rois [B,R,4], mrcnn_class [B,R,NC], mrcnn_bbox [B,R,NC,4], image_meta [B,M]]`."""

    def __init__(
        self,
        max_instances: int,
        min_confidence: float,
        nms_threshold: float,
        bbox_std_dev,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)
        self.supports_jit = False  # XLA has no kernel for NonMaxSuppressionV3
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in bbox_std_dev]

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)
        scores = tf.reduce_max(probs, axis=-1)
        class_deltas = tf.gather(deltas, class_ids, batch_dims=2) * tf.constant(
            self.bbox_std_dev, tf.float32
        )
        boxes = clip_boxes(
            apply_box_deltas(rois, class_deltas), normalized_window(image_meta)[:, None, :]
        )

        keep = (
            (class_ids > 0) & (scores >= self.min_confidence) & tf.reduce_any(rois != 0.0, axis=-1)
        )
        scores = tf.where(keep, scores, 0.0)

        def select(args):
            image_boxes, image_scores, image_classes = args
            return per_class_nms(
                image_boxes, image_scores, image_classes, self.max_instances, self.nms_threshold
            )

        spec = tf.TensorSpec([self.max_instances, 6], tf.float32)
        return tf.map_fn(select, (boxes, scores, class_ids), fn_output_signature=spec)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, 6)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "max_instances": self.max_instances,
            "min_confidence": self.min_confidence,
            "nms_threshold": self.nms_threshold,
            "bbox_std_dev": self.bbox_std_dev,
        }


@keras.saving.register_keras_serializable(package="mrcnn")
class LeadingDetectionBoxes(keras.layers.Layer):
    """Detections `[B, D, 6]` → boxes `[B, n, 4]` of the first n slots (n: most in one image).

    Detections come first and padding last, so the mask head run on these boxes skips the
    padding slots: with a real confidence threshold most of the D slots are padding. n is at
    least 1: with no detection at all the mask head would get an empty batch, on which
    oneDNN's convolution returns its input unchanged and the next batch norm fails.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # boxes stay float32 under a mixed policy
        super().__init__(**kwargs)

    def call(self, detections):
        count = tf.reduce_max(tf.reduce_sum(tf.cast(detections[..., 4] > 0, tf.int32), axis=1))
        return detections[:, : tf.maximum(count, 1), :4]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class PadToDetections(keras.layers.Layer):
    """Inputs `[x [B, n, ...], detections [B, D, 6]]` → x zero-padded to `[B, D, ...]`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)  # a padding: keeps x's dtype
        super().__init__(**kwargs)

    def call(self, inputs):
        x, detections = inputs
        padding = tf.shape(detections)[1] - tf.shape(x)[1]
        return tf.pad(x, [[0, 0], [0, padding]] + [[0, 0]] * (len(x.shape) - 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][1], *input_shape[0][2:])
