"""Anchor boxes computed in the graph from the input image's size.

Keeping anchors inside the model (instead of matterport's `input_anchors`) means `detect`,
the exported model and any image size need no extra input. The numbers and their order
(level, y, x, ratio) equal `mrcnn.anchors.get_anchors`, which builds RPN training targets.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import norm_boxes


def level_anchors(
    image_shape: tf.Tensor, scale: float, ratios: tf.Tensor, stride: int, anchor_stride: int
) -> tf.Tensor:
    """Pixel anchors `[H_l * W_l * len(ratios), 4]` of one pyramid level."""
    rows = tf.cast(tf.math.ceil(tf.cast(image_shape[0], tf.float32) / stride), tf.int32)
    cols = tf.cast(tf.math.ceil(tf.cast(image_shape[1], tf.float32) / stride), tf.int32)
    ys = tf.cast(tf.range(0, rows, anchor_stride) * stride, tf.float32)
    xs = tf.cast(tf.range(0, cols, anchor_stride) * stride, tf.float32)
    center_y, center_x = tf.meshgrid(ys, xs, indexing="ij")
    centers = tf.stack([tf.reshape(center_y, [-1]), tf.reshape(center_x, [-1])], axis=-1)
    sizes = tf.stack(
        [scale / tf.sqrt(ratios), scale * tf.sqrt(ratios)], axis=-1
    )  # (h, w) per ratio
    low = centers[:, None, :] - 0.5 * sizes[None, :, :]
    high = centers[:, None, :] + 0.5 * sizes[None, :, :]
    return tf.reshape(tf.concat([low, high], axis=-1), [-1, 4])


@keras.saving.register_keras_serializable(package="mrcnn")
class AnchorGenerator(keras.layers.Layer):
    """Normalized anchors `[A, 4]` for the (molded) image batch it is called on."""

    def __init__(self, scales, ratios, strides, anchor_stride: int = 1, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.strides = [int(s) for s in strides]
        self.anchor_stride = int(anchor_stride)

    def call(self, images):
        image_shape = tf.shape(images)[1:3]
        ratios = tf.constant(self.ratios, tf.float32)
        boxes = [
            level_anchors(image_shape, scale, ratios, stride, self.anchor_stride)
            for scale, stride in zip(self.scales, self.strides)
        ]
        return norm_boxes(tf.concat(boxes, axis=0), image_shape)

    def compute_output_shape(self, input_shape):
        return (None, 4)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "scales": self.scales,
            "ratios": self.ratios,
            "strides": self.strides,
            "anchor_stride": self.anchor_stride,
        }
