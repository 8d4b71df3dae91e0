"""Masks to polygons and back through labelme's rasterizer: holes, pieces, borders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import draw

from tasks.annotations.labelme import read_labelme
from tasks.annotations.polygons import hole_free_pieces, mask_polygons
from tasks.annotations.rasterize import shape_to_mask

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "labelme_examples"


def redrawn(mask: np.ndarray, tolerance: float = 0.5) -> np.ndarray:
    drawn = np.zeros_like(mask)
    for polygon in mask_polygons(mask, tolerance):
        assert len(polygon) >= 3
        drawn |= shape_to_mask("polygon", polygon, *mask.shape)
    return drawn


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def ring(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[draw.disk((32, 32), 20, shape=mask.shape)] = True
    mask[draw.disk((32, 32), 8, shape=mask.shape)] = False
    return mask


def shapes() -> dict[str, np.ndarray]:
    found = {"ring": ring()}
    two = np.zeros((64, 64), bool)
    two[:10, :10] = True  # touches the border
    two[40:, 40:] = True
    two[45:50, 45:50] = two[55:60, 52:58] = False  # two holes, one right of the other
    found["pieces with holes"] = two
    nested = np.zeros((64, 64), bool)
    nested[4:60, 4:60] = True
    nested[10:54, 10:54] = False
    nested[20:44, 20:44] = True  # an island inside the hole
    nested[28:36, 28:36] = False
    found["island in a hole"] = nested
    triangle = np.zeros((64, 64), bool)
    triangle[draw.polygon([5, 60, 60], [32, 5, 60], shape=triangle.shape)] = True
    found["triangle"] = triangle
    dots = np.zeros((8, 8), bool)
    dots[1, 1] = dots[3, 3] = dots[3, 4] = True  # a pixel and a two-pixel line
    found["dots"] = dots
    return found


@pytest.mark.parametrize("name", list(shapes()))
def test_exact_at_tolerance_zero_and_close_when_simplified(name: str):
    mask = shapes()[name]
    assert redrawn(mask, tolerance=0.0).tolist() == mask.tolist()
    assert iou(redrawn(mask), mask) >= 0.98


def test_holes_are_cut_into_hole_free_pieces_that_tile_the_mask():
    mask = shapes()["pieces with holes"]
    pieces = hole_free_pieces(mask)
    assert len(pieces) >= 3
    assert np.sum(pieces, axis=0).tolist() == mask.astype(int).tolist()  # disjoint, complete
    simplified = mask_polygons(mask)
    assert len(simplified) == len(mask_polygons(mask, 0.0)) >= 4  # the corner square too
    assert len(mask_polygons(shapes()["triangle"])[0]) <= 8  # straight edges stay few points


def test_an_empty_mask_has_no_polygon_and_shape_is_checked():
    assert mask_polygons(np.zeros((5, 5), bool)) == []
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        mask_polygons(np.zeros((2, 5, 5), bool))


def test_real_labelme_masks_survive_the_round_trip():
    if not EXAMPLES.is_dir():
        pytest.skip("../shared/data/labelme_examples is absent (it is present on CI)")
    folder = EXAMPLES / "data_annotated"
    checked = 0
    for path in sorted(folder.glob("*.json")):
        result = read_labelme(
            path.name, path.read_bytes(), lambda name: (folder / name).read_bytes()
        )
        for instance in result.images[0].instances:
            assert iou(redrawn(instance.mask), instance.mask) >= 0.97, (path.name, instance.label)
            checked += 1
    assert checked >= 10
