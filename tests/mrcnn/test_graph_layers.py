"""Custom graph layers on tiny hand-made tensors, against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import boxes as np_boxes
from mrcnn.layers.anchors import AnchorGenerator
from mrcnn.layers.batch_norm import BatchNorm, FoldingConv2D, conv_batch_norm
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_targets import DetectionTargetLayer, PositiveRois
from mrcnn.layers.gt_boxes import NormalizeBoxes
from mrcnn.layers.heads import BlockConv2DTranspose, FoldRois, UnfoldRois, WindowDense
from mrcnn.layers.proposals import ProposalLayer, top_k_indices
from mrcnn.layers.roi_align import PyramidROIAlign, roi_levels
from mrcnn.network import dtype_policy
from mrcnn.transform import compose_image_meta
from tests.mrcnn.layer_checks import check_layer_config_round_trip, crop_and_resize_reference

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def image_meta(height: int, width: int, window: tuple, num_classes: int = 3) -> np.ndarray:
    return compose_image_meta(
        0, (height, width, 3), (height, width, 3), window, 1.0, [1] * num_classes
    )


def square(center_y: float, center_x: float, side_pixels: float, image_side: int = 1024) -> list:
    """Normalized box of `side_pixels` on a square image, centred at normalized (y, x)."""
    half = 0.5 * side_pixels / image_side
    return [center_y - half, center_x - half, center_y + half, center_x + half]


# ---------------------------------------------------------------- PyramidROIAlign


def test_roi_levels_follow_the_fpn_rule_on_1024():
    # 224 px → P4, 112 → P3, 56 → P2, tiny → P2 (clamped), huge → P5 (clamped), 448×112 → P4.
    rois = tf.constant(
        [
            square(0.5, 0.5, 224),
            square(0.5, 0.5, 112),
            square(0.5, 0.5, 56),
            square(0.5, 0.5, 2),
            square(0.5, 0.5, 1000),
            [0.1, 0.4, 0.1 + 448 / 1024, 0.4 + 112 / 1024],
        ]
    )
    np.testing.assert_array_equal(
        roi_levels(rois, tf.constant([1024, 1024])).numpy(), [4, 3, 2, 2, 5, 4]
    )


def test_pyramid_roi_align_matches_crop_and_resize_per_level_in_roi_order():
    rng = np.random.default_rng(0)
    # Different sizes per level, so a crop from the wrong level cannot match.
    maps = [rng.normal(size=(2, s, s, 3)).astype(np.float32) for s in (12, 10, 8, 6)]
    rois = np.array(
        [
            [
                square(0.3, 0.3, 224),
                square(0.6, 0.4, 56),
                square(0.5, 0.5, 1000),
                square(0.2, 0.7, 112),
            ],
            [
                square(0.4, 0.6, 112),
                square(0.5, 0.5, 4),
                square(0.7, 0.3, 224),
                square(0.45, 0.55, 600),
            ],
        ],
        np.float32,
    )
    levels = [[4, 2, 5, 3], [3, 2, 4, 5]]
    meta = np.stack([image_meta(1024, 1024, (0, 0, 1024, 1024))] * 2)
    layer = PyramidROIAlign((3, 4))
    got = layer([tf.constant(rois), tf.constant(meta), *maps]).numpy()
    assert got.shape == (2, 4, 3, 4, 3)
    for b in range(2):
        for r in range(4):
            expected = crop_and_resize_reference(
                maps[levels[b][r] - 2], rois[b, r : r + 1], [b], (3, 4)
            )[0]
            np.testing.assert_allclose(got[b, r], expected, atol=1e-5, err_msg=f"image {b} roi {r}")


def test_pyramid_roi_align_config_round_trip():
    restored = check_layer_config_round_trip(PyramidROIAlign((7, 7), name="roi_align_classifier"))
    assert restored.pool_shape == (7, 7)


# ---------------------------------------------------------------- ProposalLayer

ANCHORS = np.array(
    [
        [0.1, 0.1, 0.3, 0.3],
        [0.11, 0.1, 0.31, 0.3],  # IoU ≈ 0.9 with anchor 0
        [0.5, 0.5, 0.7, 0.7],
        [0.8, 0.8, 1.1, 1.1],  # sticks out of the image: clipped
        [0.0, 0.6, 0.2, 0.8],
    ],
    np.float32,
)
RPN_DELTAS = np.array(
    [
        [[0, 0, 0, 0], [0.5, 0, 0, 0], [1, -1, 0.5, 0], [0, 0, 0, 0], [0, 0, -0.5, 1]],
        [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [-1, 0, 0, 0]],
    ],
    np.float32,
)
RPN_SCORES = np.array([[0.9, 0.95, 0.3, 0.6, 0.1], [0.2, 0.1, 0.8, 0.7, 0.9]], np.float32)


def expected_proposals(image: int, count: int, pre_nms_limit: int, threshold: float) -> np.ndarray:
    """Numpy twin: top-k by score, decode, clip to [0, 1], NMS, zero-pad to `count`."""
    order = np.argsort(-RPN_SCORES[image])[:pre_nms_limit]
    decoded = np_boxes.apply_box_deltas(ANCHORS[order], RPN_DELTAS[image][order] * STD)
    decoded = np.clip(decoded, 0.0, 1.0)
    keep = np_boxes.non_max_suppression(decoded, RPN_SCORES[image][order], threshold)[:count]
    out = np.zeros((count, 4), np.float32)
    out[: keep.size] = decoded[keep]
    return out


def run_proposals(count: int, pre_nms_limit: int, threshold: float = 0.7) -> np.ndarray:
    probs = np.stack([1.0 - RPN_SCORES, RPN_SCORES], axis=-1)
    layer = ProposalLayer(count, threshold, pre_nms_limit, STD)
    return layer([tf.constant(probs), tf.constant(RPN_DELTAS), tf.constant(ANCHORS)]).numpy()


@pytest.mark.parametrize("count, pre_nms_limit", [(6, 100), (2, 100), (6, 3)])
def test_proposal_layer_matches_numpy_nms(count, pre_nms_limit):
    got = run_proposals(count, pre_nms_limit)
    assert got.shape == (2, count, 4)
    for image in range(2):
        np.testing.assert_allclose(
            got[image], expected_proposals(image, count, pre_nms_limit, 0.7), atol=1e-6
        )


def test_proposal_layer_hand_worked_suppression_padding_and_pre_nms_limit():
    got = run_proposals(6, 100)[0]
    # Anchor 0 is suppressed by the higher-scored anchor 1; 4 survive, 2 zero rows follow.
    assert np.count_nonzero(np.any(got != 0, axis=1)) == 4
    np.testing.assert_array_equal(got[4:], 0.0)
    np.testing.assert_allclose(got[1], [0.8, 0.8, 1.0, 1.0], atol=1e-6)  # anchor 3, clipped
    # With only the 3 best anchors (1, 0, 3) considered, anchors 2 and 4 never show up.
    limited = run_proposals(6, 3)[0]
    np.testing.assert_allclose(limited[:2], got[:2], atol=1e-6)
    np.testing.assert_array_equal(limited[2:], 0.0)


def test_proposal_layer_config_round_trip():
    layer = ProposalLayer(10, 0.7, 50, STD, name="ROI")
    restored = check_layer_config_round_trip(layer)
    probs = np.stack([1.0 - RPN_SCORES, RPN_SCORES], axis=-1)
    inputs = [tf.constant(probs), tf.constant(RPN_DELTAS), tf.constant(ANCHORS)]
    np.testing.assert_array_equal(restored(inputs).numpy(), layer(inputs).numpy())


@pytest.mark.parametrize("k", [1, 5, 7, 12])
def test_top_k_indices_are_tf_top_k_ties_included(k):
    """Two steps (k-th best value, stable sort of the candidates) give top_k's indices: best
    first, equal scores by index, ties across the k-th place cut by index."""
    scores = tf.constant([0.5, 0.9, 0.5, 0.1, 0.9, 0.5, 0.7, 0.5, 0.0, 0.9, 0.3, 0.5])
    got = top_k_indices(scores, tf.constant(k)).numpy()
    np.testing.assert_array_equal(got, tf.math.top_k(scores, k, sorted=True).indices.numpy())
    assert list(got[:3]) == [1, 4, 9][:k]


# ---------------------------------------------------------------- DetectionLayer

DET_ROIS = np.array(
    [
        [0.1, 0.1, 0.4, 0.4],  # class 1, 0.9
        [0.12, 0.12, 0.42, 0.42],  # class 1, 0.8: suppressed by the first
        [0.11, 0.11, 0.41, 0.41],  # class 2, 0.85: same place, other class, kept
        [0.6, 0.6, 0.9, 0.9],  # background
        [0.5, 0.1, 0.7, 0.3],  # class 2 below min confidence
        [0.7, 0.5, 0.95, 0.99],  # class 1, 0.95: clipped to the window
        [0.0, 0.0, 0.0, 0.0],  # padding, although its probabilities look confident
    ],
    np.float32,
)
DET_PROBS = np.array(
    [
        [0.05, 0.9, 0.05],
        [0.1, 0.8, 0.1],
        [0.05, 0.1, 0.85],
        [0.8, 0.1, 0.1],
        [0.3, 0.1, 0.6],
        [0.0, 0.95, 0.05],
        [0.0, 0.99, 0.01],
    ],
    np.float32,
)
DET_WINDOW = (0, 0, 90, 80)  # pixels of a 100×100 molded image


def detection_inputs() -> tuple:
    deltas = np.zeros((2, 7, 3, 4), np.float32)
    deltas[0, 0, 1] = [1.0, -1.0, 0.5, 0.0]  # the ROI's own class: applied × std
    deltas[0, 0, 2] = [5.0, 5.0, 5.0, 5.0]  # another class: ignored
    deltas[0, 2, 2] = [0.0, 0.0, -0.5, 0.5]
    probs = np.stack([DET_PROBS, np.tile([[1.0, 0.0, 0.0]], (7, 1))]).astype(
        np.float32
    )  # image 1: background
    meta = np.stack([image_meta(100, 100, DET_WINDOW), image_meta(100, 100, (0, 0, 100, 100))])
    return np.stack([DET_ROIS, DET_ROIS]), probs, deltas, meta


def test_detection_layer_hand_made_rois():
    rois, probs, deltas, meta = detection_inputs()
    layer = DetectionLayer(max_instances=5, min_confidence=0.7, nms_threshold=0.3, bbox_std_dev=STD)
    got = layer([tf.constant(t) for t in (rois, probs, deltas, meta)]).numpy()
    assert got.shape == (2, 5, 6)
    window = np_boxes.norm_boxes(np.array([DET_WINDOW]), (100, 100))[0]
    refined = np_boxes.apply_box_deltas(DET_ROIS[[5, 0, 2]], deltas[0, [5, 0, 2], [1, 1, 2]] * STD)
    expected_boxes = np_boxes.clip_boxes(refined, window)
    # Sorted by score: ROI 5 (clipped), ROI 0 (ROI 1 suppressed), ROI 2 (other class kept).
    np.testing.assert_allclose(got[0, :3, :4], expected_boxes, atol=1e-6)
    np.testing.assert_array_equal(got[0, :3, 4], [1, 1, 2])
    np.testing.assert_allclose(got[0, :3, 5], [0.95, 0.9, 0.85], atol=1e-6)
    assert expected_boxes[0, 3] == pytest.approx(79 / 99)  # the window's right edge, not 0.99
    np.testing.assert_array_equal(got[0, 3:], 0.0)
    np.testing.assert_array_equal(got[1], 0.0)  # only background ROIs


def test_detection_layer_same_class_overlap_suppressed_only_above_threshold():
    rois, probs, deltas, meta = detection_inputs()
    keep_all = DetectionLayer(
        max_instances=5, min_confidence=0.7, nms_threshold=0.95, bbox_std_dev=STD
    )
    got = keep_all([tf.constant(t) for t in (rois, probs, deltas * 0, meta)]).numpy()
    # With a loose threshold ROI 1 survives: 4 detections, still in score order.
    np.testing.assert_allclose(got[0, :4, 5], [0.95, 0.9, 0.85, 0.8], atol=1e-6)
    np.testing.assert_array_equal(got[0, 4], 0.0)


def test_detection_layer_is_per_class_nms_then_top_k():
    """Against a numpy reference: NMS within each class, then the best `max_instances`."""
    rng = np.random.default_rng(3)
    centers, sizes = rng.uniform(0.2, 0.8, (60, 2)), rng.uniform(0.05, 0.4, (60, 2))
    rois = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)
    logits = rng.normal(0.0, 2.0, (60, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    meta = image_meta(100, 100, (0, 0, 100, 100))[None]
    layer = DetectionLayer(max_instances=8, min_confidence=0.3, nms_threshold=0.4, bbox_std_dev=STD)
    got = layer(
        [
            tf.constant(rois[None]),
            tf.constant(probs[None]),
            tf.constant(np.zeros((1, 60, 4, 4), np.float32)),
            tf.constant(meta),
        ]
    ).numpy()[0]
    class_ids, scores = probs.argmax(axis=1), probs.max(axis=1)
    kept = []
    for class_id in (1, 2, 3):
        members = np.flatnonzero((class_ids == class_id) & (scores >= 0.3))
        keep = np_boxes.non_max_suppression(rois[members], scores[members], 0.4)
        kept += [(scores[i], class_id, i) for i in members[keep]]
    expected = sorted(kept, key=lambda item: -item[0])[:8]
    assert len(expected) == 8 and len({class_id for _, class_id, _ in expected}) > 1
    np.testing.assert_array_equal(got[:, 4], [class_id for _, class_id, _ in expected])
    np.testing.assert_allclose(got[:, 5], [score for score, _, _ in expected], atol=1e-6)
    np.testing.assert_allclose(got[:, :4], rois[[i for _, _, i in expected]], atol=1e-6)


def test_detection_layer_config_round_trip():
    layer = DetectionLayer(100, 0.7, 0.3, STD, name="mrcnn_detection")
    restored = check_layer_config_round_trip(layer)
    inputs = [tf.constant(t) for t in detection_inputs()]
    np.testing.assert_array_equal(restored(inputs).numpy(), layer(inputs).numpy())


# ---------------------------------------------------------------- DetectionTargetLayer

GT_BOXES = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]], np.float32)
PROPOSALS = np.array(
    [
        [0.0, 0.0, 0.5, 0.5],  # IoU 1 with gt 0: positive, class 1
        [0.5, 0.5, 1.0, 0.75],  # IoU exactly 0.5 with gt 1: positive, class 2
        [0.0, 0.0, 0.5, 0.2421875],  # IoU 0.484 with gt 0: negative
        [0.05, 0.05, 0.55, 0.55],  # IoU 0.68 with gt 0: positive, deltas (-0.1, -0.1, 0, 0) / std
        [0.0, 0.6, 0.3, 0.9],  # no overlap: negative
        [0.0, 0.0, 0.0, 0.0],  # padding
    ],
    np.float32,
)
POSITIVES = {0: (1, 0), 1: (2, 1), 3: (1, 0)}  # proposal → (class id, gt index)
NEGATIVES = {2, 4}


def find_rows(rois: np.ndarray, candidates: np.ndarray) -> list:
    """Index in `candidates` of each row of `rois` (-1 for a row found nowhere)."""
    matches = np.all(np.abs(rois[:, None] - candidates[None]) < 1e-6, axis=-1)
    return [int(np.argmax(m)) if m.any() else -1 for m in matches]


def run_targets(layer: DetectionTargetLayer, proposals, class_ids, gt_boxes, masks) -> list:
    outputs = layer(
        [
            tf.constant(proposals),
            tf.constant(class_ids, tf.int32),
            tf.constant(gt_boxes),
            tf.constant(masks),
        ]
    )
    return [t.numpy() for t in outputs]


def mini_masks(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    return rng.uniform(size=(size, size, count)) > 0.5


def test_detection_targets_positives_negatives_deltas_and_padding():
    rng = np.random.default_rng(0)
    masks = np.stack([mini_masks(rng, 4, 3), mini_masks(rng, 4, 3)])
    gt_boxes = np.stack([GT_BOXES, GT_BOXES[[0, 2, 2]]])
    layer = DetectionTargetLayer(8, 0.5, STD, (4, 4), use_mini_mask=True)
    rois, target_ids, target_bbox, target_mask = run_targets(
        layer, np.stack([PROPOSALS, PROPOSALS]), [[1, 2, 0], [3, 0, 0]], gt_boxes, masks
    )
    assert (rois.shape, target_ids.shape, target_bbox.shape, target_mask.shape) == (
        (2, 8, 4),
        (2, 8),
        (2, 8, 4),
        (2, 8, 4, 4),
    )
    found = find_rows(rois[0], PROPOSALS)
    # 3 positives first, then int(3 / 0.5) - 3 = 3 negatives wanted but only 2 exist, then padding.
    assert set(found[:3]) == set(POSITIVES) and set(found[3:5]) == NEGATIVES
    np.testing.assert_array_equal(rois[0, 5:], 0.0)
    for row, proposal in enumerate(found[:3]):
        class_id, gt = POSITIVES[proposal]
        assert target_ids[0, row] == class_id
        expected = np_boxes.box_refinement(PROPOSALS[[proposal]], GT_BOXES[[gt]])[0] / STD
        np.testing.assert_allclose(target_bbox[0, row], expected, atol=1e-5)
        if proposal == 0:  # the ROI is its gt box and mini mask = mask shape: the mask itself
            np.testing.assert_array_equal(target_mask[0, row], masks[0, :, :, 0])
    np.testing.assert_allclose(target_bbox[0, found.index(3)], [-1.0, -1.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_array_equal(target_ids[0, 3:], 0)
    np.testing.assert_array_equal(target_bbox[0, 3:], 0.0)
    np.testing.assert_array_equal(target_mask[0, 3:], 0.0)
    # Image 1 (gt 0 only, as class 3): 2 positives, its own mask, int(2 / 0.5) - 2 = 2 negatives.
    found = find_rows(rois[1], PROPOSALS)
    assert set(found[:2]) == {0, 3} and set(found[2:4]) <= {1, 2, 4}
    np.testing.assert_array_equal(target_ids[1], [3, 3, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(rois[1, 4:], 0.0)
    assert np.any(masks[1, :, :, 0] != masks[0, :, :, 0])
    np.testing.assert_array_equal(target_mask[1, found.index(0)], masks[1, :, :, 0])


@pytest.mark.parametrize("crowd", [False, True], ids=["no_gt", "crowd_only"])
def test_detection_targets_image_without_ground_truth(crowd):
    class_ids = [-1 if crowd else 0, 0, 0]
    gt_boxes = np.zeros((1, 3, 4), np.float32)
    gt_boxes[0, 0] = GT_BOXES[0] if crowd else 0.0
    layer = DetectionTargetLayer(8, 0.5, STD, (4, 4), use_mini_mask=True)
    rois, target_ids, target_bbox, target_mask = run_targets(
        layer, PROPOSALS[None], [class_ids], gt_boxes, np.ones((1, 4, 4, 3), bool)
    )
    assert np.isfinite(rois).all() and np.isfinite(target_bbox).all()
    np.testing.assert_array_equal(target_ids, 0)
    np.testing.assert_array_equal(target_bbox, 0.0)
    np.testing.assert_array_equal(target_mask, 0.0)
    # Any ROI returned is a real proposal that does not touch a crowd box.
    found = find_rows(rois[0][np.any(rois[0] != 0, axis=1)], PROPOSALS)
    assert set(found) <= ({1, 4} if crowd else {0, 1, 2, 3, 4})


def test_detection_targets_positive_share_is_capped():
    rng = np.random.default_rng(1)
    jitter = rng.uniform(-0.02, 0.02, size=(10, 4)).astype(np.float32)
    positives = GT_BOXES[0] + jitter  # 10 ROIs with IoU ≥ 0.5 with gt 0
    negatives = np.array([[0.6, 0.0, 0.7 + 0.02 * i, 0.2] for i in range(10)], np.float32)
    proposals = np.concatenate([positives, negatives])[None]
    layer = DetectionTargetLayer(6, 0.5, STD, (4, 4), use_mini_mask=True)
    rois, target_ids, _, _ = run_targets(
        layer, proposals, [[1, 0, 0]], GT_BOXES[None], np.ones((1, 4, 4, 3), bool)
    )
    np.testing.assert_array_equal(target_ids[0], [1, 1, 1, 0, 0, 0])  # int(6 · 0.5) positives
    found = find_rows(rois[0], proposals[0])
    assert all(0 <= i < 10 for i in found[:3]) and all(i >= 10 for i in found[3:])


def test_detection_targets_crowds_are_neither_targets_nor_negatives():
    gt_boxes = np.array([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]], np.float32)
    proposals = np.array(
        [
            [
                [0.0, 0.0, 0.5, 0.5],  # positive
                [0.5, 0.5, 1.0, 1.0],  # the crowd box itself
                [0.6, 0.6, 0.9, 0.9],  # inside the crowd
                [0.0, 0.6, 0.3, 0.9],
            ]
        ],
        np.float32,
    )  # negative
    layer = DetectionTargetLayer(8, 0.25, STD, (4, 4), use_mini_mask=True)
    rois, target_ids, _, _ = run_targets(
        layer, proposals, [[1, -1]], gt_boxes, np.ones((1, 4, 4, 2), bool)
    )
    assert find_rows(rois[0], proposals[0])[:2] == [0, 3]
    np.testing.assert_array_equal(rois[0, 2:], 0.0)
    np.testing.assert_array_equal(target_ids[0], [1, 0, 0, 0, 0, 0, 0, 0])


def test_detection_targets_mini_mask_crop_matches_numpy():
    rng = np.random.default_rng(2)
    masks = mini_masks(rng, 6, 3)[None]
    layer = DetectionTargetLayer(4, 1.0, STD, (5, 5), use_mini_mask=True)
    # Two positives, of gt 0 and gt 1; both stick out of their gt box on some side.
    proposals = np.array([[[0.03, 0.07, 0.53, 0.57], [0.5, 0.5, 0.97, 0.78]]], np.float32)
    rois, target_ids, _, target_mask = run_targets(
        layer, proposals, [[1, 2, 0]], GT_BOXES[None], masks
    )
    for row, gt in enumerate(find_rows(rois[0, :2], proposals[0])):
        (gy1, gx1, gy2, gx2), (y1, x1, y2, x2) = GT_BOXES[gt], proposals[0, gt]
        h, w = gy2 - gy1, gx2 - gx1
        in_gt = [[(y1 - gy1) / h, (x1 - gx1) / w, (y2 - gy1) / h, (x2 - gx1) / w]]
        crop = crop_and_resize_reference(
            masks[..., gt, None].astype(np.float32), in_gt, [0], (5, 5)
        )[0, ..., 0]
        assert np.all(np.abs(crop - 0.5) > 1e-3)  # no rounding ties: the comparison is exact
        assert target_ids[0, row] == gt + 1
        np.testing.assert_array_equal(target_mask[0, row], np.round(crop))


def test_detection_targets_full_mask_crop_matches_numpy():
    full = np.zeros((1, 9, 9, 1), bool)
    full[0, 1:6, 2:8, 0] = True
    full[0, 3, 4, 0] = False
    gt_boxes = np.array([[[1 / 8, 2 / 8, 5 / 8, 7 / 8]]], np.float32)
    proposals = np.array([[[0.0, 0.25, 0.625, 0.875]]], np.float32)
    layer = DetectionTargetLayer(2, 0.5, STD, (4, 3), use_mini_mask=False)
    _, target_ids, _, target_mask = run_targets(layer, proposals, [[3]], gt_boxes, full)
    assert target_ids[0, 0] == 3
    expected = np.round(
        crop_and_resize_reference(full.astype(np.float32), proposals[0], [0], (4, 3))[0, ..., 0]
    )
    np.testing.assert_array_equal(target_mask[0, 0], expected)
    assert set(np.unique(target_mask)) <= {0.0, 1.0}


def test_detection_targets_can_draw_from_the_gt_boxes():
    proposals = np.array([[[0.6, 0.0, 0.9, 0.2], [0.0, 0.6, 0.2, 0.9]]], np.float32)  # no positive
    masks = np.ones((1, 4, 4, 3), bool)
    args = (proposals, [[1, 2, 0]], GT_BOXES[None], masks)
    _, without, _, _ = run_targets(DetectionTargetLayer(6, 0.5, STD, (4, 4), True), *args)
    rois, with_gt, deltas, _ = run_targets(
        DetectionTargetLayer(6, 0.5, STD, (4, 4), True, include_gt_boxes=True), *args
    )
    np.testing.assert_array_equal(without[0], 0)  # no positive, so no ROI at all
    assert sorted(with_gt[0][:2]) == [1, 2] and (with_gt[0][2:4] == 0).all()
    assert sorted(find_rows(rois[0], np.concatenate([proposals[0], GT_BOXES[:2]]))[:2]) == [2, 3]
    np.testing.assert_allclose(deltas[0, :2], 0.0, atol=1e-6)  # a GT box needs no refinement
    np.testing.assert_array_equal(rois[0, 4:], 0.0)


def test_detection_target_layer_config_round_trip():
    layer = DetectionTargetLayer(
        200, 0.33, STD, (28, 28), True, include_gt_boxes=True, name="proposal_targets"
    )
    restored = check_layer_config_round_trip(layer)
    assert (restored.max_positives, restored.mask_shape, restored.use_mini_mask) == (
        66,
        (28, 28),
        True,
    )
    assert restored.include_gt_boxes


@pytest.mark.parametrize(
    "class_ids, slots",
    [
        (
            [[3, 1, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]],
            2,
        ),  # the image with most positives sets the slots
        ([[1, 1, 1, 1, 2, 0], [1, 0, 0, 0, 0, 0]], 3),  # never past max_positives (3 of 6 here)
        ([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], 1),  # no positive at all: one slot, never empty
    ],
)
def test_positive_rois_are_the_leading_slots_that_hold_the_batchs_positives(class_ids, slots):
    rois = np.random.default_rng(0).uniform(size=(2, 6, 4)).astype("float32")
    out = PositiveRois(3)([tf.constant(rois), tf.constant(class_ids, tf.int32)]).numpy()
    np.testing.assert_array_equal(out, rois[:, :slots])
    restored = check_layer_config_round_trip(PositiveRois(3, name="positive_rois"))
    assert restored.max_positives == 3


def test_window_dense_computes_the_valid_convolution_and_its_gradients():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(5, 7, 7, 8)), tf.float32)
    dense, conv = WindowDense(6, 7, name="fc"), keras.layers.Conv2D(6, 7, padding="valid")
    dense.build(x.shape)
    conv.build(x.shape)
    conv.set_weights(dense.get_weights())  # same variables, same layout
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, reference = dense(x), conv(x)
    assert ours.shape == reference.shape == (5, 1, 1, 6)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    for a, b in zip(
        tape.gradient(ours, [x, *dense.trainable_weights]),
        tape.gradient(reference, [x, *conv.trainable_weights]),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not cover inputs"):
        WindowDense(6, 3, name="fc").build((None, 7, 7, 8))
    assert check_layer_config_round_trip(dense).kernel_size == (7, 7)


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_block_conv_transpose_computes_the_transposed_convolution_and_its_gradients(
    kernel, activation
):
    rng = np.random.default_rng(kernel)
    x = tf.constant(rng.normal(size=(3, 5, 4, 6)), tf.float32)
    ours = BlockConv2DTranspose(7, kernel, strides=kernel, activation=activation, name="deconv")
    reference = keras.layers.Conv2DTranspose(7, kernel, strides=kernel, activation=activation)
    ours.build(x.shape)
    reference.build(x.shape)
    ours.set_weights([rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()])
    reference.set_weights(ours.get_weights())  # same variables, same layout
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got, expected = ours(x), reference(x)
        loss_got, loss_expected = (
            tf.reduce_sum(got * tf.cos(got)),
            tf.reduce_sum(expected * tf.cos(expected)),
        )
    assert got.shape == expected.shape == (3, 5 * kernel, 4 * kernel, 7)
    assert float(tf.reduce_max(tf.abs(expected))) > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(
        tape.gradient(loss_got, [x, *ours.trainable_weights]),
        tape.gradient(loss_expected, [x, *reference.trainable_weights]),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert check_layer_config_round_trip(ours).strides == (kernel, kernel)


@pytest.mark.parametrize(
    "settings",
    [{"kernel_size": 3, "strides": 2}, {"kernel_size": 2, "strides": 2, "padding": "same"}],
)
def test_block_conv_transpose_refuses_overlapping_blocks(settings):
    with pytest.raises(ValueError, match="overlaps or is not square"):
        BlockConv2DTranspose(4, name="deconv", **settings).build((None, 5, 5, 3))


def _conv_then_batch_norm(train_bn: bool, folded: bool, seed: int = 0, use_bias: bool = True):
    """A 3×3 conv and a batch norm with random weights and moving statistics, one input."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((6, 5, 4))
    conv = (FoldingConv2D if folded else keras.layers.Conv2D)(
        8, 3, strides=2, padding="same", use_bias=use_bias, name="conv"
    )
    batch_norm = BatchNorm(train_bn=train_bn, momentum=0.9, name="bn")
    outputs = conv_batch_norm(inputs, conv, batch_norm) if folded else batch_norm(conv(inputs))
    model = keras.Model(inputs, outputs)
    model.set_weights(
        [
            rng.normal(0.0, 0.3, size=w.shape).astype("float32")
            if w is not batch_norm.moving_variance
            else rng.uniform(0.5, 2.0, size=w.shape).astype("float32")
            for w in model.weights
        ]
    )
    return model


