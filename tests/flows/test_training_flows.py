"""Training, evaluation and registration flows.

Tiny models (64×64 images, ResNet-18 with 32-channel FPN and heads, one step per epoch) keep
this affordable: one staged run with a simulated crash and its resume, then the whole
`training-pipeline` on a real S3 server (SeaweedFS) under Prefect's test harness. Input errors
are checked before any model is built.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import keras
import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from pycocotools import mask as mask_utils

from mrcnn.shapes import ShapesDataset
from mrcnn_pipeline.cli import main
from tasks import registry, storage
from tasks.failures import InvalidInput, UserError
from tasks.models import build, resolve
from tasks.training.config import TrainingConfig
from tasks.training.prepare import prepare_training
from tasks.training.process import (
    rebuilt_error,
    run_training,
    run_training_process,
    training_environment,
)
from tasks.training.report import loss_curve_png, training_metrics
from tasks.training.request import TrainingRequest
from tasks.training.runs import collect_run, list_checkpoints, read_history
from tests.support.builders import labelme_json, shape, write

SHAPES = ["square", "circle", "triangle"]
TINY = {
    "BACKBONE": "resnet18",
    "TOP_DOWN_PYRAMID_SIZE": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 32,
    "MASK_POOL_SIZE": 7,
    "MASK_SHAPE": [14, 14],
    "IMAGE_MIN_DIM": 64,
    "IMAGE_MAX_DIM": 64,
    "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128],
    "TRAIN_ROIS_PER_IMAGE": 16,
    "POST_NMS_ROIS_TRAINING": 64,
    "POST_NMS_ROIS_INFERENCE": 32,
    "MAX_GT_INSTANCES": 4,
    "DETECTION_MAX_INSTANCES": 8,
    "DETECTION_MIN_CONFIDENCE": 0.0,
    "IMAGES_PER_GPU": 2,
    "STEPS_PER_EPOCH": 1,
    "VALIDATION_STEPS": 0,
    "SEED": 0,
}
BACKBONE = re.compile(r"conv1|bn_conv1|res\d.*|bn\d.*")


def tiny(stages: list[dict], classes: list[str] = SHAPES, **extra) -> TrainingConfig:
    return TrainingConfig.from_dict(
        {"name": "tiny", "classes": classes, "config": TINY, "stages": stages, **extra}
    )


def write_canonical(root: Path, train: int = 2, val: int = 1) -> str:
    """A canonical dataset (images/, annotations/{train,val}.json) of 64×64 shapes images."""
    shapes = ShapesDataset()
    shapes.load_shapes(train + val, 64, 64, seed=5, max_shapes=2)
    shapes.prepare()
    categories = [{"id": i, "name": name} for i, name in enumerate(SHAPES, start=1)]
    documents = {
        split: {"images": [], "annotations": [], "categories": categories}
        for split in ("train", "val")
    }
    for image_id in shapes.image_ids:
        split = "train" if image_id < train else "val"
        name = f"shape{image_id}.png"
        PIL.Image.fromarray(shapes.load_image(image_id)).save(write(root / "images" / name, b""))
        documents[split]["images"].append(
            {"id": int(image_id), "file_name": name, "height": 64, "width": 64}
        )
        masks, class_ids = shapes.load_mask(image_id)
        for i, class_id in enumerate(class_ids):
            rle = mask_utils.encode(np.asfortranarray(masks[..., i], dtype=np.uint8))
            rle["counts"] = rle["counts"].decode("ascii")
            documents[split]["annotations"].append(
                {
                    "id": 100 * int(image_id) + i + 1,
                    "image_id": int(image_id),
                    "category_id": int(class_id),
                    "iscrowd": 0,
                    "segmentation": rle,
                    "area": int(masks[..., i].sum()),
                    "bbox": [0, 0, 1, 1],
                }
            )
    for split, document in documents.items():
        write(root / "annotations" / f"{split}.json", json.dumps(document))
    return str(root)


# ---------------------------------------------------------------------------- input errors
def test_bad_inputs_fail_before_any_model_is_built(tmp_path: Path):
    dataset = write_canonical(tmp_path / "data")
    heads = [{"layers": "heads", "epochs": 1, "learning_rate": 0.01}]
    run_dir, work, reg = str(tmp_path / "run"), str(tmp_path / "work"), str(tmp_path / "reg")

    with pytest.raises(FileNotFoundError, match="dataset '.*nowhere' does not exist"):
        prepare_training(str(tmp_path / "nowhere"), tiny(heads), run_dir, False, reg, work)
    with pytest.raises(ValueError, match=r"classes of the training config \['square', 'disc'"):
        prepare_training(
            dataset, tiny(heads, ["square", "disc", "triangle"]), run_dir, False, reg, work
        )
    empty_val = write_canonical(tmp_path / "no-val", train=2, val=0)
    with pytest.raises(
        ValueError, match="split 'val' .* has no images; set config VALIDATION_STEPS"
    ):
        prepare_training(
            empty_val,
            tiny(heads, config={**TINY, "VALIDATION_STEPS": 1}),
            run_dir,
            False,
            reg,
            work,
        )
    with pytest.raises(FileNotFoundError, match="init_with 'last': no checkpoint"):
        prepare_training(dataset, tiny(heads, init_with="last"), run_dir, False, reg, work)
    with pytest.raises(FileNotFoundError, match="model 'ghost' not found in registry"):
        prepare_training(
            dataset, tiny(heads, init_with="model:ghost@production"), run_dir, False, reg, work
        )
    with pytest.raises(FileNotFoundError, match="weight file '.*coco.h5' not found"):
        prepare_training(
            dataset, tiny(heads, init_with=f"coco:{tmp_path}/coco.h5"), run_dir, False, reg, work
        )
    (tmp_path / "data/annotations/train.json").write_text(
        json.dumps(
            {
                "images": [],
                "annotations": [],
                "categories": [{"id": i, "name": n} for i, n in enumerate(SHAPES, 1)],
            }
        )
    )
    with pytest.raises(ValueError, match="split 'train' of dataset .* has no images"):
        prepare_training(dataset, tiny(heads), run_dir, False, reg, work)
    (tmp_path / "data/annotations/val.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no 'val' split"):
        prepare_training(dataset, tiny(heads), run_dir, False, reg, work)


def test_a_corrupt_checkpoint_is_named(tmp_path: Path):
    dataset = write_canonical(tmp_path / "data")
    run_dir = tmp_path / "run"
    write(run_dir / "checkpoints/mask_rcnn_tiny_0001.weights.h5", b"\x00 half a file")
    heads = [{"layers": "heads", "epochs": 2, "learning_rate": 0.01}]
    with pytest.raises(FileExistsError, match="already has checkpoints .*; resume it"):
        prepare_training(dataset, tiny(heads), str(run_dir), False, "reg", str(tmp_path / "w"))
    with pytest.raises(ValueError, match="mask_rcnn_tiny_0001.weights.h5' is not an HDF5 file"):
        prepare_training(dataset, tiny(heads), str(run_dir), True, "reg", str(tmp_path / "w"))


def test_cli_train_names_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["train", "--dataset", str(tmp_path / "none"), "--config", "preset:shapes"]) == 1
    assert "dataset '" in capsys.readouterr().err


# ---------------------------------------------------------------------------- staged training
def weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(weighted_layers(layer))
        elif layer.weights:
            found[layer.name] = layer
    return found


class FreezeProbe(keras.callbacks.Callback):
    """Snapshots every layer's weights when training starts and after the first epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.before: dict[str, list[np.ndarray]] | None = None
        self.after_first_epoch: dict[str, list[np.ndarray]] | None = None

    def _snapshot(self) -> dict[str, list[np.ndarray]]:
        return {
            name: [w.numpy().copy() for w in layer.weights]
            for name, layer in weighted_layers(self.model).items()
        }

    def on_train_begin(self, logs=None):
        if self.before is None:
            self.before = self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.after_first_epoch = self._snapshot()


