import numpy as np
import pytest

from mrcnn import anchors as anchor_ops
from mrcnn.boxes import box_refinement, compute_overlaps
from mrcnn.targets import build_rpn_targets

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def _anchors_128():
    shapes = anchor_ops.compute_backbone_shapes((128, 128), [4, 8, 16, 32, 64])
    return anchor_ops.generate_pyramid_anchors(
        (8, 16, 32, 64, 128), (0.5, 1, 2), shapes, [4, 8, 16, 32, 64], 1
    )


def test_hand_worked_four_anchors():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 12], [20, 20, 30, 30], [0, 0, 10, 20]])
    # IoU with the GT box: 1, 100/120, 0, 100/200 -> positive, positive, negative, neutral.
    match, bbox = build_rpn_targets(
        anchors, np.array([1]), np.array([[0, 0, 10, 10]]), anchors_per_image=8
    )
    np.testing.assert_array_equal(match, [1, 1, -1, 0])
    assert match.dtype == np.int32 and bbox.dtype == np.float32 and bbox.shape == (8, 4)
    np.testing.assert_allclose(bbox[0], 0, atol=1e-6)
    np.testing.assert_allclose(bbox[1], [0, -1 / 12 / 0.1, 0, np.log(10 / 12) / 0.2], rtol=1e-5)
    np.testing.assert_array_equal(bbox[2:], 0)


def test_invariants_on_a_pyramid():
    anchors = _anchors_128()
    gt_boxes = np.array([[10, 10, 50, 40], [60, 70, 120, 126], [30, 80, 38, 90]])
    match, bbox = build_rpn_targets(
        anchors, np.array([1, 2, 1]), gt_boxes, rng=np.random.default_rng(0)
    )
    positive = np.flatnonzero(match == 1)
    assert 0 < positive.size <= 128
    assert np.sum(match != 0) == 256  # plenty of negatives fill the budget
    overlaps = compute_overlaps(anchors, gt_boxes)
    assert (overlaps.max(axis=1)[match == -1] < 0.3).all()
    # Every GT box keeps a positive anchor (all positives fit in the budget here).
    assert (overlaps[positive].max(axis=0) == overlaps.max(axis=0)).all()
    expected = box_refinement(anchors[positive], gt_boxes[overlaps[positive].argmax(axis=1)]) / STD
    np.testing.assert_allclose(bbox[: positive.size], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bbox[positive.size :], 0)


def test_at_most_half_positive_and_seeded_sampling_is_reproducible():
    anchors = _anchors_128()
    # 16 GT boxes, each identical to a 16-pixel anchor: far more positives than the budget.
    centres = [(16 * k, 16 * m) for k in range(1, 5) for m in range(1, 5)]
    gt = np.array([[y - 8, x - 8, y + 8, x + 8] for y, x in centres])
    runs = [
        build_rpn_targets(
            anchors, np.ones(16, int), gt, anchors_per_image=16, rng=np.random.default_rng(seed)
        )
        for seed in (5, 5, 6)
    ]
    match = runs[0][0]
    assert np.sum(match == 1) == 8 and np.sum(match == -1) == 8
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_crowd_boxes_are_neither_targets_nor_surrounded_by_negatives():
    anchors = _anchors_128()
    crowd = np.array([[0, 0, 64, 64]])
    gt_boxes = np.concatenate([crowd, [[80, 80, 120, 120]]])
    match, _ = build_rpn_targets(anchors, np.array([-1, 3]), gt_boxes, anchors_per_image=100_000)
    touches_crowd = compute_overlaps(anchors, crowd)[:, 0] >= 0.001
    assert not (match[touches_crowd] == -1).any()
    on_crowd_only = touches_crowd & (compute_overlaps(anchors, gt_boxes[1:])[:, 0] == 0)
    assert (match[on_crowd_only] == 0).all()
    assert (match == -1).any() and (match == 1).any()


def test_no_ground_truth_samples_only_negatives():
    anchors = _anchors_128()
    match, bbox = build_rpn_targets(
        anchors, np.zeros(0, int), np.zeros((0, 4)), rng=np.random.default_rng(0)
    )
    assert np.sum(match == -1) == 256 and not (match == 1).any()
    np.testing.assert_array_equal(bbox, 0)
    # Only a crowd box: anchors touching it stay neutral.
    crowd = np.array([[0, 0, 128, 128]])
    match, _ = build_rpn_targets(anchors, np.array([-1]), crowd, anchors_per_image=100_000)
    assert not (match == 1).any()
    assert (match[compute_overlaps(anchors, crowd)[:, 0] >= 0.001] == 0).all()


def test_rejects_mismatched_ground_truth():
    with pytest.raises(ValueError, match="gt_class_ids has 2 entries but gt_boxes has 1 rows"):
        build_rpn_targets(_anchors_128(), np.array([1, 2]), np.array([[0, 0, 5, 5]]))
