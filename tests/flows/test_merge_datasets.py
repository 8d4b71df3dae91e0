"""The merge-datasets flow and ``mrcnn-pipeline dataset merge``, end to end on canonical
datasets that convert-masks made from small labelme folders: reviewed images replace base's
annotations, splits stay, names collide, a class is added, re-runs give the same bytes,
``dataset.json`` records both parents, training reads the result, errors are one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from flows.convert_masks import convert_masks
from flows.merge_datasets import merge_datasets
from mrcnn_pipeline.cli import main
from tasks.annotations.canonical import SPLITS, split_of
from tasks.datasets import lineage
from tasks.training.data import fetch_dataset
from tests.support.builders import image_bytes, labelme_json, shape, write

pytestmark = pytest.mark.usefixtures("prefect_harness")

TRIANGLE = [[2, 2], [12, 2], [12, 12]]
BOX = [[4, 4], [14, 10]]


def labelme_image(root: Path, name: str, seed: int, shapes: list[dict]) -> None:
    write(root / name, image_bytes(16, 20, seed=seed))
    write(
        root / f"{name.rsplit('.', 1)[0]}.json",
        labelme_json(name.rsplit("/", 1)[-1], 16, 20, shapes),
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``base`` (5 images: cat, dog) and ``add`` (reviewed: two of base's images under other
    names, one new image named like a base image, one new image; a new class ``bird``)."""
    root = tmp_path_factory.mktemp("merge")
    for name, seed, shapes in [
        ("a.png", 1, [shape("cat", TRIANGLE)]),
        ("b.png", 2, [shape("dog", BOX, "rectangle")]),
        ("c.png", 3, [shape("cat", TRIANGLE)]),
        ("d.png", 4, [shape("dog", BOX, "rectangle")]),
        ("x.png", 5, [shape("cat", TRIANGLE)]),
    ]:
        labelme_image(root / "labelme-base", name, seed, shapes)
    for name, seed, shapes in [
        ("a_fixed.png", 1, [shape("dog", BOX, "rectangle"), shape("bird", TRIANGLE)]),
        ("c_copy.png", 3, [shape("cat", TRIANGLE), shape("cat", [[14, 8], [19, 8], [19, 15]])]),
        ("x.png", 6, [shape("dog", TRIANGLE)]),
        ("new.png", 7, [shape("bird", BOX, "rectangle")]),
    ]:
        labelme_image(root / "labelme-add", name, seed, shapes)
    convert_masks(
        source=str(root / "labelme-base"), destination=str(root / "base"), val_fraction=0.3
    )  # c.png and x.png in val
    convert_masks(source=str(root / "labelme-add"), destination=str(root / "add"))
    return {"root": root, "base": root / "base", "add": root / "add"}


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def splits_and_labels(folder: Path) -> dict[str, tuple[str, list[str]]]:
    found = {}
    for split in SPLITS:
        document = json.loads((folder / "annotations" / f"{split}.json").read_bytes())
        names = {c["id"]: c["name"] for c in document["categories"]}
        for image in document["images"]:
            labels = [
                names[a["category_id"]]
                for a in document["annotations"]
                if a["image_id"] == image["id"]
            ]
            found[image["file_name"]] = (split, labels)
    return found


def files_hash(folder: Path) -> str:
    """The content hash of a dataset folder, computed here from its files."""
    raw = {split: (folder / "annotations" / f"{split}.json").read_bytes() for split in SPLITS}
    images = [
        (name, sha256_of(folder / "images" / name), split)
        for name, (split, _) in splits_and_labels(folder).items()
    ]
    return lineage.content_hash(raw, images)


def latest_table(key: str) -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return json.loads(found[0].data)


