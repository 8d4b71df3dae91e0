"""Initial weights and batch-norm momentum of a model trained from scratch.

Keras's initializers (glorot-uniform kernels, zero biases) are what matterport's graph was
built with, and they stay the default. `Config.WEIGHT_INIT = "torchvision"` draws the kernels
as torchvision's Mask R-CNN does, by layer role:

    backbone convolutions      kaiming normal, fan-out (ResNet)
    fpn_*                      kaiming uniform, a=1: uniform, variance 1/fan-in
    rpn_*                      normal, std 0.01
    mrcnn_class_conv*, mrcnn_class_logits, mrcnn_bbox_fc
                               PyTorch's Linear default: uniform, variance 1/(3 fan-in)
    mrcnn_mask*                kaiming normal, fan-out

Biases stay zero and batch-norm γ/β stay 1/0 in both schemes. Loading weights afterwards
overwrites all of this, so the setting matters only when training starts from random weights.
`Config.BATCH_NORM_MOMENTUM` is Keras's momentum of the moving statistics (default 0.9, as
torchvision's 0.1; Keras's own default is 0.99); it only matters with `TRAIN_BN`.
"""

from __future__ import annotations

import keras

from mrcnn.config import WEIGHT_INITS
from mrcnn.errors import InvalidSetting
from mrcnn.layers.batch_norm import BatchNorm

_KAIMING_FAN_OUT = {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}
_LINEAR_DEFAULT = {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"}
_KAIMING_UNIFORM_A1 = {"scale": 1.0, "mode": "fan_in", "distribution": "uniform"}


def torchvision_initializer(layer_name: str) -> keras.initializers.Initializer:
    """The initializer torchvision's Mask R-CNN gives the kernel of the layer in this role."""
    if layer_name.startswith("rpn_"):
        return keras.initializers.RandomNormal(stddev=0.01)
    if layer_name.startswith("fpn_"):
        return keras.initializers.VarianceScaling(**_KAIMING_UNIFORM_A1)
    if layer_name.startswith(("mrcnn_class", "mrcnn_bbox")):
        return keras.initializers.VarianceScaling(**_LINEAR_DEFAULT)
    return keras.initializers.VarianceScaling(**_KAIMING_FAN_OUT)  # backbone and mask head


def prepare_for_training(model: keras.Model, weight_init: str, batch_norm_momentum: float) -> None:
    """Redraw the kernels of `model` by `weight_init` and set its batch norms' momentum."""
    if weight_init not in WEIGHT_INITS:
        raise InvalidSetting(f"WEIGHT_INIT must be one of {WEIGHT_INITS}, got {weight_init!r}")
    for layer in leaf_layers(model):
        if isinstance(layer, BatchNorm):
            layer.momentum = float(batch_norm_momentum)
        elif weight_init == "torchvision" and getattr(layer, "kernel", None) is not None:
            kernel = layer.kernel
            kernel.assign(torchvision_initializer(layer.name)(kernel.shape, dtype=kernel.dtype))


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, entering nested models (the RPN is one, shared by the levels)."""
    leaves = []
    for layer in model.layers:
        leaves += leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return leaves
