"""Shared fixtures for the model-level tests: a tiny config, shapes data, a built model.

Building a Mask R-CNN graph takes seconds, so one inference model is shared by the whole
session; tests that change weights build their own. Converting one to OpenVINO IR takes
longer, so the export tests and the INT8 tests share one light model and its IR export.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from mrcnn.shapes import ShapesDataset
from tests.support.tiny_model import distinct_class_head

# Class logits of the fixed classifier head (see `fix_class_head`): class 1 always wins with
# probability e^3 / (1 + e^3 + e + 1) ≈ 0.8098.
FIXED_CLASS_LOGITS = np.array([0.0, 3.0, 1.0, 0.0], dtype=np.float32)
FIXED_SCORE = float(np.exp(3.0) / np.exp(FIXED_CLASS_LOGITS).sum())


class TinyConfig(Config):
    """64×64 images, 4 classes (background + the 3 shapes), ResNet-50: seconds to build."""

    NAME = "tiny"
    BACKBONE = "resnet50"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 16
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    MAX_GT_INSTANCES = 4
    IMAGES_PER_GPU = 2
    DETECTION_MIN_CONFIDENCE = 0
    # The mask head runs on every detection slot; 8 keeps inference fast at this size.
    DETECTION_MAX_INSTANCES = 8
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 0
    SEED = 0


class ExportConfig(TinyConfig):
    """The tiny config on ResNet-18 with 32-channel heads: the model the export tests convert.

    tf2onnx's and OpenVINO's conversion time grows with the weights: a ResNet-50 took a minute
    more to convert to ONNX, and the default 256-channel pyramid and 1024-wide box head more
    than double a ResNet-18's weights (31.5 M against 13.4 M). 200 proposals: the count at
    which `mrcnn.quantize` documents why it keeps the box-delta layers in float32.
    """

    BACKBONE = "resnet18"
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    RPN_CONV_CHANNELS = 32
    POST_NMS_ROIS_INFERENCE = 200


def fix_class_head(model: MaskRCNN) -> None:
    """Make the classifier ignore its input and output `FIXED_CLASS_LOGITS` for every ROI.

    A randomly initialised head mostly predicts background, so detections would be empty;
    with this head every ROI is class 1 with score `FIXED_SCORE`.
    """
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, _ = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), FIXED_CLASS_LOGITS])


@pytest.fixture(scope="session")
def tiny_config() -> TinyConfig:
    return TinyConfig()


@pytest.fixture(scope="session")
def shapes_dataset() -> ShapesDataset:
    """Four prepared 64×64 shapes images (classes square, circle, triangle)."""
    dataset = ShapesDataset()
    dataset.load_shapes(4, 64, 64, seed=0)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="session")
def inference_model(tmp_path_factory: pytest.TempPathFactory) -> MaskRCNN:
    """The shared tiny inference model, with the fixed classifier head (do not change weights)."""
    model = MaskRCNN("inference", TinyConfig(), tmp_path_factory.mktemp("inference_logs"))
    fix_class_head(model)
    return model


@pytest.fixture(scope="session")
def export_model(tmp_path_factory: pytest.TempPathFactory) -> MaskRCNN:
    """The `ExportConfig` inference model whose ROIs score distinct values (detections, no
    ties). Do not change its weights: `openvino_export` is its IR."""
    model = MaskRCNN("inference", ExportConfig(), tmp_path_factory.mktemp("export_logs"))
    distinct_class_head(model)
    return model


@pytest.fixture(scope="session")
def openvino_export(export_model: MaskRCNN, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`export_model` as a float32 OpenVINO IR export folder."""
    folder = tmp_path_factory.mktemp("export") / "openvino"
    export_model.export(folder, format="openvino")
    return folder
