import numpy as np
import pytest

from mrcnn import anchors
from mrcnn.boxes import norm_boxes

SCALES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1, 2)
STRIDES = [4, 8, 16, 32, 64]
R2 = np.sqrt(2.0)


def test_compute_backbone_shapes_rounds_up():
    np.testing.assert_array_equal(
        anchors.compute_backbone_shapes((1024, 1024, 3), STRIDES),
        [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]],
    )
    np.testing.assert_array_equal(anchors.compute_backbone_shapes((100, 130), [64]), [[2, 3]])


def test_generate_anchors_hand_checked_order():
    boxes = anchors.generate_anchors(32, RATIOS, (2, 3), 4, 1)
    assert boxes.shape == (2 * 3 * 3, 4)
    half_long, half_short = 16 * R2, 16 / R2  # ratio 0.5 is tall: h = 32 / sqrt(0.5)
    # Cell (0, 0): ratios 0.5, 1, 2 in order.
    np.testing.assert_allclose(boxes[0], [-half_long, -half_short, half_long, half_short])
    np.testing.assert_allclose(boxes[1], [-16, -16, 16, 16])
    np.testing.assert_allclose(boxes[2], [-half_short, -half_long, half_short, half_long])
    # Next comes cell (0, 1), centred at x = 4, then row y = 1 after three cells.
    np.testing.assert_allclose(boxes[4], [-16, 4 - 16, 16, 4 + 16])
    np.testing.assert_allclose(boxes[3 * 3 + 1], [4 - 16, -16, 4 + 16, 16])


def test_generate_anchors_anchor_stride_skips_cells():
    boxes = anchors.generate_anchors(8, RATIOS, (4, 4), 16, 2)
    assert boxes.shape == (2 * 2 * 3, 4)
    np.testing.assert_allclose(boxes[4], [-4, 32 - 4, 4, 32 + 4])  # cell (0, 2) on the feature map


def test_pyramid_anchor_count_and_levels_at_1024():
    shapes = anchors.compute_backbone_shapes((1024, 1024), STRIDES)
    boxes = anchors.generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, 1)
    assert boxes.shape == (261_888, 4)
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    np.testing.assert_allclose(sides[: 256 * 256 * 3], 32)
    np.testing.assert_allclose(sides[-16 * 16 * 3 :], 512)
    # Last anchor: cell (15, 15) of P6 (centre 960), ratio 2 (wide).
    np.testing.assert_allclose(
        boxes[-1], [960 - 256 / R2, 960 - 256 * R2, 960 + 256 / R2, 960 + 256 * R2]
    )


def test_pyramid_anchors_need_one_scale_per_level():
    with pytest.raises(ValueError, match="one scale, feature shape and stride per level"):
        anchors.generate_pyramid_anchors(SCALES[:2], RATIOS, [[4, 4]], [4], 1)


def test_get_anchors_normalized_cached_and_read_only():
    got = anchors.get_anchors((256, 256, 3), SCALES, RATIOS, STRIDES, 1)
    shapes = anchors.compute_backbone_shapes((256, 256), STRIDES)
    pixel = anchors.generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, 1)
    expected = norm_boxes(pixel, (256, 256))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert anchors.get_anchors([256, 256], list(SCALES), list(RATIOS), tuple(STRIDES)) is got
    with pytest.raises(ValueError, match="read-only"):
        got[0, 0] = 1.0
