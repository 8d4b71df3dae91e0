"""Box/class head and mask head on pooled ROIs, with matterport's layer names.

Shapes: B images, R ROIs, NC classes (background included).
matterport wrapped these layers in TimeDistributed; here the ROIs are folded into the batch
(`FoldRois`) so each layer runs once on `[B*R, ...]`. Weight names and shapes are unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm
from mrcnn.layers.roi_align import PyramidROIAlign


@keras.saving.register_keras_serializable(package="mrcnn")
class FoldRois(keras.layers.Layer):
    """`[B, R, ...]` → `[B*R, ...]`, in the input's dtype."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)  # a reshape: casting under a mixed policy would only cost
        super().__init__(**kwargs)

    def call(self, x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class UnfoldRois(keras.layers.Layer):
    """Inputs `[x [B*R, ...], rois [B, R, 4]]` → `[B, R, ...]` float32 (the heads' outputs)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # losses and detection read float32 under a mixed policy
        super().__init__(**kwargs)

    def call(self, inputs):
        x, rois = inputs
        return tf.reshape(x, tf.concat([tf.shape(rois)[:2], tf.shape(x)[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:2], *input_shape[0][1:])


def _conv_bn_relu(x, filters: int, kernel: int, name: str, bn_name: str, train_bn: bool, padding: str = "same"):
    x = layers.Conv2D(filters, kernel, padding=padding, name=name)(x)
    x = BatchNorm(train_bn=train_bn, name=bn_name)(x)
    return layers.Activation("relu")(x)


def fpn_classifier_graph(rois, feature_maps: list, image_meta, pool_size: int, num_classes: int,
                         train_bn: bool, fc_layers_size: int = 1024) -> tuple:
    """Classifier and box regressor: `(mrcnn_class_logits [B,R,NC], mrcnn_class, mrcnn_bbox [B,R,NC,4])`."""
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_classifier")([rois, image_meta, *feature_maps])
    x = FoldRois()(x)
    # A pool_size×pool_size "valid" conv acts as the first fully connected layer.
    x = _conv_bn_relu(x, fc_layers_size, pool_size, "mrcnn_class_conv1", "mrcnn_class_bn1", train_bn, "valid")
    x = _conv_bn_relu(x, fc_layers_size, 1, "mrcnn_class_conv2", "mrcnn_class_bn2", train_bn)
    shared = layers.Reshape((fc_layers_size,), name="pool_squeeze")(x)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", dtype="float32")(logits)  # scores are compared to thresholds
    deltas = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    deltas = layers.Reshape((num_classes, 4))(deltas)
    return (UnfoldRois(name="mrcnn_class_logits_unfold")([logits, rois]),
            UnfoldRois(name="mrcnn_class")([probs, rois]),
            UnfoldRois(name="mrcnn_bbox")([deltas, rois]))


def build_fpn_mask_graph(rois, feature_maps: list, image_meta, pool_size: int, num_classes: int,
                         train_bn: bool):
    """Mask head: `[B, R, 2*pool_size, 2*pool_size, NC]` sigmoid masks (28×28 by default)."""
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask")([rois, image_meta, *feature_maps])
    x = FoldRois()(x)
    for i in range(1, 5):
        x = _conv_bn_relu(x, 256, 3, f"mrcnn_mask_conv{i}", f"mrcnn_mask_bn{i}", train_bn)
    x = layers.Conv2DTranspose(256, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = layers.Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask")(x)
    return UnfoldRois(name="mrcnn_mask_unfold")([x, rois])
