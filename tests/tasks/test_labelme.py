"""labelme reader: shapes, grouping, images, every bad input, and labelme's own examples."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tasks.annotations import rasterize
from tasks.annotations.labelme import read_labelme
from tasks.annotations.records import IssueKind
from tests.support.builders import image_bytes, labelme_json, mask_shape, shape
from tests.support.labelme_reference import labelme_shape_to_mask


def read(files: dict[str, bytes], name: str = "a.json"):
    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_labelme(name, files[name], fetch)


def only_issue(result, kind: IssueKind) -> str:
    assert [issue.kind for issue in result.issues] == [kind], result.issues
    return result.issues[0].message()


def test_every_shape_type_and_groups_union():
    bitmap = np.zeros((4, 5), bool)
    bitmap[1:3, 1:4] = True
    shapes = [
        shape("cat", [[2, 2], [10, 2], [10, 10]], group_id=7),
        shape("dog", [[12, 3], [18, 9]], "rectangle"),
        shape("cat", [[20, 20], [30, 20], [30, 28]], group_id=7),
        shape("bird", [[30, 8], [30, 12]], "circle"),
        shape("wire", [[0, 25], [39, 25]], "line"),
        shape("wire", [[0, 5], [10, 15], [20, 5]], "linestrip"),
        shape("dot", [[35, 25]], "point"),
        mask_shape("blob", 33, 1, bitmap),
        shape("__ignore__", [[0, 0], [5, 0], [5, 5]]),
        shape("cat", [[25, 2], [29, 2], [29, 6]]),  # no group_id: an instance of its own
    ]
    result = read({"a.json": labelme_json("a.png", 30, 40, shapes), "a.png": image_bytes(30, 40)})
    assert result.items == 1 and result.issues == [] and result.ignored == 1
    (record,) = result.images
    assert (record.file_name, record.height, record.width) == ("a.png", 30, 40)
    assert record.image_bytes is None  # the image file is copied as it is
    assert [i.label for i in record.instances] == [
        "cat",
        "dog",
        "bird",
        "wire",
        "wire",
        "dot",
        "blob",
        "cat",
    ]
    # Each shape alone, drawn by the rasterizer (test_rasterize checks it against labelme's).
    masks = [
        None
        if s["shape_type"] == "mask"
        else rasterize.shape_to_mask(
            s["shape_type"], rasterize.checked_points(s["points"], s["shape_type"]), 30, 40
        )
        for s in shapes
    ]
    expected = [masks[0] | masks[2], masks[1], masks[3], masks[4], masks[5], masks[6]]
    for instance, mask in zip(record.instances, expected):
        np.testing.assert_array_equal(instance.mask, mask)
    blob = np.zeros((30, 40), bool)
    blob[1:5, 33:38] = bitmap
    np.testing.assert_array_equal(record.instances[6].mask, blob)
    np.testing.assert_array_equal(record.instances[7].mask, masks[9])


def test_labelme3_file_without_shape_type_or_size():
    document = {
        "shapes": [{"label": "cat", "points": [[1, 1], [8, 1], [8, 8]]}],
        "imagePath": "a.png",
        "imageData": None,
        "version": "3.16.7",
    }
    result = read({"a.json": json.dumps(document).encode(), "a.png": image_bytes(10, 10)})
    assert result.issues == [] and result.images[0].instances[0].mask.sum() == 36


def test_embedded_image_data_is_used():
    data = image_bytes(12, 14)
    result = read({"a.json": labelme_json("photos/a.png", 12, 14, [], image_data=data)})
    (record,) = result.images
    assert record.file_name == "photos/a.png" and record.image_bytes == data


def test_embedded_image_without_path_is_named_after_the_json():
    result = read(
        {"sub/c.json": labelme_json(None, 12, 14, [], image_data=image_bytes(12, 14))}, "sub/c.json"
    )
    assert result.images[0].file_name == "sub/c.png"


def test_windows_image_path_is_resolved():
    result = read(
        {"sub/a.json": labelme_json("..\\imgs\\a.png", 8, 8, []), "imgs/a.png": image_bytes(8, 8)},
        "sub/a.json",
    )
    assert result.images[0].file_name == "imgs/a.png"


def test_exif_rotated_image_is_written_upright():
    # Orientation 6: stored 20 high x 30 wide, shown (and annotated) 30 high x 20 wide.
    stored = image_bytes(20, 30, fmt="JPEG", exif_orientation=6)
    result = read(
        {
            "a.json": labelme_json("a.jpg", 30, 20, [shape("cat", [[1, 1], [5, 1], [5, 25]])]),
            "a.jpg": stored,
        }
    )
    (record,) = result.images
    assert (record.height, record.width) == (30, 20) and record.image_bytes is not None
    with PIL.Image.open(io.BytesIO(record.image_bytes)) as upright:
        assert upright.size == (20, 30) and upright.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"a.json": b'{"shapes": [ {"label": '}, "malformed JSON"),
        ({"a.json": b'{"version": "5.0.1"}'}, "not a labelme file"),
        ({"a.json": labelme_json("a.png", 10, 10, [])}, "image 'a.png' not found"),
        (
            {"a.json": labelme_json("a.png", 10, 10, []), "a.png": b"plain text, not pixels"},
            "'a.png' is not a readable image",
        ),
        (
            {"a.json": labelme_json("a.png", 10, 10, []), "a.png": image_bytes(10, 12)},
            "image 'a.png' is 12x10 pixels but the JSON says imageWidth x imageHeight = 10x10",
        ),
        (
            {"a.json": labelme_json("../../etc/passwd", 10, 10, [])},
            "points outside the input folder",
        ),
        ({"a.json": labelme_json("/etc/passwd", 10, 10, [])}, "is absolute"),
        ({"a.json": labelme_json("C:\\data\\a.png", 10, 10, [])}, "is absolute"),
        ({"a.json": labelme_json(None, 10, 10, [])}, "no imagePath and no imageData"),
        (
            {
                "a.json": json.dumps(
                    {"shapes": [], "imagePath": "a.png", "imageData": "@@@"}
                ).encode()
            },
            "imageData is not valid base64",
        ),
    ],
)
def test_bad_file_is_skipped_with_its_reason(files, reason):
    result = read(files)
    assert result.items == 1 and result.images == []
    assert reason in only_issue(result, IssueKind.SKIPPED)


@pytest.mark.parametrize(
    ("bad_shape", "reason"),
    [
        (shape("cat", [[1, 1], [5, 5]]), "polygon needs at least 3 points, got 2"),
        (shape("cat", [[1, 1], [5, 5]], "ellipse"), "unsupported shape_type 'ellipse'"),
        (shape("", [[1, 1], [5, 1], [5, 5]]), "shape has no label"),
        (shape("cat", [[1, 1], [5, 1], [5, 5]], group_id=[1]), "group_id must be an integer"),
        (
            mask_shape("cat", 1, 1, np.ones((3, 3), bool)) | {"points": [[1, 1], [5, 5]]},
            "mask bitmap is 3x3 but its box",
        ),
        (shape("cat", [[1, 1], [3, 3]], "mask", mask="not base64!"), "not a base64-encoded image"),
    ],
)
def test_bad_shape_is_dropped_and_the_rest_converts(bad_shape, reason):
    good = shape("dog", [[2, 2], [8, 2], [8, 8]])
    result = read(
        {"a.json": labelme_json("a.png", 10, 10, [bad_shape, good]), "a.png": image_bytes(10, 10)}
    )
    message = only_issue(result, IssueKind.DROPPED)
    assert message.startswith("a.json: shape 0") and reason in message
    assert [i.label for i in result.images[0].instances] == ["dog"]


def test_coordinates_outside_are_clipped_and_counted():
    result = read(
        {
            "a.json": labelme_json("a.png", 10, 10, [shape("cat", [[5, 5], [15, 5], [15, 15]])]),
            "a.png": image_bytes(10, 10),
        }
    )
    message = only_issue(result, IssueKind.CLIPPED)
    assert message == "a.json: shape 0 (cat): coordinates outside the 10x10 image; clipped"
    assert result.images[0].instances[0].mask[5:, 5:].sum() == 15  # the triangle's inside half


def test_shape_wholly_outside_is_clipped_then_dropped_as_empty():
    result = read(
        {
            "a.json": labelme_json("a.png", 10, 10, [shape("cat", [[20, 20], [30, 20], [30, 30]])]),
            "a.png": image_bytes(10, 10),
        }
    )
    assert [i.kind for i in result.issues] == [IssueKind.CLIPPED, IssueKind.DROPPED]
    assert "empty mask" in result.issues[1].reason
    assert result.images[0].instances == ()


def test_labelme_examples_are_pixel_identical(shared_data: Path):
    """labelme's own examples (groups, ``__ignore__``, overlaps) against labelme's rasterizer,
    grouped as its ``labelme2coco`` example groups them."""
    reference = labelme_shape_to_mask()
    folder = shared_data / "labelme_examples" / "data_annotated"
    files = sorted(folder.glob("*.json"))
    assert files, f"no labelme files in {folder}"
    for path in files:
        result = read_labelme(path.name, path.read_bytes(), lambda r: (folder / r).read_bytes())
        (record,) = result.images
        assert all(issue.kind is IssueKind.CLIPPED for issue in result.issues)
        expected: dict[tuple, np.ndarray] = {}
        for entry in json.loads(path.read_bytes())["shapes"]:
            if entry["label"] == "__ignore__":
                continue
            key = (
                entry["label"],
                uuid.uuid4() if entry.get("group_id") is None else entry["group_id"],
            )
            mask = reference(
                (record.height, record.width), entry["points"], entry.get("shape_type")
            )
            expected[key] = expected[key] | mask if key in expected else mask
        assert [i.label for i in record.instances] == [label for label, _ in expected]
        for instance, mask in zip(record.instances, expected.values()):
            np.testing.assert_array_equal(
                instance.mask, mask, err_msg=f"{path.name} {instance.origin}"
            )