class CrashAfter(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_staged_training_freezes_counts_epochs_and_resumes_after_a_crash(tmp_path: Path):
    dataset = write_canonical(tmp_path / "data")
    training = tiny(
        [
            {"layers": "heads", "epochs": 1, "learning_rate": 0.02},
            {"layers": "all", "epochs": 3, "learning_rate": 0.002},
        ]
    )
    run_dir, reg = str(tmp_path / "run"), str(tmp_path / "reg")
    request = prepare_training(dataset, training, run_dir, False, reg, str(tmp_path / "w1"))
    probe, events = FreezeProbe(), []
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(request, events.append, [probe, CrashAfter(2)], verbose=0)

    # The heads stage left every backbone weight (BN statistics included) bit-identical.
    changed = {
        name
        for name, values in probe.before.items()
        if not all(np.array_equal(a, b) for a, b in zip(values, probe.after_first_epoch[name]))
    }
    backbone = {name for name in probe.before if BACKBONE.fullmatch(name)}
    # ResNet-18: conv1 and 16 block convolutions, 3 projections, each with its batch norm
    assert len(backbone) == 2 * (1 + 16 + 3) and not changed & backbone
    assert {"rpn_class_raw", "mrcnn_class_logits"} <= changed
    assert all(re.match(r"(mrcnn_|rpn_|fpn_)", name) for name in changed)

    rows = [event["row"] for event in events]
    assert [(r["epoch"], r["stage"], r["layers"]) for r in rows] == [(1, 1, "heads"), (2, 2, "all")]
    assert [r["learning_rate"] for r in rows] == pytest.approx([0.02, 0.002])
    assert {r["precision"] for r in rows} == {"float32"}
    assert sorted(list_checkpoints(run_dir)) == [1, 2] and len(read_history(run_dir)) == 2

    resumed = prepare_training(dataset, training, run_dir, True, reg, str(tmp_path / "w2"))
    assert (resumed.init.kind, resumed.init.epoch) == ("resume", 2)
    assert TrainingRequest.from_json(resumed.to_json()) == resumed  # what the process reads
    more = []
    result = run_training(resumed, more.append, verbose=0)
    assert result["epoch"] == 3
    assert [(e["row"]["epoch"], e["row"]["layers"]) for e in more] == [
        (3, "all")
    ]  # heads not repeated
    assert more[0]["row"]["learning_rate"] == pytest.approx(0.002)
    assert [r["epoch"] for r in read_history(run_dir)] == [1, 2, 3]
    assert sorted(list_checkpoints(run_dir)) == [1, 2, 3]
    collected = collect_run(run_dir)
    assert collected["weights"].endswith("mask_rcnn_tiny_0003.weights.h5")
    assert collected["lineage"]["epochs"] == 3 and collected["classes"] == SHAPES

    metrics = training_metrics(read_history(run_dir))
    assert metrics["epochs"] == 3 and set(metrics["final"]) >= {"loss", "mrcnn_mask_loss"}
    image = PIL.Image.open(__import__("io").BytesIO(loss_curve_png(read_history(run_dir))))
    assert image.size == (800, 480)

    # Weights of another class count do not fit; the error names the file.
    config_file = tmp_path / "other" / "config.json"
    config_file.parent.mkdir()
    config_file.write_text(json.dumps({**collected["config"], "NUM_CLASSES": 3}))
    with pytest.raises(ValueError, match="mask_rcnn_tiny_0003.weights.h5' do not fit the model"):
        build(resolve(weights=collected["weights"], config=str(config_file)))


def test_the_training_process_runs_onednn_unless_the_user_says_otherwise():
    """TensorFlow leaves oneDNN off on AVX2-only CPUs, where it trains about 1.4× faster."""
    assert training_environment({"PATH": "/bin"})["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert training_environment({"TF_ENABLE_ONEDNN_OPTS": "0"})["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert training_environment({"PATH": "/bin"})["PATH"] == "/bin"


@pytest.mark.slow
def test_a_time_budget_stops_each_stage_on_the_clock(tmp_path: Path):
    """`minutes: 0.25` with stages until 0.6 and 1.0 of it: the run ends after the step that
    passes 15 s (model building included), whatever this machine's speed; stage 1 may be
    skipped where building alone takes longer than its 9 s, stage 2 always runs."""
    dataset = write_canonical(tmp_path / "data")
    training = TrainingConfig.from_dict(
        {
            "name": "tiny",
            "classes": SHAPES,
            "config": {**TINY, "STEPS_PER_EPOCH": 3},
            "minutes": 0.25,
            "stages": [
                {"layers": "all", "until": 0.6, "learning_rate": 0.01},
                {"layers": "all", "until": 1.0, "learning_rate": 0.001},
            ],
        }
    )
    run_dir = str(tmp_path / "run")
    request = prepare_training(
        dataset, training, run_dir, False, str(tmp_path / "reg"), str(tmp_path / "work")
    )
    assert (request.budget_seconds, request.total_epochs) == (15.0, None)
    started = time.monotonic()
    run_training(request, lambda event: None, verbose=0)
    took = time.monotonic() - started
    rows = read_history(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(1 <= r["steps"] <= 3 for r in rows)
    assert rows[-1]["elapsed"] >= 15 and took < 15 + max(r["seconds"] for r in rows) + 10
    first = [r for r in rows if r["stage"] == 1]
    second = [r for r in rows if r["stage"] == 2]
    assert second and [r["learning_rate"] for r in second] == pytest.approx([0.001] * len(second))
    assert [r["learning_rate"] for r in first] == pytest.approx([0.01] * len(first))
    if first:  # stopped on the clock: the epochs before its last ran all their steps (a row's
        # `elapsed` counts the checkpoint upload too, so an earlier row may already pass 9 s)
        assert all(r["steps"] == 3 for r in first[:-1]) and first[-1]["elapsed"] >= 9
    assert collect_run(run_dir)["lineage"]["epochs"] == len(rows)

    # A run stopped before its budget ran out (a crash) is not registered.
    crashed = [{**rows[0], "elapsed": 6.0}]
    storage.write_bytes(storage.join(run_dir, "history.json"), json.dumps(crashed).encode())
    with pytest.raises(ValueError, match=r"stopped after 0\.1 of its 0.25 minutes; resume"):
        collect_run(run_dir)


@pytest.mark.slow
def test_a_training_config_with_two_replicas_trains_mirrored(tmp_path: Path):
    """GPU_COUNT 2 in the training config: a MirroredStrategy over two devices (CPUs here)."""
    dataset = write_canonical(tmp_path / "data")
    training = TrainingConfig.from_dict(
        {
            "name": "tiny",
            "classes": SHAPES,
            "config": {
                **TINY,
                "IMAGES_PER_GPU": 1,
                "GPU_COUNT": 2,
                "TRAINING_DEVICES": ["/cpu:0", "/cpu:1"],
            },
            "stages": [{"layers": "heads", "epochs": 1, "learning_rate": 0.01}],
        }
    )
    run_dir = str(tmp_path / "run")
    request = prepare_training(
        dataset, training, run_dir, False, str(tmp_path / "reg"), str(tmp_path / "work")
    )
    events: list[dict] = []
    result = run_training_process(request, events.append, timeout_seconds=600)
    assert result["epoch"] == 1 and [e["row"]["replicas"] for e in events] == [2]
    assert np.isfinite(events[0]["row"]["loss"]) and sorted(list_checkpoints(run_dir)) == [1]
    assert read_history(run_dir)[0]["replicas"] == 2


# ---------------------------------------------------------------------------- evaluation
def write_crowded_dataset(root: Path, instances: int) -> str:
    """A canonical dataset (car, pothole) whose one val image holds ``instances`` cars."""
    image = np.full((64, 64, 3), 20, np.uint8)
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "pothole"}]
    annotations = []
    for k in range(instances):
        mask = np.zeros((64, 64), np.uint8)
        top, left = 8 * (k // 7) + 2, 8 * (k % 7) + 2
        mask[top : top + 5, left : left + 5] = 1
        image[mask.astype(bool)] = 220
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": rle,
                "area": 25,
                "bbox": [left, top, 5, 5],
            }
        )
    PIL.Image.fromarray(image).save(write(root / "images" / "crowded.png", b""))
    document = {
        "images": [{"id": 1, "file_name": "crowded.png", "height": 64, "width": 64}],
        "annotations": annotations,
        "categories": categories,
    }
    for split in ("train", "val"):
        write(root / "annotations" / f"{split}.json", json.dumps(document))
    return str(root)


