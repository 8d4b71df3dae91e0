"""The improvement loop end to end, as docs/tutorials/review-and-retrain.md gives it.

Nightly results -> a review folder -> corrected in labelme -> convert -> merge into the next
dataset version -> fine-tune the production model -> the gate compares new and current on one
val split; and the exports.

Tiny models (64x64 images, ResNet-18, one training step) keep it affordable: what is checked
is the plumbing and its records, not what the model learns. The production model the loop
starts from is an untrained one registered as ``tiny@v1``: a first training would only make
its weights different noise (``training-pipeline`` itself is tested in test_training_flows).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from flows.batch_inference import batch_inference
from flows.convert_masks import convert_masks
from flows.merge_datasets import merge_datasets
from mrcnn_pipeline.cli import main
from tasks import registry
from tasks.training.config import load_training_config
from tests.flows.test_training_flows import TINY, write_labelme_folder
from tests.support.builders import shape, write

DAY = datetime.date(2026, 6, 1)
CLASSES = ["square", "triangle"]
CONFIG = {
    "name": "tiny",
    "classes": CLASSES,
    "config": {**TINY, "BACKBONE": "resnet18"},
    "stages": [{"layers": "heads", "epochs": 1, "learning_rate": 0.01}],
}


def incoming(folder: Path, labelme: Path) -> dict[str, list[dict]]:
    """Three new pictures and one the base dataset already has; returns the true shapes."""
    truth = {}
    for i in range(3):
        image = PIL.Image.new("RGB", (64, 64), (30, 60 + 40 * i, 120))
        square = [[30 + 4 * i, 6], [54 + 4 * i, 26]]
        PIL.ImageDraw.Draw(image).rectangle([*square[0], *square[1]], fill=(250, 240, 20))
        image.save(write(folder / "cam1" / f"new{i}.png", b""))
        truth[f"cam1/new{i}.png"] = [shape("square", square, "rectangle")]
    write(folder / "cam2" / "img0.png", (labelme / "img0.png").read_bytes())
    base_shapes = json.loads((labelme / "img0.json").read_text())["shapes"]
    truth["cam2/img0.png"] = base_shapes
    return truth


def register_untrained(reg: str, folder: Path) -> None:
    """``tiny@v1`` at ``production``: CONFIG's model with its initial weights, saved by the
    training model as a training run saves its checkpoints."""
    from mrcnn.model import MaskRCNN

    config = load_training_config(CONFIG).mrcnn_config()
    weights = folder / "untrained.weights.h5"
    MaskRCNN("training", config, str(folder / "logs")).save_weights(weights)
    version = registry.register_version(
        reg, "tiny", str(weights), config.to_dict(), CLASSES, {}, {"source": "untrained"}
    )
    registry.set_alias(version, "production", reason="the model the loop starts from")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_nightly_results_come_back_as_a_dataset_version_and_a_gated_model(tmp_path: Path, capsys):
    labelme, reg = tmp_path / "labelme", str(tmp_path / "registry")
    write_labelme_folder(labelme)
    first = convert_masks(
        source=str(labelme), destination=str(tmp_path / "data-v1"), labels=CLASSES, val_fraction=0.5
    )
    assert first.items.found == 4 and first.issues == 0
    register_untrained(reg, tmp_path)

    truth = incoming(tmp_path / "incoming", labelme)
    out = tmp_path / "results"
    batch_inference(
        input_uri=str(tmp_path / "incoming"),
        output_uri=str(out),
        model="tiny@production",
        registry=reg,
        run_date=DAY,
        overlays=False,
    )

    # 1. choose: every image, each for a documented reason
    review = tmp_path / "review"
    assert (
        main(
            [
                "review",
                "select",
                "--output",
                str(out),
                "--to",
                str(review),
                "--since",
                DAY.isoformat(),
                "--budget",
                "4",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert "chose 4 images for review" in capsys.readouterr().out
    manifest = json.loads((review / "review.json").read_text())
    assert sorted(image["image"] for image in manifest["images"]) == sorted(truth)
    assert all(image["model"] == "tiny@1" and image["reasons"] for image in manifest["images"])
    for image in manifest["images"]:
        document = json.loads((review / image["labelme"]).read_text())
        assert document["imagePath"] == Path(image["image"]).name
        assert (review / image["image"]).read_bytes() == (
            tmp_path / "incoming" / image["image"]
        ).read_bytes()

    # 2. the reviewer draws the truth over the model's shapes
    for name, shapes in truth.items():
        path = review / Path(name).with_suffix(".json")
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "shapes": shapes}))

    # 3. convert (review.json is not an annotation) and 4. merge
    reviewed = convert_masks(
        source=str(review), destination=str(tmp_path / "reviewed"), labels=CLASSES, val_fraction=0.5
    )
    assert reviewed.items.found == 4 and reviewed.issues == 0
    merged = merge_datasets(
        base=str(tmp_path / "data-v1"),
        add=str(tmp_path / "reviewed"),
        output=str(tmp_path / "data-v2"),
    )
    assert (merged["replaced"], merged["added"]) == (1, 3)
    lineage = json.loads((tmp_path / "data-v2" / "dataset.json").read_text())
    assert [parent["uri"] for parent in lineage["parents"]] == [
        str(tmp_path / "data-v1"),
        str(tmp_path / "reviewed"),
    ]
    before = {
        split: {
            i["file_name"]
            for i in json.loads(
                (tmp_path / "data-v1" / "annotations" / f"{split}.json").read_text()
            )["images"]
        }
        for split in ("train", "val")
    }
    after = {
        split: {
            i["file_name"]
            for i in json.loads(
                (tmp_path / "data-v2" / "annotations" / f"{split}.json").read_text()
            )["images"]
        }
        for split in ("train", "val")
    }
    assert before["train"] <= after["train"] and before["val"] <= after["val"]  # splits stay

    # 5. fine-tune production; the gate scores v1 and v2 on data-v2's val split
    assert (
        main(
            [
                "retrain",
                "--dataset",
                str(tmp_path / "data-v2"),
                "--config",
                str(write(tmp_path / "tiny.json", json.dumps(CONFIG))),
                "--from",
                "tiny@production",
                "--registry",
                reg,
                "--json",
            ]
        )
        == 0
    )
    second = json.loads(capsys.readouterr().out)
    decision = second["decision"]
    assert second["reference"] == "tiny@v2" and decision["current"]["version"] == 1
    assert decision["reason"].endswith("on the same val split")
    assert decision["compared_on"]["uri"] == str(tmp_path / "data-v2")
    baseline = json.loads(Path(second["baseline_metrics"]).read_text())
    assert baseline["model"]["reference"] == "tiny@v1"
    assert baseline["dataset"] == decision["compared_on"]
    lineage = registry.resolve("tiny@v2", reg).read_json("lineage.json")
    assert (lineage["init_weights"], lineage["init_model"]) == ("model:tiny@production", "tiny@1")


@pytest.mark.usefixtures("prefect_harness")
def test_cli_exports_load_in_their_tools(tmp_path: Path, capsys):
    from tests.support.results_tables import Detected, Result, write_day, write_images

    ring = np.zeros((40, 50), bool)
    ring[5:35, 5:45] = True
    ring[15:25, 15:35] = False
    images = [
        Result(str(tmp_path / "in" / f"{i}.png"), 40, 50, (Detected(1, 0.8, ring),))
        for i in range(2)
    ]
    write_images(images)
    write_day(tmp_path / "out", DAY.isoformat(), images, CLASSES)
    for fmt in ("coco-results", "yolo", "labelme"):
        assert (
            main(
                [
                    "export",
                    "--output",
                    str(tmp_path / "out"),
                    "--to",
                    str(tmp_path / fmt),
                    "--format",
                    fmt,
                ]
            )
            == 0
        )
        assert f"exported 2 images and 2 instances as {fmt}" in capsys.readouterr().out
    found = COCO(str(tmp_path / "coco-results" / "images.json")).loadRes(
        str(tmp_path / "coco-results" / "results.json")
    )
    assert [int(mask_utils.area(a["segmentation"])) for a in found.loadAnns(found.getAnnIds())] == [
        ring.sum()
    ] * 2
    assert sorted(p.name for p in (tmp_path / "yolo" / "labels").iterdir()) == ["0.txt", "1.txt"]
    assert len((tmp_path / "yolo" / "labels" / "0.txt").read_text().splitlines()) == 2  # hole
    assert (tmp_path / "labelme" / "0.json").is_file() and (
        tmp_path / "labelme" / "0.png"
    ).is_file()
    assert (
        main(
            [
                "export",
                "--output",
                str(tmp_path / "out"),
                "--to",
                str(tmp_path / "x"),
                "--format",
                "coco-results",
                "--since",
                "2026-07-01",
            ]
        )
        == 1
    )
    assert "no predictions in" in capsys.readouterr().err
