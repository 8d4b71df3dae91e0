"""The merge rules of ``merge-datasets`` and ``dataset.json``, on in-memory COCO documents:
de-duplication by image bytes, reviewed annotations win, stable splits, name collisions,
classes appended, deterministic ids and bytes, the content hash and the parents."""

from __future__ import annotations

import hashlib
import random

import pytest

from tasks.annotations.canonical import SPLITS, dumps, split_of
from tasks.datasets import lineage, merge
from tasks.datasets.documents import DatasetContent, NotCanonicalError, parse_documents
from tasks.datasets.io import check_locations

Image = tuple[str, str, list[str], str]  # file_name, split, labels, content key


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def documents_of(images: list[Image], classes: list[tuple[int, str]]) -> dict:
    ids = {name: index for index, name in classes}
    categories = [{"id": index, "name": name} for index, name in classes]
    documents = {s: {"images": [], "annotations": [], "categories": categories} for s in SPLITS}
    annotation_id = 100
    for image_id, (name, split, labels, key) in enumerate(images, start=7):
        documents[split]["images"].append(
            {"id": image_id, "file_name": name, "height": 4, "width": 6}
        )
        for label in labels:
            annotation_id += 1
            documents[split]["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": ids[label],
                    "segmentation": {"size": [4, 6], "counts": f"{key}-{label}"},
                    "area": 3,
                    "bbox": [0, 0, 2, 2],
                    "iscrowd": 0,
                }
            )
    return documents


def dataset(
    uri: str, images: list[Image], classes=((1, "car"), (2, "bus"))
) -> tuple[DatasetContent, dict[str, str]]:
    content = parse_documents(uri, documents_of(images, list(classes)), "test")
    return content, {name: digest(key) for name, _, _, key in images}


def run(base: tuple, add: tuple, val_fraction: float = 0.2) -> merge.MergeResult:
    return merge.merge(base[0], base[1], add[0], add[1], val_fraction)


def by_name(result: merge.MergeResult) -> dict[str, tuple[str, list[str]]]:
    return {i.file_name: (i.split, [a.label for a in i.annotations]) for i in result.images}


def test_reviewed_image_replaces_base_annotations_and_keeps_base_name_and_split():
    base = dataset(
        "mem/base", [("old/a.png", "val", ["car"], "A"), ("b.png", "train", ["car", "car"], "B")]
    )
    add = dataset("mem/add", [("review/a_fixed.png", "train", ["bus", "car"], "A")])
    result = run(base, add, val_fraction=0.0)
    assert by_name(result) == {
        "old/a.png": ("val", ["bus", "car"]),
        "b.png": ("train", ["car", "car"]),
    }
    assert (result.kept, result.replaced, result.added) == (1, 1, 0)
    replaced = next(i for i in result.images if i.file_name == "old/a.png")
    assert (replaced.origin, replaced.origin_name) == ("mem/base", "old/a.png")
    assert result.hashes == {"b.png": digest("B"), "old/a.png": digest("A")}


def test_duplicates_within_a_dataset_keep_the_first_by_file_name():
    base = dataset("mem/base", [("z.png", "train", ["car"], "A"), ("m.png", "val", ["bus"], "A")])
    add = dataset("mem/add", [("y.png", "train", ["car"], "C"), ("x.png", "val", [], "C")])
    result = run(base, add)
    assert by_name(result) == {"m.png": ("val", ["bus"]), "x.png": (split_of(digest("C"), 0.2), [])}
    assert [(i.file, i.item, i.reason) for i in result.skipped] == [
        ("mem/base", "image z.png", "same image bytes as 'm.png' (kept)"),
        ("mem/add", "image y.png", "same image bytes as 'x.png' (kept)"),
    ]
    report = merge.assemble(
        result, [lineage.Parent("mem/base", "0" * 64), lineage.Parent("mem/add", "1" * 64)], 0.2
    ).report
    assert report["items"] == {"found": 4, "converted": 2, "skipped": 2, "replaced": 0}
    assert [e["item"] for e in report["skipped"]] == ["image z.png", "image y.png"]


def test_base_images_keep_their_split_whatever_the_fraction():
    base_images = [(f"t{k:02d}.png", "train", ["car"], f"T{k}") for k in range(15)]
    base_images += [(f"v{k:02d}.png", "val", ["bus"], f"V{k}") for k in range(15)]
    base = dataset("mem/base", base_images)
    reviewed = [
        (f"r/{name}", "val" if split == "train" else "train", ["bus"], key)
        for name, split, _, key in base_images
    ]
    new = [(f"n{k:02d}.png", "train", ["car"], f"N{k}") for k in range(5)]
    for fraction, new_split in ((1.0, "val"), (0.0, "train")):
        result = run(base, dataset("mem/add", reviewed + new), val_fraction=fraction)
        splits = {name: split for name, (split, _) in by_name(result).items()}
        assert {name: splits[name] for name, _, _, _ in base_images} == {
            name: split for name, split, _, _ in base_images
        }  # no train -> val leak
        assert {splits[name] for name, _, _, _ in new} == {new_split}
        assert result.replaced == 30 and result.added == 5


