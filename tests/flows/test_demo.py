"""`make demo`'s job: synthetic labelme data -> training-pipeline -> batch-inference -> summary.

The data generation and the training config are checked directly; the whole chain runs once
with a tiny model (64×64, one training step, confidence 0 so that random weights still give
detections) under Prefect's test harness.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest

from mrcnn.shapes import ShapesDataset, draw_masks
from mrcnn_pipeline.demo import (
    CLASSES,
    ONE_CLASS,
    choose_classes,
    nothing_baseline,
    probe_seconds,
    report,
    run,
    training_config,
    write_labelme_folder,
)
from tasks import registry
from tasks.annotations.labelme import read_labelme
from tasks.training.config import load_training_config

TINY = {
    "IMAGE_MIN_DIM": 64,
    "IMAGE_MAX_DIM": 64,
    "IMAGES_PER_GPU": 2,
    "STEPS_PER_EPOCH": 1,
    "VALIDATION_STEPS": 0,
    "TRAIN_ROIS_PER_IMAGE": 16,
    "POST_NMS_ROIS_TRAINING": 64,
    "POST_NMS_ROIS_INFERENCE": 32,
    "DETECTION_MAX_INSTANCES": 5,
    "DETECTION_MIN_CONFIDENCE": 0.0,
    "TOP_DOWN_PYRAMID_SIZE": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 32,
}


def test_labelme_folder_holds_overlapping_shapes_as_annotators_draw_them(tmp_path: Path):
    files = write_labelme_folder(tmp_path, 40, size=128, seed=1)
    assert [f.name for f in files] == [f"shapes_{i:04d}.json" for i in range(40)]
    assert (tmp_path / "labels.txt").read_text().split() == ["square", "circle", "triangle"]
    documents = [json.loads(f.read_text()) for f in files]
    assert (documents[0]["imagePath"], documents[0]["imageHeight"], documents[0]["imageWidth"]) == (
        "shapes_0000.png",
        128,
        128,
    )
    assert {s["shape_type"] for d in documents for s in d["shapes"]} == {"polygon"}
    reference = ShapesDataset()
    reference.load_shapes(40, 128, 128, seed=1)
    reference.prepare()
    overlapping = [
        i
        for i in reference.image_ids[:40]
        if draw_masks(reference.image_info[i]["shapes"], 128, 128).sum(axis=2).max() > 1
    ]
    assert overlapping  # the training data overlaps, as incoming/ does
    image = np.asarray(PIL.Image.open(tmp_path / "shapes_0000.png"))
    np.testing.assert_array_equal(image, reference.load_image(0))
    ious = []
    for index, path in enumerate(files[:10]):  # what labelme draws is what the shapes show
        masks, class_ids = reference.load_mask(index)
        read = read_labelme(path.name, path.read_bytes(), lambda n: (tmp_path / n).read_bytes())
        assert not read.issues
        instances = read.images[0].instances
        assert [i.label for i in instances] == [CLASSES[c - 1] for c in class_ids]
        ious += [
            (i.mask & masks[..., n]).sum() / (i.mask | masks[..., n]).sum()
            for n, i in enumerate(instances)
        ]
    assert min(ious) >= 0.95 and np.mean(ious) >= 0.99  # small visible fragments lose a little
    with pytest.raises(ValueError, match="at least 1 annotated image"):
        write_labelme_folder(tmp_path, 0)


def test_the_one_class_recipe_labels_every_shape_alike(tmp_path: Path):
    files = write_labelme_folder(tmp_path, 5, classes=ONE_CLASS)
    assert (tmp_path / "labels.txt").read_text().split() == ["shape"]
    labels = {s["label"] for f in files for s in json.loads(f.read_text())["shapes"]}
    assert labels == {"shape"}
    training = load_training_config(training_config(5, classes=ONE_CLASS))
    assert training.classes == ["shape"] and training.mrcnn_config().NUM_CLASSES == 2


def test_three_classes_where_the_machine_trains_enough_steps_else_one():
    fast = choose_classes(7, probe=0.05)  # 0.23 s per step: about 1700 steps in 7 minutes
    assert fast.classes == CLASSES and "enough for three classes" in fast.reason
    slow = choose_classes(7, probe=0.5)  # 2.25 s per step: about 170 steps
    assert slow.classes == ONE_CLASS and "--classes 3 forces three" in slow.reason
    assert slow.seconds_per_step == pytest.approx(2.25)
    assert choose_classes(7, "3", probe=0.5).classes == CLASSES
    assert choose_classes(7, "1", probe=0.05).classes == ONE_CLASS
    with pytest.raises(ValueError, match="auto, 3 or 1"):
        choose_classes(7, "2")
    probe = probe_seconds(repeats=2)  # the real measurement: a fixed workload, seconds
    assert 0 < probe < 30


def test_training_config_is_the_light_recipe_on_the_clock():
    training = load_training_config(training_config(5))
    config = training.mrcnn_config()
    first, last = training.resolved_stages()
    assert training.minutes == 5 and training.epochs is None
    assert config.STEPS_PER_EPOCH <= 100  # each epoch ends in a progress line and a checkpoint
    # All layers at the preset's rate, the last quarter of the budget at a tenth of it.
    assert (first.layers, first.learning_rate, first.until) == ("all", config.LEARNING_RATE, 0.75)
    assert (last.layers, last.learning_rate, last.until) == ("all", config.LEARNING_RATE / 10, 1.0)
    assert (config.TRAINING_PRECISION, config.INFERENCE_PRECISION) == ("auto", "auto")
    assert (
        config.BACKBONE,
        config.ROI_INCLUDE_GT_BOXES,
        config.TOP_DOWN_PYRAMID_SIZE,
        config.MASK_POOL_SIZE,
        list(config.MASK_SHAPE),
    ) == ("resnet18", True, 128, 7, [14, 14])
    assert (config.OPTIMIZER, config.WARMUP_STEPS, config.TRAIN_BN) == ("adamw", 50, True)
    assert (config.IMAGES_PER_GPU, config.IMAGE_MAX_DIM, tuple(config.RPN_ANCHOR_SCALES)) == (
        8,
        128,
        (8, 16, 32, 64, 128),
    )
    assert training.name == "shapes" and training.classes == ["square", "circle", "triangle"]
    # The longer run: matterport's ResNet-50 model and heads.
    longer = load_training_config(training_config(30, backbone="resnet50")).mrcnn_config()
    assert (
        longer.BACKBONE,
        longer.TOP_DOWN_PYRAMID_SIZE,
        longer.FPN_CLASSIF_FC_LAYERS_SIZE,
        list(longer.MASK_SHAPE),
    ) == ("resnet50", 256, 1024, [28, 28])
    with pytest.raises(ValueError, match="minutes must be positive"):
        training_config(0)
    with pytest.raises(ValueError, match="backbone must be one of"):
        training_config(5, backbone="vgg16")


@pytest.mark.slow
def test_the_whole_demo_chain_with_a_tiny_model(prefect_harness, tmp_path: Path):
    outcome = run(
        tmp_path / "demo", minutes=0.1, images=10, incoming=3, overrides=TINY, classes="3"
    )
    paths = outcome["paths"]

    pipeline = outcome["pipeline"]
    assert (pipeline["reference"], pipeline["promoted"]) == ("shapes@v1", True)
    assert registry.resolve("shapes@production", str(paths["registry"])).version == 1
    assert outcome["metrics"]["images"] >= 1

    inference = outcome["inference"]
    assert (inference.processed, inference.errors, inference.model_version) == (3, 0, "1")
    table = pq.read_table(paths["results"] / "area_ratios")
    assert table.num_rows == 3 * 3  # every image × every class
    assert set(table.column("class_name").to_pylist()) == {"square", "circle", "triangle"}
    overlays = sorted(p.name for p in (paths["results"] / "overlays").rglob("*.jpg"))
    assert overlays == [f"incoming_{i:04d}.jpg" for i in range(3)]

    columns, rows = outcome["summary"]
    assert columns[:3] == ["run_date", "class_name", "images"]
    assert sorted(row[1] for row in rows) == ["circle", "square", "triangle"]
    assert all(row[2] == 3 for row in rows)
    grid = PIL.Image.open(outcome["grid"])
    assert grid.size == (3 * 2 * 128, 2 * 128)  # three overlays (of 12 at most), twice enlarged
    text = report(outcome)
    assert "registered shapes@v1: promoted to production" in text
    steps = sum(row["steps"] for row in outcome["history"])
    assert steps >= 1 and f"training: {steps} steps in " in text
    baseline = nothing_baseline(outcome["metrics"]["area_ratio_error"])
    assert 0 < baseline < 100 and f"(predicting nothing: {baseline:.2f})" in text
    assert f"overlays:      {paths['results'] / 'overlays'}" in text
    page = paths["results"] / "reports" / f"run_date={inference.run_date}" / "index.html"
    assert outcome["report"] == str(page) and f"report:        {page}" in text
    assert "<svg" in page.read_text() and page.read_text().count("<figure>") == 3
