"""BatchNormalization whose train/inference behaviour is fixed by configuration, and the
convolution that applies it when it is a fixed affine map.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch norm that uses batch statistics only when `train_bn` and the model is training.

    With small batches (matterport's default) batch statistics are too noisy, so by default
    (`train_bn=False`) the moving statistics are used even while training. Then the layer is a
    per-channel affine map (`moving_affine`), which a `FoldingConv2D` before it may apply
    instead: the layer then passes its inputs through.
    """

    def __init__(self, train_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = bool(train_bn)
        self._folded = False  # graph wiring (`FoldingConv2D.fold`), not configuration

    def uses_batch_statistics(self, training) -> bool:
        # Keras also reads the moving statistics of a frozen (non-trainable) layer in training.
        return bool(training) and self.train_bn and self.trainable

    def moving_affine(self) -> tuple[tf.Tensor, tf.Tensor]:
        """float32 `(scale, shift)`: `outputs = inputs * scale + shift` by the moving statistics."""
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)
        return scale, self.beta - self.moving_mean * scale

    def call(self, inputs, training=None, mask=None):
        use_batch_statistics = self.uses_batch_statistics(training)
        if self._folded and not use_batch_statistics:
            return inputs  # its convolution applied `moving_affine`
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or mask is not None:
            return super().call(inputs, training=use_batch_statistics, mask=mask)
        # NHWC maps take TensorFlow's fused op, one pass forward and one backward (oneDNN also
        # fuses it with the following ReLU); Keras's version is separate mean, variance,
        # multiply and add ops, each with its own gradient (and a float32 round trip under a
        # bfloat16 policy). On a 2-vCPU Intel Xeon with AMX the fused op took a 512² batch-2
        # training step from 5.2 to 4.2 s in float32 and from 2.8 to 1.8 s in bfloat16.
        if use_batch_statistics:
            return self._normalize_by_batch(inputs)
        outputs, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs

    def _normalize_by_batch(self, inputs):
        outputs, mean, variance, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
        )
        # The fused op returns the unbiased variance; Keras's moving variance follows the
        # biased one it normalizes with.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 2.0)
        momentum = self.momentum
        self.moving_mean.assign(
            self.moving_mean * momentum + tf.stop_gradient(mean) * (1.0 - momentum)
        )
        self.moving_variance.assign(
            self.moving_variance * momentum + tf.stop_gradient(variance) * (1.0 - momentum)
        )
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "train_bn": self.train_bn}


@keras.saving.register_keras_serializable(package="mrcnn")
class FoldingConv2D(layers.Conv2D):
    """A `Conv2D` that applies the `BatchNorm` after it, when that is a fixed affine map.

    With moving statistics, `bn(conv(x, W) + b)` is `conv(x, W * scale) + b * scale + shift`:
    computing the folded kernel costs a pass over the weights, and saves a pass over the
    activations, and lets oneDNN fuse the bias, the residual sum and the ReLU into the
    convolution (eight chained 3×3 blocks in bfloat16: 91 → 66 ms a call on a 2-vCPU Intel
    Xeon with AMX; float32 unchanged). The weights stay the unfolded ones (matterport's
    files load and save unchanged); in a folded graph this layer's output is the batch norm's.
    """

    def __init__(self, *args, **kwargs):
        kwargs["autocast"] = False  # the fold is computed in float32, then cast (call)
        super().__init__(*args, **kwargs)
        self._batch_norm = None

    def fold(self, batch_norm: BatchNorm) -> None:
        """Apply `batch_norm` here whenever it uses its moving statistics."""
        # A weak reference: Keras would track a layer attribute as a sublayer, and its weights
        # as this layer's.
        self._batch_norm = weakref.ref(batch_norm)
        batch_norm._folded = True

    def call(self, inputs, training=None):
        kernel, bias = self.kernel, self.bias
        batch_norm = self._batch_norm() if self._batch_norm is not None else None
        if batch_norm is not None and not batch_norm.uses_batch_statistics(training):
            scale, shift = batch_norm.moving_affine()
            kernel = kernel * scale
            bias = shift if bias is None else bias * scale + shift
        dtype = self.compute_dtype
        outputs = self.convolution_op(tf.cast(inputs, dtype), tf.cast(kernel, dtype))
        if bias is not None:
            outputs = tf.nn.bias_add(outputs, tf.cast(bias, dtype))
        return self.activation(outputs) if self.activation is not None else outputs


def conv_batch_norm(x, conv: FoldingConv2D, batch_norm: BatchNorm):
    """`batch_norm(conv(x))`, with the batch norm folded into the convolution where it can be."""
    conv.fold(batch_norm)
    return batch_norm(conv(x))
