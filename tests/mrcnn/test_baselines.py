"""The Otsu and Otsu + watershed baselines on synthetic images whose objects are known."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.baselines import (
    grey,
    instance_masks,
    otsu_not_applicable,
    otsu_prediction,
    otsu_watershed,
)

SIZE = 96
TWO_PIXELS = 100 * 2 / SIZE**2  # percent of the image


def disk(center: tuple[int, int], radius: int) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


def fluorescence(blobs: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB uint8: noisy dark background, noisy bright blobs (a fluorescence image's look)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(30, 8, (SIZE, SIZE, 3)), 0, 255)
    image[blobs] = np.clip(rng.normal(190, 15, (int(blobs.sum()), 3)), 0, 255)
    return image.astype(np.uint8)


def test_otsu_finds_a_bright_blob_to_within_a_pixel_or_two():
    blob = disk((40, 50), 18)
    found = otsu_prediction(fluorescence(blob))
    assert found.coverage_pct == pytest.approx(100 * blob.mean(), abs=TWO_PIXELS)
    assert found.objects == 1 and 30 < found.threshold < 190


def test_otsu_counts_separate_blobs_as_objects():
    blobs = disk((20, 20), 8) | disk((70, 30), 10) | disk((40, 75), 12)
    found = otsu_prediction(fluorescence(blobs, seed=1))
    assert found.objects == 3
    assert found.coverage_pct == pytest.approx(100 * blobs.mean(), abs=TWO_PIXELS)


def test_dark_objects_on_a_bright_background_score_badly():
    blob = disk((48, 48), 15)
    found = otsu_prediction(255 - fluorescence(blob))
    # Otsu calls the bright background the foreground: the complement of the objects.
    assert found.coverage_pct == pytest.approx(100 * (1 - blob.mean()), abs=0.1)


def test_the_grey_image_is_the_mean_of_the_channels():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = (255, 0, 0)  # pure red reads as grey 85
    assert grey(image)[0, 0] == 85 and grey(image)[3, 3] == 0
    assert otsu_prediction(image).coverage_pct == 50.0
    assert grey(np.full((2, 2), 0.25)).dtype == np.float64


def test_a_uniform_image_has_no_foreground():
    found = otsu_prediction(np.full((8, 8, 3), 120, np.uint8))
    assert (found.coverage_pct, found.objects) == (0.0, 0)


def test_otsu_applies_to_one_class_only():
    assert otsu_not_applicable(["nucleus"]) is None
    reason = otsu_not_applicable(["nucleus", "cytoplasm"])
    assert reason.startswith("not applicable: the dataset has 2 classes")


def test_watershed_splits_touching_blobs_that_otsu_counts_as_one():
    left, right = disk((48, 33), 14), disk((48, 60), 14)  # centres 27 px apart: they touch
    image = fluorescence(left | right, seed=2)
    assert otsu_prediction(image).objects == 1
    labels = otsu_watershed(image, min_distance=7)
    assert labels.dtype == np.int32 and labels.max() == 2
    # Each blob is nearly all one instance, and the two instances differ.
    majority = []
    for blob in (left & ~right, right & ~left):
        values, counts = np.unique(labels[blob], return_counts=True)
        assert counts.max() >= 0.95 * blob.sum(), (values, counts)
        majority.append(values[np.argmax(counts)])
    assert sorted(majority) == [1, 2]


def test_watershed_keeps_separate_blobs_whole_and_fills_holes():
    ring = disk((30, 30), 14) & ~disk((30, 30), 4)  # a nucleus with a dark nucleolus
    blobs = ring | disk((72, 70), 9) | disk((75, 20), 3)  # the last one small
    labels = otsu_watershed(fluorescence(blobs, seed=3), min_distance=7)
    assert labels.max() == 3
    assert np.all(labels[disk((30, 30), 4)] > 0)  # the hole belongs to its instance
    assert abs(int((labels > 0).sum()) - int((blobs | disk((30, 30), 4)).sum())) <= 4


def test_watershed_of_a_uniform_image_has_no_instance():
    labels = otsu_watershed(np.full((8, 8, 3), 120, np.uint8), min_distance=3)
    assert labels.shape == (8, 8) and labels.max() == 0
    assert instance_masks(labels).shape == (8, 8, 0)


def test_watershed_needs_a_positive_distance():
    with pytest.raises(ValueError, match="min_distance must be >= 1"):
        otsu_watershed(np.zeros((8, 8), np.uint8), min_distance=0)


def test_instance_masks_are_one_per_label_present():
    labels = np.array([[0, 1, 1], [3, 3, 0]], np.int32)
    masks = instance_masks(labels)
    assert masks.shape == (2, 3, 2) and masks.dtype == bool
    assert masks[..., 0].sum() == 2 and masks[1, 0, 1] and not masks[0, 0].any()