@pytest.mark.parametrize(
    "train_bn, training, use_bias",
    [
        (False, False, True),
        (False, True, True),
        (True, False, True),
        (True, True, True),
        (False, False, False),
    ],
)
def test_folding_conv_equals_conv_then_batch_norm(train_bn, training, use_bias):
    """Outputs, gradients and moving statistics as unfolded, in inference and in training."""
    x = tf.constant(np.random.default_rng(9).normal(size=(2, 6, 5, 4)), tf.float32)
    results = []
    for folded in (True, False):
        model = _conv_then_batch_norm(train_bn, folded, use_bias=use_bias)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=training)
            loss = tf.reduce_sum(y * tf.cos(y))
        results.append(
            [y, *tape.gradient(loss, [x, *model.trainable_weights]), *model.non_trainable_weights]
        )
    for got, expected in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
    initial = _conv_then_batch_norm(train_bn, True, use_bias=use_bias).non_trainable_weights[0]
    moved = not np.allclose(results[0][-2], initial)
    assert moved == (train_bn and training)  # batch statistics only with TRAIN_BN in training


def test_folding_conv_keeps_its_own_weights_and_config():
    model = _conv_then_batch_norm(train_bn=False, folded=True)
    conv = model.get_layer("conv")
    before = [w.copy() for w in model.get_weights()]
    model(tf.ones((1, 6, 5, 4)), training=False)
    assert [w.path for w in conv.weights] == [
        "conv/kernel",
        "conv/bias",
    ]  # the batch norm is not a sublayer
    for got, expected in zip(model.get_weights(), before):  # the fold is computed, never stored
        np.testing.assert_array_equal(got, expected)
    assert check_layer_config_round_trip(conv).kernel_size == (3, 3)
    # The convolution applies the batch norm; the batch norm passes its inputs through.
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 6, 5, 4)), tf.float32)
    unfolded = _conv_then_batch_norm(train_bn=False, folded=False)
    np.testing.assert_allclose(
        conv(x, training=False), unfolded(x, training=False), rtol=1e-5, atol=1e-5
    )
    features = conv(x, training=False)
    np.testing.assert_array_equal(model.get_layer("bn")(features, training=False), features)


