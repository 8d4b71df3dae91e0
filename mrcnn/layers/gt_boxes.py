"""Normalize ground-truth pixel boxes inside the graph (the data pipeline sends pixels)."""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import norm_boxes


@keras.saving.register_keras_serializable(package="mrcnn")
class NormalizeBoxes(keras.layers.Layer):
    """`[boxes [B,N,4] pixels, images [B,H,W,C]]` → normalized `[B,N,4]`; zero rows stay zero."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)

    def call(self, inputs):
        boxes, images = inputs
        normalized = norm_boxes(boxes, tf.shape(images)[1:3])
        padding = tf.reduce_all(tf.equal(boxes, 0), axis=-1, keepdims=True)
        return tf.where(padding, 0.0, normalized)

    def compute_output_shape(self, input_shape):
        return input_shape[0]
