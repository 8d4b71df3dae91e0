"""Shared fixtures for the model-level tests: a tiny config, shapes data, a built model.

Building a Mask R-CNN graph takes seconds, so one inference model is shared by the whole
session; tests that change weights build their own.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from mrcnn.shapes import ShapesDataset

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
