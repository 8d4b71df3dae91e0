"""Multi-level ROI Align: crop each ROI from the pyramid level that matches its size.

Shapes: B images, R ROIs per image, C channels. ROIs are normalized `(y1, x1, y2, x2)`.
Level rule (FPN paper, as matterport and torchvision): 4 + log2(sqrt(h·w) / 224) with h, w in
pixels of the molded image, clamped to P2..P5.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def roi_levels(rois: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """Pyramid level (2..5) of each ROI in `rois [..., 4]`."""
    height = rois[..., 2] - rois[..., 0]
    width = rois[..., 3] - rois[..., 1]
    image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
    size = tf.sqrt(height * width) * tf.sqrt(image_area)  # pixels
    level = 4.0 + tf.math.log(size / 224.0 + 1e-12) / tf.math.log(2.0)
    return tf.clip_by_value(tf.cast(tf.round(level), tf.int32), 2, 5)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """Inputs: `[rois [B, R, 4], image_meta [B, M], P2, P3, P4, P5]` → `[B, R, h, w, C]`."""

    def __init__(self, pool_shape, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)
        self.supports_jit = False  # XLA has no kernel for CropAndResize
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def call(self, inputs):
        rois, image_meta, *feature_maps = inputs
        image_shape = tf.cast(image_meta[0, 4:6], tf.int32)  # molded (h, w); same for the batch
        levels = roi_levels(rois, image_shape)
        batch = tf.shape(rois)[0]
        num_rois = tf.shape(rois)[1]
        crops, positions = [], []
        for offset, feature_map in enumerate(feature_maps):
            where = tf.where(tf.equal(levels, offset + 2))  # [n, (image, roi)]
            boxes = tf.stop_gradient(tf.gather_nd(rois, where))
            box_indices = tf.stop_gradient(tf.cast(where[:, 0], tf.int32))
            crops.append(tf.image.crop_and_resize(feature_map, boxes, box_indices, self.pool_shape))
            positions.append(where[:, 0] * tf.cast(num_rois, tf.int64) + where[:, 1])
        # Put every crop back at its (image, roi) position.
        order = tf.argsort(tf.concat(positions, axis=0))
        pooled = tf.gather(tf.concat(crops, axis=0), order)
        channels = feature_maps[0].shape[-1]
        return tf.reshape(pooled, [batch, num_rois, *self.pool_shape, channels])

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:2], *self.pool_shape, input_shape[2][-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_shape": list(self.pool_shape)}