def test_merge_end_to_end(datasets: dict[str, Path], tmp_path: Path):
    base, add, out = datasets["base"], datasets["add"], tmp_path / "v2"
    # 0.7 would put a.png, b.png and d.png in val if base's splits were drawn again.
    summary = merge_datasets(base=str(base), add=str(add), output=str(out), val_fraction=0.7)
    moved = f"{sha256_of(add / 'images/x.png')[:12]}/x.png"
    before = splits_and_labels(base)
    after = splits_and_labels(out)
    assert {name: split for name, (split, _) in before.items()} == {
        "a.png": "train",
        "b.png": "train",
        "c.png": "val",
        "d.png": "train",
        "x.png": "val",
    }
    assert (after[moved][0], after["new.png"][0]) == ("val", "train")  # hash fractions .62, .88
    assert after == {
        "a.png": (before["a.png"][0], ["dog", "bird"]),  # reviewed wins, base's name and split
        "b.png": before["b.png"],
        "c.png": (before["c.png"][0], ["cat", "cat"]),
        "d.png": before["d.png"],
        "x.png": before["x.png"],
        moved: (split_of(sha256_of(add / "images/x.png"), 0.7), ["dog"]),
        "new.png": (split_of(sha256_of(add / "images/new.png"), 0.7), ["bird"]),
    }
    assert (out / "images" / moved).read_bytes() == image_bytes(16, 20, seed=6)
    assert (out / "images/a.png").read_bytes() == image_bytes(16, 20, seed=1)
    assert (summary["kept"], summary["replaced"], summary["added"]) == (3, 2, 2)
    assert summary["labels"] == ["cat", "dog", "bird"] and summary["new_labels"] == ["bird"]
    assert summary["dataset"] == str(out / "dataset.json")

    report = json.loads((out / "report.json").read_bytes())
    assert report["items"] == {"found": 9, "converted": 7, "skipped": 0, "replaced": 2}
    assert report["renamed"] == [{"from": "x.png", "to": moved}]
    assert report["new_labels"] == ["bird"] and report["base"] == str(base)
    described = json.loads((out / "dataset.json").read_bytes())
    assert described["content_hash"] == files_hash(out) == summary["content_hash"]
    assert described["parents"] == [
        {"uri": str(base), "content_hash": files_hash(base)},
        {"uri": str(add), "content_hash": files_hash(add)},
    ]
    assert (described["replaced"], described["added"], described["classes"]) == (
        2,
        2,
        ["cat", "dog", "bird"],
    )
    totals = {
        c: described["instances"]["train"][c] + described["instances"]["val"][c]
        for c in described["classes"]
    }
    assert totals == {"cat": 3, "dog": 4, "bird": 2}
    rows = latest_table("merge-datasets-summary")
    assert [(r["class"], r["id"], r["new"], r["train"] + r["val"]) for r in rows] == [
        ("cat", 1, False, 3),
        ("dog", 2, False, 4),
        ("bird", 3, True, 2),
    ]

    fetched = fetch_dataset(str(out), str(tmp_path / "cache"))  # what training reads
    assert fetched.class_names == ["cat", "dog", "bird"]
    assert sum(fetched.images.values()) == 7

    first = snapshot(out)
    merge_datasets(base=str(base), add=str(add), output=str(out), val_fraction=0.7)
    merge_datasets(base=str(base), add=str(add), output=str(tmp_path / "again"), val_fraction=0.7)
    assert snapshot(out) == first
    assert snapshot(tmp_path / "again") == first


def test_a_merged_dataset_is_the_next_base(datasets: dict[str, Path], tmp_path: Path):
    first, second = tmp_path / "v2", tmp_path / "v3"
    merge_datasets(base=str(datasets["base"]), add=str(datasets["add"]), output=str(first))
    recorded = json.loads((first / "dataset.json").read_bytes())["content_hash"]
    summary = merge_datasets(base=str(first), add=str(datasets["add"]), output=str(second))
    assert (summary["kept"], summary["replaced"], summary["added"]) == (3, 4, 0)
    assert summary["new_labels"] == []
    assert splits_and_labels(second) == splits_and_labels(first)  # the same review, twice
    parents = json.loads((second / "dataset.json").read_bytes())["parents"]
    assert parents[0] == {"uri": str(first), "content_hash": recorded}

    # The parent's hash is the one its dataset.json records, not recomputed.
    description = json.loads((first / "dataset.json").read_bytes())
    (first / "dataset.json").write_text(json.dumps({**description, "content_hash": "f" * 64}))
    merge_datasets(base=str(first), add=str(datasets["add"]), output=str(second))
    parents = json.loads((second / "dataset.json").read_bytes())["parents"]
    assert parents[0] == {"uri": str(first), "content_hash": "f" * 64}


def test_cli_merges_and_prints_one_line(
    datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
):
    code = main(
        [
            "dataset",
            "merge",
            "--base",
            str(datasets["base"]),
            "--add",
            str(datasets["add"]),
            "--output",
            str(tmp_path / "v2"),
            "--val-fraction",
            "0",
        ]
    )
    out = capsys.readouterr().out
    base_val = sum(split == "val" for split, _ in splits_and_labels(datasets["base"]).values())
    assert code == 0
    assert out == (
        f"merged into {tmp_path / 'v2'}: 3 kept, 2 replaced, 2 added; images train "
        f"{7 - base_val}, val {base_val}; new classes: bird\n"
    )  # new ones: train


def break_json(folder: Path) -> None:
    (folder / "annotations/train.json").write_text("{")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--base", "{tmp}/nowhere"], "error: base dataset '{tmp}/nowhere' does not exist"),
        (
            ["--add", "{tmp}/plain"],
            "error: add dataset '{tmp}/plain' is not a canonical dataset: "
            "annotations/train.json not found",
        ),
        (["--output", "{add}/v2"], "error: output '{add}/v2' must not be the add dataset '{add}'"),
        (
            ["--base", "{tmp}/broken"],
            "error: base dataset '{tmp}/broken' is not a canonical dataset: "
            "annotations/train.json is not valid JSON",
        ),
    ],
)
def test_cli_bad_input_is_one_line(
    datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, arguments, message
):
    write(tmp_path / "plain/a.png", image_bytes(4, 4))
    shutil.copytree(datasets["base"], tmp_path / "broken")
    break_json(tmp_path / "broken")  # passes the CLI's checks, fails in the flow's task
    names = {"tmp": tmp_path, "add": datasets["add"]}
    argv = {
        "--base": str(datasets["base"]),
        "--add": str(datasets["add"]),
        "--output": str(tmp_path / "out"),
    }
    argv.update(dict(zip(arguments[::2], (a.format(**names) for a in arguments[1::2]))))
    code = main(["dataset", "merge", *[x for pair in argv.items() for x in pair]])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("mrcnn-pipeline dataset: " + message.format(**names))
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
