"""BatchNormalization whose train/inference behaviour is fixed by configuration."""

from __future__ import annotations

import keras


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
        return super().call(inputs, training=bool(training) and self.train_bn, mask=mask)

    def get_config(self) -> dict:
        return {**super().get_config(), "train_bn": self.train_bn}
