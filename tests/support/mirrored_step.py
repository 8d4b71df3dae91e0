"""One training step on one device and on two mirrored CPU replicas, from the same weights.

Run as ``python -m tests.support.mirrored_step`` (a fresh process: TensorFlow's CPU can be
split into replica devices only before its first op). Prints JSON: the replica count, each
run's logged losses, how far the step moved the RPN weights, and how far the two results are
apart. The batch holds one image twice, and only the RPN losses count (the detection head's
ROI sampling is random per replica), so a correct all-reduce gives the same step.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mrcnn.distribute import ensure_cpu_devices

ensure_cpu_devices(2)

import numpy as np  # noqa: E402 - after the CPU split

from mrcnn.config import Config  # noqa: E402 - after the CPU split
from mrcnn.model import MaskRCNN  # noqa: E402 - after the CPU split
from mrcnn.shapes import ShapesDataset  # noqa: E402 - after the CPU split

SETTINGS = dict(
    NAME="mirror",
    BACKBONE="resnet18",
    TOP_DOWN_PYRAMID_SIZE=32,
    FPN_CLASSIF_FC_LAYERS_SIZE=32,
    MASK_POOL_SIZE=7,
    MASK_SHAPE=[14, 14],
    NUM_CLASSES=4,
    IMAGE_MIN_DIM=64,
    IMAGE_MAX_DIM=64,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128),
    TRAIN_ROIS_PER_IMAGE=16,
    POST_NMS_ROIS_TRAINING=64,
    MAX_GT_INSTANCES=4,
    STEPS_PER_EPOCH=1,
    VALIDATION_STEPS=0,
    SEED=0,
    LEARNING_MOMENTUM=0.0,
    GRADIENT_CLIP_NORM=0.0,
    LOSS_WEIGHTS={"mrcnn_class_loss": 0.0, "mrcnn_bbox_loss": 0.0, "mrcnn_mask_loss": 0.0},
)


def one_step(model: MaskRCNN, dataset: ShapesDataset) -> tuple[dict[str, float], list[np.ndarray]]:
    history = model.train(dataset, None, learning_rate=0.01, epochs=1, layers="rpn_.*", verbose=0)
    return (
        {name: float(values[-1]) for name, values in history.history.items()},
        model.keras_model.get_layer("rpn_model").get_weights(),
    )


def main() -> dict:
    dataset = ShapesDataset()
    dataset.load_shapes(1, 64, 64, seed=0)
    dataset.image_info.append(dict(dataset.image_info[0]))
    dataset.prepare()
    with tempfile.TemporaryDirectory() as work:
        single = MaskRCNN("training", Config(IMAGES_PER_GPU=2, **SETTINGS), os.path.join(work, "a"))
        start = os.path.join(work, "start.weights.h5")
        single.save_weights(start)
        before = single.keras_model.get_layer("rpn_model").get_weights()
        mirrored = MaskRCNN(
            "training",
            Config(
                IMAGES_PER_GPU=1, GPU_COUNT=2, TRAINING_DEVICES=["/cpu:0", "/cpu:1"], **SETTINGS
            ),
            os.path.join(work, "b"),
        )
        mirrored.load_weights(start)
        single_losses, single_after = one_step(single, dataset)
        mirrored_losses, mirrored_after = one_step(mirrored, dataset)
    return {
        "replicas": mirrored.strategy.num_replicas_in_sync,
        "single_replicas": single.strategy.num_replicas_in_sync,
        "losses": {"single": single_losses, "mirrored": mirrored_losses},
        "step_size": max(float(np.abs(a - b).max()) for a, b in zip(single_after, before)),
        "difference": max(float(np.abs(a - b).max()) for a, b in zip(single_after, mirrored_after)),
    }


if __name__ == "__main__":
    json.dump(main(), sys.stdout)
