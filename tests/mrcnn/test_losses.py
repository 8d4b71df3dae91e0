"""The five Mask R-CNN losses against hand computations on tiny tensors."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import losses


def smooth_l1(diff) -> np.ndarray:
    diff = np.abs(np.asarray(diff, np.float64))
    return np.where(diff < 1.0, 0.5 * diff**2, diff - 0.5)


def value_and_gradient(loss_fn, prediction: np.ndarray, *args) -> tuple[float, np.ndarray]:
    """Loss value and its gradient with respect to `prediction`, passed as the last argument."""
    variable = tf.Variable(prediction)
    with tf.GradientTape() as tape:
        loss = loss_fn(*args, variable)
    return float(loss), tape.gradient(loss, variable).numpy()


def test_smooth_l1_hand_worked():
    np.testing.assert_allclose(
        losses.smooth_l1(tf.constant([-3.0, -0.5, 0.0, 0.4, 1.0, 2.5])).numpy(),
        [2.5, 0.125, 0.0, 0.08, 0.5, 2.0],
        rtol=1e-6,
    )


def test_rpn_class_loss_ignores_neutral_anchors():
    rpn_match = np.array([[[1], [-1], [0], [1]]], np.int32)  # matterport's [B, A, 1]
    logits = np.array([[[0.0, np.log(3.0)], [0.0, 0.0], [100.0, -100.0], [2.0, 2.0]]], np.float32)
    expected = (np.log(4 / 3) + np.log(2) + np.log(2)) / 3  # anchor 2 would cost 200
    got = losses.rpn_class_loss(tf.constant(rpn_match), tf.constant(logits))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(
        losses.rpn_class_loss(tf.constant(rpn_match[..., 0]), tf.constant(logits))
    ) == pytest.approx(expected)


def test_rpn_bbox_loss_pairs_kth_positive_with_row_k_per_image():
    rpn_match = np.array([[0, 1, -1, 1, 0], [1, 0, 0, 0, 0]], np.int32)
    target_bbox = np.zeros((2, 3, 4), np.float32)
    target_bbox[0, 0] = [1.0, 0.0, 0.5, -1.0]  # anchor 1 of image 0
    target_bbox[0, 1] = [0.0, 3.0, 0.0, 0.0]  # anchor 3 of image 0
    target_bbox[1, 0] = [-2.0, 0.0, 0.0, 0.2]  # anchor 0 of image 1
    rpn_bbox = np.full((2, 5, 4), 9.0, np.float32)  # non-positive anchors: never read
    rpn_bbox[0, 1] = [0.5, 0.0, 0.5, 0.0]
    rpn_bbox[0, 3] = [0.0, 0.0, 0.0, 0.0]
    rpn_bbox[1, 0] = [0.0, 0.0, 0.0, 0.0]
    diffs = [[0.5, 0, 0, -1], [0, 3, 0, 0], [-2, 0, 0, 0.2]]
    expected = smooth_l1(diffs).mean()  # (0.125 + 0.5 + 2.5 + 1.5 + 0.02) / 12
    assert expected == pytest.approx(4.645 / 12)
    got = losses.rpn_bbox_loss(
        tf.constant(target_bbox), tf.constant(rpn_match[..., None]), tf.constant(rpn_bbox)
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_class_loss_skips_predictions_of_inactive_classes_per_image():
    target_ids = np.array([[1, 0], [2, 1]], np.int32)
    logits = np.array(
        [[[0.0, 0.0, 0.0], [np.log(3.0), 0.0, 0.0]], [[0.0, 0.0, 5.0], [0.0, np.log(2.0), 0.0]]],
        np.float32,
    )
    active = np.array([[1, 1, 1], [1, 1, 0]], np.int32)  # image 1's dataset has no class 2
    # Image 1 ROI 0 predicts inactive class 2: not counted. The others: log 3, log 5/3, log 2.
    expected = (np.log(3) + np.log(5 / 3) + np.log(2)) / 3
    got = losses.mrcnn_class_loss(tf.constant(target_ids), tf.constant(logits), tf.constant(active))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_bbox_loss_uses_true_class_deltas_of_positive_rois():
    target_ids = np.array([[2, 0, 1]], np.int32)
    target_bbox = np.array(
        [[[1.0, 0.0, 0.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.5, 0.0, 0.0]]], np.float32
    )
    pred = np.full((1, 3, 3, 4), 7.0, np.float32)  # other classes and the negative ROI: never read
    pred[0, 0, 2] = [0.0, 0.0, 0.0, 0.0]
    pred[0, 2, 1] = [0.0, 0.0, 0.0, 0.0]
    expected = smooth_l1([[1, 0, 0, 2], [0, 0.5, 0, 0]]).mean()  # (0.5 + 1.5 + 0.125) / 8
    got = losses.mrcnn_bbox_loss(
        tf.constant(target_bbox), tf.constant(target_ids), tf.constant(pred)
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_mask_loss_picks_the_true_class_channel():
    target_ids = np.array([[1, 2, 1]], np.int32)  # ROI 2 lies beyond the T' = 2 predicted slots
    target_masks = np.array([[[[1, 0], [1, 0]], [[1, 0], [1, 0]], [[1, 1], [1, 1]]]], np.float32)
    pred = np.full((1, 2, 2, 2, 3), 0.01, np.float32)  # wrong channels would cost -log(0.01)
    pred[0, 0, :, :, 1] = 0.5
    pred[0, 1, :, :, 2] = [[0.8, 0.2], [0.8, 0.2]]
    expected = (4 * np.log(2) + 4 * -np.log(0.8)) / 8
    got = losses.mrcnn_mask_loss(
        tf.constant(target_masks), tf.constant(target_ids), tf.constant(pred)
    )
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_mrcnn_mask_loss_clips_saturated_predictions():
    target_ids = np.array([[1]], np.int32)
    got = losses.mrcnn_mask_loss(
        tf.ones((1, 1, 1, 1)), tf.constant(target_ids), tf.zeros((1, 1, 1, 1, 2))
    )
    assert float(got) == pytest.approx(-np.log(1e-7), rel=1e-3)


def test_losses_are_zero_with_finite_gradients_without_positives():
    no_match = np.zeros((2, 4), np.int32)
    cases = {
        "rpn_class": (losses.rpn_class_loss, np.ones((2, 4, 2), np.float32), no_match),
        "rpn_bbox": (
            losses.rpn_bbox_loss,
            np.ones((2, 4, 4), np.float32),
            np.ones((2, 3, 4), np.float32),
            np.array([[0, -1, 0, -1], [-1, 0, 0, 0]], np.int32),
        ),
        "mrcnn_bbox": (
            losses.mrcnn_bbox_loss,
            np.ones((2, 3, 4, 4), np.float32),
            np.ones((2, 3, 4), np.float32),
            np.zeros((2, 3), np.int32),
        ),
        "mrcnn_mask": (
            losses.mrcnn_mask_loss,
            np.full((2, 3, 2, 2, 4), 0.3, np.float32),
            np.ones((2, 3, 2, 2), np.float32),
            np.zeros((2, 3), np.int32),
        ),
    }
    for name, (loss_fn, prediction, *args) in cases.items():
        value, gradient = value_and_gradient(loss_fn, prediction, *args)
        assert value == 0.0, name
        assert np.isfinite(gradient).all() and not gradient.any(), name


def test_mrcnn_class_loss_is_zero_when_every_prediction_is_inactive():
    active = np.array([[1, 0]], np.int32)
    logits = np.array([[[0.0, 3.0], [1.0, 4.0]]], np.float32)  # both ROIs predict inactive class 1
    value, gradient = value_and_gradient(
        lambda logits_: losses.mrcnn_class_loss(
            tf.constant([[0, 1]]), logits_, tf.constant(active)
        ),
        logits,
    )
    assert value == 0.0
    assert np.isfinite(gradient).all()
