"""Labels, aliases, the split, and merging per-source results into the canonical dataset."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from tasks.annotations import canonical
from tasks.annotations.labels import LabelMap, parse_labels
from tasks.annotations.records import ImageRecord, Instance, Issue, IssueKind, ReadResult


def square(top: int, left: int, size: int, shape=(10, 10)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def summary(
    source: str, *records: ImageRecord, label_map=None, issues=(), items=None, **extra
) -> dict:
    result = ReadResult(
        items=items if items is not None else len(records),
        images=list(records),
        issues=list(issues),
        **extra,
    )
    return canonical.summarize(
        source, result, label_map or LabelMap(), {r.file_name: f"in/{r.file_name}" for r in records}
    )


def test_labels_file_like_labelmes():
    assert parse_labels("__ignore__\n_background_\ncar\n\n person \n") == ["car", "person"]
    with pytest.raises(ValueError, match="'car' on line 3 is listed twice"):
        parse_labels("car\nbus\ncar\n")
    with pytest.raises(ValueError, match="lists no class"):
        parse_labels("__ignore__\n\n")


def test_aliases_explicit_and_by_prefix():
    listed = LabelMap(("car", "carpet", "pothole"), {"auto": "car"}, prefix=True)
    assert [listed.resolve(x) for x in ("auto", "car", "car12", "carpet3", "pothole1")] == [
        "car",
        "car",
        "car",
        "carpet",
        "pothole",
    ]
    with pytest.raises(ValueError, match="unknown label 'bus'"):
        listed.resolve("bus")
    assert LabelMap(prefix=True).resolve("RoadLane_2") == "RoadLane"
    assert LabelMap(prefix=True).resolve("42") == "42"
    assert LabelMap().resolve("car1") == "car1"
    with pytest.raises(ValueError, match="not in the labels list: \\['bus'\\]"):
        LabelMap(("car",), {"car1": "bus"})


def test_categories_keep_the_list_or_declared_then_sorted():
    assert LabelMap(("b", "__ignore__", "a")).categories({"a"}) == ["b", "a"]
    assert LabelMap().categories({"dog", "ant", "cat"}, ["cat", "bee"]) == [
        "cat",
        "bee",
        "ant",
        "dog",
    ]


def test_split_is_a_stable_hash_of_the_name():
    names = [f"img/{k:04d}.jpg" for k in range(2000)]
    val = [n for n in names if canonical.split_of(n, 0.2) == "val"]
    assert 0.17 < len(val) / len(names) < 0.23
    assert val == [n for n in names if canonical.split_of(n, 0.2) == "val"]
    assert {canonical.split_of(n, 0.0) for n in names} == {"train"}
    assert {canonical.split_of(n, 1.0) for n in names} == {"val"}


def test_rle_round_trip():
    mask = square(2, 3, 4, (7, 9))
    rle = canonical.encode_rle(mask)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_summary_resolves_labels_and_drops_unknown():
    record = ImageRecord(
        "a.png",
        "a.json",
        10,
        10,
        (
            Instance("car1", square(0, 0, 2), origin="shape 0"),
            Instance("tree", square(5, 5, 3), origin="shape 1"),
        ),
    )
    result = summary("a.json", record, label_map=LabelMap(("car",), prefix=True))
    (image,) = result["images"]
    assert [(i["label"], i["area"], i["bbox"]) for i in image["instances"]] == [
        ("car", 4, [0, 0, 2, 2])
    ]
    assert result["issues"] == [
        {
            "kind": "dropped",
            "file": "a.json",
            "item": "shape 1",
            "reason": "unknown label 'tree' (not in the labels list)",
        }
    ]


def test_build_merges_sorts_dedupes_and_counts():
    first = summary(
        "a.json",
        ImageRecord("z.png", "a.json", 10, 10, (Instance("dog", square(1, 1, 3)),)),
        items=2,
        issues=[
            Issue(IssueKind.SKIPPED, "a.json", "broken", "image 1"),
            Issue(IssueKind.CLIPPED, "a.json", "outside", "image 0 region 0"),
        ],
    )
    second = summary(
        "b.json",
        ImageRecord(
            "m.png",
            "b.json",
            10,
            10,
            (Instance("cat", square(0, 0, 2)), Instance("dog", square(4, 4, 2), crowd=True)),
        ),
        ImageRecord("z.png", "b.json", 10, 10, (Instance("cat", square(0, 0, 5)),)),
    )
    dataset = canonical.build_dataset([first, second], LabelMap(), 0.0, "via", "in")
    train, val = dataset.documents["train"], dataset.documents["val"]
    assert val["images"] == [] and [c["name"] for c in train["categories"]] == ["cat", "dog"]
    assert [(i["id"], i["file_name"]) for i in train["images"]] == [(1, "m.png"), (2, "z.png")]
    assert [
        (a["id"], a["image_id"], a["category_id"], a["iscrowd"]) for a in train["annotations"]
    ] == [(1, 1, 1, 0), (2, 1, 2, 1), (3, 2, 2, 0)]  # z.png keeps a.json's dog, not b.json's cat
    assert dataset.copies == [("in/m.png", "m.png"), ("in/z.png", "z.png")]
    report = dataset.report
    assert report["items"] == {"found": 4, "converted": 2, "skipped": 2}
    assert report["instances"] == {"train": {"cat": 1, "dog": 1}, "val": {"cat": 0, "dog": 0}}
    assert report["crowd"] == {"train": 1, "val": 0}
    assert report["skipped"] == [
        {"file": "a.json", "item": "image 1", "reason": "broken"},
        {
            "file": "b.json",
            "item": "image z.png",
            "reason": "duplicate image name (already taken from 'a.json')",
        },
    ]
    assert report["clipped"] == [
        {"file": "a.json", "item": "image 0 region 0", "reason": "outside"}
    ]
    assert dataset.problems == [
        "a.json: image 1: broken",
        "a.json: image 0 region 0: outside",
        "b.json: image z.png: duplicate image name (already taken from 'a.json')",
    ]


def test_coco_category_ids_are_remapped_and_recorded():
    record = ImageRecord("a.png", "c.json", 10, 10, (Instance("bus", square(0, 0, 2)),))
    result = summary("c.json", record, category_ids={3: "car", 7: "bus"}, labels=("car", "bus"))
    dataset = canonical.build_dataset([result], LabelMap(), 0.0, "coco", "in")
    assert dataset.report["labels"] == ["car", "bus"]
    assert dataset.report["category_ids"] == {"c.json": {"3": 1, "7": 2}}
    assert dataset.documents["train"]["annotations"][0]["category_id"] == 2


def test_val_fraction_is_checked():
    with pytest.raises(ValueError, match="val_fraction must be in \\[0, 1\\], got 1.5"):
        canonical.build_dataset([], LabelMap(), 1.5, "labelme", "in")


def test_dumps_is_fixed():
    assert canonical.dumps({"b": 1, "a": [1, "é"]}) == '{"b":1,"a":[1,"é"]}\n'.encode()
    assert canonical.dumps({"a": 1}, indent=2) == b'{\n  "a": 1\n}\n'
