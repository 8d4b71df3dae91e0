"""Tests for mrcnn.shapes: deterministic synthetic shapes with occlusion-aware masks."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.boxes import compute_overlaps, extract_bboxes
from mrcnn.shapes import ShapesDataset, draw_masks, visible_masks


def _shapes(count: int, size: int = 64, seed: int = 0, **kwargs: int) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed, **kwargs)
    dataset.prepare()
    return dataset


def _manual(shapes: list) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(0, 32, 32)
    dataset.add_image(
        "shapes", 0, None, height=32, width=32, bg_color=(0, 0, 0), shapes=shapes, seed=0
    )
    dataset.prepare()
    return dataset


def test_classes_follow_matterport() -> None:
    dataset = _shapes(1)
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    assert dataset.class_from_source_map["shapes.3"] == 3


def test_same_seed_same_images_other_seed_other_images() -> None:
    first, second, other = _shapes(4), _shapes(4), _shapes(4, seed=1)
    for i in range(4):
        np.testing.assert_array_equal(first.load_image(i), second.load_image(i))
        np.testing.assert_array_equal(first.load_mask(i)[0], second.load_mask(i)[0])
    assert [i["shapes"] for i in first.image_info] != [i["shapes"] for i in other.image_info]


def test_image_does_not_depend_on_count() -> None:
    few, many = _shapes(3), _shapes(12)
    for i in range(3):
        assert few.image_info[i]["shapes"] == many.image_info[i]["shapes"]
        np.testing.assert_array_equal(few.load_image(i), many.load_image(i))


def test_masks_boxes_and_pixels_agree() -> None:
    dataset = _shapes(20)
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert masks.dtype == bool and class_ids.dtype == np.int32
        assert 1 <= masks.shape[2] == len(class_ids) <= 4
        assert set(class_ids) <= {1, 2, 3}
        assert masks.sum(axis=2).max() <= 1  # visible parts never overlap
        # Shape colours differ from the background in every channel: masks cover exactly
        # the non-background pixels.
        np.testing.assert_array_equal(masks.any(axis=2), (image != info["bg_color"]).all(axis=2))
        for i in range(masks.shape[2]):
            assert len(np.unique(image[masks[..., i]], axis=0)) == 1
        boxes = extract_bboxes(masks)
        assert np.all(boxes[:, 2:] > boxes[:, :2])


def test_default_sizes_scale_and_overlaps_stay_small() -> None:
    for size, (low, high) in ((128, (10, 30)), (256, (20, 60))):
        dataset = _shapes(30, size=size)
        for info in dataset.image_info:
            dims = np.array([d for _, _, d in info["shapes"]])
            assert np.all((dims[:, 2] >= low) & (dims[:, 2] <= high))
            boxes = np.stack(
                [
                    dims[:, 1] - dims[:, 2],
                    dims[:, 0] - dims[:, 2],
                    dims[:, 1] + dims[:, 2],
                    dims[:, 0] + dims[:, 2],
                ],
                axis=1,
            )
            iou = compute_overlaps(boxes, boxes)
            assert np.all(iou[~np.eye(len(boxes), dtype=bool)] <= 0.3)
            # Every shape lies wholly inside the image.
            full = draw_masks(info["shapes"], size, size)
            assert np.all(full.sum(axis=(0, 1)) > 0)
            assert not full[0].any() and not full[-1].any()


def test_drawn_square_covers_its_inclusive_extent() -> None:
    masks = draw_masks([("square", (1, 2, 3), (10, 8, 3))], 20, 20)
    expected = np.zeros((20, 20), dtype=bool)
    expected[5:12, 7:14] = True
    np.testing.assert_array_equal(masks[..., 0], expected)


def test_later_shapes_occlude_and_hidden_ones_are_dropped() -> None:
    hidden = _manual(
        [
            ("square", (255, 0, 0), (10, 10, 3)),
            ("circle", (0, 255, 0), (10, 10, 6)),
            ("triangle", (0, 0, 255), (24, 20, 4)),
        ]
    )
    masks, class_ids = hidden.load_mask(0)
    np.testing.assert_array_equal(class_ids, [2, 3])  # the square lies under the circle
    full = draw_masks(hidden.image_info[0]["shapes"], 32, 32)
    np.testing.assert_array_equal(masks, full[..., 1:])

    partial = _manual([("square", (255, 0, 0), (10, 10, 5)), ("square", (0, 255, 0), (14, 10, 5))])
    masks, class_ids = partial.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 1])
    assert masks[..., 0].sum() == 11 * 4  # columns 5..8 stay visible
    assert masks[..., 1].sum() == 11 * 11


def test_visible_masks_by_hand() -> None:
    masks = np.zeros((1, 4, 3), dtype=bool)
    masks[0, :, 0] = True  # bottom: all four pixels
    masks[0, 1:3, 1] = True  # middle: pixels 1, 2
    masks[0, 2:, 2] = True  # top: pixels 2, 3
    visible = visible_masks(masks)
    np.testing.assert_array_equal(visible[0].T, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]])


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        ShapesDataset().load_shapes(1, 32, 32, max_size=20)
    with pytest.raises(ValueError, match="min_size <= max_size"):
        ShapesDataset().load_shapes(1, 64, 64, min_size=9, max_size=5)
    with pytest.raises(ValueError, match="max_shapes"):
        ShapesDataset().load_shapes(1, 64, 64, max_shapes=0)
