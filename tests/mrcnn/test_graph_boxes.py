"""Graph box ops (`mrcnn.layers.box_ops`) and anchors against their numpy twins."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import anchors as np_anchors
from mrcnn import boxes as np_boxes
from mrcnn.layers import box_ops
from mrcnn.layers.anchors import AnchorGenerator
from tests.mrcnn.layer_checks import check_layer_config_round_trip

# detectron2-style 3×4 IoU matrix worked by hand.
BOXES1 = np.array([[0, 0, 10, 10], [0, 0, 5, 5], [5, 5, 15, 15]], np.float32)
BOXES2 = np.array([[0, 0, 10, 10], [5, 5, 10, 10], [20, 20, 30, 30], [0, 5, 10, 15]], np.float32)
IOU = np.array(
    [
        [1.0, 25 / 100, 0.0, 50 / 150],
        [25 / 100, 0.0, 0.0, 0.0],  # touching edges do not overlap
        [25 / 175, 25 / 100, 0.0, 50 / 150],
    ]
)
SCALES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1, 2)
STRIDES = (4, 8, 16, 32, 64)


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """`[n, 4]` float32 boxes with positive sizes."""
    corner = rng.uniform(0, 1, size=(n, 2))
    size = rng.uniform(0.05, 0.5, size=(n, 2))
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def test_apply_box_deltas_matches_numpy():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 20)
    deltas = rng.normal(0, 0.5, size=(20, 4)).astype(np.float32)
    got = box_ops.apply_box_deltas(tf.constant(boxes), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(got, np_boxes.apply_box_deltas(boxes, deltas), atol=1e-6)


def test_apply_box_deltas_hand_worked():
    # Centre (2, 3), size 4×2; shift by (0.5·4, -1·2), scale height ×e^0 and width ×e^{log 3}.
    boxes = tf.constant([[0.0, 2.0, 4.0, 4.0]])
    deltas = tf.constant([[0.5, -1.0, 0.0, np.log(3.0)]])
    np.testing.assert_allclose(
        box_ops.apply_box_deltas(boxes, deltas).numpy(), [[2, -2, 6, 4]], atol=1e-5
    )


def test_apply_box_deltas_keeps_leading_batch_dims():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 6).reshape(2, 3, 4)
    deltas = rng.normal(0, 0.3, size=(2, 3, 4)).astype(np.float32)
    got = box_ops.apply_box_deltas(tf.constant(boxes), tf.constant(deltas)).numpy()
    expected = np_boxes.apply_box_deltas(boxes.reshape(6, 4), deltas.reshape(6, 4)).reshape(2, 3, 4)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_box_deltas_matches_box_refinement():
    rng = np.random.default_rng(2)
    boxes, gt = random_boxes(rng, 20), random_boxes(rng, 20)
    got = box_ops.box_deltas(tf.constant(boxes), tf.constant(gt)).numpy()
    np.testing.assert_allclose(got, np_boxes.box_refinement(boxes, gt), rtol=1e-5, atol=1e-5)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(3)
    boxes, gt = tf.constant(random_boxes(rng, 30)), tf.constant(random_boxes(rng, 30))
    decoded = box_ops.apply_box_deltas(boxes, box_ops.box_deltas(boxes, gt))
    np.testing.assert_allclose(decoded.numpy(), gt.numpy(), atol=1e-5)


def test_huge_log_deltas_stay_finite_and_bounded():
    boxes = tf.constant([[0.1, 0.1, 0.2, 0.2]] * 3)
    deltas = tf.constant([[0.0, 0.0, 100.0, 1e4], [0.0, 0.0, 1e30, 88.0], [0.0, 0.0, -1e4, -100.0]])
    decoded = box_ops.apply_box_deltas(boxes, deltas).numpy()
    assert np.isfinite(decoded).all()
    sizes = decoded[:, 2:] - decoded[:, :2]
    # Growth is capped at exp(MAX_LOG_SCALE) = 1000 / 16 times the 0.1 side.
    np.testing.assert_allclose(sizes[:2], 0.1 * 1000 / 16, rtol=1e-4)
    np.testing.assert_allclose(sizes[2], 0.0, atol=1e-12)


def test_pairwise_iou_hand_worked_matrix():
    got = box_ops.pairwise_iou(tf.constant(BOXES1), tf.constant(BOXES2)).numpy()
    np.testing.assert_allclose(got, IOU, rtol=1e-6)
    np.testing.assert_allclose(got, np_boxes.compute_overlaps(BOXES1, BOXES2), rtol=1e-6)


def test_pairwise_iou_random_matches_numpy_and_handles_empty_and_degenerate():
    rng = np.random.default_rng(4)
    b1, b2 = random_boxes(rng, 7), random_boxes(rng, 5)
    got = box_ops.pairwise_iou(tf.constant(b1), tf.constant(b2)).numpy()
    np.testing.assert_allclose(got, np_boxes.compute_overlaps(b1, b2), rtol=1e-5, atol=1e-7)
    assert box_ops.pairwise_iou(tf.constant(b1), tf.zeros((0, 4))).shape == (7, 0)
    # Zero-area boxes (padding) give IoU 0, not NaN.
    zeros = box_ops.pairwise_iou(tf.zeros((2, 4)), tf.zeros((3, 4))).numpy()
    np.testing.assert_array_equal(zeros, np.zeros((2, 3)))


def test_clip_boxes_hand_worked_with_per_image_window():
    boxes = tf.constant(
        [
            [[-0.5, 0.2, 0.5, 1.5], [0.3, 0.3, 0.4, 0.4]],
            [[-0.5, 0.2, 0.5, 1.5], [0.0, 0.0, 1.0, 1.0]],
        ]
    )
    windows = tf.constant([[[0.0, 0.0, 1.0, 1.0]], [[0.1, 0.25, 0.6, 0.75]]])
    expected = [
        [[0.0, 0.2, 0.5, 1.0], [0.3, 0.3, 0.4, 0.4]],
        [[0.1, 0.25, 0.5, 0.75], [0.1, 0.25, 0.6, 0.75]],
    ]
    np.testing.assert_allclose(box_ops.clip_boxes(boxes, windows).numpy(), expected)


def test_clip_boxes_matches_numpy():
    rng = np.random.default_rng(5)
    boxes = rng.uniform(-0.5, 1.5, size=(10, 4)).astype(np.float32)
    window = np.array([0.1, 0.2, 0.8, 0.9], np.float32)
    got = box_ops.clip_boxes(tf.constant(boxes), tf.constant(window)).numpy()
    np.testing.assert_allclose(got, np_boxes.clip_boxes(boxes, window))


def test_norm_boxes_matches_numpy_rule():
    pixels = np.array([[0, 0, 100, 200], [10, 20, 30, 40], [99, 199, 100, 200]])
    got = box_ops.norm_boxes(tf.constant(pixels, tf.int32), tf.constant([100, 200])).numpy()
    np.testing.assert_allclose(got, np_boxes.norm_boxes(pixels, (100, 200)), atol=1e-7)
    # Hand-worked: the last pixel (y2/x2 one past it) maps to 1.
    np.testing.assert_allclose(got[0], [0, 0, 1, 1])


def test_non_zero_rows():
    boxes = tf.constant([[0.0, 0, 0, 0], [0, 0, 0, 0.1], [0.2, 0.2, 0.3, 0.3]])
    np.testing.assert_array_equal(box_ops.non_zero_rows(boxes).numpy(), [False, True, True])


@pytest.mark.parametrize("shape", [(128, 128), (256, 512), (100, 60)])
def test_anchor_generator_equals_numpy_anchors(shape):
    layer = AnchorGenerator(SCALES, RATIOS, STRIDES)
    got = layer(tf.zeros((1, *shape, 1))).numpy()
    expected = np_anchors.get_anchors(shape, SCALES, RATIOS, STRIDES)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_anchor_generator_with_anchor_stride_2():
    layer = AnchorGenerator(SCALES, RATIOS, STRIDES, anchor_stride=2)
    got = layer(tf.zeros((2, 128, 192, 1))).numpy()
    np.testing.assert_allclose(
        got, np_anchors.get_anchors((128, 192), SCALES, RATIOS, STRIDES, 2), atol=1e-6
    )


def test_anchor_generator_counts_matterport_anchors_at_1024():
    got = AnchorGenerator(SCALES, RATIOS, STRIDES)(tf.zeros((1, 1024, 1024, 1)))
    assert got.shape == (261_888, 4)
    np.testing.assert_allclose(
        got.numpy(), np_anchors.get_anchors((1024, 1024), SCALES, RATIOS, STRIDES), atol=1e-6
    )


def test_anchor_generator_config_round_trip():
    layer = AnchorGenerator(SCALES, RATIOS, STRIDES, anchor_stride=2, name="anchors")
    restored = check_layer_config_round_trip(layer)
    assert (restored.scales, restored.ratios, restored.strides, restored.anchor_stride) == (
        [32.0, 64.0, 128.0, 256.0, 512.0],
        [0.5, 1.0, 2.0],
        [4, 8, 16, 32, 64],
        2,
    )
    images = tf.zeros((1, 64, 64, 1))
    np.testing.assert_array_equal(restored(images).numpy(), layer(images).numpy())
