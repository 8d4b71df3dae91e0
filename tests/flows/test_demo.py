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
from mrcnn_pipeline.demo import report, run, shape_polygon, training_config, write_labelme_folder
from tasks import registry
from tasks.annotations.rasterize import shape_to_mask
from tasks.training_config import load_training_config

TINY = {"IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 64, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 1,
        "VALIDATION_STEPS": 0, "TRAIN_ROIS_PER_IMAGE": 16, "POST_NMS_ROIS_TRAINING": 64,
        "POST_NMS_ROIS_INFERENCE": 32, "DETECTION_MAX_INSTANCES": 5,
        "DETECTION_MIN_CONFIDENCE": 0.0, "TOP_DOWN_PYRAMID_SIZE": 32,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 32}


def test_polygons_follow_the_drawn_shapes():
    assert shape_polygon("square", (10, 20, 5)) == [[5, 15], [15, 15], [15, 25], [5, 25]]
    apex, right, left = shape_polygon("triangle", (30, 30, 6))
    assert apex == [30, 24]  # half-base 6 / sin(60°) = 6.93
    assert right == pytest.approx([36.93, 36]) and left == pytest.approx([23.07, 36])
    circle = np.array(shape_polygon("circle", (40, 50, 10)))
    assert np.allclose(np.hypot(circle[:, 0] - 40, circle[:, 1] - 50), 10, atol=0.01)
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        shape_polygon("star", (1, 1, 1))
    # Rasterized as labelme does, each polygon covers the pixels mrcnn.shapes paints.
    for name, least in (("square", 1.0), ("triangle", 1.0), ("circle", 0.9)):
        for size in (10, 23, 30):
            drawn = draw_masks([(name, (0, 0, 0), (64, 64, size))], 128, 128)[..., 0]
            points = [tuple(p) for p in shape_polygon(name, (64, 64, size))]
            polygon = shape_to_mask("polygon", points, 128, 128)
            assert (drawn & polygon).sum() / (drawn | polygon).sum() >= least, (name, size)


def test_labelme_folder_holds_images_polygons_and_labels(tmp_path: Path):
    files = write_labelme_folder(tmp_path, 5, size=128, seed=1)
    assert [f.name for f in files] == [f"shapes_{i:04d}.json" for i in range(5)]
    assert (tmp_path / "labels.txt").read_text().split() == ["square", "circle", "triangle"]
    document = json.loads(files[0].read_text())
    assert (document["imagePath"], document["imageHeight"], document["imageWidth"]) == \
        ("shapes_0000.png", 128, 128)
    assert {s["shape_type"] for s in document["shapes"]} == {"polygon"}
    image = np.asarray(PIL.Image.open(tmp_path / "shapes_0000.png"))
    assert image.shape == (128, 128, 3)
    # The first image without overlapping shapes of seed 1 is drawn as mrcnn.shapes draws it.
    reference = ShapesDataset()
    reference.load_shapes(20, 128, 128, seed=1)
    reference.prepare()
    first = next(i for i in reference.image_ids
                 if draw_masks(reference.image_info[i]["shapes"], 128, 128).sum(axis=2).max() <= 1)
    np.testing.assert_array_equal(image, reference.load_image(first))
    assert [s["label"] for s in document["shapes"]] == \
        [name for name, _, _ in reference.image_info[first]["shapes"]]
    with pytest.raises(ValueError, match="at least 1 annotated image"):
        write_labelme_folder(tmp_path, 0)


def test_training_config_is_the_learning_recipe_sized_to_the_budget():
    training = load_training_config(training_config(5))
    config = training.mrcnn_config()
    # (300 s - 30 s startup) / 3 s per step = 90 steps: one epoch.
    assert [(s.layers, s.epochs, s.learning_rate) for s in training.resolved_stages()] == \
        [("all", 1, 3e-4)]
    assert config.STEPS_PER_EPOCH == 90
    # 20 minutes: 390 steps, at most 100 per epoch (each ends in a checkpoint): 4 of 98.
    longer = load_training_config(training_config(20))
    assert (longer.resolved_stages()[0].epochs, longer.mrcnn_config().STEPS_PER_EPOCH) == (4, 98)
    assert (config.OPTIMIZER, config.LEARNING_RATE, config.WARMUP_STEPS, config.TRAIN_BN) == \
        ("adamw", 3e-4, 50, True)
    assert (config.IMAGES_PER_GPU, config.IMAGE_MAX_DIM, tuple(config.RPN_ANCHOR_SCALES)) == \
        (8, 128, (8, 16, 32, 64, 128))
    assert training.name == "shapes" and training.classes == ["square", "circle", "triangle"]
    assert load_training_config(training_config(0.1)).resolved_stages()[0].epochs == 1
    with pytest.raises(ValueError, match="minutes must be positive"):
        training_config(0)


@pytest.mark.slow
def test_the_whole_demo_chain_with_a_tiny_model(prefect_harness, tmp_path: Path):
    outcome = run(tmp_path / "demo", minutes=0.1, images=10, incoming=3, overrides=TINY)
    paths = outcome["paths"]

    pipeline = outcome["pipeline"]
    assert (pipeline["reference"], pipeline["promoted"]) == ("shapes@v1", True)
    assert registry.resolve("shapes@production", str(paths["registry"])).version == 1
    assert outcome["metrics"]["images"] >= 1

    inference = outcome["inference"]
    assert (inference["processed"], inference["errors"], inference["model_version"]) == (3, 0, "1")
    table = pq.read_table(paths["results"] / "area_ratios")
    assert table.num_rows == 3 * 3  # every image × every class
    assert set(table.column("class_name").to_pylist()) == {"square", "circle", "triangle"}
    overlays = sorted(p.name for p in (paths["results"] / "overlays").rglob("*.jpg"))
    assert overlays == [f"incoming_{i:04d}.jpg" for i in range(3)]

    columns, rows = outcome["summary"]
    assert columns[:3] == ["run_date", "class_name", "images"]
    assert sorted(row[1] for row in rows) == ["circle", "square", "triangle"]
    assert all(row[2] == 3 for row in rows)
    text = report(outcome)
    assert "registered shapes@v1: promoted to production" in text
    assert f"overlays:      {paths['results'] / 'overlays'}" in text
