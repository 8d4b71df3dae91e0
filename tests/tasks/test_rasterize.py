"""Shape rasterization: hand-worked masks, point validation, and identity with labelme."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.annotations import rasterize
from tests.support.labelme_reference import labelme_shape_to_mask


def draw(shape_type: str, points: list, height: int = 40, width: int = 40) -> np.ndarray:
    return rasterize.shape_to_mask(
        shape_type, rasterize.checked_points(points, shape_type), height, width
    )


def test_polygon_includes_its_outline():
    # Corners (1,1)-(4,3): the edges are drawn too, so columns 1..4 x rows 1..3 = 12 pixels.
    mask = draw("polygon", [[1, 1], [4, 1], [4, 3], [1, 3]], 6, 6)
    expected = np.zeros((6, 6), bool)
    expected[1:4, 1:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_rectangle_corners_in_any_order():
    forward = draw("rectangle", [[1, 1], [4, 3]], 6, 6)
    backward = draw("rectangle", [[4, 3], [1, 1]], 6, 6)
    assert forward.sum() == 12
    np.testing.assert_array_equal(forward, backward)


def test_circle_radius_is_distance_to_second_point():
    mask = draw("circle", [[5, 5], [5, 8]], 11, 11)  # radius 3
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 8, 2, 8)
    assert mask[5, 2:9].all() and not mask[2, 2]


def test_line_is_ten_pixels_wide():
    mask = draw("line", [[5, 20], [35, 20]])
    assert np.nonzero(mask[:, 20])[0].tolist() == list(range(16, 26))
    assert mask.sum() == 31 * 10


def test_linestrip_covers_every_segment():
    mask = draw("linestrip", [[5, 5], [30, 5], [30, 30]])
    assert mask[5, 5:31].all() and mask[5:31, 30].all() and not mask[30, 5]


def test_point_is_a_disc_of_radius_five():
    mask = draw("point", [[10, 10]], 21, 21)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 15, 5, 15)


def test_shapes_outside_the_image_are_cut_off():
    mask = draw("polygon", [[-10, -10], [5, -10], [5, 5], [-10, 5]], 10, 10)
    assert mask.sum() == 36  # rows and columns 0..5
    assert rasterize.is_outside(rasterize.shape_extent("polygon", [(-10, -10), (5, 5)]), 10, 10)


def test_extent_on_the_border_is_inside():
    assert not rasterize.is_outside((0, 0, 10, 8), height=8, width=10)
    assert rasterize.is_outside((0, 0, 10.5, 8), height=8, width=10)
    # A circle leaves the image through its radius, not through its two points.
    assert rasterize.is_outside(rasterize.shape_extent("circle", [(2, 5), (4, 5)]), 10, 10) is False
    assert rasterize.is_outside(rasterize.shape_extent("circle", [(2, 5), (5, 5)]), 10, 10) is True


@pytest.mark.parametrize(
    ("shape_type", "points", "message"),
    [
        ("polygon", [[1, 1], [2, 2]], "polygon needs at least 3 points, got 2"),
        ("line", [[1, 1], [2, 2], [3, 3]], "line needs 2 points, got 3"),
        ("point", [], "point needs 1 point, got 0"),
        ("polygon", [[1, 1], [2, "x"], [3, 3]], "list of [x, y] number pairs"),
        ("polygon", [[1, 1], [2, float("nan")], [3, 3]], "finite"),
        ("hexagon", [[1, 1]], "unsupported shape_type 'hexagon'"),
    ],
)
def test_bad_points_are_rejected(shape_type, points, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rasterize.checked_points(points, shape_type)


def test_bitmap_is_placed_at_its_box():
    bitmap = np.array([[1, 0, 1], [0, 1, 0]], bool)
    mask, clipped = rasterize.bitmap_to_mask([(2.7, 1.2), (4.9, 2.0)], bitmap, 5, 6)
    expected = np.zeros((5, 6), bool)
    expected[1:3, 2:5] = bitmap  # corners truncate to (2, 1)-(4, 2), both inclusive
    np.testing.assert_array_equal(mask, expected)
    assert not clipped


def test_bitmap_past_the_edge_is_clipped():
    mask, clipped = rasterize.bitmap_to_mask([(4, 3), (6, 5)], np.ones((3, 3), bool), 5, 6)
    assert clipped and mask.sum() == 2 * 2 and mask[3:5, 4:6].all()


def test_bitmap_must_fit_its_box():
    with pytest.raises(ValueError, match="mask bitmap is 3x2 but its box"):
        rasterize.bitmap_to_mask([(0, 0), (1, 1)], np.ones((2, 3), bool), 5, 5)


@pytest.mark.parametrize(
    ("shape_type", "points"),
    [
        ("polygon", [[3.3, 4.8], [30.1, 2.2], [36.9, 33.7], [12.5, 25.4], [2.0, 38.9]]),
        ("polygon", [[-5, -5], [20, -8], [45, 20], [20, 45]]),
        ("rectangle", [[31.6, 28.2], [7.4, 3.9]]),
        ("circle", [[18.2, 21.7], [26.9, 14.3]]),
        ("line", [[2.5, 37.5], [35.2, 4.1]]),
        ("linestrip", [[3, 3], [20.5, 30.2], [37, 8.8], [12, 14]]),
        ("point", [[19.6, 0.4]]),
        ("polygon", [[10, 10], [10, 10], [10, 10]]),
    ],
)
def test_identical_to_labelme(shape_type, points):
    reference = labelme_shape_to_mask()((40, 40), points, shape_type)
    np.testing.assert_array_equal(draw(shape_type, points), reference)


def test_fractions_of_the_image_land_on_the_pixel_they_name():
    from tasks.annotations.rasterize import scaled

    written = float(f"{13 / 70:.6f}")  # six decimals, as YOLO files hold them
    assert written * 70 < 13 and scaled(written, 70) == 13.0
    assert scaled(33.333333 / 100, 300) == 100.0
