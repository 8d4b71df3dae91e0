"""A tiny Mask R-CNN with random weights, saved as a training run would leave it.

Random weights with DETECTION_MIN_CONFIDENCE 0 still give detections, which is all the
pipeline tests need (the area arithmetic is tested on hand-made masks). The files are built
once per test process and shared by every test module that asks.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLASS_NAMES = ["car", "pothole"]
TINY_SETTINGS = dict(
    NAME="tiny",
    NUM_CLASSES=1 + len(CLASS_NAMES),
    BACKBONE="resnet50",
    IMAGE_MIN_DIM=64,
    IMAGE_MAX_DIM=64,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128),
    POST_NMS_ROIS_INFERENCE=32,
    DETECTION_MIN_CONFIDENCE=0.0,
    DETECTION_MAX_INSTANCES=5,
    TOP_DOWN_PYRAMID_SIZE=32,
    FPN_CLASSIF_FC_LAYERS_SIZE=32,
    IMAGES_PER_GPU=1,
    SEED=0,
)


@functools.cache
def tiny_model_dir() -> Path:
    """A folder with ``model.weights.h5``, ``config.json`` and ``classes.json``."""
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    folder = Path(tempfile.mkdtemp(prefix="tiny-mrcnn-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = Config(**TINY_SETTINGS)
    model = MaskRCNN("inference", config, folder / "logs")
    model.save_weights(folder / "model.weights.h5")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "classes.json").write_text(json.dumps(CLASS_NAMES))
    return folder


@functools.cache
def distinct_model_dir() -> Path:
    """Like `tiny_model_dir`, on ResNet-18 with `distinct_class_head`: no two scores tie.

    Tables of two runs are then equal whatever the float rounding order (a Dask worker runs
    oneDNN on one thread, the flow process on all cores): with ties, rounding picks the boxes.
    """
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    folder = Path(tempfile.mkdtemp(prefix="distinct-mrcnn-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = Config(**{**TINY_SETTINGS, "BACKBONE": "resnet18"})
    model = MaskRCNN("inference", config, folder / "logs")
    distinct_class_head(model)
    model.save_weights(folder / "model.weights.h5")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "classes.json").write_text(json.dumps(CLASS_NAMES))
    return folder


def distinct_class_head(model, seed: int = 0) -> None:
    """Make every detection of a random-weight `MaskRCNN` score its own value: no ties.

    Random box heads turn many proposals into the same clipped, zero-area box, and a random
    classifier scores them alike, so runtimes may order such ties differently. Zero box deltas
    keep the proposals at their (distinct) anchors, and a small random classifier biased to
    class 1 makes each ROI's score depend on its features: parity tests between runtimes need
    one order.
    """
    rpn = model.keras_model.get_layer("rpn_model").get_layer("rpn_bbox_pred")
    for layer in (rpn, model.keras_model.get_layer("mrcnn_bbox_fc")):
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(seed)
    logits = np.zeros_like(bias)
    logits[1] = 3.0
    layer.set_weights([rng.normal(0.0, 0.01, kernel.shape).astype(np.float32), logits])


def png_bytes(height: int, width: int, seed: int = 0, mode: str = "RGB") -> bytes:
    """A random image of the given size and Pillow mode, as PNG bytes."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()