def test_new_image_split_depends_only_on_its_bytes():
    new = [(f"n{k:02d}.png", "train", ["car"], f"N{k}") for k in range(40)]
    base_one = dataset("mem/one", [("n00.png", "train", ["car"], "other bytes")])
    base_two = dataset("mem/two", [(f"b{k}.png", "val", ["bus"], f"B{k}") for k in range(9)])
    first = run(base_one, dataset("mem/add", new), val_fraction=0.5)
    second = run(
        base_two, dataset("mem/add2", new[::2] + [("e.png", "val", [], "E")]), val_fraction=0.5
    )
    split_by_bytes = [
        {
            digest_: next(i.split for i in r.images if r.hashes[i.file_name] == digest_)
            for digest_ in map(digest, (key for _, _, _, key in new[::2]))
        }
        for r in (first, second)
    ]
    assert split_by_bytes[0] == split_by_bytes[1]
    assert set(split_by_bytes[0].values()) == {"train", "val"}
    assert all(split == split_of(d, 0.5) for d, split in split_by_bytes[0].items())


def test_a_name_taken_by_other_bytes_goes_below_the_hash_prefix():
    base = dataset("mem/base", [("x.png", "train", ["car"], "A")])
    add = dataset("mem/add", [("x.png", "train", ["bus"], "B"), ("y.png", "val", ["bus"], "C")])
    result = run(base, add, val_fraction=0.0)
    moved = f"{digest('B')[:12]}/x.png"
    assert by_name(result) == {
        "x.png": ("train", ["car"]),
        moved: ("train", ["bus"]),
        "y.png": ("train", ["bus"]),
    }
    assert result.renamed == (("x.png", moved),)
    copies = merge.assemble(
        result, [lineage.Parent("mem/base", "0" * 64), lineage.Parent("mem/add", "1" * 64)], 0.0
    ).copies
    assert copies == (
        ("mem/add", "x.png", moved),
        ("mem/base", "x.png", "x.png"),
        ("mem/add", "y.png", "y.png"),
    )


def test_a_moved_name_that_add_already_holds_is_an_error():
    base = dataset("mem/base", [("x.png", "train", ["car"], "A")])
    add = dataset(
        "mem/add", [("x.png", "train", [], "B"), (f"{digest('B')[:12]}/x.png", "train", [], "D")]
    )
    with pytest.raises(ValueError, match="would be written as .* which another image"):
        run(base, add)


def test_classes_match_by_name_and_new_ones_are_appended():
    base = dataset("mem/base", [("a.png", "train", ["car"], "A")], classes=((1, "car"), (5, "bus")))
    add = dataset(
        "mem/add",
        [("p.png", "train", ["person", "bus", "car"], "P")],
        classes=((1, "person"), (2, "bus"), (3, "car"), (4, "tree")),
    )
    result = run(base, add, val_fraction=0.0)
    assert result.categories == ((1, "car"), (5, "bus"), (6, "person"), (7, "tree"))
    assert result.new_classes == ("person", "tree")
    merged = merge.assemble(
        result, [lineage.Parent("mem/base", "0" * 64), lineage.Parent("mem/add", "1" * 64)], 0.0
    )
    train = merged.documents["train"]
    assert [(a["image_id"], a["category_id"]) for a in train["annotations"]] == [
        (1, 1),
        (2, 6),
        (2, 5),
        (2, 1),
    ]
    assert merged.report["new_labels"] == ["person", "tree"]
    assert merged.description["classes"] == ["car", "bus", "person", "tree"]
    assert merged.report["instances"]["train"] == {"car": 2, "bus": 1, "person": 1, "tree": 0}


def test_ids_follow_file_names_and_the_bytes_do_not_depend_on_input_order():
    base_images = [
        ("c.png", "val", ["car"], "C"),
        ("a.png", "train", ["bus", "car"], "A"),
        ("e.png", "train", [], "E"),
    ]
    add_images = [
        ("d.png", "train", ["bus"], "D"),
        ("b.png", "val", ["car"], "B"),
        ("a2.png", "train", ["car"], "A"),
    ]
    outputs = []
    for order in (0, 1):
        shuffle = random.Random(order).sample
        result = run(
            dataset("mem/base", shuffle(base_images, 3)),
            dataset("mem/add", shuffle(add_images, 3)),
            val_fraction=0.5,
        )
        merged = merge.assemble(
            result, [lineage.Parent("mem/base", "0" * 64), lineage.Parent("mem/add", "1" * 64)], 0.5
        )
        outputs.append(
            [dumps(merged.documents[s]) for s in SPLITS]
            + [dumps(merged.report, 2), dumps(merged.description, 2)]
        )
        images = sorted(
            (i["id"], i["file_name"]) for s in SPLITS for i in merged.documents[s]["images"]
        )
        assert [name for _, name in images] == sorted(name for _, name in images)
        assert [index for index, _ in images] == [1, 2, 3, 4, 5]
        annotations = sorted(
            (a["id"], a["image_id"]) for s in SPLITS for a in merged.documents[s]["annotations"]
        )
        assert [a for a, _ in annotations] == [1, 2, 3, 4]  # a.png: the reviewed one only
        assert [i for _, i in annotations] == sorted(i for _, i in annotations)
    assert outputs[0] == outputs[1]