def test_folding_conv_under_a_bfloat16_policy_keeps_the_tolerance():
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 6, 5, 4)), tf.float32)
    expected = _conv_then_batch_norm(False, folded=False)(x, training=False).numpy()
    with dtype_policy("mixed_bfloat16"):
        model = _conv_then_batch_norm(False, folded=True)
    got = model(x, training=False)
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(
        tf.cast(got, tf.float32).numpy(), expected, rtol=0.02, atol=0.05 * np.abs(expected).max()
    )


# ---------------------------------------------------------------- small layers


def test_normalize_boxes_keeps_padding_rows_zero():
    boxes = np.array([[[0, 0, 100, 200], [0, 0, 0, 0], [10, 20, 30, 40]]], np.float32)
    layer = NormalizeBoxes()
    got = layer([tf.constant(boxes), tf.zeros((1, 100, 200, 3))]).numpy()
    np.testing.assert_allclose(
        got[0, [0, 2]], np_boxes.norm_boxes(boxes[0, [0, 2]], (100, 200)), atol=1e-7
    )
    np.testing.assert_array_equal(got[0, 1], 0.0)
    check_layer_config_round_trip(layer)


def test_fold_unfold_rois_round_trip():
    x = tf.reshape(tf.range(2 * 3 * 2 * 5, dtype=tf.float32), (2, 3, 2, 5))
    folded = FoldRois()(x)
    assert folded.shape == (6, 2, 5)
    np.testing.assert_array_equal(folded[4].numpy(), x[1, 1].numpy())
    np.testing.assert_array_equal(UnfoldRois()([folded, tf.zeros((2, 3, 4))]).numpy(), x.numpy())
    check_layer_config_round_trip(FoldRois())
    check_layer_config_round_trip(UnfoldRois())


