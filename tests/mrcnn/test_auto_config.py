"""Config values chosen from dataset statistics (`mrcnn.auto_config`)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.auto_config import DatasetStats, as_overrides, choose, table
from mrcnn.config import Config


def _stats(image_sizes, box_sizes, instances, mean=None) -> DatasetStats:
    return DatasetStats(
        np.asarray(image_sizes, float), np.asarray(box_sizes, float), np.asarray(instances), mean
    )


def _values(choices) -> dict:
    return {choice.key: choice.value for choice in choices}


def nuclei_like(rng: np.random.Generator) -> DatasetStats:
    """Mostly 256² images, some 520×696 and 603×1272; 10–40 px round objects, 5–300 a picture."""
    sizes = [(256, 256)] * 60 + [(520, 696)] * 15 + [(603, 1272)] * 5
    boxes = rng.uniform(10, 40, (2000, 1)) * rng.uniform(0.8, 1.25, (2000, 2))
    counts = np.concatenate([rng.integers(5, 60, 60), rng.integers(100, 300, 20)])
    return _stats(sizes, boxes, counts, (20.0, 20.0, 20.0))


def test_small_objects_in_large_images_train_on_crops_at_their_own_scale():
    choices = choose(nuclei_like(np.random.default_rng(0)))
    values = _values(choices)
    assert values["IMAGE_RESIZE_MODE"] == "crop"
    assert values["IMAGE_MIN_DIM"] % 64 == 0 and values["IMAGE_MIN_DIM"] >= 4 * 40 * 1.25 * 0.95
    assert values["RPN_ANCHOR_SCALES"] == [8, 16, 32, 64, 128]  # 5 % of objects under 16 px
    assert values["RPN_ANCHOR_RATIOS"] == [0.5, 1, 2]
    assert values["MAX_GT_INSTANCES"] >= 299 and values["MAX_GT_INSTANCES"] % 8 == 0
    assert values["DETECTION_MAX_INSTANCES"] >= 1.25 * 299
    assert values["POST_NMS_ROIS_INFERENCE"] >= 2 * values["DETECTION_MAX_INSTANCES"]
    assert 16 <= values["TRAIN_ROIS_PER_IMAGE"] <= 512
    assert values["MEAN_PIXEL"] == [20.0, 20.0, 20.0]
    assert all(choice.chosen and choice.why for choice in choices)
    Config(NAME="nuclei", NUM_CLASSES=2, **as_overrides(choices))  # a valid config


def test_large_objects_keep_whole_images_at_the_median_size():
    rng = np.random.default_rng(1)
    stats = _stats([(480, 640)] * 30, rng.uniform(100, 300, (60, 2)), [2] * 30)
    values = _values(choose(stats))
    assert (values["IMAGE_RESIZE_MODE"], values["IMAGE_MAX_DIM"], values["IMAGE_MIN_DIM"]) == (
        "square",
        640,
        640,
    )
    # Anchors: the 5th percentile of √(h·w) is over 128 px, but the largest anchor (16 × the
    # first) must fit in the 640 px image: the first is 32.
    assert values["RPN_ANCHOR_SCALES"] == [32, 64, 128, 256, 512]
    assert (values["MAX_GT_INSTANCES"], values["DETECTION_MAX_INSTANCES"]) == (8, 100)
    assert values["TRAIN_ROIS_PER_IMAGE"] == 16  # three times two instances, at least 16
    assert "MEAN_PIXEL" not in values  # not measured


def test_elongated_objects_get_wider_anchor_ratios_unless_the_weights_are_pretrained():
    lanes = _stats(
        [(384, 384)] * 20, [(20, 200), (200, 20), (30, 30)] * 10, [3] * 20, (90.0, 80.0, 70.0)
    )
    assert _values(choose(lanes))["RPN_ANCHOR_RATIOS"] == [0.25, 0.5, 1, 2, 4]
    pretrained = choose(lanes, pretrained=True)
    values = _values(pretrained)
    assert values["RPN_ANCHOR_RATIOS"] == [0.5, 1, 2]
    assert values["MEAN_PIXEL"] == list(Config.MEAN_PIXEL)  # the weights' own mean
    assert "pretrained" in {c.key: c.why for c in pretrained}["MEAN_PIXEL"]


def test_the_users_values_win_and_later_choices_follow_them():
    stats = nuclei_like(np.random.default_rng(2))
    choices = choose(
        stats,
        user_set={"IMAGE_RESIZE_MODE", "IMAGE_MAX_DIM", "TRAIN_ROIS_PER_IMAGE"},
        user_values={
            "IMAGE_RESIZE_MODE": "square",
            "IMAGE_MAX_DIM": 512,
            "TRAIN_ROIS_PER_IMAGE": 200,
        },
    )
    by_key = {choice.key: choice for choice in choices}
    assert (by_key["IMAGE_RESIZE_MODE"].value, by_key["IMAGE_RESIZE_MODE"].chosen) == (
        "square",
        False,
    )
    assert by_key["IMAGE_MAX_DIM"].why == "set in the training config"
    assert by_key["IMAGE_MIN_DIM"].value == 512  # follows the user's square side
    assert by_key["TRAIN_ROIS_PER_IMAGE"].value == 200
    overrides = as_overrides(choices)
    assert "IMAGE_RESIZE_MODE" not in overrides and "TRAIN_ROIS_PER_IMAGE" not in overrides
    assert overrides["IMAGE_MIN_DIM"] == 512


def test_the_table_lists_every_choice_with_its_default_and_reason():
    choices = choose(nuclei_like(np.random.default_rng(3)))
    lines = table(choices).splitlines()
    assert lines[0].split() == ["key", "value", "default", "why"]
    assert len(lines) == len(choices) + 1
    anchors = next(line for line in lines if line.startswith("RPN_ANCHOR_SCALES"))
    assert "[8, 16, 32, 64, 128]" in anchors and "[32, 64, 128, 256, 512]" in anchors


def test_a_dataset_without_instances_is_refused():
    with pytest.raises(ValueError, match="needs images with instances"):
        _stats([(64, 64)], np.zeros((0, 2)), [0])
