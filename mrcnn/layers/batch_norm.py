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
        # Keras also reads the moving statistics of a frozen (non-trainable) layer in training.
        use_batch_statistics = bool(training) and self.train_bn and self.trainable
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or mask is not None:
            return super().call(inputs, training=use_batch_statistics, mask=mask)
        # NHWC maps take TensorFlow's fused op, one pass forward and one backward (oneDNN also
        # fuses it with the following ReLU); Keras's version is separate mean, variance,
        # multiply and add ops, each with its own gradient (and a float32 round trip under a
        # bfloat16 policy): benchmarks/NOTES.md row 38.
        if use_batch_statistics:
            return self._normalize_by_batch(inputs)
        outputs, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, is_training=False)
        return outputs

    def _normalize_by_batch(self, inputs):
        outputs, mean, variance, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
        # The fused op returns the unbiased variance; Keras's moving variance follows the
        # biased one it normalizes with.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 2.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + tf.stop_gradient(mean) * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + tf.stop_gradient(variance) * (1.0 - momentum))
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "train_bn": self.train_bn}
