"""CVAT for images 1.1 reader: polygons, boxes, masks, groups, image lookup, every bad input,
and the convert-masks flow on a CVAT export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from tasks.annotations import rasterize
from tasks.annotations.cvat import decode_mask_rle, read_cvat
from tasks.annotations.records import IssueKind
from tests.support.builders import image_bytes, write

TRIANGLE = [(2, 2), (12, 2), (12, 12)]


def attributes(**extra: object) -> str:
    return "".join(f' {key}="{value}"' for key, value in extra.items())


def polygon(label: str, points, **extra: object) -> str:
    text = ";".join(f"{x:.2f},{y:.2f}" for x, y in points)
    return (
        f'<polygon label="{label}" source="manual" occluded="0" points="{text}" '
        f'z_order="0"{attributes(**extra)}><attribute name="kind">x</attribute></polygon>'
    )


def box(label: str, xtl, ytl, xbr, ybr, **extra: object) -> str:
    return (
        f'<box label="{label}" source="manual" occluded="0" xtl="{xtl}" ytl="{ytl}" '
        f'xbr="{xbr}" ybr="{ybr}" z_order="0"{attributes(**extra)}></box>'
    )


def cvat_rle(bitmap: np.ndarray) -> str:
    """CVAT's mask code: row-major run lengths over the box, background first."""
    flat = bitmap.ravel().astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ", ".join(map(str, ([0] if flat[0] else []) + counts))


def mask(label: str, left: int, top: int, bitmap: np.ndarray, **extra: object) -> str:
    h, w = bitmap.shape
    return (
        f'<mask label="{label}" source="manual" occluded="0" rle="{cvat_rle(bitmap)}" '
        f'left="{left}" top="{top}" width="{w}" height="{h}" z_order="0"'
        f"{attributes(**extra)}></mask>"
    )


def image(name: str, *shapes: str, width: int = 30, height: int = 20, id: int = 0) -> str:
    attributes = f'id="{id}" name="{name}" width="{width}" height="{height}"'
    return f"<image {attributes}>{''.join(shapes)}</image>"


def cvat_xml(*images: str, labels=("car", "bus", "tree")) -> bytes:
    declared = "".join(
        f"<label><name>{n}</name><color>#ff0000</color><type>any</type><attributes/></label>"
        for n in labels
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta>'
        f"<task><id>1</id><name>t</name><labels>{declared}</labels></task></meta>"
        f"{''.join(images)}</annotations>"
    ).encode()


def read(document: bytes, files: dict[str, bytes] | None = None, name: str = "annotations.xml"):
    files = files if files is not None else {"images/a.png": image_bytes(20, 30)}

    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_cvat(name, document, fetch)


def holed_bitmap() -> np.ndarray:
    bitmap = np.ones((5, 6), bool)
    bitmap[1:4, 2:4] = False  # a hole
    bitmap[0, 0] = False
    return bitmap


def test_polygon_box_and_mask_with_a_hole():
    bitmap = holed_bitmap()
    result = read(
        cvat_xml(
            image(
                "a.png",
                polygon("car", TRIANGLE),
                box("bus", 15, 3, 20.5, 9),
                mask("car", 22, 12, bitmap),
            )
        )
    )
    assert result.issues == [] and result.items == 1
    assert result.labels == ("car", "bus", "tree")  # <meta> order, unused ones too
    (record,) = result.images
    assert (record.file_name, record.height, record.width) == ("images/a.png", 20, 30)
    assert [i.label for i in record.instances] == ["car", "bus", "car"]
    drawn, boxed, placed = (i.mask for i in record.instances)
    np.testing.assert_array_equal(drawn, rasterize.shape_to_mask("polygon", TRIANGLE, 20, 30))
    np.testing.assert_array_equal(
        boxed, rasterize.shape_to_mask("rectangle", [(15, 3), (20.5, 9)], 20, 30)
    )
    expected = np.zeros((20, 30), bool)
    expected[12:17, 22:28] = bitmap
    np.testing.assert_array_equal(placed, expected)
    assert record.instances[2].origin == "image images/a.png shape 2 (car)"


@pytest.mark.parametrize(
    "bitmap",
    [np.eye(4, 7, dtype=bool), np.ones((3, 3), bool), np.zeros((2, 5), bool), holed_bitmap()],
)
def test_mask_rle_round_trips_exactly(bitmap):
    np.testing.assert_array_equal(decode_mask_rle(cvat_rle(bitmap), *bitmap.shape), bitmap)


