import numpy as np
import pytest

from mrcnn import boxes, utils

# A 3×4 IoU matrix worked by hand.
BOXES1 = np.array([[0, 0, 10, 10], [0, 0, 5, 5], [5, 5, 15, 15]])
BOXES2 = np.array([[0, 0, 10, 10], [5, 5, 10, 10], [20, 20, 30, 30], [0, 5, 10, 15]])
IOU = np.array(
    [
        [1.0, 25 / 100, 0.0, 50 / 150],
        [25 / 100, 0.0, 0.0, 0.0],  # touching edges do not overlap
        [25 / 175, 25 / 100, 0.0, 50 / 150],
    ]
)


def test_extract_bboxes_exclusive_corners_and_empty_instance():
    mask = np.zeros((6, 7, 3), dtype=bool)
    mask[1:3, 2:5, 0] = True
    mask[5, 6, 1] = True
    np.testing.assert_array_equal(
        boxes.extract_bboxes(mask), [[1, 2, 3, 5], [5, 6, 6, 7], [0, 0, 0, 0]]
    )
    assert boxes.extract_bboxes(mask).dtype == np.int32
    assert boxes.extract_bboxes(np.zeros((4, 4, 0), bool)).shape == (0, 4)


def test_extract_bboxes_rejects_2d_mask():
    with pytest.raises(ValueError, match="mask must have shape"):
        boxes.extract_bboxes(np.zeros((4, 4), bool))


def test_compute_overlaps_hand_worked_matrix():
    np.testing.assert_allclose(boxes.compute_overlaps(BOXES1, BOXES2), IOU, rtol=1e-6)
    np.testing.assert_allclose(boxes.compute_overlaps(BOXES2, BOXES1), IOU.T, rtol=1e-6)


def test_compute_iou_matches_a_row_of_the_matrix():
    areas2 = boxes.box_area(BOXES2)
    iou = boxes.compute_iou(BOXES1[2], BOXES2, boxes.box_area(BOXES1)[2], areas2)
    np.testing.assert_allclose(iou, IOU[2], rtol=1e-6)


def test_compute_overlaps_empty_and_bad_shapes():
    assert boxes.compute_overlaps(np.zeros((0, 4)), BOXES2).shape == (0, 4)
    assert boxes.compute_overlaps(BOXES1, np.zeros((0, 4))).shape == (3, 0)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \[N, 4\]"):
        boxes.compute_overlaps(BOXES1, np.zeros((3, 3)))


def test_box_refinement_hand_worked_and_round_trip():
    box = np.array([[0, 0, 10, 10]])
    gt = np.array([[5, 5, 25, 15]])  # centre (5, 5) -> (15, 10), size 10x10 -> 20x10
    deltas = boxes.box_refinement(box, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[1.0, 0.5, np.log(2.0), 0.0]], rtol=1e-6)

    rng = np.random.default_rng(0)
    y1x1 = rng.uniform(0, 100, (50, 2))
    anchors = np.concatenate([y1x1, y1x1 + rng.uniform(1, 50, (50, 2))], axis=1)
    targets = np.concatenate([y1x1 + 3, y1x1 + rng.uniform(5, 80, (50, 2))], axis=1)
    decoded = boxes.apply_box_deltas(anchors, boxes.box_refinement(anchors, targets))
    np.testing.assert_allclose(decoded, targets, atol=1e-3)


def test_apply_box_deltas_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="same shape"):
        boxes.apply_box_deltas(BOXES1, np.zeros((2, 4)))


def test_norm_and_denorm_boxes():
    pixel = np.array([[0, 0, 101, 201], [10, 20, 51, 101]])
    norm = boxes.norm_boxes(pixel, (101, 201))
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_allclose(norm[1], [0.1, 0.1, 0.5, 0.5])
    denorm = boxes.denorm_boxes(norm, (101, 201, 3))
    assert denorm.dtype == np.int32
    np.testing.assert_array_equal(denorm, pixel)


def test_clip_boxes_keeps_dtype():
    clipped = boxes.clip_boxes(np.array([[-5, 3, 50, 120], [10, 10, 20, 20]]), (0, 0, 40, 100))
    np.testing.assert_array_equal(clipped, [[0, 3, 40, 100], [10, 10, 20, 20]])
    assert clipped.dtype == np.int64


def test_non_max_suppression_greedy_in_score_order():
    candidates = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [20, 20, 30, 30]])  # IoU(0, 1) = 90/110
    np.testing.assert_array_equal(
        boxes.non_max_suppression(candidates, np.array([0.9, 0.8, 0.7]), 0.5), [0, 2]
    )
    np.testing.assert_array_equal(
        boxes.non_max_suppression(candidates, np.array([0.9, 0.8, 0.7]), 0.85), [0, 1, 2]
    )
    # The best box suppresses its neighbour even though that one comes first in the input.
    np.testing.assert_array_equal(
        boxes.non_max_suppression(candidates, np.array([0.6, 0.8, 0.7]), 0.5), [1, 2]
    )
    kept = boxes.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert kept.shape == (0,) and kept.dtype == np.int32


def test_non_max_suppression_rejects_wrong_scores():
    with pytest.raises(ValueError, match="scores must have shape"):
        boxes.non_max_suppression(BOXES1, np.zeros(2), 0.5)


def test_trim_zeros_drops_padding_rows():
    padded = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(boxes.trim_zeros(padded), [[1, 2, 3, 4], [0, 0, 0, 1]])


def test_utils_reexports_matterport_names():
    assert utils.compute_overlaps is boxes.compute_overlaps
    assert {"Dataset", "compute_ap", "extract_bboxes", "resize_image"} <= set(utils.__all__)
    assert "compute_matches" in dir(utils)
    # Resolved on first access from the modules that hold them.
    from mrcnn import dataset, evaluation

    assert utils.compute_ap is evaluation.compute_ap
    assert utils.Dataset is dataset.Dataset
    with pytest.raises(AttributeError, match="no_such_name"):
        utils.no_such_name  # noqa: B018 - the lookup itself must raise
