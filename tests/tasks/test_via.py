"""VIA reader: dict and list regions, class attributes, shapes, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.annotations import rasterize
from tasks.annotations.records import IssueKind
from tasks.annotations.via import read_via
from tests.support.builders import image_bytes

TRIANGLE = {"name": "polygon", "all_points_x": [2, 12, 12], "all_points_y": [2, 2, 12]}


def region(shape: dict, **attributes) -> dict:
    return {"shape_attributes": shape, "region_attributes": attributes}


def via_file(entries: dict) -> bytes:
    return json.dumps(
        {
            f"{name}{123}": {
                "filename": name,
                "size": 123,
                "regions": regions,
                "file_attributes": {},
            }
            for name, regions in entries.items()
        }
    ).encode()


def read(document: bytes, images: dict[str, bytes] | None = None, **options):
    files = {"train/via.json": document, **(images or {"train/a.jpg": image_bytes(20, 30, "JPEG")})}

    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_via("train/via.json", document, fetch, **options)


def test_dict_and_list_regions_read_the_same():
    as_list = read(via_file({"a.jpg": [region(TRIANGLE, label="balloon")]}))
    as_dict = read(via_file({"a.jpg": {"0": region(TRIANGLE, label="balloon")}}))
    for result in (as_list, as_dict):
        (record,) = result.images
        assert result.issues == [] and record.file_name == "train/a.jpg"
        (instance,) = record.instances
        assert instance.label == "balloon"
        expected = rasterize.shape_to_mask("polygon", [(2, 2), (12, 2), (12, 12)], 20, 30)
        np.testing.assert_array_equal(instance.mask, expected)


def test_via2_project_file_and_checkbox_attribute():
    project = {
        "_via_settings": {},
        "_via_img_metadata": json.loads(
            via_file({"a.jpg": [region(TRIANGLE, kind={"car": True, "bus": False})]})
        ),
    }
    result = read(json.dumps(project).encode(), attribute="kind")
    assert result.images[0].instances[0].label == "car"


def test_balloon_style_file_without_attributes_uses_default_label():
    result = read(via_file({"a.jpg": [region(TRIANGLE)]}), default_label="balloon")
    assert result.images[0].instances[0].label == "balloon"


@pytest.mark.parametrize(
    ("shape", "pixels"),
    [
        ({"name": "rect", "x": 2, "y": 3, "width": 4, "height": 2}, 5 * 3),
        ({"name": "circle", "cx": 10, "cy": 10, "r": 3}, 37),
        ({"name": "point", "cx": 10, "cy": 10}, 97),
        ({"name": "ellipse", "cx": 15, "cy": 10, "rx": 6, "ry": 3, "theta": 0}, None),
        ({"name": "polyline", "all_points_x": [0, 29], "all_points_y": [10, 10]}, 300),
    ],
)
def test_other_shapes(shape, pixels):
    (instance,) = read(via_file({"a.jpg": [region(shape, label="x")]})).images[0].instances
    if pixels is None:  # the ellipse: a 64-gon spanning cx +/- rx, cy +/- ry
        rows, cols = np.nonzero(instance.mask)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7, 13, 9, 21)
    else:
        assert instance.mask.sum() == pixels


def test_rotated_ellipse_turns():
    shape = {"name": "ellipse", "cx": 15, "cy": 10, "rx": 8, "ry": 2, "theta": np.pi / 2}
    (instance,) = read(via_file({"a.jpg": [region(shape, label="x")]})).images[0].instances
    rows, cols = np.nonzero(instance.mask)
    assert rows.max() - rows.min() > cols.max() - cols.min()  # now tall, not wide


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"a": {"filename": "a.jpg"}}', "not a VIA file"),
    ],
)
def test_unusable_file_is_one_skipped_item(document, reason):
    result = read(document)
    assert result.items == 1 and result.images == []
    assert [i.kind for i in result.issues] == [IssueKind.SKIPPED] and reason in result.issues[
        0
    ].reason


@pytest.mark.parametrize(
    ("filename", "images", "reason"),
    [
        ("b.jpg", None, "image 'train/b.jpg' not found"),
        ("../../etc/passwd", None, "points outside the input folder"),
        ("http://example.com/a.jpg", None, "is absolute"),
        ("a.jpg", {"train/a.jpg": b"text"}, "is not a readable image"),
    ],
)
def test_bad_image_entry_is_skipped_and_the_rest_converts(filename, images, reason):
    images = images or {"train/a.jpg": image_bytes(20, 30, "JPEG")}
    images["train/ok.jpg"] = image_bytes(10, 10, "JPEG")
    result = read(via_file({filename: [], "ok.jpg": []}), images)
    assert result.items == 2 and [r.file_name for r in result.images] == ["train/ok.jpg"]
    assert [i.kind for i in result.issues] == [IssueKind.SKIPPED] and reason in result.issues[
        0
    ].reason


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (region(TRIANGLE), "region has no 'label' attribute"),
        (region(TRIANGLE, label={"a": True, "b": True}), "exactly one option ticked"),
        (
            region({"name": "polygon", "all_points_x": [1, 5], "all_points_y": [1, 5]}, label="x"),
            "polygon needs at least 3 points, got 2",
        ),
        (
            region(
                {"name": "polygon", "all_points_x": [1, 5, 6], "all_points_y": [1, 5]}, label="x"
            ),
            "lists of equal length",
        ),
        (region({"name": "rect", "x": 1, "y": 1}, label="x"), "rect shape lacks 'width'"),
        (region({"name": "star"}, label="x"), "unsupported VIA shape 'star'"),
        (
            region(
                {"name": "polygon", "all_points_x": [40, 50, 50], "all_points_y": [30, 30, 40]},
                label="x",
            ),
            "empty mask",
        ),
        ("not a region", "region must be an object"),
    ],
)
def test_bad_region_is_dropped_and_the_rest_converts(bad, reason):
    result = read(via_file({"a.jpg": [bad, region(TRIANGLE, label="ok")]}))
    assert [i.label for i in result.images[0].instances] == ["ok"]
    dropped = [i for i in result.issues if i.kind is IssueKind.DROPPED]
    assert len(dropped) == 1 and reason in dropped[0].reason
    assert dropped[0].item == "image train/a.jpg region 0"
