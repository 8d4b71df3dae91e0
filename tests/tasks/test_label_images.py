"""Instance label images (Cellpose, StarDist, a folder per sample): pairing, 8/16/32-bit
labels, classes from a class image, every bad input, and the flow."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from tasks.annotations.label_images import is_label_image, partner_stems, read_label_images
from tasks.annotations.records import IssueKind
from tasks.annotations.rle import decode_rle
from tests.support.builders import image_bytes, image_file, png_of, tiff_of, write

HEIGHT, WIDTH = 10, 14
GREY16 = np.random.default_rng(3).integers(0, 4096, size=(HEIGHT, WIDTH), dtype=np.uint16)


def labels_of(dtype=np.uint16) -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), dtype)
    labels[1:4, 1:5] = 1
    labels[5:9, 6:12] = 7
    labels[9, 0] = 3
    return labels


def read(files: dict[str, bytes], name: str, **options):
    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_label_images(name, files[name], fetch, **options)


def masks_of(result) -> list[np.ndarray]:
    (record,) = result.images
    return [i.full_mask(record.height, record.width) for i in record.instances]


@pytest.mark.parametrize(
    ("files", "name", "image"),
    [
        ({"x.tif": tiff_of(GREY16), "x_masks.png": png_of(labels_of())}, "x_masks.png", "x.tif"),
        (
            {"d/x.png": png_of(GREY16), "d/x_cp_masks.tif": tiff_of(labels_of(np.uint32))},
            "d/x_cp_masks.tif",
            "d/x.png",
        ),
        (
            {"train/images/x.tif": tiff_of(GREY16), "train/masks/x.tif": tiff_of(labels_of())},
            "train/masks/x.tif",
            "train/images/x.tif",
        ),
        (
            {"images/x.png": png_of(GREY16), "masks/x.tif": tiff_of(labels_of(np.int32))},
            "masks/x.tif",
            "images/x.png",
        ),
        (
            {"s1/image.tiff": tiff_of(GREY16), "s1/labels.png": png_of(labels_of(np.uint8))},
            "s1/labels.png",
            "s1/image.tiff",
        ),
    ],
)
def test_each_layout_pairs_its_image_and_each_value_is_one_instance(files, name, image):
    result = read(files, name)
    assert result.issues == [] and result.items == 1
    (record,) = result.images
    assert (record.file_name, record.source, record.height, record.width) == (
        image,
        name,
        HEIGHT,
        WIDTH,
    )
    assert record.image_bytes is None  # the image is copied as it is
    assert [i.label for i in record.instances] == ["object"] * 3
    assert [i.origin for i in record.instances] == [
        "value 1 (object)",
        "value 3 (object)",
        "value 7 (object)",
    ]
    for mask, value in zip(masks_of(result), (1, 3, 7)):
        np.testing.assert_array_equal(mask, labels_of() == value)


def test_more_than_65535_instances_in_a_32_bit_label_image():
    labels = np.arange(1, 300 * 300 + 1, dtype=np.uint32).reshape(300, 300)
    files = {
        "x.png": image_file(np.zeros((300, 300), np.uint8), "PNG"),
        "x_masks.tif": tiff_of(labels),
    }
    instances = read(files, "x_masks.tif").images[0].instances
    assert len(instances) == 90_000 and instances[-1].origin == "value 90000 (object)"
    assert all(i.mask.shape == (1, 1) for i in instances[:5])


def test_class_option_names_every_instance():
    files = {"x.tif": tiff_of(GREY16), "x_masks.png": png_of(labels_of())}
    assert {i.label for i in read(files, "x_masks.png", class_name="cell").images[0].instances} == {
        "cell"
    }


@pytest.mark.parametrize(
    ("files", "name"),
    [
        (
            {"x.tif": tiff_of(GREY16), "x_masks.png": None, "x_classes.png": "classes"},
            "x_masks.png",
        ),
        (
            {"images/x.tif": tiff_of(GREY16), "masks/x.tif": None, "classes/x.tif": "classes"},
            "masks/x.tif",
        ),
        (
            {"s/image.png": png_of(GREY16), "s/labels.png": None, "s/classes.tif": "classes"},
            "s/labels.png",
        ),
    ],
)
def test_classes_are_the_majority_of_each_instances_pixels(files, name):
    classes = np.zeros((HEIGHT, WIDTH), np.uint8)
    classes[1:4, 1:5] = 2
    classes[1, 1:3] = 5  # a minority of instance 1
    classes[5:7, 6:12] = 4  # instance 7: 12 pixels of 4, 12 of 9: the smaller wins the tie
    classes[7:9, 6:12] = 9
    # instance 3 (one pixel at [9, 0]) has no class
    for path, data in list(files.items()):
        if data is None:
            files[path] = png_of(labels_of()) if path.endswith(".png") else tiff_of(labels_of())
        elif data == "classes":
            files[path] = png_of(classes) if path.endswith(".png") else tiff_of(classes)
    result = read(files, name)
    assert [(i.label, i.origin) for i in result.images[0].instances] == [
        ("2", "value 1 (2)"),
        ("4", "value 7 (4)"),
    ]
    assert [(i.kind, i.item, i.reason) for i in result.issues] == [
        (IssueKind.DROPPED, "value 3", "no pixel of it has a class in the class image")
    ]


def good_files() -> dict[str, bytes]:
    return {"x.tif": tiff_of(GREY16), "x_masks.png": png_of(labels_of())}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.update({"x_masks.png": b"junk"}), "label image is not a readable image"),
        (
            lambda f: f.update(
                {"x_masks.png": image_file(np.zeros((HEIGHT, WIDTH, 3), np.uint8), "PNG")}
            ),
            "label image must be one channel of integers",
        ),
        (
            lambda f: f.update({"x_masks.png": tiff_of(np.ones((HEIGHT, WIDTH), np.float32))}),
            "label image must be one channel of integers, got float32",
        ),
        (lambda f: f.pop("x.tif"), "image x.* not found (tried .png .tif .tiff"),
        (lambda f: f.update({"x.tif": b"II*\x00broken"}), "'x.tif' is not a readable image"),
        (
            lambda f: f.update({"x.tif": tiff_of(GREY16[:, :-1])}),
            f"label image is {WIDTH}x{HEIGHT} but image 'x.tif' is {WIDTH - 1}x{HEIGHT}",
        ),
        (
            lambda f: f.update({"x_classes.png": b"junk"}),
            "class image 'x_classes.png' is not a readable image",
        ),
        (
            lambda f: f.update({"x_classes.png": png_of(np.ones((HEIGHT + 1, WIDTH), np.uint8))}),
            f"class image 'x_classes.png' is {WIDTH}x{HEIGHT + 1} but the label image is "
            f"{WIDTH}x{HEIGHT}",
        ),
    ],
)
def test_bad_item_is_skipped_with_its_reason(change, reason):
    files = good_files()
    change(files)
    result = read(files, "x_masks.png")
    assert result.images == [] and [i.kind for i in result.issues] == [IssueKind.SKIPPED]
    assert reason in result.issues[0].reason and result.issues[0].file == "x_masks.png"


def test_a_label_image_without_objects_is_an_image_without_instances():
    files = {"x.tif": tiff_of(GREY16), "x_masks.png": png_of(np.zeros((HEIGHT, WIDTH), np.uint8))}
    result = read(files, "x_masks.png")
    assert result.issues == [] and result.images[0].instances == ()


def test_an_exif_turned_image_is_written_upright_with_its_labels_turned():
    files = {
        "x.jpg": image_bytes(HEIGHT, WIDTH, fmt="JPEG", exif_orientation=8),
        "x_masks.png": png_of(labels_of(np.uint8)),
    }
    record = read(files, "x_masks.png").images[0]
    assert (record.height, record.width) == (WIDTH, HEIGHT) and record.image_bytes is not None
    exif = PIL.Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    PIL.Image.fromarray(labels_of(np.uint8)).save(buffer, format="PNG", exif=exif.tobytes())
    turned = np.asarray(PIL.ImageOps.exif_transpose(PIL.Image.open(buffer)))
    first = record.instances[0]
    np.testing.assert_array_equal(first.full_mask(record.height, record.width), turned == 1)


@pytest.mark.parametrize(
    ("path", "is_source", "image_stem"),
    [
        ("x_masks.png", True, "x"),
        ("a/x_masks.TIF", True, "a/x"),
        ("a/x_cp_masks.png", True, "a/x"),
        ("a/masks/x.tiff", True, "a/images/x"),
        ("masks/x_masks.png", True, "images/x_masks"),  # the folder rule comes first
        ("s/labels.png", True, "s/image"),
        ("_masks.png", False, None),
        ("x_masks.jpg", False, None),  # lossy: never a label image
        ("x_classes.png", False, None),
        ("x_flows.tif", False, None),
        ("s/image.png", False, None),
        ("classes/x.png", False, None),
    ],
)
def test_which_files_are_label_images(path, is_source, image_stem):
    assert is_label_image(path) is is_source
    if image_stem is not None:
        assert partner_stems(path)[0] == image_stem


@pytest.mark.usefixtures("prefect_harness")
def test_flow_converts_label_images_with_classes_named_by_aliases(tmp_path: Path):
    from flows.convert_masks import ItemCounts, convert_masks

    root = tmp_path / "in"
    classes = np.where(labels_of() == 7, 2, np.where(labels_of() > 0, 1, 0)).astype(np.uint8)
    write(root / "a.tif", tiff_of(GREY16))
    write(root / "a_masks.tif", tiff_of(labels_of()))
    write(root / "a_classes.png", png_of(classes))
    write(root / "a_cp_masks.png", png_of(labels_of()))  # a second label image of a.tif
    write(root / "b_masks.png", png_of(labels_of()))  # its image is missing
    summary = convert_masks(
        source=str(root),
        destination=str(tmp_path / "out"),
        format="label-images",
        val_fraction=0.0,
        aliases={"1": "nucleus", "2": "cell"},
    )
    assert summary.items == ItemCounts(found=3, converted=1, skipped=2)
    assert summary.labels == ("cell", "nucleus")
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert [(e["file"], e["reason"].split(" (")[0]) for e in report["skipped"]] == [
        ("a_masks.tif", "duplicate image name"),
        ("b_masks.png", "image b.* not found"),
    ]
    assert (tmp_path / "out/images/a.tif").read_bytes() == (root / "a.tif").read_bytes()
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert [names[a["category_id"]] for a in document["annotations"]] == [
        "nucleus",
        "nucleus",
        "cell",
    ]
    for annotation, value in zip(document["annotations"], (1, 3, 7)):
        np.testing.assert_array_equal(decode_rle(annotation["segmentation"]), labels_of() == value)
