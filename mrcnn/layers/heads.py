"""Box/class head and mask head on pooled ROIs, with matterport's layer names.

Shapes: B images, R ROIs, NC classes (background included).
matterport wrapped these layers in TimeDistributed; here the ROIs are folded into the batch
(`FoldRois`) so each layer runs once on `[B*R, ...]`. Weight names and shapes are unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm, FoldingConv2D, conv_batch_norm
from mrcnn.layers.roi_align import PyramidROIAlign


@keras.saving.register_keras_serializable(package="mrcnn")
class FoldRois(keras.layers.Layer):
    """`[B, R, ...]` → `[B*R, ...]`, in the input's dtype."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "autocast", False
        )  # a reshape: casting under a mixed policy would only cost
        super().__init__(**kwargs)

    def call(self, x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class UnfoldRois(keras.layers.Layer):
    """Inputs `[x [B*R, ...], rois [B, R, 4]]` → `[B, R, ...]` float32 (the heads' outputs)."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "dtype", "float32"
        )  # losses and detection read float32 under a mixed policy
        super().__init__(**kwargs)

    def call(self, inputs):
        x, rois = inputs
        return tf.reshape(x, tf.concat([tf.shape(rois)[:2], tf.shape(x)[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:2], *input_shape[0][1:])


@keras.saving.register_keras_serializable(package="mrcnn")
class WindowDense(layers.Conv2D):
    """A "valid" convolution whose kernel covers its whole input window, run as one matmul.

    The weights are a `Conv2D`'s (`kernel [k, k, C, F]`, `bias [F]`: matterport's files load
    unchanged) and so is the output `[N, 1, 1, F]`. As a convolution, TensorFlow's CPU kernels
    compute the input gradient one ROI at a time as a matrix-vector product, re-reading the
    whole kernel per ROI; the matmul reads it once for all of them.
    """

    def build(self, input_shape):
        covers = tuple(input_shape[1:3]) == tuple(self.kernel_size) and self.padding == "valid"
        if not covers or tuple(self.dilation_rate) != (1, 1) or self.groups != 1:
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} ({self.padding}, dilation "
                f"{self.dilation_rate}, groups {self.groups}) does not cover inputs "
                f"{tuple(input_shape[1:3])} as one window; use Conv2D"
            )
        super().build(input_shape)

    def call(self, inputs):
        window = self.kernel.shape[0] * self.kernel.shape[1] * self.kernel.shape[2]
        flat = tf.reshape(inputs, [-1, window])
        kernel = tf.reshape(tf.cast(self.kernel, flat.dtype), [window, self.filters])
        outputs = tf.matmul(flat, kernel) + tf.cast(self.bias, flat.dtype)
        return tf.reshape(outputs, [-1, 1, 1, self.filters])


@keras.saving.register_keras_serializable(package="mrcnn")
class BlockConv2DTranspose(layers.Conv2DTranspose):
    """A transposed convolution whose stride equals its kernel, run as a 1×1 convolution.

    Without overlaps, each input pixel's k×k output block is a matmul of its channels; TF's
    transposed convolution (`Conv2DBackpropInput`) then adds the bias and the activation as
    separate passes over the k²-times larger output, which a 1×1 convolution fuses (oneDNN)
    before `depth_to_space` lays the blocks out. The weights are a `Conv2DTranspose`'s
    (matterport's `mrcnn_mask_deconv` loads unchanged); so are the outputs.
    """

    def build(self, input_shape):
        if (
            tuple(self.strides) != tuple(self.kernel_size)
            or self.padding != "valid"
            or tuple(self.dilation_rate) != (1, 1)
            or self.kernel_size[0] != self.kernel_size[1]
        ):
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} with strides {self.strides} "
                f"({self.padding}, dilation {self.dilation_rate}) overlaps or is not "
                "square; use Conv2DTranspose"
            )
        super().build(input_shape)

    def call(self, inputs):
        block = self.kernel_size[0]
        # kernel [k, k, out, in] → [1, 1, in, k·k·out], depth ordered as depth_to_space reads it.
        kernel = tf.transpose(tf.cast(self.kernel, inputs.dtype), [3, 0, 1, 2])
        kernel = tf.reshape(kernel, [1, 1, -1, block * block * self.filters])
        outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID")
        if self.use_bias:
            outputs = tf.nn.bias_add(
                outputs, tf.tile(tf.cast(self.bias, inputs.dtype), [block * block])
            )
        if self.activation is not None:
            outputs = self.activation(outputs)
        return tf.nn.depth_to_space(outputs, block)


def _bn_relu(x, bn_name: str, train_bn: bool):
    x = BatchNorm(train_bn=train_bn, name=bn_name)(x)
    return layers.Activation("relu", name=bn_name + "_relu")(x)


def fpn_classifier_graph(
    rois,
    feature_maps: list,
    image_meta,
    pool_size: int,
    num_classes: int,
    train_bn: bool,
    fc_layers_size: int = 1024,
) -> tuple:
    """Classifier and box regressor.

    Returns:
        `(mrcnn_class_logits [B,R,NC], mrcnn_class, mrcnn_bbox [B,R,NC,4])`.
    """
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_classifier")(
        [rois, image_meta, *feature_maps]
    )
    x = FoldRois()(x)
    # matterport's two fully connected layers, stored as a pool_size×pool_size and a 1×1 conv.
    x = WindowDense(fc_layers_size, pool_size, name="mrcnn_class_conv1")(x)
    x = _bn_relu(x, "mrcnn_class_bn1", train_bn)
    x = WindowDense(fc_layers_size, 1, name="mrcnn_class_conv2")(x)
    x = _bn_relu(x, "mrcnn_class_bn2", train_bn)
    shared = layers.Reshape((fc_layers_size,), name="pool_squeeze")(x)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", dtype="float32")(
        logits
    )  # scores are compared to thresholds
    deltas = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    deltas = layers.Reshape((num_classes, 4))(deltas)
    return (
        UnfoldRois(name="mrcnn_class_logits_unfold")([logits, rois]),
        UnfoldRois(name="mrcnn_class")([probs, rois]),
        UnfoldRois(name="mrcnn_bbox")([deltas, rois]),
    )


def build_fpn_mask_graph(
    rois, feature_maps: list, image_meta, pool_size: int, num_classes: int, train_bn: bool
):
    """Mask head: `[B, R, 2*pool_size, 2*pool_size, NC]` sigmoid masks (28×28 by default)."""
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask")(
        [rois, image_meta, *feature_maps]
    )
    x = FoldRois()(x)
    for i in range(1, 5):
        x = conv_batch_norm(
            x,
            FoldingConv2D(256, 3, padding="same", name=f"mrcnn_mask_conv{i}"),
            BatchNorm(train_bn=train_bn, name=f"mrcnn_mask_bn{i}"),
        )
        x = layers.Activation("relu", name=f"mrcnn_mask_relu{i}")(x)
    x = BlockConv2DTranspose(256, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = layers.Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask")(x)
    return UnfoldRois(name="mrcnn_mask_unfold")([x, rois])
