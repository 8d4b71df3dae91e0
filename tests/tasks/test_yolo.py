"""YOLO segmentation reader and line writer: polygons, boxes, image lookup, names, every bad
input, the format registration, and the convert-masks flow on a YOLO dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import yaml

from mrcnn_pipeline.cli import build_parser
from tasks import convert
from tasks.annotations import rasterize
from tasks.annotations.records import IssueKind
from tasks.annotations.registry import get_format
from tasks.annotations.yolo import data_yaml, read_yolo, yolo_line
from tests.support.builders import image_bytes, write

HEIGHT, WIDTH = 20, 40
TRIANGLE = [(2, 2), (12, 2), (12, 12)]
TRIANGLE_LINE = "0 0.05 0.1 0.3 0.1 0.3 0.6"  # TRIANGLE normalised, class 0
NAMES = b"path: .\ntrain: images/train\nval: images/val\nnames:\n  - car\n  - bus\n"


def read(
    lines: str | bytes, files: dict[str, bytes] | None = None, name: str = "labels/train/a.txt"
):
    data = lines if isinstance(lines, bytes) else lines.encode()
    files = (
        files
        if files is not None
        else {"data.yaml": NAMES, "images/train/a.png": image_bytes(HEIGHT, WIDTH)}
    )

    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_yolo(name, data, fetch)


def test_polygon_and_box_lines():
    result = read(f"{TRIANGLE_LINE}\n\n1 0.5 0.5 0.25 0.5\n")
    assert result.issues == [] and result.items == 1 and result.labels == ("car", "bus")
    (record,) = result.images
    assert (record.file_name, record.source, record.height, record.width) == (
        "images/train/a.png",
        "labels/train/a.txt",
        HEIGHT,
        WIDTH,
    )
    assert [(i.label, i.origin) for i in record.instances] == [
        ("car", "line 1 (car)"),
        ("bus", "line 3 (bus)"),
    ]
    np.testing.assert_array_equal(
        record.instances[0].mask, rasterize.shape_to_mask("polygon", TRIANGLE, HEIGHT, WIDTH)
    )
    np.testing.assert_array_equal(
        record.instances[1].mask,
        rasterize.shape_to_mask("rectangle", [(15, 5), (25, 15)], HEIGHT, WIDTH),
    )


def test_names_as_a_map_in_dataset_yaml_and_an_empty_label_file():
    files = {
        "dataset.yaml": b"names:\n  0: person\n  3: dog\n",
        "images/train/a.png": image_bytes(HEIGHT, WIDTH),
    }
    assert read("3 0.05 0.1 0.3 0.1 0.3 0.6", files).images[0].instances[0].label == "dog"
    empty = read("", files)
    assert (
        empty.labels == ("person", "dog") and empty.issues == [] and empty.images[0].instances == ()
    )


@pytest.mark.parametrize(
    ("images", "found"),
    [
        (["images/train/a.png", "images/train/a.jpg"], "images/train/a.jpg"),  # .jpg comes first
        (["images/train/a.webp", "images/train/a.bmp"], "images/train/a.bmp"),
        (["images/train/a.JPG"], "images/train/a.JPG"),
    ],
)
def test_image_suffixes_in_order(images, found):
    files = {"data.yaml": NAMES, **{path: image_bytes(HEIGHT, WIDTH, "PNG") for path in images}}
    assert read(TRIANGLE_LINE, files).images[0].file_name == found


def test_last_labels_folder_becomes_images():
    files = {"data.yaml": NAMES, "labels/train/images/x.png": image_bytes(HEIGHT, WIDTH)}
    result = read(TRIANGLE_LINE, files, name="labels/train/labels/x.txt")
    assert result.issues == [] and result.images[0].file_name == "labels/train/images/x.png"


@pytest.mark.parametrize(
    ("files", "name", "reason"),
    [
        (
            {},
            "labels/train/a.txt",
            "no data.yaml (or dataset.yaml) at the input root: YOLO class names "
            "come from its 'names'",
        ),
        (
            {"data.yaml": b"names: [car\n"},
            "labels/train/a.txt",
            "malformed data.yaml (while parsing",
        ),
        (
            {"data.yaml": b"train: images/train\n"},
            "labels/train/a.txt",
            "data.yaml 'names' must be a non-empty list or {index: name} map of class names",
        ),
        ({"data.yaml": b"names: {car: 0}\n"}, "labels/train/a.txt", "data.yaml 'names' must be"),
        (
            {"data.yaml": NAMES},
            "labels/train/a.txt",
            "image images/train/a.* not found (tried .jpg "
            ".jpeg .png .bmp .tif .tiff .webp, also in upper case)",
        ),
        (
            {"data.yaml": NAMES, "train/a.png": image_bytes(4, 4)},
            "train/a.txt",
            "label file is not below a 'labels' folder",
        ),
        (
            {"data.yaml": NAMES, "images/train/a.png": b"not an image"},
            "labels/train/a.txt",
            "'images/train/a.png' is not a readable image",
        ),
    ],
)
def test_unusable_file_is_one_skipped_item(files, name, reason):
    result = read(TRIANGLE_LINE, files, name)
    assert result.items == 1 and result.images == []
    assert [(i.kind, i.file) for i in result.issues] == [(IssueKind.SKIPPED, name)]
    assert result.issues[0].reason.startswith(reason)


def test_label_file_that_is_not_text_is_skipped():
    result = read(b"\xff\xfe0 0.1")
    assert [i.reason for i in result.issues] == ["label file is not UTF-8 text"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "2 0.05 0.1 0.3 0.1 0.3 0.6",
            "class 2 is not among the dataset YAML's names (indices 0..1)",
        ),
        ("-1 0.05 0.1 0.3 0.1 0.3 0.6", "class -1 is not among"),
        ("0.5 0.05 0.1 0.3 0.1 0.3 0.6", "class '0.5' is not an integer index"),
        (
            "0 0.05 0.1 0.3",
            "expected 'class cx cy w h' (a box) or 'class x1 y1 x2 y2 x3 y3 ...' "
            "(a polygon), got 3 coordinates",
        ),
        ("0 0.05 0.1 0.3 0.1 0.3", "expected 'class cx cy w h'"),
        ("0", "expected 'class cx cy w h'"),
        ("car 0.05 0.1 0.3 0.1 0.3 0.6", "values must be numbers"),
        ("0 0.05 nan 0.3 0.1 0.3 0.6", "values must be finite numbers"),
        ("0 1.5 1.5 1.6 1.5 1.6 1.6", "empty mask (no pixel inside the image)"),
    ],
)
def test_bad_line_is_dropped_and_the_rest_converts(line, reason):
    result = read(f"{line}\n1 0.5 0.5 0.25 0.5\n")
    assert [i.label for i in result.images[0].instances] == ["bus"]
    dropped = [i for i in result.issues if i.kind is IssueKind.DROPPED]  # outside: also CLIPPED
    assert [i.item.split(" (")[0] for i in dropped] == ["line 1"]
    assert dropped[0].reason.startswith(reason)


def test_coordinates_outside_are_clipped():
    result = read("0 0.9 0.1 1.2 0.1 1.2 0.6\n")
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.CLIPPED, "line 1 (car)")]
    assert "outside the 40x20 image; clipped" in result.issues[0].reason
    assert result.images[0].instances[0].mask[:, WIDTH - 1].any()


def test_yolo_line_normalises_clips_and_reads_back():
    assert yolo_line(2, [(0, 0), (20, 5), (40, 20)], HEIGHT, WIDTH) == "2 0 0 0.5 0.25 1 1"
    assert (
        yolo_line(0, [(-4, 2), (13, 50), (1 / 3, 1)], HEIGHT, WIDTH)
        == "0 0 0.1 0.325 1 0.008333 0.05"
    )
    names = yaml.safe_load(data_yaml(["car", "bus"]))
    assert names == {
        "path": ".",
        "train": "images/train",
        "val": "images/val",
        "names": {0: "car", 1: "bus"},
    }
    files = {
        "data.yaml": data_yaml(["car", "bus"]).encode(),
        "images/train/a.png": image_bytes(HEIGHT, WIDTH),
    }
    result = read(yolo_line(1, TRIANGLE, HEIGHT, WIDTH), files)
    (instance,) = result.images[0].instances
    assert instance.label == "bus"
    np.testing.assert_array_equal(
        instance.mask, rasterize.shape_to_mask("polygon", TRIANGLE, HEIGHT, WIDTH)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: yolo_line(-1, TRIANGLE, 2, 2), "class index must be a non-negative integer"),
        (lambda: yolo_line(True, TRIANGLE, 2, 2), "class index must be a non-negative integer"),
        (lambda: yolo_line(0, TRIANGLE[:2], 2, 2), "a polygon needs at least 3 points, got 2"),
        (lambda: yolo_line(0, TRIANGLE, 0, 2), "image size must be positive"),
        (lambda: data_yaml(["a", "a"]), "names must be non-empty and unique"),
        (lambda: data_yaml([]), "names must be non-empty and unique"),
    ],
)
def test_writers_refuse_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("fmt", "path", "is_source"),
    [
        ("yolo", "labels/train/a.txt", True),
        ("yolo", "train/labels/a.TXT", True),
        ("yolo", "classes.txt", False),
        ("yolo", "labels.txt", False),
        ("yolo", "labels/train/a.json", False),
        ("cvat", "job/annotations.xml", True),
        ("cvat", "job/annotations.json", False),
        ("label-studio", "export/project-1.json", True),
        ("label-studio", "export/project-1.xml", False),
    ],
)
def test_sources_of_the_new_formats(fmt, path, is_source):
    assert convert.is_source(fmt, path) is is_source


def test_the_new_formats_are_registered(tmp_path: Path):
    for fmt in ("cvat", "label-studio", "yolo"):
        args = build_parser().parse_args(
            ["convert", "--format", fmt, "--input", "in", "--output", "out"]
        )
        assert args.format == fmt
        assert get_format(fmt).read.__name__ == f"read_{fmt.replace('-', '_')}"
    write(tmp_path / "data.yaml", "names: [a]\n")
    with pytest.raises(ValueError, match=r"no yolo source files \(labels/\*\*/\*.txt\)"):
        convert.list_sources.fn(str(tmp_path), "yolo")


@pytest.mark.usefixtures("prefect_harness")
def test_convert_masks_flow_on_a_yolo_dataset(tmp_path: Path):
    from flows.convert_masks import ItemCounts, convert_masks

    root = tmp_path / "dataset"
    write(root / "data.yaml", data_yaml(["car", "bus"]))
    write(root / "images/train/a.jpg", image_bytes(HEIGHT, WIDTH, "JPEG"))
    write(root / "labels/train/a.txt", f"{TRIANGLE_LINE}\n1 0.5 0.5 0.25 0.5\n7 0.1 0.1 0.2 0.2\n")
    write(root / "labels/val/b.txt", "0 0.5 0.5 0.1 0.1\n")  # its image is missing
    summary = convert_masks(
        source=str(root), destination=str(tmp_path / "out"), format="yolo", val_fraction=0.0
    )
    assert summary.labels == ("car", "bus") and summary.issues == 2
    assert summary.items == ItemCounts(found=2, converted=1, skipped=1)
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    assert [i["file_name"] for i in document["images"]] == ["images/train/a.jpg"]
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
    np.testing.assert_array_equal(
        masks[1], rasterize.shape_to_mask("rectangle", [(15, 5), (25, 15)], HEIGHT, WIDTH)
    )
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert [(e["file"], e["item"]) for e in report["dropped"]] == [("labels/train/a.txt", "line 3")]
