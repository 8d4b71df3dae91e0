"""COCO reader: polygons and RLE, crowd regions, category remapping, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from tasks.annotations.coco import read_coco
from tasks.annotations.records import IssueKind
from tests.support.builders import image_bytes

SQUARE = [[2, 2, 6, 2, 6, 6, 2, 6]]


def coco(images=None, annotations=None, categories=None) -> dict:
    return {
        "images": images
        if images is not None
        else [
            {"id": 10, "file_name": "a.png", "height": 10, "width": 12},
            {"id": 11, "file_name": "b.png", "height": 10, "width": 12},
        ],
        "annotations": annotations or [],
        "categories": categories or [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}],
    }


def read(document, files: dict[str, bytes] | None = None, name: str = "annotations/train.json"):
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    files = (
        files
        if files is not None
        else {"images/a.png": image_bytes(10, 12), "images/b.png": image_bytes(10, 12)}
    )

    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_coco(name, data, fetch)


def test_polygons_rle_crowd_and_images_without_annotations():
    crowd = np.zeros((10, 12), np.uint8)
    crowd[5:9, 1:11] = 1
    compressed = mask_utils.encode(np.asfortranarray(crowd))
    rle_object = {"size": [10, 12], "counts": compressed["counts"].decode()}
    # Uncompressed, column-major run lengths: 23 zeros (two columns of 10, then 3 pixels),
    # then 4 ones (column 2, rows 3..6), the rest zero.
    uncompressed = {"size": [10, 12], "counts": [23, 4, 93]}
    result = read(
        coco(
            annotations=[
                {"id": 1, "image_id": 10, "category_id": 7, "segmentation": SQUARE, "iscrowd": 0},
                {
                    "id": 2,
                    "image_id": 10,
                    "category_id": 3,
                    "segmentation": rle_object,
                    "iscrowd": 1,
                },
                {
                    "id": 3,
                    "image_id": 10,
                    "category_id": 3,
                    "segmentation": uncompressed,
                    "iscrowd": 1,
                },
            ]
        )
    )
    assert result.issues == [] and result.items == 2
    a, b = result.images
    assert (a.file_name, b.file_name, b.instances) == ("a.png", "b.png", ())
    assert a.image_path == "images/a.png"  # where it was found, for copying
    square, rle_crowd, run_crowd = a.instances
    assert (square.label, square.crowd, rle_crowd.label, rle_crowd.crowd) == (
        "bus",
        False,
        "car",
        True,
    )
    # pycocotools' rule: polygon corners are pixel corners, so x, y in 2..6 covers pixels 2..5.
    assert square.mask[2:6, 2:6].all() and square.mask.sum() == 16
    np.testing.assert_array_equal(rle_crowd.mask, crowd.astype(bool))
    assert run_crowd.mask[3:7, 2].all() and run_crowd.mask.sum() == 4


def test_categories_in_id_order_with_their_ids():
    result = read(coco(categories=[{"id": 9, "name": "truck"}, {"id": 2, "name": "car"}]))
    assert result.labels == ("car", "truck") and result.category_ids == {2: "car", 9: "truck"}


def test_images_are_found_beside_the_json_too():
    result = read(
        coco(images=[{"id": 1, "file_name": "x/a.png", "height": 10, "width": 12}]),
        {"annotations/x/a.png": image_bytes(10, 12)},
    )
    assert result.issues == [] and result.images[0].file_name == "x/a.png"
    assert result.images[0].image_path == "annotations/x/a.png"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"[1, 2", "malformed JSON"),
        ({"images": []}, "not a COCO instances file"),
        (
            coco(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
            "category id 1 / name 'b' is repeated",
        ),
        (coco(categories=[{"id": "1", "name": "a"}]), "needs an integer id and a name"),
    ],
)
def test_unusable_file_is_one_skipped_item(document, reason):
    result = read(document)
    assert result.items == 1 and [i.kind for i in result.issues] == [IssueKind.SKIPPED]
    assert reason in result.issues[0].reason


@pytest.mark.parametrize(
    ("image", "files", "reason"),
    [
        (
            {"id": 10, "file_name": "c.png", "height": 10, "width": 12},
            None,
            "image 'c.png' not found",
        ),
        (
            {"id": 10, "file_name": "a.png", "height": 9, "width": 12},
            None,
            "image 'a.png' is 12x10 pixels but the JSON says width x height = 12x9",
        ),
        (
            {"id": 10, "file_name": "../a.png", "height": 10, "width": 12},
            None,
            "outside the input folder",
        ),
        (
            {"id": 10, "file_name": "a.png", "height": 10, "width": 12},
            {"images/a.png": b"GIF89a?"},
            "is not a readable image",
        ),
        (
            {"id": 10.0, "file_name": "a.png", "height": 10, "width": 12},
            None,
            "image id 10.0 is missing, not an integer or repeated",
        ),
    ],
)
def test_bad_image_is_skipped_with_its_annotations(image, files, reason):
    files = files or {"images/a.png": image_bytes(10, 12), "images/b.png": image_bytes(10, 12)}
    files.setdefault("images/b.png", image_bytes(10, 12))
    good = {"id": 11, "file_name": "b.png", "height": 10, "width": 12}
    result = read(
        coco(
            images=[good, image],
            annotations=[{"id": 1, "image_id": 10, "category_id": 3, "segmentation": SQUARE}],
        ),
        files,
    )
    assert result.items == 2 and [r.file_name for r in result.images] == ["b.png"]
    assert [i.kind for i in result.issues] == [IssueKind.SKIPPED] and reason in result.issues[
        0
    ].reason


def test_repeated_image_id_keeps_the_first():
    result = read(
        coco(
            images=[
                {"id": 10, "file_name": "a.png", "height": 10, "width": 12},
                {"id": 10, "file_name": "b.png", "height": 10, "width": 12},
            ],
            annotations=[{"id": 1, "image_id": 10, "category_id": 3, "segmentation": SQUARE}],
        )
    )
    assert [(r.file_name, len(r.instances)) for r in result.images] == [("a.png", 1)]
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.SKIPPED, "image 1")]
    assert "image id 10 is missing, not an integer or repeated" in result.issues[0].reason


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ({"category_id": 3, "segmentation": [[1, 1, 5, 5]]}, "polygon with fewer than 3 points"),
        ({"category_id": 4, "segmentation": SQUARE}, "unknown category_id 4"),
        (
            {"category_id": 3, "segmentation": {"size": [5, 5], "counts": "a"}},
            "RLE size [5, 5] differs from the image's [10, 12]",
        ),
        ({"category_id": 3, "segmentation": [[20, 20, 30, 20, 30, 30]]}, "empty mask"),
        (
            {"category_id": 3, "segmentation": "nope"},
            "segmentation must be a list of polygons or an RLE",
        ),
        ({"category_id": 3, "image_id": 99, "segmentation": SQUARE}, "unknown image_id 99"),
    ],
)
def test_bad_annotation_is_dropped_and_the_rest_converts(annotation, reason):
    bad = {"id": 5, "image_id": 10, **annotation}
    good = {"id": 6, "image_id": 10, "category_id": 3, "segmentation": SQUARE}
    result = read(coco(annotations=[bad, good]))
    assert [len(r.instances) for r in result.images] == [1, 0]
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.DROPPED, "annotation 5")]
    assert reason in result.issues[0].reason


def test_polygon_outside_is_clipped_and_counted():
    result = read(
        coco(
            annotations=[
                {
                    "id": 1,
                    "image_id": 10,
                    "category_id": 3,
                    "segmentation": [[8, 6, 20, 6, 20, 20, 8, 20]],
                }
            ]
        )
    )
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.CLIPPED, "annotation 1")]
    assert result.images[0].instances[0].mask.any()
