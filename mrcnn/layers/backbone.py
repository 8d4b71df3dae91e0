"""ResNet backbones with matterport's (Keras 1 style) layer names.

ResNet-50/101 use bottleneck blocks (matterport's graph); ResNet-18/34 use torchvision's basic
blocks (two 3×3 convs, [2, 2, 2, 2] and [3, 4, 6, 3] blocks, 64–512 channels), the light
choice for CPU jobs on small objects. Names matter: matterport `.h5` files and the
Keras-applications ImageNet file load by them; the light nets follow the same scheme
(`res2a_branch2a`, `bn2a_branch2a`, `res3a_branch1`, …). Every conv has a bias, as in the
original.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm, FoldingConv2D, conv_batch_norm

STAGE4_BLOCKS = {"resnet50": 5, "resnet101": 22}
BASIC_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
ARCHITECTURES = (*STAGE4_BLOCKS, *BASIC_BLOCKS)


def _conv_bn(
    x,
    filters: int,
    kernel: int,
    name: str,
    bn_name: str,
    train_bn: bool,
    strides: int = 1,
    padding: str = "same",
):
    """Convolution then batch norm, folded into one convolution where the batch norm is fixed.

    "same" padding on a 1×1 kernel is "valid" padding (none is needed); it lets TensorFlow's
    shape inference see that a block's output matches its shortcut, which oneDNN needs to
    fuse the residual sum and ReLU into the last convolution.
    """
    return conv_batch_norm(
        x,
        FoldingConv2D(filters, kernel, strides=strides, padding=padding, name=name),
        BatchNorm(train_bn=train_bn, name=bn_name),
    )


def _bottleneck(
    x,
    filters: tuple[int, int, int],
    stage: int,
    block: str,
    train_bn: bool,
    strides: int = 1,
    project: bool = False,
):
    """One bottleneck block: 1×1 → 3×3 → 1×1, plus the identity or a projected shortcut."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    y = _conv_bn(x, f1, 1, conv + "2a", bn + "2a", train_bn, strides=strides)
    y = layers.Activation("relu", name=conv + "2a_relu")(y)
    y = _conv_bn(y, f2, 3, conv + "2b", bn + "2b", train_bn)
    y = layers.Activation("relu", name=conv + "2b_relu")(y)
    y = _conv_bn(y, f3, 1, conv + "2c", bn + "2c", train_bn)
    return _merge(y, x, f3, stage, block, train_bn, strides, project)


def _merge(y, x, filters: int, stage: int, block: str, train_bn: bool, strides: int, project: bool):
    """Residual sum: the block's output `y` plus `x`, projected by 1×1 where shapes change."""
    if project:
        x = _conv_bn(
            x,
            filters,
            1,
            f"res{stage}{block}_branch1",
            f"bn{stage}{block}_branch1",
            train_bn,
            strides=strides,
        )
    y = layers.Add()([y, x])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _stage(x, filters: tuple[int, int, int], stage: int, blocks: int, train_bn: bool, strides: int):
    x = _bottleneck(x, filters, stage, "a", train_bn, strides=strides, project=True)
    for i in range(1, blocks):
        x = _bottleneck(x, filters, stage, chr(ord("a") + i), train_bn)  # blocks b, c, ... (w)
    return x


def _basic(
    x, filters: int, stage: int, block: str, train_bn: bool, strides: int = 1, project: bool = False
):
    """One basic block: 3×3 → 3×3, plus the identity or a projected (1×1) shortcut."""
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    y = _conv_bn(x, filters, 3, conv + "2a", bn + "2a", train_bn, strides=strides)
    y = layers.Activation("relu", name=conv + "2a_relu")(y)
    y = _conv_bn(y, filters, 3, conv + "2b", bn + "2b", train_bn)
    return _merge(y, x, filters, stage, block, train_bn, strides, project)


def _basic_stages(x, blocks: tuple[int, int, int, int], train_bn: bool) -> list:
    """Stages 2–5 of ResNet-18/34: [C2, C3, C4, C5] with 64, 128, 256, 512 channels."""
    features = []
    for stage, (count, filters) in enumerate(zip(blocks, (64, 128, 256, 512)), start=2):
        strides = 1 if stage == 2 else 2
        x = _basic(x, filters, stage, "a", train_bn, strides=strides, project=stage > 2)
        for i in range(1, count):
            x = _basic(x, filters, stage, chr(ord("a") + i), train_bn)
        features.append(x)
    return features


def _stem(input_image, train_bn: bool):
    """conv1 7×7/2 → BN → ReLU → max-pool 3×3/2: C1 at stride 4."""
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = _conv_bn(x, 64, 7, "conv1", "bn_conv1", train_bn, strides=2, padding="valid")
    x = layers.Activation("relu", name="conv1_relu")(x)
    return layers.MaxPooling2D(3, strides=2, padding="same")(x)


def resnet_graph(
    input_image, architecture: str, stage5: bool = True, train_bn: bool = False
) -> list:
    """Build ResNet on `input_image [B, H, W, 3]`; return feature maps [C1, C2, C3, C4, C5]."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown ResNet architecture {architecture!r}; use one of {sorted(ARCHITECTURES)}"
        )
    c1 = x = _stem(input_image, train_bn)
    if architecture in BASIC_BLOCKS:
        c2, c3, c4, c5 = _basic_stages(x, BASIC_BLOCKS[architecture], train_bn)
        return [c1, c2, c3, c4, c5 if stage5 else None]
    c2 = x = _stage(x, (64, 64, 256), 2, 3, train_bn, strides=1)
    c3 = x = _stage(x, (128, 128, 512), 3, 4, train_bn, strides=2)
    c4 = x = _stage(x, (256, 256, 1024), 4, STAGE4_BLOCKS[architecture] + 1, train_bn, strides=2)
    c5 = _stage(x, (512, 512, 2048), 5, 3, train_bn, strides=2) if stage5 else None
    return [c1, c2, c3, c4, c5]


def build_backbone(input_image, backbone: str | Callable, train_bn: bool) -> list:
    """Return [C2, C3, C4, C5] from a built-in ResNet name or a user callable."""
    if callable(backbone):
        features = backbone(input_image, stage5=True, train_bn=train_bn)
    else:
        features = resnet_graph(input_image, backbone, stage5=True, train_bn=train_bn)
    return list(features[1:5])


def backbone_model(backbone: str | Callable, train_bn: bool = False) -> keras.Model:
    """The backbone alone as a Keras model (handy for loading ImageNet weights or inspection)."""
    image = keras.Input((None, None, 3), name="input_image")
    return keras.Model(
        image,
        build_backbone(image, backbone, train_bn),
        name=f"{getattr(backbone, '__name__', backbone)}_backbone",
    )