def test_shapes_of_one_group_and_label_are_one_instance():
    other = [(20, 10), (28, 10), (28, 18)]
    result = read(
        cvat_xml(
            image(
                "a.png",
                polygon("car", TRIANGLE, group_id=3),
                polygon("bus", other, group_id=3),
                box("car", 20, 2, 26, 6, group_id=3),
                polygon("car", other, group_id=0),
                polygon("car", other),
            )
        )
    )
    record = result.images[0]
    assert [(i.label, i.origin) for i in record.instances] == [
        ("car", "image images/a.png shapes 0, 2 (car)"),
        ("bus", "image images/a.png shape 1 (bus)"),
        ("car", "image images/a.png shape 3 (car)"),
        ("car", "image images/a.png shape 4 (car)"),
    ]
    union = rasterize.shape_to_mask("polygon", TRIANGLE, 20, 30) | rasterize.shape_to_mask(
        "rectangle", [(20, 2), (26, 6)], 20, 30
    )
    np.testing.assert_array_equal(record.instances[0].mask, union)


def test_rotated_box_turns_about_its_centre():
    (instance,) = (
        read(cvat_xml(image("a.png", box("car", 5, 8, 25, 12, rotation=90)))).images[0].instances
    )
    rows, cols = np.nonzero(instance.mask)
    assert rows.max() - rows.min() > 15 and cols.max() - cols.min() < 6  # wide became tall
    assert abs(rows.mean() - 10) < 1 and abs(cols.mean() - 15) < 1


def test_other_shapes_are_dropped_and_tags_passed_over():
    shapes = [
        '<tag label="car" source="manual"></tag>',
        '<polyline label="car" points="1,1;5,5" occluded="0" z_order="0"></polyline>',
        '<points label="car" points="3,3" occluded="0" z_order="0"></points>',
        polygon("car", TRIANGLE),
    ]
    result = read(cvat_xml(image("a.png", *shapes)))
    assert [i.label for i in result.images[0].instances] == ["car"]
    assert [(i.kind, i.item, i.reason) for i in result.issues] == [
        (
            IssueKind.DROPPED,
            "image images/a.png shape 0 (polyline, car)",
            "<polyline> is not converted (only polygon, box and mask are regions)",
        ),
        (
            IssueKind.DROPPED,
            "image images/a.png shape 1 (points, car)",
            "<points> is not converted (only polygon, box and mask are regions)",
        ),
    ]


def test_coordinates_outside_are_clipped():
    bitmap = np.ones((4, 4), bool)
    result = read(
        cvat_xml(
            image(
                "a.png", polygon("car", [(20, 10), (40, 10), (40, 25)]), mask("bus", 28, -2, bitmap)
            )
        )
    )
    assert [(i.kind, i.item) for i in result.issues] == [
        (IssueKind.CLIPPED, "image images/a.png shape 0 (polygon, car)"),
        (IssueKind.CLIPPED, "image images/a.png shape 1 (mask, bus)"),
    ]
    assert "outside the 30x20 image; clipped" in result.issues[0].reason
    clipped = result.images[0].instances[1].mask
    assert clipped.sum() == 4 and clipped[0:2, 28:30].all()


