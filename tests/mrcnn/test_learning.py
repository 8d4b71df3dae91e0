"""A model trained from scratch must learn: every head's loss falls, and it detects and segments.

`test_every_head_learns` runs in the default suite (a light ResNet-18, two 64×64 images,
60 steps, ground-truth boxes among the proposals: a few minutes on 2 CPU cores). Each of the
five losses must fall to a fraction of its first-ten-steps mean; in the measured run of this
recipe they fell to 0.03–0.08 of it (the mask loss, slowest, to 0.4).

`test_training_from_scratch_detects_and_segments` is marked `long` and left out of the default
run (`pytest -m long`; 240 steps of ≈ 4.6 s on a 2-core AVX2 CPU). Four 64×64 shapes images
(5 instances) are learned by heart (ResNet50-FPN, AdamW). Random weights give mask IoUs near
0; after 240 steps runs of this recipe reached mean best IoUs of 0.85–0.94 with every
instance found (the weakest instance 0.46–0.87), but one CI run in about ten missed one
instance entirely (its others 0.90–0.96): TensorFlow's multi-threaded CPU reductions are not
bit-reproducible, and that noise grows over 240 steps. The thresholds below (at most one instance missed, the others found with their class at IoU ≥ 0.3, mean ≥ 0.7) leave
room for that noise yet fail if any head (RPN, classifier, box regressor or mask) does not learn:
a wrong class, a misplaced box or a blank mask drop the IoU of every instance to ~0.
"""

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.masks import compute_overlaps_masks
from mrcnn.model import MaskRCNN
from mrcnn.shapes import ShapesDataset

SETTINGS = dict(
    NAME="learning", NUM_CLASSES=4, BACKBONE="resnet50", IMAGES_PER_GPU=4,
    IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128),
    RPN_TRAIN_ANCHORS_PER_IMAGE=64, TRAIN_ROIS_PER_IMAGE=32, POST_NMS_ROIS_TRAINING=256,
    POST_NMS_ROIS_INFERENCE=128, MAX_GT_INSTANCES=8, STEPS_PER_EPOCH=240, VALIDATION_STEPS=0,
    OPTIMIZER="adamw", LEARNING_RATE=1e-3, WARMUP_STEPS=10, TRAIN_BN=True, SEED=0,
    DETECTION_MIN_CONFIDENCE=0.5, WEIGHT_INIT="torchvision",
)


def best_ious(dataset: ShapesDataset, results: list[dict]) -> list[float]:
    """For each ground-truth instance, the best mask IoU among detections of its class."""
    ious = []
    for image_id, result in zip(dataset.image_ids, results):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        overlaps = compute_overlaps_masks(gt_masks, result["masks"])
        for g, class_id in enumerate(gt_class_ids):
            same_class = result["class_ids"] == class_id
            ious.append(float(overlaps[g][same_class].max()) if same_class.any() else 0.0)
    return ious


LIGHT = dict(SETTINGS, BACKBONE="resnet18", IMAGES_PER_GPU=2, STEPS_PER_EPOCH=10,
             ROI_INCLUDE_GT_BOXES=True)
LOSSES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")


def shapes(count: int) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=3, max_shapes=2)
    dataset.prepare()
    return dataset


def test_every_head_learns(tmp_path):
    dataset, config = shapes(2), Config(**LIGHT)
    trainer = MaskRCNN("training", config, tmp_path)
    history = trainer.train(dataset, None, config.LEARNING_RATE, epochs=6, layers="all", verbose=0).history
    for name in LOSSES:
        first, last = history[name][0], np.mean(history[name][-2:])
        assert np.isfinite(history[name]).all(), (name, history[name])
        assert last <= (0.6 if name == "mrcnn_mask_loss" else 0.3) * first, (name, history[name])


@pytest.mark.long
def test_training_from_scratch_detects_and_segments(tmp_path):
    dataset, config = shapes(4), Config(**SETTINGS)

    untrained = MaskRCNN("inference", config, tmp_path)
    before = best_ious(dataset, untrained.detect([dataset.load_image(i) for i in dataset.image_ids]))

    trainer = MaskRCNN("training", config, tmp_path)
    history = trainer.train(dataset, None, config.LEARNING_RATE, epochs=1, layers="all", verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    detector = MaskRCNN("inference", config, tmp_path)
    detector.load_weights(trainer.find_last())
    after = best_ious(dataset, detector.detect([dataset.load_image(i) for i in dataset.image_ids]))

    assert np.mean(before) < 0.3
    assert sorted(after)[1] >= 0.3, after  # every instance but at most one is found
    assert np.mean(after) >= 0.7, after