def test_content_hash_covers_images_splits_and_annotation_bytes():
    documents = documents_of(
        [("a.png", "train", ["car"], "A"), ("b.png", "val", ["car"], "B")], [(1, "car")]
    )
    hashes = {"a.png": digest("A"), "b.png": digest("B")}
    described = lineage.describe_dataset(documents, hashes)
    assert described["parents"] == [] and described["added"] == 2 and described["replaced"] == 0
    assert described["images"] == {"train": 1, "val": 1}
    assert described["instances"] == {"train": {"car": 1}, "val": {"car": 1}}
    raw = {split: dumps(documents[split]) for split in SPLITS}
    expected = lineage.content_hash(
        raw, [("b.png", digest("B"), "val"), ("a.png", digest("A"), "train")]
    )
    assert described["content_hash"] == expected
    assert (
        lineage.content_hash(raw, [("a.png", digest("A"), "val"), ("b.png", digest("B"), "val")])
        != expected
    )
    assert (
        lineage.describe_dataset(documents, {**hashes, "b.png": digest("X")})["content_hash"]
        != expected
    )
    documents["val"]["annotations"][0]["area"] = 4
    assert lineage.describe_dataset(documents, hashes)["content_hash"] != expected


def test_merge_description_names_both_parents():
    base = dataset("mem/base", [("a.png", "train", ["car"], "A")])
    add = dataset("mem/add", [("r.png", "train", ["car"], "A"), ("n.png", "val", [], "N")])
    parents = [lineage.Parent("mem/base", "a" * 64), lineage.Parent("mem/add", "b" * 64)]
    description = merge.assemble(run(base, add, 0.0), parents, 0.0).description
    assert description["parents"] == [
        {"uri": "mem/base", "content_hash": "a" * 64},
        {"uri": "mem/add", "content_hash": "b" * 64},
    ]
    assert (description["schema"], description["replaced"], description["added"]) == (1, 1, 1)
    assert lineage.recorded_hash(description) == description["content_hash"]
    with pytest.raises(ValueError, match="schema 1"):
        lineage.recorded_hash({"content_hash": "a" * 64})


def good_documents() -> dict:
    return documents_of(
        [("a.png", "train", ["car"], "A"), ("b.png", "val", ["car"], "B")], [(1, "car")]
    )


def categories_differ(d):
    d["val"]["categories"] = [{"id": 1, "name": "bus"}]


def unknown_image(d):
    d["train"]["annotations"][0]["image_id"] = 99


def unknown_category(d):
    d["train"]["annotations"][0]["category_id"] = 9


def listed_twice(d):
    d["val"]["images"][0]["file_name"] = "a.png"


def escapes(d):
    d["val"]["images"][0]["file_name"] = "../b.png"


def no_images(d):
    del d["train"]["images"]


def no_height(d):
    del d["train"]["images"][0]["height"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (categories_differ, "train.json and val.json have different categories"),
        (unknown_image, "annotations/train.json: annotations refer to image ids not in the file"),
        (unknown_category, "annotations/train.json: annotation 101 has an unknown category_id 9"),
        (listed_twice, "image 'a.png' is listed twice"),
        (escapes, "annotations/val.json: image file_name '../b.png' is not a normalised"),
        (no_images, "annotations/train.json: not a COCO instances document"),
        (no_height, "annotations/train.json: missing field 'height'"),
    ],
)
def test_documents_that_are_not_canonical_are_refused(damage, reason):
    documents = good_documents()
    damage(documents)
    with pytest.raises(NotCanonicalError) as caught:
        parse_documents("s3://b/base", documents, "base")
    assert str(caught.value).startswith(
        f"base dataset 's3://b/base' is not a canonical dataset: {reason}"
    )


@pytest.mark.parametrize("output", ["data/base", "data/base/v2", "data/add/", "data/add/x/y"])
def test_output_inside_or_equal_to_an_input_is_refused(output):
    with pytest.raises(ValueError, match="must not be the (base|add) dataset"):
        check_locations("data/base", "data/add", output)
    check_locations("data/base", "data/add", "data/base-v2")  # a sibling is fine