def test_image_beside_the_xml_in_a_subfolder_and_exif_upright():
    upright = image_bytes(20, 30, "JPEG", exif_orientation=6)  # stored 30 wide, shown 20 wide
    files = {"job/pics/a.jpg": upright, "job/b.png": image_bytes(20, 30)}
    result = read(
        cvat_xml(image("pics/a.jpg", width=20, height=30), image("b.png", id=1)),
        files,
        name="job/annotations.xml",
    )
    assert result.issues == []
    a, b = result.images
    assert (a.file_name, a.height, a.width, a.image_bytes is not None) == (
        "job/pics/a.jpg",
        30,
        20,
        True,
    )
    assert (b.file_name, b.image_bytes) == ("job/b.png", None)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<annotations><image></annotations>", "malformed XML"),
        (b"", "malformed XML"),
        (b"<root/>", "not a CVAT for images file (root element <root>"),
        (b'<annotations><track id="0" label="car"/></annotations>', "a CVAT for video file"),
    ],
)
def test_unusable_file_is_one_skipped_item(document, reason):
    result = read(document)
    assert result.items == 1 and result.images == []
    assert [i.kind for i in result.issues] == [IssueKind.SKIPPED]
    assert result.issues[0].reason.startswith(reason)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            image("missing.png"),
            "image 'missing.png' not found (looked for missing.png, images/missing.png)",
        ),
        (
            image("a.png", width=31),
            "image 'images/a.png' is 30x20 pixels but the XML says width x height = 31x20",
        ),
        ('<image id="0" width="30" height="20"/>', "image element has no name"),
        (image("a.png", height=0), "image height='0' is not a positive integer"),
        (image("../a.png"), "points outside the input folder"),
    ],
)
def test_bad_image_is_skipped_and_the_rest_converts(bad, reason):
    result = read(cvat_xml(bad, image("a.png", polygon("car", TRIANGLE), id=1)))
    assert result.items == 2 and [r.file_name for r in result.images] == ["images/a.png"]
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.SKIPPED, "image 0")]
    assert reason in result.issues[0].reason


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (polygon("truck", TRIANGLE), "unknown label 'truck' (not among the labels in <meta>)"),
        (polygon("", TRIANGLE), "polygon has no label"),
        (polygon("car", TRIANGLE[:2]), "polygon needs at least 3 points, got 2"),
        (
            '<polygon label="car" points="1,1;5;6,6"/>',
            "polygon points must be 'x1,y1;x2,y2;...' pairs",
        ),
        (
            '<polygon label="car" points="1,a;5,5;6,6"/>',
            "polygon points must be 'x1,y1;x2,y2;...' numbers",
        ),
        ('<box label="car" xtl="1" ytl="1" xbr="5"/>', "box lacks 'ybr'"),
        (
            '<box label="car" xtl="1" ytl="nan" xbr="5" ybr="5"/>',
            "box ytl='nan' is not a finite number",
        ),
        (
            '<mask label="car" rle="3, 4" left="1" top="1" width="3" height="3"/>',
            "mask rle covers 7 pixels but its box is 3x3 = 9",
        ),
        (
            '<mask label="car" rle="3, x" left="1" top="1" width="3" height="3"/>',
            "mask rle must be comma-separated integers",
        ),
        (
            '<mask label="car" rle="9" left="1.5" top="1" width="3" height="3"/>',
            "mask left='1.5' is not an integer",
        ),
        ('<ellipse label="car" cx="5" cy="5" rx="2" ry="2"/>', "<ellipse> is not converted"),
        (polygon("car", [(40, 30), (50, 30), (50, 40)]), "empty mask (no pixel inside the image)"),
    ],
)
def test_bad_shape_is_dropped_and_the_rest_converts(bad, reason):
    result = read(cvat_xml(image("a.png", bad, polygon("bus", TRIANGLE))))
    assert [i.label for i in result.images[0].instances] == ["bus"]
    dropped = [i for i in result.issues if i.kind is IssueKind.DROPPED]
    assert len(dropped) == 1 and dropped[0].reason.startswith(reason), dropped
    assert dropped[0].item.startswith("image images/a.png shape")


@pytest.mark.usefixtures("prefect_harness")
def test_convert_masks_flow_on_a_cvat_export(tmp_path: Path):
    from flows.convert_masks import convert_masks

    bitmap = holed_bitmap()
    write(tmp_path / "in/images/a.png", image_bytes(20, 30))
    write(
        tmp_path / "in/annotations.xml",
        cvat_xml(
            image(
                "a.png",
                polygon("car", TRIANGLE),
                mask("tree", 22, 12, bitmap),
                '<polyline label="car" points="1,1;5,5"/>',
            )
        ),
    )
    summary = convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format="cvat",
        val_fraction=0.0,
    )
    assert summary.labels == ("car", "bus", "tree") and summary.issues == 1
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    assert [c["name"] for c in document["categories"]] == ["car", "bus", "tree"]
    assert document["images"][0]["file_name"] == "images/a.png"
    assert (tmp_path / "out/images/images/a.png").read_bytes() == image_bytes(20, 30)
    masks = [
        mask_utils.decode(
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
        ).astype(bool)
        for a in document["annotations"]
    ]
    expected = np.zeros((20, 30), bool)
    expected[12:17, 22:28] = bitmap
    assert [a["category_id"] for a in document["annotations"]] == [1, 3]
    np.testing.assert_array_equal(masks[0], rasterize.shape_to_mask("polygon", TRIANGLE, 20, 30))
    np.testing.assert_array_equal(masks[1], expected)
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert [e["item"] for e in report["dropped"]] == ["image images/a.png shape 2 (polyline, car)"]
