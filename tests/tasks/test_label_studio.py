"""Label Studio reader: polygons, rectangles, brush RLE (checked against Label Studio's own
codec), annotation choice, image lookup, every bad input, and the convert-masks flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from tasks.annotations import rasterize
from tasks.annotations.label_studio import decode_brush, image_candidates, read_label_studio
from tasks.annotations.records import IssueKind
from tests.support.builders import image_bytes, write
from tests.support.label_studio_reference import label_studio_brush

HEIGHT, WIDTH = 20, 40
TRIANGLE_PERCENT = [[5, 10], [30, 10], [30, 60]]  # (2, 2), (12, 2), (12, 12) in pixels
TRIANGLE = [(2, 2), (12, 2), (12, 12)]


def brush_code(values: np.ndarray, sizes=(2, 5, 9, 16)) -> list[int]:
    """Label Studio's brush code, written by hand and independently of Label Studio: runs of
    one value are repeat records, single values literal records, with unusual field sizes."""
    bits = f"{values.size:032b}{8 - 1:05b}" + "".join(f"{size - 1:04b}" for size in sizes)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1, [values.size]])
    for start, end in zip(bounds[:-1], bounds[1:]):
        length, value = int(end - start), int(values[start])
        while length:
            run = min(length, 2**16)
            index = next(i for i, size in enumerate(sizes) if run <= 2**size)
            flag = "0" if run == 1 else "1"
            bits += f"{flag}{index:02b}{run - 1:0{sizes[index]}b}{value:08b}"
            length -= run
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def rgba(mask: np.ndarray) -> np.ndarray:
    """RGBA values of a brush layer: alpha is the mask; blue is never 0, so only reading the
    alpha channel gives the mask back."""
    pixels = np.zeros(mask.shape + (4,), np.uint8)
    pixels[..., 0], pixels[..., 2], pixels[..., 3] = mask * 255, 7, mask * 255
    return pixels.ravel()


def holed(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[3:15, 20:36] = True
    mask[6:10, 25:30] = False  # a hole
    mask[14, 20] = False
    return mask


def region(kind: str, value: dict, **extra) -> dict:
    return {
        "id": "r1",
        "from_name": "label",
        "to_name": "image",
        "type": kind,
        "value": value,
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "image_rotation": 0,
        **extra,
    }


def polygon(points, label="car", **extra) -> dict:
    return region(
        "polygonlabels", {"points": points, "closed": True, "polygonlabels": [label]}, **extra
    )


def rectangle(x, y, w, h, rotation=0, label="bus") -> dict:
    return region(
        "rectanglelabels",
        {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    )


def brush(rle, label="tree", fmt="rle") -> dict:
    return region("brushlabels", {"format": fmt, "rle": rle, "brushlabels": [label]})


CHOICE = {"type": "choices", "value": {"choices": ["outdoor"]}, "from_name": "scene"}


def annotation(regions, id=1, cancelled=False, updated="2024-01-01T00:00:00.000000Z") -> dict:
    return {
        "id": id,
        "result": regions,
        "was_cancelled": cancelled,
        "updated_at": updated,
        "created_at": "2023-12-31T00:00:00.000000Z",
    }


def task(regions=(), image="/data/upload/1/abcd1234-a.png", id=1, annotations=None) -> dict:
    return {
        "id": id,
        "data": {"image": image},
        "predictions": [],
        "annotations": annotations if annotations is not None else [annotation(list(regions))],
    }


def read(document, files: dict[str, bytes] | None = None, name: str = "export/tasks.json"):
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    files = files if files is not None else {"export/a.png": image_bytes(HEIGHT, WIDTH)}

    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_label_studio(name, data, fetch)


def test_polygon_rectangle_and_brush_with_a_hole():
    result = read(
        [
            task(
                [
                    polygon(TRIANGLE_PERCENT),
                    CHOICE,
                    rectangle(37.5, 15, 25, 50),
                    brush(brush_code(rgba(holed()))),
                ]
            )
        ]
    )
    assert result.issues == [] and result.items == 1
    (record,) = result.images
    assert (record.file_name, record.height, record.width) == ("export/a.png", HEIGHT, WIDTH)
    assert [i.label for i in record.instances] == ["car", "bus", "tree"]
    assert [i.origin for i in record.instances] == [
        "task 1 result 0 (car)",
        "task 1 result 2 (bus)",
        "task 1 result 3 (tree)",
    ]
    drawn, boxed, brushed = (i.mask for i in record.instances)
    np.testing.assert_array_equal(
        drawn, rasterize.shape_to_mask("polygon", TRIANGLE, HEIGHT, WIDTH)
    )
    np.testing.assert_array_equal(
        boxed, rasterize.shape_to_mask("rectangle", [(15, 3), (25, 13)], HEIGHT, WIDTH)
    )
    np.testing.assert_array_equal(brushed, holed())


def test_the_newest_annotation_that_is_not_cancelled_is_read():
    annotations = [
        annotation([polygon(TRIANGLE_PERCENT, "old")], id=1, updated="2024-01-02T00:00:00Z"),
        annotation(
            [polygon(TRIANGLE_PERCENT, "cancelled")],
            id=2,
            cancelled=True,
            updated="2024-03-01T00:00:00Z",
        ),
        annotation([polygon(TRIANGLE_PERCENT, "new")], id=3, updated="2024-02-01T00:00:00Z"),
    ]
    result = read([task(annotations=annotations)])
    assert [i.label for i in result.images[0].instances] == ["new"]


def test_rotated_rectangle_turns_clockwise_about_its_top_left_corner():
    # x, y = (20, 5) px, 10 x 4 px; turned 90 degrees it hangs down and to the left of (20, 5).
    (instance,) = read([task([rectangle(50, 25, 25, 20, rotation=90)])]).images[0].instances
    rows, cols = np.nonzero(instance.mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 15, 16, 20)


def test_brush_decoder_reads_label_studio_own_encoding_of_masks_with_holes():
    reference = label_studio_brush()
    rng = np.random.default_rng(7)
    for _ in range(12):
        height, width = (int(v) for v in rng.integers(1, 50, 2))
        mask = rng.random((height, width)) < rng.uniform(0.1, 0.9)
        mask[height // 3 : 2 * height // 3 + 1, :] = True
        mask[height // 2, width // 2] = False  # a hole in a filled band
        code = reference.mask2rle(mask.astype(np.uint8) * 255)
        decoded = decode_brush(code, height * width * 4).reshape(height, width, 4)[:, :, 3]
        np.testing.assert_array_equal(decoded, mask)
    big = np.zeros((300, 400), np.uint8)  # runs longer than the 16-bit field: split records
    big[20:280, 10:390] = 255
    big[100:200, 100:300] = 0
    decoded = decode_brush(reference.mask2rle(big), big.size * 4).reshape(300, 400, 4)[:, :, 3]
    np.testing.assert_array_equal(decoded, big > 0)


def test_hand_written_brush_code_is_valid_label_studio_code():
    reference = label_studio_brush()
    values = rgba(holed())
    np.testing.assert_array_equal(reference.decode_rle(bytes(brush_code(values))), values)


@pytest.mark.parametrize(
    ("image", "found"),
    [
        ("/data/upload/1/abcd1234-a.png", "export/a.png"),
        ("/data/upload/1/abcd1234-a.png", "export/upload/1/abcd1234-a.png"),
        ("/data/upload/1/abcd1234-a.png", "export/images/abcd1234-a.png"),
        ("/data/local-files/?d=photos/my%20a.png", "export/photos/my a.png"),
        ("/data/local-files/?d=photos/a.png", "export/images/a.png"),
        ("pics/a.png", "export/pics/a.png"),
        ("../elsewhere/a.png", "export/a.png"),
        ("https://example.com/bucket/a.png?X-Amz-Signature=1", "export/a.png"),
        ("s3://bucket/x/a.png", "export/images/a.png"),
    ],
)
def test_image_lookup(image, found):
    result = read(
        [task([polygon(TRIANGLE_PERCENT)], image=image)], {found: image_bytes(HEIGHT, WIDTH)}
    )
    assert result.issues == [] and result.images[0].file_name == found


def test_upload_candidates_in_order():
    assert image_candidates("/data/upload/3/0a1b2c3d-cat.jpg") == [
        "upload/3/0a1b2c3d-cat.jpg",
        "0a1b2c3d-cat.jpg",
        "images/0a1b2c3d-cat.jpg",
        "cat.jpg",
        "images/cat.jpg",
    ]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"[{", "malformed JSON"),
        (task(), "not a Label Studio JSON export"),
        ([1, 2], "not a Label Studio JSON export"),
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
        (task(annotations=[]), "no annotation that is not cancelled"),
        (
            task(annotations=[annotation([polygon(TRIANGLE_PERCENT)], cancelled=True)]),
            "no annotation that is not cancelled",
        ),
        (
            task(image="/data/upload/1/abcd1234-zz.png"),
            "image '/data/upload/1/abcd1234-zz.png' not found "
            "(looked for export/upload/1/abcd1234-zz.png, export/abcd1234-zz.png, "
            "export/images/abcd1234-zz.png, export/zz.png, export/images/zz.png)",
        ),
        (
            task([polygon(TRIANGLE_PERCENT, original_width=41)]),
            "image 'export/a.png' is 40x20 pixels "
            "but the annotation says original_width x original_height = 41x20",
        ),
        (
            {"id": 1, "data": {"text": "hello"}, "annotations": [annotation([])]},
            "task data has no image",
        ),
        (task(image="a.txt"), "image 'a.txt' not found"),
    ],
)
def test_bad_task_is_skipped_and_the_rest_converts(bad, reason):
    result = read([bad, task([polygon(TRIANGLE_PERCENT)], id=2)])
    assert result.items == 2 and len(result.images) == 1
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.SKIPPED, "task 1")]
    assert result.issues[0].reason.startswith(reason)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            region("keypointlabels", {"x": 5, "y": 5, "keypointlabels": ["car"]}),
            "result type 'keypointlabels' is not converted",
        ),
        (
            region("polygonlabels", {"points": TRIANGLE_PERCENT, "polygonlabels": []}),
            "polygonlabels result has no value.polygonlabels label",
        ),
        (polygon(TRIANGLE_PERCENT[:2]), "polygon needs at least 3 points, got 2"),
        (
            polygon([[5, 10], [30, "a"], [30, 60]]),
            "polygon points must be a list of [x, y] number pairs",
        ),
        (
            brush(brush_code(rgba(np.ones((3, 3), bool)))),
            "brush rle holds 36 values; the image needs 3200",
        ),
        (brush(brush_code(rgba(holed()))[:9]), "brush rle is truncated"),
        (brush([1, 300]), "brush rle must be a list of byte values 0..255"),
        (brush([], fmt="png"), "brush format 'png' is not supported"),
        (
            region(
                "rectanglelabels", {"y": 1, "width": 5, "height": 5, "rectanglelabels": ["bus"]}
            ),
            "rectangle x, y, width, height (and rotation) must be finite numbers",
        ),
        (polygon(TRIANGLE_PERCENT, image_rotation=90), "image_rotation 90 is not supported"),
        (polygon([[110, 110], [120, 110], [120, 120]]), "empty mask (no pixel inside the image)"),
        ("not a region", "result must be an object"),
    ],
)
def test_bad_region_is_dropped_and_the_rest_converts(bad, reason):
    result = read([task([bad, CHOICE, polygon(TRIANGLE_PERCENT, "ok")])])
    assert [i.label for i in result.images[0].instances] == ["ok"]
    dropped = [i for i in result.issues if i.kind is IssueKind.DROPPED]
    assert len(dropped) == 1 and dropped[0].reason.startswith(reason), dropped
    assert dropped[0].item.startswith("task 1 result 0")


def test_coordinates_outside_are_clipped():
    result = read([task([polygon([[90, 10], [120, 10], [120, 60]])])])
    assert [(i.kind, i.item) for i in result.issues] == [
        (IssueKind.CLIPPED, "task 1 result 0 (car)")
    ]
    mask = result.images[0].instances[0].mask
    assert mask[:, WIDTH - 1].any() and mask.shape == (HEIGHT, WIDTH)


@pytest.mark.usefixtures("prefect_harness")
def test_convert_masks_flow_on_a_label_studio_export(tmp_path: Path):
    from flows.convert_masks import ItemCounts, convert_masks

    write(tmp_path / "in/export/a.png", image_bytes(HEIGHT, WIDTH))
    write(
        tmp_path / "in/export/tasks.json",
        json.dumps(
            [
                task([polygon(TRIANGLE_PERCENT), brush(brush_code(rgba(holed())))]),
                task(id=2, image="/data/upload/1/abcd1234-b.png", annotations=[]),
            ]
        ),
    )
    summary = convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format="label-studio",
        val_fraction=0.0,
    )
    assert summary.labels == ("car", "tree")
    assert summary.items == ItemCounts(found=2, converted=1, skipped=1)
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    assert [i["file_name"] for i in document["images"]] == ["export/a.png"]
    masks = [
        mask_utils.decode(
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
        ).astype(bool)
        for a in document["annotations"]
    ]
    assert [a["category_id"] for a in document["annotations"]] == [1, 2]
    np.testing.assert_array_equal(
        masks[0], rasterize.shape_to_mask("polygon", TRIANGLE, HEIGHT, WIDTH)
    )
    np.testing.assert_array_equal(masks[1], holed())
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert [(e["item"], e["reason"][:30]) for e in report["skipped"]] == [
        ("task 2", "no annotation that is not canc")
    ]