def test_batch_norm_by_batch_statistics_equals_keras_outputs_gradients_and_moving_statistics():
    """The fused training path computes what Keras's BatchNormalization computes, step for step."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=(2, 5, 7, 8)).astype("float32"))
    ours = BatchNorm(train_bn=True, momentum=0.9, epsilon=1e-3)
    keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    results = []
    for layer in (ours, keras_bn):
        layer.build(x.shape)
        layer.gamma.assign(rng.normal(size=8).astype("float32") if layer is ours else ours.gamma)
        layer.beta.assign(rng.normal(size=8).astype("float32") if layer is ours else ours.beta)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.cos(y))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance])
    for got, expected in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)
    assert not np.allclose(ours.moving_mean.numpy(), 0.0)  # the statistics moved


def test_frozen_batch_norm_reads_its_moving_statistics_in_training():
    layer = BatchNorm(train_bn=True)
    x = tf.constant(np.random.default_rng(1).normal(5.0, 1.0, size=(2, 4, 4, 3)).astype("float32"))
    layer.build(x.shape)
    layer.trainable = False
    np.testing.assert_allclose(
        layer(x, training=True).numpy(), layer(x, training=False).numpy(), rtol=1e-6
    )
    np.testing.assert_array_equal(layer.moving_mean.numpy(), 0.0)


@pytest.mark.parametrize("train_bn", [False, True])
def test_batch_norm_uses_batch_statistics_only_when_train_bn(train_bn):
    layer = BatchNorm(train_bn=train_bn, epsilon=1e-3)
    x = tf.constant([[1.0], [3.0]])
    layer.build(x.shape)  # moving mean 0, moving variance 1
    scale = 1.0 / np.sqrt(1.0 + 1e-3)  # batch and moving variance are both 1
    np.testing.assert_allclose(layer(x, training=False).numpy(), x.numpy() * scale, rtol=1e-5)
    got = layer(x, training=True).numpy()
    expected = (x.numpy() - 2.0) * scale if train_bn else x.numpy() * scale
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Moving statistics move (momentum 0.99) only when batch statistics were used.
    np.testing.assert_allclose(layer.moving_mean.numpy(), [0.02 if train_bn else 0.0], atol=1e-6)
    assert check_layer_config_round_trip(layer).train_bn is train_bn


def test_layers_give_static_output_shapes_on_symbolic_inputs():
    image, meta = keras.Input((None, None, 3)), keras.Input((15,))
    anchors = AnchorGenerator((32, 64, 128, 256, 512), (0.5, 1, 2), (4, 8, 16, 32, 64))(image)
    rois = ProposalLayer(10, 0.7, 100, STD)(
        [keras.Input((None, 2)), keras.Input((None, 4)), anchors]
    )
    pooled = PyramidROIAlign((7, 5))(
        [rois, meta, *[keras.Input((None, None, 8)) for _ in range(4)]]
    )
    detections = DetectionLayer(5, 0.7, 0.3, STD)(
        [rois, keras.Input((10, 3)), keras.Input((10, 3, 4)), meta]
    )
    targets = DetectionTargetLayer(6, 0.33, STD, (28, 28), True)(
        [
            rois,
            keras.Input((None,), dtype="int32"),
            keras.Input((None, 4)),
            keras.Input((56, 56, None), dtype="bool"),
        ]
    )
    assert (anchors.shape, rois.shape, pooled.shape, detections.shape) == (
        (None, 4),
        (None, 10, 4),
        (None, 10, 7, 5, 8),
        (None, 5, 6),
    )
    assert [t.shape for t in targets] == [(None, 6, 4), (None, 6), (None, 6, 4), (None, 6, 28, 28)]