def newest_run_logs(flow_name: str, needle: str) -> list[str]:
    """The messages Prefect stored for the newest run of a flow and its tasks (they arrive
    shortly: waits up to 30 s for one containing ``needle``)."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            logs = await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id]))
            )
            return [log.message for log in logs]

    deadline = time.monotonic() + 30
    while True:
        found = asyncio.run(read())
        if any(needle in message for message in found) or time.monotonic() > deadline:
            return found


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_records_the_baselines_and_warns_of_a_detection_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    from tests.support.tiny_model import tiny_model_dir

    dataset = write_crowded_dataset(tmp_path / "data", instances=12)
    weights = str(tiny_model_dir() / "model.weights.h5")  # DETECTION_MAX_INSTANCES 5
    assert (
        main(
            [
                "evaluate",
                "--model",
                weights,
                "--dataset",
                dataset,
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    header, car, pothole = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[-7:] == ["(pp)", "95", "%", "CI", "bias", "nothing", "Otsu"]
    assert car.startswith("car") and car.split()[-1] == "-"  # two classes: no Otsu

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["detection_limit"] == {
        "detection_max_instances": 5,
        "largest_gt_instances": 12,
        "capped": True,
    }
    assert metrics["coco_max_dets"] == [1, 10, 100]
    car = metrics["area_ratio_error"]["per_class"]["car"]
    low, high = car["mae_ci95_pp"]
    assert low == pytest.approx(car["mae_pp"]) == pytest.approx(high)  # one image: a point
    assert car["baselines"]["nothing"]["mae_pp"] == pytest.approx(100 * 12 * 25 / 64**2)
    assert car["count_error"]["images_with_instances"] == 1
    assert car["baselines"]["otsu"] == {
        "applicable": False,
        "reason": "not applicable: the dataset has 2 classes; Otsu's "
        "threshold separates one bright class from a dark background",
    }
    assert metrics["area_ratio_error"]["bootstrap"]["resamples"] == 2000
    warnings = [
        m
        for m in newest_run_logs("evaluate-model", "DETECTION_MAX_INSTANCES=5")
        if "DETECTION_MAX_INSTANCES=5" in m
    ]
    assert len(warnings) == 1 and "holds 12" in warnings[0]


# ---------------------------------------------------------------------------- the whole pipeline
def write_labelme_folder(root: Path) -> None:
    """Four 64×64 labelme images, each with a square and a triangle (2 land in val)."""
    for i in range(4):
        image = PIL.Image.new("RGB", (64, 64), (40 * i, 90, 160))
        draw = PIL.ImageDraw.Draw(image)
        square = [[8 + i, 8], [28 + i, 28]]
        triangle = [[44, 30 + i], [60, 58], [30, 58]]
        draw.rectangle([*square[0], *square[1]], fill=(250, 240, 20))
        draw.polygon([tuple(p) for p in triangle], fill=(20, 250, 60))
        image.save(write(root / f"img{i}.png", b""))
        write(
            root / f"img{i}.json",
            labelme_json(
                f"img{i}.png",
                64,
                64,
                [shape("square", square, "rectangle"), shape("triangle", triangle)],
            ),
        )


@pytest.mark.slow
def test_training_pipeline_on_s3(prefect_harness, s3_env, s3_prefix: str, tmp_path: Path):
    from flows.training_pipeline import training_pipeline

    write_labelme_folder(tmp_path / "labelme")
    source = f"{s3_prefix}/labelme"
    for path in sorted((tmp_path / "labelme").iterdir()):
        storage.copy_file(str(path), f"{source}/{path.name}")
    dataset, reg = f"{s3_prefix}/dataset", f"{s3_prefix}/registry"
    config = {
        "name": "tiny",
        "classes": ["square", "triangle"],
        "config": TINY,
        "stages": [{"layers": "heads", "epochs": 1, "learning_rate": 0.01}],
    }

    state = training_pipeline(
        source=source,
        dataset=dataset,
        config=config,
        registry=reg,
        val_fraction=0.5,
        return_state=True,
    )
    summary = state.result()
    assert (summary["reference"], summary["promoted"]) == ("tiny@v1", True)
    assert summary["decision"]["reason"] == "no current version holds the alias"

    run_dir = summary["run_dir"]
    assert run_dir.startswith(f"{reg}/.runs/tiny-")
    assert sorted(list_checkpoints(run_dir)) == [1]
    for name in (
        "run.json",
        "history.json",
        "metrics.json",
        "loss_curve.png",
        "evaluation/metrics.json",
    ):
        assert storage.is_file(storage.join(run_dir, name)), name

    version = registry.resolve("tiny@production", reg)
    assert version.version == 1
    files = sorted(uri.rsplit("/", 1)[-1] for uri in storage.list_files(version.uri))
    assert files == [
        "MODEL_CARD.md",
        "classes.json",
        "config.json",
        "lineage.json",
        "metrics.json",
        "model.weights.h5",
    ]
    lineage = version.read_json("lineage.json")
    assert lineage["dataset"]["uri"] == dataset and re.fullmatch(
        r"[0-9a-f]{64}", lineage["dataset"]["hash"]
    )
    assert lineage["flow_run_id"] == str(state.state_details.flow_run_id)
    assert lineage["flow_runs"]["training"] not in (None, lineage["flow_run_id"])
    assert [s["layers"] for s in lineage["stages"]] == ["heads"] and lineage["epochs"] == 1
    assert lineage["training_precision"] == ["float32"]  # TRAINING_PRECISION's default
    assert "- precision: float32" in storage.read_bytes(version.file("MODEL_CARD.md")).decode()
    metrics = version.read_json("metrics.json")
    assert metrics["images"] == 2 and set(metrics["area_ratio_error"]["per_class"]) == {
        "square",
        "triangle",
    }
    assert set(metrics["segm"]) >= {"AP", "AP50", "AP75", "per_class"}

    model = build(resolve("tiny@production", reg))
    assert (model.class_names, model.name, model.version) == (("square", "triangle"), "tiny", "1")
    image = np.asarray(PIL.Image.open(tmp_path / "labelme/img0.png").convert("RGB"))
    detected = model.detect([image])[0]
    assert detected["masks"].shape[:2] == (64, 64)


def test_the_training_process_error_keeps_its_kind_in_the_parent():
    """A user error of the child stays one (the CLI prints one line); a bug keeps the child's
    traceback."""
    user = rebuilt_error(
        {
            "error": "InvalidInput",
            "message": "initial weights 'w.h5' do not fit",
            "traceback": "Traceback ...",
        }
    )
    assert isinstance(user, InvalidInput) and str(user) == "initial weights 'w.h5' do not fit"
    assert not getattr(user, "__notes__", None)
    bug = rebuilt_error(
        {
            "error": "KeyError",
            "message": "'rows'",
            "traceback": "Traceback ...\n  File \"process.py\", line 9\nKeyError: 'rows'",
        }
    )
    assert isinstance(bug, KeyError) and not isinstance(bug, UserError)
    assert "process.py" in bug.__notes__[0]
    unknown = rebuilt_error(
        {
            "error": "ZeroDivisionError",
            "message": "division by zero",
            "traceback": "ZeroDivisionError: division by zero",
        }
    )
    assert isinstance(unknown, RuntimeError) and "ZeroDivisionError" in str(unknown)
