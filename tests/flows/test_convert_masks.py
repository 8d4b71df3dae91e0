"""The convert-masks flow and the ``mrcnn-pipeline convert`` CLI, end to end: local paths and
a real S3 server, idempotent bytes, report counts, strict mode, the round trip into pycocotools
and ``mrcnn.dataset.CocoDataset``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.convert_masks import ItemCounts, SplitCounts, StrictModeError, convert_masks
from mrcnn.dataset import CocoDataset
from mrcnn_pipeline.cli import main
from tasks import storage
from tasks.annotations import rasterize
from tasks.datasets.io import hash_images, parent_of, read_dataset
from tests.support.builders import (
    image_bytes,
    labelme_json,
    png_of,
    shape,
    write,
    write_labelme_folder,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def latest_artifacts(*keys: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys)))
        )
    by_key = {artifact.key: artifact for artifact in found}
    return [by_key[key] for key in keys]


def test_labelme_folder_end_to_end_and_idempotent(tmp_path: Path):
    expected = write_labelme_folder(tmp_path / "in")
    out = tmp_path / "out"
    summary = convert_masks(source=str(tmp_path / "in"), destination=str(out), val_fraction=0.5)
    report = json.loads((out / "report.json").read_bytes())
    items = report["items"]
    assert items == {k: expected[k] for k in ("found", "converted", "skipped")}
    assert (
        items["found"]
        == items["converted"] + items["skipped"]
        == len(list((tmp_path / "in").rglob("*.json")))
    )
    assert sorted(e["file"] for e in report["skipped"]) == [
        "a_copy.json",
        "broken.json",
        "escape.json",
        "missing.json",
    ]
    assert report["skipped"][0] == {
        "file": "a_copy.json",
        "item": "image a.png",
        "reason": "duplicate image name (already taken from 'a.json')",
    }
    assert [(e["file"], e["item"]) for e in report["dropped"]] == [("d.json", "shape 0 (dog)")]
    assert report["labels"] == ["cat", "dog"] and report["ignored_shapes"] == 1
    totals = {
        name: report["instances"]["train"][name] + report["instances"]["val"][name]
        for name in report["labels"]
    }
    assert totals == expected["instances"]
    assert summary.items == ItemCounts(**items) and summary.report == str(out / "report.json")
    assert json.loads(json.dumps(summary.as_dict()))["items"] == items  # --json
    images = {
        p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*") if p.is_file()
    }
    assert images == {"a.png", "sub/img/b.jpg", "c.png", "d.png"}
    named = [
        i["file_name"]
        for split in ("train", "val")
        for i in json.loads((out / "annotations" / f"{split}.json").read_bytes())["images"]
    ]
    assert (
        sorted(named) == sorted(images) and report["images"]["train"] + report["images"]["val"] == 4
    )
    assert (out / "images/c.png").read_bytes() == image_bytes(20, 20, seed=3)  # from imageData
    assert not (out / ".convert-staging").exists()
    described = json.loads((out / "dataset.json").read_bytes())  # what merge-datasets reads
    assert summary.dataset == str(out / "dataset.json") and described["parents"] == []
    assert described["images"] == report["images"] and described["added"] == 4
    stored = read_dataset.fn(str(out), "base")
    assert stored.recorded_hash == parent_of(stored, hash_images.fn(str(out), sorted(images)))[1]
    progress, table = latest_artifacts("convert-masks-progress", "convert-masks-summary")
    assert progress.data == 100.0
    assert json.loads(table.data) == [
        {
            "class": "cat",
            "id": 1,
            "train": report["instances"]["train"]["cat"],
            "val": report["instances"]["val"]["cat"],
        },
        {
            "class": "dog",
            "id": 2,
            "train": report["instances"]["train"]["dog"],
            "val": report["instances"]["val"]["dog"],
        },
    ]

    first = snapshot(out)
    convert_masks(source=str(tmp_path / "in"), destination=str(out), val_fraction=0.5)
    convert_masks(
        source=str(tmp_path / "in"), destination=str(tmp_path / "again"), val_fraction=0.5
    )
    assert snapshot(out) == first
    assert snapshot(tmp_path / "again") == first


def test_round_trip_through_pycocotools_and_the_mrcnn_dataset(tmp_path: Path):
    polygon = [[3.5, 2.2], [25.8, 4.1], [20.3, 18.9], [6.0, 15.5]]
    rectangle = [[28, 3], [37, 12]]
    write(tmp_path / "in/a.png", image_bytes(24, 40))
    write(
        tmp_path / "in/a.json",
        labelme_json(
            "a.png",
            24,
            40,
            [
                shape("car", polygon),
                shape("bus", rectangle, "rectangle"),
                shape("car", [[30, 15], [38, 22]], "line"),
            ],
        ),
    )
    write(tmp_path / "labels.txt", "__ignore__\n_background_\nbus\ncar\n")
    convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        labels=str(tmp_path / "labels.txt"),
        val_fraction=0.0,
    )
    drawn = [
        rasterize.shape_to_mask(t, rasterize.checked_points(p, t), 24, 40)
        for t, p in [("polygon", polygon), ("rectangle", rectangle), ("line", [[30, 15], [38, 22]])]
    ]

    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "out/annotations/train.json"))
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [coco.cats[a["category_id"]]["name"] for a in annotations] == ["car", "bus", "car"]
    for annotation, mask in zip(annotations, drawn):
        np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), mask)

    dataset = CocoDataset()
    dataset.load_coco(str(tmp_path / "out"), "train")
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    assert [dataset.class_names[i] for i in class_ids] == ["car", "bus", "car"]
    np.testing.assert_array_equal(masks, np.stack(drawn, axis=2))
    assert dataset.load_image(0).shape == (24, 40, 3)


def test_s3_to_s3_gives_the_same_bytes_as_local(s3_env, s3_prefix: str, tmp_path: Path):
    write_labelme_folder(tmp_path / "in")
    for path in sorted((tmp_path / "in").rglob("*")):
        if path.is_file():
            storage.copy_file(
                str(path),
                storage.join(s3_prefix, "in", path.relative_to(tmp_path / "in").as_posix()),
            )
    convert_masks(source=storage.join(s3_prefix, "in"), destination=storage.join(s3_prefix, "out"))
    convert_masks(source=str(tmp_path / "in"), destination=str(tmp_path / "out"))
    local = snapshot(tmp_path / "out")
    remote = {
        storage.relative_path(uri, storage.join(s3_prefix, "out")): storage.read_bytes(uri)
        for uri in storage.list_files(storage.join(s3_prefix, "out"))
    }
    assert remote.keys() == local.keys()
    for name in local:
        if name != "report.json":
            assert remote[name] == local[name], name
    report = json.loads(remote["report.json"])
    assert report["source"] == storage.join(s3_prefix, "in")
    assert report | {"source": None} == json.loads(local["report.json"]) | {"source": None}


def test_strict_fails_on_the_first_issue_and_writes_nothing(tmp_path: Path):
    write_labelme_folder(tmp_path / "in")
    with pytest.raises(StrictModeError, match="^a_copy.json: image a.png: duplicate image name"):
        convert_masks(source=str(tmp_path / "in"), destination=str(tmp_path / "out"), strict=True)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # staging removed too


def test_destination_inside_the_input_is_refused(tmp_path: Path):
    write_labelme_folder(tmp_path / "in")
    with pytest.raises(ValueError, match="must not be inside the input"):
        convert_masks(source=str(tmp_path / "in"), destination=str(tmp_path / "in" / "out"))


def write_legacy(root: Path) -> None:
    labels = np.zeros((6, 8), np.uint8)
    labels[0:2, 0:3], labels[3:5, 4:8] = 1, 2
    write(root / "cv2_mask/x.png", png_of(labels))
    write(root / "labelme_json/x_json/info.yaml", "label_names: [_background_, car1, pothole1]\n")
    write(root / "pic/x.jpg", image_bytes(6, 8, "JPEG"))
    write(root / "cv2_mask/y.png", png_of(labels))  # no image, no info.yaml: skipped


def write_via(root: Path) -> None:
    write(root / "train/a.jpg", image_bytes(10, 12, "JPEG"))
    region = {
        "shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 4, "height": 4},
        "region_attributes": {},
    }
    write(
        root / "train/via.json",
        json.dumps(
            {
                "a.jpg123": {"filename": "a.jpg", "size": 123, "regions": [region]},
                "b.jpg9": {"filename": "b.jpg", "size": 9, "regions": []},
            }
        ),
    )


def write_coco(root: Path) -> None:
    write(root / "images/a.png", image_bytes(10, 12))
    write(
        root / "annotations/instances.json",
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 12}],
                "categories": [{"id": 5, "name": "car"}, {"id": 2, "name": "pothole"}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 5,
                        "iscrowd": 0,
                        "segmentation": [[1, 1, 6, 1, 6, 6]],
                    }
                ],
            }
        ),
    )


@pytest.mark.parametrize(
    ("fmt", "writer", "options", "items", "labels"),
    [
        (
            "legacy",
            write_legacy,
            {"alias_prefix": True},
            {"found": 2, "converted": 1, "skipped": 1},
            ["car", "pothole"],
        ),
        (
            "via",
            write_via,
            {"options": {"default_label": "balloon"}},
            {"found": 2, "converted": 1, "skipped": 1},
            ["balloon"],
        ),
        ("coco", write_coco, {}, {"found": 1, "converted": 1, "skipped": 0}, ["pothole", "car"]),
    ],
)
def test_other_formats(tmp_path: Path, fmt, writer, options, items, labels):
    writer(tmp_path / "in")
    summary = convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format=fmt,
        val_fraction=0.0,
        **options,
    )
    assert summary.items == ItemCounts(**items) and summary.labels == tuple(labels)
    assert summary.images == SplitCounts(train=1, val=0)


def test_single_file_input_reads_beside_it(tmp_path: Path):
    write_via(tmp_path / "in")
    summary = convert_masks(
        source=str(tmp_path / "in/train/via.json"),
        destination=str(tmp_path / "out"),
        format="via",
        options={"default_label": "balloon"},
    )
    assert summary.items == ItemCounts(found=2, converted=1, skipped=1)
    assert (tmp_path / "out/images/a.jpg").is_file()


def test_cli_converts(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_labelme_folder(tmp_path / "in")
    write(tmp_path / "labels.txt", "__ignore__\n_background_\ncat\nhound\n")
    code = main(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--labels",
            str(tmp_path / "labels.txt"),
            "--alias",
            "dog=hound",
            "--val-fraction",
            "0",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == {"found": 8, "converted": 4, "skipped": 4}
    assert summary["images"] == {"train": 4, "val": 0} and summary["labels"] == ["cat", "hound"]
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    assert report["instances"]["train"] == {"cat": 3, "hound": 3}


def test_cli_unknown_labels_are_dropped(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_labelme_folder(tmp_path / "in")
    write(tmp_path / "labels.txt", "cat\n")
    assert (
        main(
            [
                "convert",
                "--format",
                "labelme",
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
                "--labels",
                str(tmp_path / "labels.txt"),
            ]
        )
        == 0
    )
    assert "converted 4 of 8 items (4 skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "out/report.json").read_bytes())
    unknown = [e for e in report["dropped"] if e["reason"].startswith("unknown label 'dog'")]
    # a.json's rectangle, a_copy.json's (the skipped duplicate), sub/b.json's circle, d.json's
    assert [e["file"] for e in unknown] == ["a.json", "a_copy.json", "d.json", "sub/b.json"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "{tmp}/nowhere"], "error: input '{tmp}/nowhere' does not exist"),
        (["--labels", "{tmp}/missing.txt"], "error: labels file '{tmp}/missing.txt' not found"),
        (["--output", "{tmp}/in/out"], "must not be inside the input"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, arguments, message
):
    write_labelme_folder(tmp_path / "in")
    argv = {"--input": str(tmp_path / "in"), "--output": str(tmp_path / "out")}
    argv.update(dict(zip(arguments[::2], (a.format(tmp=tmp_path) for a in arguments[1::2]))))
    code = main(["convert", "--format", "labelme", *[x for pair in argv.items() for x in pair]])
    err = capsys.readouterr().err
    assert code == 1 and message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture):
    assert (
        main(
            [
                "convert",
                "--format",
                "labelme",
                "--input",
                "a",
                "--output",
                "b",
                "--val-fraction",
                "1.5",
            ]
        )
        == 2
    )
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_cli_strict_failure_in_a_real_process(tmp_path: Path):
    """The installed command, as a user runs it: one line on stderr, exit code 1."""
    from prefect.settings import PREFECT_API_URL

    write_labelme_folder(tmp_path / "in")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrcnn_pipeline.cli",
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--strict",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        "mrcnn-pipeline convert: error: a_copy.json: image a.png: duplicate "
        "image name (already taken from 'a.json')\n"
    )
