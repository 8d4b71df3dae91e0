"""Shapes to bool masks ``[H, W]``, pixel for pixel as labelme rasterizes them.

labelme draws each shape with Pillow's ``ImageDraw`` on a one-channel canvas, with outline
and fill both on (so polygon edges belong to the mask), lines 10 px wide and points as
circles of radius 5. Points are ``(x, y)`` pairs in pixels; pixel ``i`` spans ``[i, i+1)``
on labelme's canvas, so the image covers ``[0, W] x [0, H]``. Pillow clips what lies outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw

LINE_WIDTH = 10
POINT_RADIUS = 5

Points = Sequence[Sequence[float]]

# shape type -> (fewest points, most points); None: no upper bound
_POINT_COUNTS = {
    "polygon": (3, None),
    "rectangle": (2, 2),
    "circle": (2, 2),
    "line": (2, 2),
    "linestrip": (2, None),
    "point": (1, 1),
    "oriented_rectangle": (4, 4),
    "mask": (2, 2),  # the bitmap's box corners
}
SHAPE_TYPES = tuple(_POINT_COUNTS)


def scaled(fraction: float, size: int) -> float:
    """A fraction of the image's width or height in pixels, to 1/100 px.

    Formats that store fractions (YOLO's 0..1, Label Studio's percent) write a few decimals:
    13 px of 70 comes back as 12.99998, and Pillow, truncating, would draw pixel 12.
    """
    return round(fraction * size, 2)


def checked_points(points: object, shape_type: str) -> list[tuple[float, float]]:
    """Validate a shape's points: the right number of finite ``[x, y]`` pairs.

    Args:
        points: the ``points`` value from the annotation file.
        shape_type: one of ``SHAPE_TYPES``.

    Returns:
        The points as ``(x, y)`` float tuples.

    Raises:
        ValueError: for an unsupported type, malformed points, or a wrong point count
            (e.g. a polygon with fewer than 3 points).
    """
    if shape_type not in SHAPE_TYPES:
        raise ValueError(
            f"unsupported shape_type {shape_type!r} (supported: {', '.join(SHAPE_TYPES)})"
        )
    if not isinstance(points, (list, tuple)) or not all(
        isinstance(p, (list, tuple))
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in points
    ):
        raise ValueError(f"{shape_type} points must be a list of [x, y] number pairs")
    xy = [(float(x), float(y)) for x, y in points]
    if not all(math.isfinite(v) for point in xy for v in point):
        raise ValueError(f"{shape_type} points must be finite numbers")
    fewest, most = _POINT_COUNTS[shape_type]
    if len(xy) < fewest or (most is not None and len(xy) > most):
        wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
        noun = "point" if wanted == "1" else "points"
        raise ValueError(f"{shape_type} needs {wanted} {noun}, got {len(xy)}")
    return xy


def shape_extent(
    shape_type: str, xy: Sequence[tuple[float, float]]
) -> tuple[float, float, float, float]:
    """The annotated extent ``(x1, y1, x2, y2)``; for a circle its centre +/- radius."""
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        radius = math.hypot(cx - px, cy - py)
        return cx - radius, cy - radius, cx + radius, cy + radius
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    return min(xs), min(ys), max(xs), max(ys)


def is_outside(extent: tuple[float, float, float, float], height: int, width: int) -> bool:
    """True if the extent leaves the image area ``[0, W] x [0, H]``."""
    x1, y1, x2, y2 = extent
    return x1 < 0 or y1 < 0 or x2 > width or y2 > height


def shape_to_mask(
    shape_type: str, xy: Sequence[tuple[float, float]], height: int, width: int
) -> np.ndarray:
    """Rasterize one geometric shape as labelme does.

    Args:
        shape_type: one of ``SHAPE_TYPES`` except ``"mask"`` (see ``bitmap_to_mask``).
        xy: points checked by ``checked_points``.
        height, width: image size.

    Returns:
        bool ``[height, width]``.
    """
    canvas = PIL.Image.new("L", (width, height), 0)
    draw = PIL.ImageDraw.Draw(canvas)
    if shape_type in ("polygon", "oriented_rectangle"):
        draw.polygon(list(xy), outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=1, fill=1)
    elif shape_type == "circle":
        draw.ellipse(shape_extent("circle", xy), outline=1, fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(list(xy), fill=1, width=LINE_WIDTH)
    elif shape_type == "point":
        ((cx, cy),) = xy
        draw.ellipse(
            (cx - POINT_RADIUS, cy - POINT_RADIUS, cx + POINT_RADIUS, cy + POINT_RADIUS),
            outline=1,
            fill=1,
        )
    else:
        raise ValueError(f"shape_to_mask cannot draw shape_type {shape_type!r}")
    return np.asarray(canvas, dtype=bool)


def bitmap_to_mask(
    xy: Sequence[tuple[float, float]], bitmap: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, bool]:
    """Place a labelme ``mask`` shape's bitmap on the image.

    The two points are the bitmap's top-left and bottom-right pixels, both inclusive,
    truncated to integers as labelme does.

    Args:
        xy: ``[(x1, y1), (x2, y2)]``.
        bitmap: bool ``[y2 - y1 + 1, x2 - x1 + 1]``.
        height, width: image size.

    Returns:
        ``(mask, clipped)``: bool ``[height, width]``, and whether part of the bitmap fell
        outside the image and was cut off.

    Raises:
        ValueError: if the bitmap's size does not match its box.
    """
    (x1, y1), (x2, y2) = [(int(x), int(y)) for x, y in xy]
    expected = (y2 - y1 + 1, x2 - x1 + 1)
    if bitmap.shape != expected:
        raise ValueError(
            f"mask bitmap is {bitmap.shape[1]}x{bitmap.shape[0]} but its box "
            f"({x1}, {y1})-({x2}, {y2}) is {expected[1]}x{expected[0]}"
        )
    mask = np.zeros((height, width), dtype=bool)
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2 + 1, height), min(x2 + 1, width)
    clipped = (top, left, bottom, right) != (y1, x1, y2 + 1, x2 + 1)
    if bottom > top and right > left:
        mask[top:bottom, left:right] = bitmap[top - y1 : bottom - y1, left - x1 : right - x1]
    return mask, clipped
