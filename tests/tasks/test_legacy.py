"""The `legacy` format (labelme_json_to_dataset folders of the legacy TF 1.15 repository): 8- and
16-bit label images, info.yaml, every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.annotations.legacy import read_legacy
from tasks.annotations.records import IssueKind
from tests.support.builders import image_bytes, png_of

INFO = b"label_names:\n- _background_\n- car1\n- car2\n- pothole1\n"


def read(files: dict[str, bytes], name: str = "cv2_mask/x.png"):
    def fetch(relative: str) -> bytes:
        if relative not in files:
            raise FileNotFoundError(relative)
        return files[relative]

    return read_legacy(name, files[name], fetch)


def label_image(height: int = 6, width: int = 8, dtype=np.uint8) -> np.ndarray:
    labels = np.zeros((height, width), dtype)
    labels[0:2, 0:3] = 1
    labels[3:5, 4:8] = 2
    labels[5, 0] = 3
    return labels


def legacy_files(
    labels: np.ndarray, info: bytes = INFO, image: bytes | None = None, folder: str = ""
) -> dict[str, bytes]:
    h, w = labels.shape
    return {
        f"{folder}cv2_mask/x.png": png_of(labels),
        f"{folder}labelme_json/x_json/info.yaml": info,
        f"{folder}pic/x.jpg": image if image is not None else image_bytes(h, w, fmt="JPEG"),
    }


def test_each_value_is_one_instance_named_by_label_names():
    labels = label_image()
    result = read(legacy_files(labels))
    assert result.issues == []
    (record,) = result.images
    assert (record.file_name, record.height, record.width) == ("pic/x.jpg", 6, 8)
    assert [i.label for i in record.instances] == ["car1", "car2", "pothole1"]
    for value, instance in enumerate(record.instances, start=1):
        np.testing.assert_array_equal(instance.mask, labels == value)


def test_dataset_folder_may_sit_below_the_root():
    result = read(legacy_files(label_image(), folder="2021/"), "2021/cv2_mask/x.png")
    assert result.images[0].file_name == "2021/pic/x.jpg"


def test_16_bit_label_image_with_instances_list():
    labels = np.zeros((20, 20), np.uint16)
    labels.flat[:300] = np.arange(1, 301)  # more than 255 objects
    info = (
        "label_names: [_background_, car]\ninstances:\n"
        + "".join(f"- {{id: {k}, label: car, raw_label: car{k}}}\n" for k in range(1, 301))
    ).encode()
    result = read(legacy_files(labels, info, image_bytes(20, 20, fmt="PNG")))
    assert result.issues == []
    instances = result.images[0].instances
    assert len(instances) == 300 and {i.label for i in instances} == {"car"}
    assert all(i.mask.sum() == 1 for i in instances) and instances[299].mask.flat[299]


def test_png_image_is_found_when_there_is_no_jpg():
    files = legacy_files(label_image())
    files["pic/x.png"] = image_bytes(6, 8)
    del files["pic/x.jpg"]
    assert read(files).images[0].file_name == "pic/x.png"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.pop("labelme_json/x_json/info.yaml"), "missing labelme_json/x_json/info.yaml"),
        (
            lambda f: f.update({"labelme_json/x_json/info.yaml": b"label_names: [a\n"}),
            "malformed YAML",
        ),
        (
            lambda f: f.update({"labelme_json/x_json/info.yaml": b"names: []\n"}),
            "has no label_names list",
        ),
        (lambda f: f.pop("pic/x.jpg"), "image pic/x.jpg (or .png, .bmp) not found"),
        (lambda f: f.update({"pic/x.jpg": b"not an image"}), "'pic/x.jpg' is not a readable image"),
        (
            lambda f: f.update({"pic/x.jpg": image_bytes(7, 8)}),
            "label image is 8x6 but image 'pic/x.jpg' is 8x7",
        ),
        (lambda f: f.update({"cv2_mask/x.png": b"junk"}), "label image is not a readable image"),
        (
            lambda f: f.update({"cv2_mask/x.png": image_bytes(6, 8)}),
            "label image must be one channel",
        ),
    ],
)
def test_bad_item_is_skipped_with_its_reason(change, reason):
    files = legacy_files(label_image())
    change(files)
    result = read(files)
    assert result.images == [] and [i.kind for i in result.issues] == [IssueKind.SKIPPED]
    assert reason in result.issues[0].reason


def test_value_without_label_name_is_dropped():
    result = read(legacy_files(label_image(), b"label_names: [_background_, car1, car2]\n"))
    assert [i.label for i in result.images[0].instances] == ["car1", "car2"]
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.DROPPED, "value 3")]


def test_listed_instance_without_pixels_is_reported():
    info = (
        b"label_names: [_background_, car]\ninstances: [{id: 1, label: car}, {id: 9, label: car}]\n"
    )
    labels = np.zeros((6, 8), np.uint8)
    labels[1, 1] = 1
    result = read(legacy_files(labels, info))
    assert len(result.images[0].instances) == 1
    assert [(i.kind, i.item) for i in result.issues] == [(IssueKind.DROPPED, "instance 9")]
