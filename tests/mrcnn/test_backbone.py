"""Built-in backbones: torchvision's block structure for ResNet-18/34, matterport's names,
strides 4–32 for the FPN, and a whole Mask R-CNN that builds and detects on the light one."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.layers.backbone import backbone_model
from mrcnn.model import MaskRCNN


@pytest.mark.parametrize(
    "name, blocks, convs", [("resnet18", (2, 2, 2, 2), 20), ("resnet34", (3, 4, 6, 3), 36)]
)
def test_light_resnets_have_torchvision_s_blocks_and_the_fpn_s_strides(name, blocks, convs):
    model = backbone_model(name)
    features = model(np.zeros((1, 128, 96, 3), np.float32))
    assert [tuple(f.shape[1:]) for f in features] == [
        (32, 24, 64),
        (16, 12, 128),
        (8, 6, 256),
        (4, 3, 512),
    ]
    names = {layer.name for layer in model.layers}
    for stage, count in zip(range(2, 6), blocks):
        last = chr(ord("a") + count - 1)
        assert f"res{stage}{last}_branch2b" in names and f"res{stage}{last}_out" in names
        assert f"res{stage}{chr(ord(last) + 1)}_branch2a" not in names
        assert (f"res{stage}a_branch1" in names) == (stage > 2)  # projection where shapes change
    conv_layers = [
        layer
        for layer in model.layers
        if layer.name.startswith(("conv1", "res")) and layer.name.endswith(("2a", "2b", "1"))
    ]
    assert len(conv_layers) == convs  # 7×7 stem + two 3×3 per block + three projections
    # torchvision: 11,689,512 and 21,797,672 parameters less the fc layer and BN affine ones
    kernels = sum(int(np.prod(layer.kernel.shape)) for layer in conv_layers)
    assert kernels == {"resnet18": 11_166_912, "resnet34": 21_267_648}[name]


def test_a_mask_rcnn_on_resnet18_builds_and_detects():
    config = Config(
        NAME="light",
        NUM_CLASSES=3,
        BACKBONE="resnet18",
        IMAGES_PER_GPU=1,
        IMAGE_MIN_DIM=64,
        IMAGE_MAX_DIM=64,
        RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128),
        POST_NMS_ROIS_INFERENCE=32,
        DETECTION_MIN_CONFIDENCE=0.0,
        DETECTION_MAX_INSTANCES=4,
        TOP_DOWN_PYRAMID_SIZE=32,
        SEED=0,
    )
    model = MaskRCNN("inference", config, "unused")
    result = model.detect([np.zeros((48, 64, 3), np.uint8)])[0]
    assert result["masks"].shape[:2] == (48, 64) and len(result["class_ids"]) <= 4
    with pytest.raises(ValueError, match="BACKBONE must be one of"):
        Config(NAME="light", NUM_CLASSES=3, BACKBONE="resnet9")
