"""Tests for mrcnn.dataset: the Dataset registry, image decoding and the COCO reader."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mrcnn.dataset import CocoDataset, Dataset


def _two_source_dataset() -> Dataset:
    dataset = Dataset()
    dataset.add_class("a", 1, "cat, kitty")
    dataset.add_class("b", 7, "dog")
    dataset.add_class("a", 2, "bird")
    dataset.add_class("a", 1, "ignored duplicate")
    dataset.add_image("b", image_id="x9", path="/data/x9.png", note="kept")
    dataset.add_image("a", image_id=3, path="/data/3.png")
    dataset.prepare()
    return dataset


def test_prepare_numbers_classes_and_images_and_builds_maps() -> None:
    dataset = _two_source_dataset()
    assert dataset.num_classes == 4
    assert dataset.class_names == ["BG", "cat", "dog", "bird"]
    np.testing.assert_array_equal(dataset.class_ids, [0, 1, 2, 3])
    assert dataset.num_images == 2
    np.testing.assert_array_equal(dataset.image_ids, [0, 1])
    assert dataset.class_from_source_map == {".0": 0, "a.1": 1, "b.7": 2, "a.2": 3}
    assert dataset.image_from_source_map == {"b.x9": 0, "a.3": 1}
    assert dataset.sources == ["", "a", "b"]
    assert dataset.source_class_ids == {"": [0], "a": [0, 1, 3], "b": [0, 2]}
    assert dataset.map_source_class_id("b.7") == 2
    assert dataset.get_source_class_id(3, "a") == 2
    assert dataset.image_info[0]["note"] == "kept"
    assert dataset.source_image_link(1) == "/data/3.png"
    assert dataset.image_reference(0) == ""


def test_registry_errors() -> None:
    dataset = Dataset()
    with pytest.raises(ValueError, match="dot"):
        dataset.add_class("a.b", 1, "x")
    dataset.add_class("a", 1, "x")
    with pytest.raises(RuntimeError, match="prepare"):
        dataset.map_source_class_id("a.1")
    dataset.prepare()
    with pytest.raises(KeyError, match="a.5"):
        dataset.map_source_class_id("a.5")
    with pytest.raises(ValueError, match="source 'a', not 'b'"):
        dataset.get_source_class_id(1, "b")


def _load(path: Path) -> np.ndarray:
    dataset = Dataset()
    dataset.add_image("files", 0, path)
    dataset.prepare()
    return dataset.load_image(0)


def test_load_image_converts_grayscale_palette_and_rgba(tmp_path: Path) -> None:
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    image = _load(tmp_path / "gray.png")
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=2))

    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(_load(tmp_path / "rgba.png"), rgba[..., :3])

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 250, 5, 9] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(_load(tmp_path / "palette.png"), [[[0, 0, 0], [250, 5, 9]]])


def test_load_image_scales_16_bit_to_8_bit(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 10, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = _load(tmp_path / "deep.png")
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], [[0, 10, 255]])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    # Stored 20 high x 40 wide, red left half; orientation 6 = rotate 90 degrees clockwise.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = [255, 0, 0]
    stored[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = _load(tmp_path / "rotated.jpg")
    assert image.shape == (40, 20, 3)
    assert image[5, 10, 0] > 200 and image[5, 10, 2] < 50  # the red half is now on top
    assert image[35, 10, 2] > 200 and image[35, 10, 0] < 50


def test_load_image_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        _load(missing)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="junk.png"):
        _load(tmp_path / "junk.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ValueError, match="cut.png"):
        _load(tmp_path / "cut.png")


def test_base_load_mask_is_empty_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    dataset = Dataset()
    dataset.add_image("files", 0, None, height=5, width=7)
    dataset.prepare()
    with caplog.at_level(logging.WARNING):
        masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (5, 7, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "load_mask" in caplog.text


# A 6 x 8 layout: a cat polygon on x 2..5, y 1..3; a dog as compressed RLE on y 4..5, x 0..2;
# a crowd of cats as uncompressed RLE on column x = 7; an annotation outside the image.
H, W = 6, 8


def _dog_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[4:6, 0:3] = 1
    return mask


def _coco_json() -> dict:
    dog_rle = mask_utils.encode(np.asfortranarray(_dog_mask()))
    dog_rle["counts"] = dog_rle["counts"].decode("ascii")  # as stored in a JSON file
    annotations = [
        {
            "id": 1,
            "image_id": 10,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]],
        },
        {"id": 2, "image_id": 10, "category_id": 2, "iscrowd": 0, "segmentation": dog_rle},
        {
            "id": 3,
            "image_id": 10,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [H, W], "counts": [7 * H, H]},
        },
        {
            "id": 4,
            "image_id": 10,
            "category_id": 2,
            "iscrowd": 0,
            "segmentation": [[20, 20, 22, 20, 22, 22]],
        },
    ]
    return {
        # Categories out of id order: classes must follow the ids.
        "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}],
        "images": [
            {"id": 10, "file_name": "a.png", "height": H, "width": W},
            {"id": 11, "file_name": "b.png", "height": H, "width": W},
        ],
        "annotations": annotations,
    }


def _write_layout(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (W, H), (9, 8, 7)).save(root / "images" / name)
    (root / "annotations" / "val.json").write_text(json.dumps(_coco_json()))


def test_coco_dataset_reads_polygons_rle_and_crowds(tmp_path: Path) -> None:
    _write_layout(tmp_path)
    dataset = CocoDataset()
    dataset.load_coco(tmp_path, "val", class_names=["cat", "dog"])
    dataset.prepare()
    assert dataset.class_names == ["BG", "cat", "dog"]
    assert dataset.image_reference(0) == "a.png"
    assert dataset.load_image(1).shape == (H, W, 3)

    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 2, -1])  # empty annotation 4 dropped
    cat = np.zeros((H, W), dtype=bool)
    cat[1:4, 2:6] = True
    crowd = np.zeros((H, W), dtype=bool)
    crowd[:, 7] = True
    np.testing.assert_array_equal(masks[..., 0], cat)
    np.testing.assert_array_equal(masks[..., 1], _dog_mask().astype(bool))
    np.testing.assert_array_equal(masks[..., 2], crowd)

    empty_masks, empty_ids = dataset.load_mask(1)
    assert empty_masks.shape == (H, W, 0) and empty_ids.dtype == np.int32


def test_coco_dataset_from_dict_matches_the_file_reader(tmp_path: Path) -> None:
    _write_layout(tmp_path)
    dataset = CocoDataset.from_coco_dict(_coco_json(), tmp_path / "images")
    assert dataset.num_images == 2
    assert dataset.source_image_link(0) == tmp_path / "images" / "a.png"
    np.testing.assert_array_equal(dataset.load_mask(0)[1], [1, 2, -1])


def test_coco_dataset_rejects_bad_input(tmp_path: Path) -> None:
    _write_layout(tmp_path)
    with pytest.raises(ValueError, match=r"\['dog', 'cat'\].*\['cat', 'dog'\]"):
        CocoDataset().load_coco(tmp_path, "val", class_names=["dog", "cat"])
    with pytest.raises(FileNotFoundError, match="train.json"):
        CocoDataset().load_coco(tmp_path, "train")
    bad = _coco_json()
    bad["annotations"][0]["category_id"] = 5
    with pytest.raises(ValueError, match="Annotation 1 has unknown category 5"):
        CocoDataset.from_coco_dict(bad, tmp_path)
    with pytest.raises(ValueError, match="'images'"):
        CocoDataset.from_coco_dict({"annotations": [], "categories": []}, tmp_path)


def test_coco_masks_of_a_dense_image_are_the_annotated_ones(tmp_path: Path) -> None:
    # 240 instances as compressed RLE, a few as polygons, one empty: load_mask gives back each
    # annotated mask bit for bit, in annotation order, empty ones dropped.
    rng = np.random.default_rng(3)
    height, width, count = 120, 150, 240
    truth = np.zeros((height, width, count), dtype=bool)
    annotations = []
    for i in range(count):
        y, x = rng.integers(0, height - 1), rng.integers(0, width - 1)
        truth[y : y + rng.integers(1, 12), x : x + rng.integers(1, 12), i] = rng.random() < 0.97
        rle = mask_utils.encode(np.asfortranarray(truth[:, :, i].astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle}
        )
    truth[:, :, 0] = False
    truth[2:5, 3:9, 0] = True
    annotations[0]["segmentation"] = [[3, 2, 9, 2, 9, 5, 3, 5]]  # the same rectangle as a polygon
    coco = {
        "categories": [{"id": 1, "name": "nucleus"}],
        "annotations": annotations,
        "images": [{"id": 1, "file_name": "a.png", "height": height, "width": width}],
    }
    dataset = CocoDataset.from_coco_dict(coco, tmp_path)

    masks, class_ids = dataset.load_mask(0)
    kept = truth.any(axis=(0, 1))
    assert not kept.all() and kept.sum() >= 200
    assert masks.dtype == bool and masks.shape == (height, width, kept.sum())
    np.testing.assert_array_equal(masks, truth[:, :, kept])
    np.testing.assert_array_equal(class_ids, np.ones(kept.sum(), np.int32))

    annotations[5]["segmentation"]["size"] = [height, width + 1]
    message = f"Annotation 6 mask is {height}x{width + 1}, image is {height}x{width}"
    with pytest.raises(ValueError, match=message):
        CocoDataset.from_coco_dict(coco, tmp_path).load_mask(0)
