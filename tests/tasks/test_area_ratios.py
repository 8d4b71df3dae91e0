"""Area ratios per class on hand-made masks: the union of a class's instances, not the sum."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

from tasks.annotations.rle import mask_from_string
from tasks.inference import area_ratios
from tasks.inference.area_ratios import class_areas, legend_lines, select_detections
from tasks.parquet_schemas import AreaRatioRow, InstanceRow, RunStamp

NAMES = ["car", "pothole", "lane"]
STAMP = RunStamp("roads", "3", "run-1")
NOW = datetime.datetime(2024, 5, 1, 2, 0, tzinfo=datetime.timezone.utc)


def area_rows(
    uri: str, height: int, width: int, found: dict[str, np.ndarray]
) -> list[AreaRatioRow]:
    return area_ratios.area_rows(uri, height, width, found, NAMES, STAMP, NOW)


def instance_rows(uri: str, found: dict[str, np.ndarray]) -> list[InstanceRow]:
    return area_ratios.instance_rows(uri, found, NAMES, STAMP)


def square(height: int, width: int, y: int, x: int, size: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y : y + size, x : x + size] = True
    return mask


def detection(
    masks: list[np.ndarray],
    class_ids: list[int],
    scores: list[float] | None = None,
) -> dict[str, np.ndarray]:
    stacked = np.stack(masks, axis=-1) if masks else np.zeros((10, 10, 0), bool)
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return {
        "rois": np.asarray(boxes, np.int32).reshape(-1, 4),
        "class_ids": np.asarray(class_ids, np.int32),
        "scores": np.asarray(scores or [0.9] * len(masks), np.float32),
        "masks": stacked,
    }


def test_overlapping_instances_of_one_class_count_their_union_once():
    # Two 4x4 cars overlapping in a 2x2 corner: 16 + 16 - 4 = 28 pixels of 10 * 10.
    found = detection([square(10, 10, 0, 0, 4), square(10, 10, 2, 2, 4)], [1, 1])
    counts, pixels = class_areas(found["masks"], found["class_ids"], 3)
    assert counts.tolist() == [2, 0, 0] and pixels.tolist() == [28, 0, 0]
    assert counts.dtype == np.int32 and pixels.dtype == np.int64
    rows = area_rows("s3://b/a.png", 10, 10, found)
    assert rows[0].area_ratio == pytest.approx(0.28)  # a sum of instance areas: 0.32
    # The run's stamp and the time are in every row.
    assert {(r.model_name, r.model_version, r.run_id, r.inferred_at) for r in rows} == {
        ("roads", "3", "run-1", NOW)
    }


def test_overlap_between_classes_is_counted_in_each_class():
    # A 5x5 pothole inside a 6x8 lane region of a 10x20 image; a separate 2x2 pothole.
    lane = np.zeros((10, 20), bool)
    lane[1:7, 2:10] = True
    found = detection([lane, square(10, 20, 2, 3, 5), square(10, 20, 8, 15, 2)], [3, 2, 2])
    rows = area_rows("a.png", 10, 20, found)
    assert [(r.class_name, r.instance_count, r.pixel_count) for r in rows] == [
        ("car", 0, 0),
        ("pothole", 2, 29),
        ("lane", 1, 48),
    ]
    assert [r.area_ratio for r in rows] == [0.0, 29 / 200, 48 / 200]
    assert rows[1].image_width == 20 and rows[1].image_height == 10
    assert [r.class_id for r in rows] == [1, 2, 3]


def test_image_without_instances_gives_a_zero_row_per_class():
    rows = area_rows("a.png", 10, 10, detection([], []))
    assert [(r.class_id, r.instance_count, r.pixel_count, r.area_ratio) for r in rows] == [
        (1, 0, 0, 0.0),
        (2, 0, 0, 0.0),
        (3, 0, 0, 0.0),
    ]
    assert instance_rows("a.png", detection([], [])) == []
    assert legend_lines(rows) == ["no instances"]


def test_a_class_covering_the_whole_image_has_ratio_one():
    full = np.ones((6, 4), bool)
    rows = area_rows("a.png", 6, 4, detection([full, full], [2, 2]))
    assert rows[1].area_ratio == 1.0 and rows[1].pixel_count == 24


def test_instance_rows_keep_each_instance_s_own_pixels_box_and_mask():
    masks = [square(10, 10, 0, 0, 4), square(10, 10, 2, 2, 4)]
    masks[1][3:5, 3:5] = False  # a hole survives the RLE
    found = detection(masks, [1, 2], [0.9, 0.6])
    rows = instance_rows("a.png", found)
    assert [mask_from_string(row.mask_rle).tolist() for row in rows] == [
        mask.tolist() for mask in masks
    ]
    assert [dataclasses.replace(row, mask_rle=None) for row in rows] == [
        InstanceRow(
            image_uri="a.png",
            instance_index=0,
            class_id=1,
            class_name="car",
            score=pytest.approx(0.9),
            y1=0,
            x1=0,
            y2=4,
            x2=4,
            pixel_count=16,
            model_version="3",
            run_id="run-1",
        ),
        InstanceRow(
            image_uri="a.png",
            instance_index=1,
            class_id=2,
            class_name="pothole",
            score=pytest.approx(0.6),
            y1=2,
            x1=2,
            y2=6,
            x2=6,
            pixel_count=12,
            model_version="3",
            run_id="run-1",
        ),
    ]


def test_select_detections_keeps_arrays_in_step():
    found = detection(
        [square(10, 10, 0, 0, 2), square(10, 10, 5, 5, 3), square(10, 10, 1, 6, 1)],
        [1, 2, 3],
        [0.5, 0.95, 0.7],
    )
    kept = select_detections(found, 0.7)
    assert kept["class_ids"].tolist() == [2, 3]
    assert kept["scores"].tolist() == pytest.approx([0.95, 0.7])
    assert kept["rois"].tolist() == [[5, 5, 8, 8], [1, 6, 2, 7]]
    assert kept["masks"].shape == (10, 10, 2) and kept["masks"][..., 0].sum() == 9
    with pytest.raises(ValueError, match="min_confidence"):
        select_detections(found, 1.5)


def test_legend_lists_classes_with_instances_as_percentages():
    found = detection([square(10, 10, 0, 0, 4), square(10, 10, 2, 2, 4)], [1, 1])
    assert legend_lines(area_rows("a.png", 10, 10, found)) == ["car: 28.00% (2)"]


def test_bad_inputs_are_named():
    found = detection([square(10, 10, 0, 0, 4)], [4])
    with pytest.raises(ValueError, match=r"class ids \[4\] are outside 1..3"):
        class_areas(found["masks"], found["class_ids"], 3)
    with pytest.raises(ValueError, match="masks must be"):
        class_areas(np.zeros((10, 10, 2), bool), np.array([1]), 3)
