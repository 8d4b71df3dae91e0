"""A model trained from scratch must learn: every head's loss falls, and it detects and segments.

`test_every_head_learns` runs in the default suite (a light ResNet-18, two 64×64 images,
60 steps, ground-truth boxes among the proposals: a few minutes on 2 CPU cores). Each of the
five losses must fall to a fraction of its first-ten-steps mean; in the measured run of this
recipe they fell to 0.03–0.08 of it (the mask loss, slowest, to 0.4).

`test_every_head_learns_real_nuclei` does the same on two real fluorescence images of
``../shared/data/nuclei_dsb2018`` (skipped where that is absent), with the light model of
`docs/examples/nuclei.yaml` and the image size, anchors, instance limits, ROIs and mean pixel
that `mrcnn.auto_config` chooses from the two images (128² crops of the 256² images): 40 steps
at batch 2, about a minute on 2 quiet CPU cores. Random crops make the losses noisy; in five
measured runs of 30–40 steps the last two epochs' mean fell to 0.16–0.24 of the first epoch's
(RPN class), 0.57–0.85 (RPN box), 0.36–0.53 (class), 0.73–0.85 (box) and 0.26–0.40 (mask);
the limits leave room for that noise.

`test_training_from_scratch_detects_and_segments` is marked `long` and left out of the default
run (`pytest -m long`; 240 steps of ≈ 4.6 s on a 2-core AVX2 CPU). Four 64×64 shapes images
(5 instances) are learned by heart (ResNet50-FPN, AdamW). Random weights give mask IoUs near
0; after 240 steps runs of this recipe reached mean best IoUs of 0.85–0.94 with every
instance found (the weakest instance 0.46–0.87), but one CI run in about ten missed one
instance entirely (its others 0.90–0.96): TensorFlow's multi-threaded CPU reductions are not
bit-reproducible, and that noise grows over 240 steps. The thresholds below (at most one
instance missed, the others found with their class at IoU ≥ 0.3, mean ≥ 0.7) leave room for
that noise yet fail if any head (RPN, classifier, box regressor or mask) does not learn: a wrong
class, a misplaced box or a blank mask drop the IoU of every instance to ~0.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from mrcnn.auto_config import DatasetStats, as_overrides, choose
from mrcnn.boxes import extract_bboxes
from mrcnn.config import Config
from mrcnn.dataset import Dataset
from mrcnn.images import read_image
from mrcnn.masks import compute_overlaps_masks
from mrcnn.model import MaskRCNN
from mrcnn.shapes import ShapesDataset

NUCLEI_RECIPE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "nuclei.yaml"

SETTINGS = dict(
    NAME="learning",
    NUM_CLASSES=4,
    BACKBONE="resnet50",
    IMAGES_PER_GPU=4,
    IMAGE_MIN_DIM=64,
    IMAGE_MAX_DIM=64,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128),
    RPN_TRAIN_ANCHORS_PER_IMAGE=64,
    TRAIN_ROIS_PER_IMAGE=32,
    POST_NMS_ROIS_TRAINING=256,
    POST_NMS_ROIS_INFERENCE=128,
    MAX_GT_INSTANCES=8,
    STEPS_PER_EPOCH=240,
    VALIDATION_STEPS=0,
    OPTIMIZER="adamw",
    LEARNING_RATE=1e-3,
    WARMUP_STEPS=10,
    TRAIN_BN=True,
    SEED=0,
    DETECTION_MIN_CONFIDENCE=0.5,
    WEIGHT_INIT="torchvision",
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


LIGHT = dict(
    SETTINGS, BACKBONE="resnet18", IMAGES_PER_GPU=2, STEPS_PER_EPOCH=10, ROI_INCLUDE_GT_BOXES=True
)
LOSSES = (
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)


def shapes(count: int) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=3, max_shapes=2)
    dataset.prepare()
    return dataset


def test_every_head_learns(tmp_path):
    dataset, config = shapes(2), Config(**LIGHT)
    trainer = MaskRCNN("training", config, tmp_path)
    history = trainer.train(
        dataset, None, config.LEARNING_RATE, epochs=6, layers="all", verbose=0
    ).history
    for name in LOSSES:
        first, last = history[name][0], np.mean(history[name][-2:])
        assert np.isfinite(history[name]).all(), (name, history[name])
        assert last <= (0.6 if name == "mrcnn_mask_loss" else 0.3) * first, (name, history[name])


class NucleusFolders(Dataset):
    """The nuclei's layout, as matterport's `samples/nucleus` reads it: `<id>/images/<id>.png`
    and one binary PNG per nucleus in `<id>/masks/`."""

    def load_folders(self, root: Path, image_ids: list[str]) -> None:
        self.add_class("nuclei", 1, "nucleus")
        for image_id in image_ids:
            self.add_image(
                "nuclei",
                image_id,
                root / image_id / "images" / f"{image_id}.png",
                masks=root / image_id / "masks",
            )

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        files = sorted(self.image_info[image_id]["masks"].glob("*.png"))
        masks = np.stack([read_image(f)[..., 0] > 0 for f in files], axis=-1)
        return masks, np.ones(len(files), np.int32)


def measure(dataset: Dataset) -> DatasetStats:
    """What `mrcnn.auto_config.choose` reads, measured on every image of a prepared dataset."""
    sizes, boxes, counts, means = [], [], [], []
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        found = extract_bboxes(masks)
        sizes.append(image.shape[:2])
        boxes.append(np.stack([found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]], axis=1))
        counts.append(masks.shape[-1])
        means.append(image.reshape(-1, 3).mean(axis=0))
    return DatasetStats(
        np.array(sizes, float),
        np.concatenate(boxes).astype(float),
        np.array(counts),
        tuple(float(v) for v in np.mean(means, axis=0)),
    )


def test_every_head_learns_real_nuclei(shared_data, tmp_path):
    root = shared_data / "nuclei_dsb2018"
    rows = csv.DictReader((root / "manifest.csv").open(encoding="utf-8"))
    # Two 256² images with 15-40 nuclei each: a typical field, some nuclei in every crop.
    chosen = [
        row["image_id"]
        for row in rows
        if (row["height"], row["width"]) == ("256", "256") and 15 <= int(row["n_instances"]) <= 40
    ][:2]
    dataset = NucleusFolders()
    dataset.load_folders(root / "stage1_train", chosen)
    dataset.prepare()
    recipe = yaml.safe_load(NUCLEI_RECIPE.read_text(encoding="utf-8"))["config"]
    # The recipe's light model and optimizer; short epochs, a short warmup, float32 and a seed,
    # so that the test is about learning, the same on every CPU.
    recipe.update(
        IMAGES_PER_GPU=2, STEPS_PER_EPOCH=8, WARMUP_STEPS=10, TRAINING_PRECISION="float32", SEED=0
    )
    chosen_values = as_overrides(choose(measure(dataset), user_set=set(recipe), user_values=recipe))
    assert chosen_values["IMAGE_RESIZE_MODE"] == "crop" and chosen_values["MEAN_PIXEL"][0] < 60
    config = Config(NAME="nuclei", NUM_CLASSES=2, **recipe, **chosen_values)
    trainer = MaskRCNN("training", config, tmp_path)
    history = trainer.train(
        dataset, None, config.LEARNING_RATE, epochs=5, layers="all", verbose=0
    ).history
    limits = {
        "rpn_class_loss": 0.4,
        "rpn_bbox_loss": 0.95,
        "mrcnn_class_loss": 0.7,
        "mrcnn_bbox_loss": 0.95,
        "mrcnn_mask_loss": 0.6,
    }
    for name, limit in limits.items():
        first, last = history[name][0], np.mean(history[name][-2:])
        assert np.isfinite(history[name]).all(), (name, history[name])
        assert last <= limit * first, (name, history[name])


@pytest.mark.long
def test_training_from_scratch_detects_and_segments(tmp_path):
    dataset, config = shapes(4), Config(**SETTINGS)

    untrained = MaskRCNN("inference", config, tmp_path)
    before = best_ious(
        dataset, untrained.detect([dataset.load_image(i) for i in dataset.image_ids])
    )

    trainer = MaskRCNN("training", config, tmp_path)
    history = trainer.train(dataset, None, config.LEARNING_RATE, epochs=1, layers="all", verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    detector = MaskRCNN("inference", config, tmp_path)
    detector.load_weights(trainer.find_last())
    after = best_ious(dataset, detector.detect([dataset.load_image(i) for i in dataset.image_ids]))

    assert np.mean(before) < 0.3
    assert sorted(after)[1] >= 0.3, after  # every instance but at most one is found
    assert np.mean(after) >= 0.7, after
