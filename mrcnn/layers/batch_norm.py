"""BatchNormalization whose train/inference behaviour is fixed by configuration."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch norm that uses batch statistics only when `train_bn` and the model is training.

    With small batches (matterport's default) batch statistics are too noisy, so by default
    (`train_bn=False`) the moving statistics are used even while training.
    """

    def __init__(self, train_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = bool(train_bn)

    def call(self, inputs, training=None, mask=None):
        use_batch_statistics = bool(training) and self.train_bn
        if use_batch_statistics or len(inputs.shape) != 4 or self.axis not in (-1, 3) or mask is not None:
            return super().call(inputs, training=use_batch_statistics, mask=mask)
        # Moving statistics on NHWC maps: TensorFlow's fused op is one pass that oneDNN can
        # also fuse with the following ReLU; Keras's version is separate multiply and add
        # passes (and a float32 round trip under a bfloat16 policy).
        outputs, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, is_training=False)
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "train_bn": self.train_bn}
