"""Mask folders (Kaggle DSB / matterport nucleus layout): one binary mask per instance,
classes from sub-folders, overlapping masks, every image kind, every bad input, the flow and
the CLI, and the real nuclei against their manifest."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from tasks.annotations.mask_folders import read_mask_folders, sample_of
from tasks.annotations.records import IssueKind
from tasks.annotations.rle import decode_rle
from tests.support.builders import image_bytes, image_file, png_of, tiff_of, write

HEIGHT, WIDTH = 12, 16


def box(
    top: int,
    left: int,
    bottom: int,
    right: int,
    value: int = 255,
    shape: tuple[int, int] = (HEIGHT, WIDTH),
) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top:bottom, left:right] = value
    return mask


def sample(
    masks: dict[str, bytes],
    image: bytes | None = None,
    folder: str = "s1",
    image_name: str | None = None,
) -> dict[str, bytes]:
    files = {f"{folder}/masks/{name}": data for name, data in masks.items()}
    if image is not None or image_name is not None:
        name = image_name or f"{folder.split('/')[-1]}.png"
        files[f"{folder}/images/{name}"] = (
            image if image is not None else image_bytes(HEIGHT, WIDTH)
        )
    return files


def read(files: dict[str, bytes], folder: str = "s1", **options):
    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    below = sorted(path for path in files if path.startswith(folder + "/"))
    return read_mask_folders(folder, below, fetch, **options)


def full(instance, record) -> np.ndarray:
    return instance.full_mask(record.height, record.width)


def test_each_mask_is_one_instance_of_the_default_class():
    first, second = box(1, 1, 4, 5), box(6, 8, 11, 15, value=1)  # 0/255 and 0/1 masks
    image = image_bytes(HEIGHT, WIDTH)
    result = read(sample({"a.png": png_of(first), "b.png": png_of(second)}, image))
    assert result.items == 1 and result.issues == []
    (record,) = result.images
    assert (record.file_name, record.source, record.height, record.width) == (
        "s1/images/s1.png",
        "s1",
        HEIGHT,
        WIDTH,
    )
    assert record.image_bytes is None  # the original file is copied as it is
    assert [i.label for i in record.instances] == ["object", "object"]
    assert [i.origin for i in record.instances] == ["mask masks/a.png", "mask masks/b.png"]
    for instance, expected in zip(record.instances, (first, second)):
        np.testing.assert_array_equal(full(instance, record), expected > 0)
    assert [i.mask.shape for i in record.instances] == [(3, 4), (5, 7)]  # kept as crops


def test_class_option_and_class_sub_folders():
    files = sample(
        {
            "c.png": png_of(box(0, 0, 2, 2)),
            "cell/a.png": png_of(box(3, 3, 5, 5)),
            "nucleus/b.tif": tiff_of(box(6, 6, 8, 8)),
        },
        image_bytes(HEIGHT, WIDTH),
    )
    assert [i.label for i in read(files).images[0].instances] == ["object", "cell", "nucleus"]
    renamed = read(files, class_name="blob").images[0].instances
    assert [i.label for i in renamed] == ["blob", "cell", "nucleus"]


def test_overlapping_masks_each_keep_their_whole_mask():
    first, second = box(2, 2, 8, 8), box(5, 5, 10, 12)
    result = read(
        sample({"a.png": png_of(first), "b.png": png_of(second)}, image_bytes(HEIGHT, WIDTH))
    )
    assert result.issues == []
    record = result.images[0]
    masks = [full(i, record) for i in record.instances]
    np.testing.assert_array_equal(masks[0], first > 0)
    np.testing.assert_array_equal(masks[1], second > 0)
    assert (masks[0] & masks[1]).sum() == 9  # the shared pixels belong to both


GREY16 = np.random.default_rng(1).integers(0, 4096, size=(HEIGHT, WIDTH), dtype=np.uint16)
RGB = np.random.default_rng(2).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("s1.png", png_of((GREY16 // 16).astype(np.uint8))),
        ("s1.png", png_of(GREY16)),
        ("s1.png", image_file(RGB, "PNG")),
        ("s1.png", image_file(np.dstack([RGB, RGB[..., :1]]), "PNG")),
        ("s1.tif", tiff_of((GREY16 // 16).astype(np.uint8))),
        ("s1.tif", tiff_of(GREY16)),
        ("s1.tiff", tiff_of(RGB, photometric="rgb")),
        ("s1.tif", image_file(GREY16, "TIFF", compression="tiff_lzw")),
        ("s1.jpg", image_bytes(HEIGHT, WIDTH, fmt="JPEG")),
    ],
)
def test_grey_rgb_rgba_8_and_16_bit_png_and_tiff_images(name, image):
    result = read(sample({"a.png": png_of(box(1, 1, 4, 4))}, image, image_name=name))
    assert result.issues == []
    (record,) = result.images
    assert (record.file_name, record.height, record.width) == (f"s1/images/{name}", HEIGHT, WIDTH)
    assert record.image_bytes is None and len(record.instances) == 1


def test_the_image_named_after_the_sample_is_taken_among_several():
    files = sample({"a.png": png_of(box(1, 1, 4, 4))}, image_bytes(HEIGHT, WIDTH))
    files["s1/images/overview.png"] = image_bytes(4, 4)
    assert read(files).images[0].file_name == "s1/images/s1.png"
    del files["s1/images/s1.png"]
    assert read(files).images[0].file_name == "s1/images/overview.png"  # the only one


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.pop("s1/images/s1.png"), "no image in images/ (.png, .tif"),
        (
            lambda f: f.update({"s1/images/notes.txt": b"x"}) or f.pop("s1/images/s1.png"),
            "no image in images/",
        ),
        (
            lambda f: (
                f.update(
                    {
                        "s1/images/a.png": image_bytes(HEIGHT, WIDTH),
                        "s1/images/b.png": image_bytes(HEIGHT, WIDTH),
                    }
                )
                or f.pop("s1/images/s1.png")
            ),
            "2 images in images/ and none named after the sample (s1.*)",
        ),
        (lambda f: f.update({"s1/images/s1.png": b"junk"}), "'s1/images/s1.png' is not a readable"),
        (
            lambda f: f.update({"s1/images/s1.png": tiff_of(np.ones((HEIGHT, WIDTH), np.float32))}),
            "'s1/images/s1.png' has float32 pixels",
        ),
        (
            lambda f: f.update(
                {
                    "s1/images/s1.png": tiff_of(
                        np.zeros((3, HEIGHT, WIDTH), np.uint16), photometric="minisblack"
                    )
                }
            ),
            "a stack of planes",
        ),
        (lambda f: f.pop("s1/masks/a.png"), "no mask in masks/ (*.png, *.tif, *.tiff)"),
    ],
)
def test_bad_sample_is_skipped_with_its_reason(change, reason):
    files = sample({"a.png": png_of(box(1, 1, 4, 4))}, image_bytes(HEIGHT, WIDTH))
    change(files)
    result = read(files)
    assert result.images == [] and result.items == 1
    assert [(i.kind, i.file) for i in result.issues] == [(IssueKind.SKIPPED, "s1")]
    assert reason in result.issues[0].reason


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        (
            "bad.png",
            b"junk",
            "mask is not a readable image (not an image file Pillow or tifffile knows)",
        ),
        (
            "bad.png",
            png_of(box(1, 1, 3, 3, shape=(HEIGHT, WIDTH + 1))),
            f"mask is {WIDTH + 1}x{HEIGHT} but the image is {WIDTH}x{HEIGHT}",
        ),
        ("bad.png", png_of(np.zeros((HEIGHT, WIDTH), np.uint8)), "empty mask (no pixel set)"),
        ("bad.jpg", image_bytes(HEIGHT, WIDTH, fmt="JPEG"), "not a PNG or TIFF mask"),
        ("cls/deeper/bad.png", png_of(box(1, 1, 3, 3)), "nested below masks/<class>/; not read"),
    ],
)
def test_bad_mask_is_dropped_and_the_rest_converts(name, data, reason):
    files = sample({"a.png": png_of(box(1, 1, 4, 4)), name: data}, image_bytes(HEIGHT, WIDTH))
    result = read(files)
    assert [i.origin for i in result.images[0].instances] == ["mask masks/a.png"]
    assert [(i.kind, i.file, i.item, i.reason) for i in result.issues] == [
        (IssueKind.DROPPED, "s1", f"mask masks/{name}", reason)
    ]


def test_hidden_files_are_passed_over():
    files = sample(
        {"a.png": png_of(box(1, 1, 4, 4)), ".DS_Store": b"\x00"}, image_bytes(HEIGHT, WIDTH)
    )
    files["s1/images/._s1.png"] = b"resource fork"
    result = read(files)
    assert result.issues == [] and len(result.images[0].instances) == 1
    assert sample_of("s1/masks/.DS_Store") is None


def test_an_exif_turned_image_is_written_upright_with_its_masks_turned():
    image = image_bytes(HEIGHT, WIDTH, fmt="JPEG", exif_orientation=6)  # stored 12x16
    mask = box(0, 0, 3, 5)
    result = read(sample({"a.png": png_of(mask)}, image, image_name="s1.jpg"))
    record = result.images[0]
    assert (record.height, record.width) == (WIDTH, HEIGHT) and record.image_bytes is not None
    with PIL.Image.open(io.BytesIO(record.image_bytes)) as upright:
        assert upright.size == (HEIGHT, WIDTH)
    turned = PIL.ImageOps.exif_transpose(_with_orientation(mask, 6))
    np.testing.assert_array_equal(full(record.instances[0], record), np.asarray(turned) > 0)


def _with_orientation(array: np.ndarray, orientation: int) -> PIL.Image.Image:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG", exif=exif.tobytes())
    return PIL.Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("s1/images/s1.png", "s1"),
        ("stage1_train/abc/masks/m1.png", "stage1_train/abc"),
        ("a/b/masks/cell/m1.png", "a/b"),
        ("a/masks/images/m1.png", "a"),  # a class named "images"
        ("images/x.png", None),  # no sample folder above
        ("s1/notes.txt", None),
        ("s1/masks/a/b/c.png", None),  # too deep to say; its sample reports it
    ],
)
def test_which_sample_a_file_belongs_to(path, folder):
    assert sample_of(path) == folder


def write_samples(root: Path) -> None:
    """Two good samples (one with overlapping and class masks) and one without an image."""
    write(root / "a/images/a.png", png_of(GREY16))
    write(root / "a/masks/m1.png", png_of(box(1, 1, 6, 6)))
    write(root / "a/masks/m2.png", png_of(box(4, 4, 9, 9)))
    write(root / "b/images/b.tif", tiff_of(GREY16))
    write(root / "b/masks/cell/m1.tif", tiff_of(box(0, 0, 3, 3)))
    write(root / "b/masks/empty.png", png_of(np.zeros((HEIGHT, WIDTH), np.uint8)))
    write(root / "c/masks/m1.png", png_of(box(0, 0, 3, 3)))


@pytest.mark.usefixtures("prefect_harness")
def test_flow_writes_the_canonical_dataset_with_the_original_images(tmp_path: Path):
    from flows.convert_masks import ItemCounts, StrictModeError, convert_masks
    from mrcnn.dataset import CocoDataset

    write_samples(tmp_path / "in")
    summary = convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format="mask-folders",
        val_fraction=0.0,
        options={"class_name": "nucleus"},
    )
    assert summary.items == ItemCounts(found=3, converted=2, skipped=1)
    assert summary.labels == ("cell", "nucleus") and summary.issues == 2
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert report["skipped"] == [
        {"file": "c", "reason": "no image in images/ (.png, .tif, .tiff, .jpg, .jpeg, .bmp)"}
    ]
    assert report["dropped"] == [
        {"file": "b", "item": "mask masks/empty.png", "reason": "empty mask (no pixel set)"}
    ]
    for name in ("a/images/a.png", "b/images/b.tif"):
        copied = tmp_path / "out/images" / name
        assert copied.read_bytes() == (tmp_path / "in" / name).read_bytes()
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    masks = [decode_rle(a["segmentation"]) for a in document["annotations"]]
    np.testing.assert_array_equal(masks[0], box(1, 1, 6, 6) > 0)
    np.testing.assert_array_equal(masks[1], box(4, 4, 9, 9) > 0)
    assert [a["area"] for a in document["annotations"]] == [25, 25, 9]
    dataset = CocoDataset()
    dataset.load_coco(str(tmp_path / "out"), "train")
    dataset.prepare()
    loaded, class_ids = dataset.load_mask(0)
    assert loaded.shape == (HEIGHT, WIDTH, 2) and list(class_ids) == [2, 2]  # nucleus

    with pytest.raises(StrictModeError, match="b: mask masks/empty.png: empty mask"):
        convert_masks(
            source=str(tmp_path / "in"),
            destination=str(tmp_path / "strict"),
            format="mask-folders",
            strict=True,
        )
    assert not (tmp_path / "strict").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_s3_samples_convert_to_the_same_bytes_as_local(s3_env, s3_prefix: str, tmp_path: Path):
    from flows.convert_masks import ItemCounts, convert_masks
    from tasks import storage

    write_samples(tmp_path / "in")
    for path in sorted((tmp_path / "in").rglob("*")):
        if path.is_file():
            relative = path.relative_to(tmp_path / "in").as_posix()
            storage.copy_file(str(path), storage.join(s3_prefix, "in", relative))
    remote = convert_masks(
        source=storage.join(s3_prefix, "in"),
        destination=storage.join(s3_prefix, "out"),
        format="mask-folders",
    )
    local = convert_masks(
        source=str(tmp_path / "in"), destination=str(tmp_path / "out"), format="mask-folders"
    )
    assert remote.items == local.items == ItemCounts(found=3, converted=2, skipped=1)
    for name in ("annotations/train.json", "annotations/val.json", "images/b/images/b.tif"):
        remote_bytes = storage.read_bytes(storage.join(s3_prefix, "out", name))
        assert remote_bytes == (tmp_path / "out" / name).read_bytes(), name


@pytest.mark.usefixtures("prefect_harness")
def test_cli_converts_mask_folders_with_a_class(tmp_path: Path, capsys: pytest.CaptureFixture):
    from mrcnn_pipeline.cli import main

    write_samples(tmp_path / "in")
    code = main(
        [
            "convert",
            "--format",
            "mask-folders",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--class",
            "nucleus",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == ["cell", "nucleus"]
    assert summary["items"] == {"found": 3, "converted": 2, "skipped": 1}


# The first image of each size in the manifest, and one whose masks overlap by a pixel.
OVERLAPPING = "1609b1b8480ee52652a644403b3f7d5511410a016750aa3b9a4c8ddb3e893e8e"


@pytest.mark.usefixtures("prefect_harness")
def test_real_nuclei_cover_what_their_manifest_says(shared_data: Path, tmp_path: Path):
    from flows.convert_masks import ItemCounts, convert_masks

    root = shared_data / "nuclei_dsb2018"
    with (root / "manifest.csv").open() as file:
        manifest = {row["image_id"]: row for row in csv.DictReader(file)}
    chosen = {OVERLAPPING}
    sizes = set()
    for image_id, row in manifest.items():
        if (row["height"], row["width"]) not in sizes:
            sizes.add((row["height"], row["width"]))
            chosen.add(image_id)
    for image_id in chosen:  # a few samples, copied to a temporary input folder
        shutil.copytree(root / "stage1_train" / image_id, tmp_path / "in" / image_id)
    summary = convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format="mask-folders",
        val_fraction=0.0,
    )
    assert summary.items == ItemCounts(found=len(chosen), converted=len(chosen), skipped=0)
    assert summary.issues == 0 and summary.labels == ("object",)
    document = json.loads((tmp_path / "out/annotations/train.json").read_bytes())
    overlaps = 0
    for image in document["images"]:
        row = manifest[image["file_name"].split("/")[0]]
        assert (image["height"], image["width"]) == (int(row["height"]), int(row["width"]))
        masks = np.stack(
            [
                decode_rle(a["segmentation"])
                for a in document["annotations"]
                if a["image_id"] == image["id"]
            ]
        )
        assert masks.shape[0] == int(row["n_instances"])
        assert round(float(masks.any(axis=0).mean()), 5) == float(row["foreground_fraction"])
        overlaps += int((masks.sum(axis=0) > 1).any())
    assert overlaps >= 1  # overlapping masks converted, each whole
