"""Bool masks to polygons that annotation tools draw back into the same mask.

A polygon format has no holes, so a mask is first cut into hole-free pieces: a piece with a
hole is split along the hole's leftmost pixel column, which opens every hole touching that
column; the right part is cut again until no hole is left. Each 4-connected component of a
piece then gives its outer contour (scikit-image ``find_contours`` at level 0.5, padded so that
masks touching the border close), simplified with ``approximate_polygon``. The union of the
polygons, filled as labelme fills them (Pillow, edges included), is the mask up to the
simplification tolerance (exactly the mask at tolerance 0).

Points are ``(x, y)`` pixel coordinates: ``(col, row)`` of the pixel centres on the outline.
A single pixel gives a degenerate polygon (its centre repeated), which labelme still draws.
"""

from __future__ import annotations

import numpy as np
from skimage import measure

Polygon = list[tuple[float, float]]

TOLERANCE = 0.5  # px: the simplified outline stays within half a pixel of the traced one
_LEVEL = 0.99  # contour level on the 0/1 mask: next to the foreground pixels' centres


def mask_polygons(mask: np.ndarray, tolerance: float = TOLERANCE) -> list[Polygon]:
    """The polygons whose union is ``mask``, largest piece first.

    Args:
        mask: bool ``[H, W]``.
        tolerance: largest distance (px) of the simplified outline from the traced one.

    Returns:
        One polygon (at least 3 points, not closed) per hole-free 4-connected piece; an empty
        mask gives ``[]``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    polygons = []
    for piece in hole_free_pieces(mask):
        components = measure.label(piece, connectivity=1)
        for region in measure.regionprops(components):
            polygon = _outline(components == region.label, tolerance)
            polygons.append((region.area, polygon))
    polygons.sort(key=lambda item: -item[0])
    return [polygon for _, polygon in polygons]


def hole_free_pieces(mask: np.ndarray) -> list[np.ndarray]:
    """Disjoint masks without holes whose union is ``mask``."""
    pieces, pending = [], [mask]
    while pending:
        piece = pending.pop()
        holes = _holes(piece)
        if not holes.any():
            pieces.append(piece)
            continue
        column = int(np.flatnonzero(holes.any(axis=0))[0])
        left, right = piece.copy(), piece.copy()
        left[:, column:] = False  # holds no hole: none starts left of ``column``
        right[:, :column] = False  # every hole touching ``column`` now opens to the left
        pending += [part for part in (right, left) if part.any()]
    return pieces


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels not connected to the border (8-connected, as find_contours sees it)."""
    background = measure.label(np.pad(~mask, 1, constant_values=True), connectivity=2)
    return (background != background[0, 0])[1:-1, 1:-1] & ~mask


def _outline(component: np.ndarray, tolerance: float) -> Polygon:
    # Traced just inside the foreground and rounded, the outline runs through the centres of
    # the boundary pixels: Pillow (labelme) fills a polygon with its edges, so it draws exactly
    # those pixels back.
    contours = measure.find_contours(
        np.pad(component, 1).astype(np.uint8), _LEVEL, fully_connected="low"
    )
    traced = np.round(max(contours, key=len)) - 1.0  # undo the padding
    moved = np.r_[True, np.any(np.diff(traced, axis=0) != 0, axis=1)]
    traced = traced[moved]
    simplified = measure.approximate_polygon(traced, tolerance)
    if len(simplified) < 4:  # a pixel or a line: keep every traced point
        simplified = traced
    if len(simplified) > 1 and (simplified[0] == simplified[-1]).all():
        simplified = simplified[:-1]
    points = [(float(col), float(row)) for row, col in simplified]
    return points + points[-1:] * (3 - len(points))  # a polygon needs three points
