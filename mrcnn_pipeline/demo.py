"""Demo: the project's main job end to end on synthetic shapes, on local folders.

1. Writes a labelme folder (`<output>/labelme/`: PNG images of overlapping shapes, labelme
   JSON polygons of what is visible of each, labelled square / circle / triangle,
   `labels.txt`) and plain held-out images of the same kind (`<output>/incoming/`).
2. Runs the `training-pipeline` flow with the `shapes` preset: convert-masks -> train-model
   (from scratch, sized to `--minutes`) -> evaluate-model -> register-model, into the
   registry `<output>/registry`, so the model becomes `shapes@production`.
3. Runs the `batch-inference` flow with `shapes@production` over `incoming/` into
   `<output>/results/` (Parquet tables and overlay pictures).
4. Prints the validation scores beside what predicting nothing would score, the per-class
   summary of `mrcnn-pipeline results`, where everything is, and writes
   `<output>/overlay_grid.png` (the first twelve overlays side by side).

    python -m mrcnn_pipeline.demo --output demo_output               # ResNet-18, 7 minutes
    python -m mrcnn_pipeline.demo --backbone resnet50 --minutes 30   # the longer ResNet-50 run

Re-running adds a registry version; `production` moves only if it evaluates at least as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

# Before Prefect or TensorFlow load (as in the CLI): no telemetry, only TensorFlow's errors,
# and oneDNN's kernels as the training process has them (tasks.training.process), so that the
# speed probe below measures what training will run.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import PIL.Image

from mrcnn.shapes import ShapesDataset
from mrcnn_pipeline.prefect_api import ensure_api_or_exit
from tasks.exports.labelme import instance_shapes, labelme_file
from tasks.failures import InvalidSetting

CLASSES = ("square", "circle", "triangle")  # the shapes preset's classes, in category order
ONE_CLASS = ("shape",)  # every shape labelled alike: the recipe for slow machines
SIZE = 128  # image side: the preset's IMAGE_MAX_DIM
# Mask AP50 ≥ 0.90 on the val split: three classes need about 600 steps (the last quarter at a
# tenth of the rate), one class about 200 (scored every 50 steps at a constant rate on a 2-core
# AMD EPYC: three classes 0.89 at 450 steps and 0.93 at 550, one class 0.90 at 150).
STEPS_FOR_THREE_CLASSES = 600
# A training step of the shapes recipe takes about this many times the speed probe's time
# (`probe_seconds`, measured on the same machine, same precision).
STEP_OVER_PROBE = 4.5
BUILD_SECONDS = 30.0  # building and tracing the training model, counted in the budget
STEPS_PER_EPOCH = 50  # an epoch ends in a progress line with the time left, and a checkpoint
LOW_RATE_FROM = 0.75  # the last quarter of the budget trains at a tenth of the rate


@dataclasses.dataclass(frozen=True)
class ClassChoice:
    """The classes the demo trains, the step time that decided it, and why."""

    classes: tuple[str, ...]
    seconds_per_step: float | None
    reason: str


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the demo trains one backbone: Config values over the `shapes` preset."""

    overrides: dict[str, Any]


RECIPES = {
    # The preset itself: ResNet-18 with light heads (tasks.training.config.PRESETS).
    "resnet18": Recipe({}),
    # matterport's ResNet-50 model and heads (256-channel FPN, 1024-wide box head, 28×28 masks).
    "resnet50": Recipe(
        {
            "BACKBONE": "resnet50",
            "TOP_DOWN_PYRAMID_SIZE": 256,
            "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
            "MASK_POOL_SIZE": 14,
            "MASK_SHAPE": [28, 28],
            "TRAIN_ROIS_PER_IMAGE": 32,
            "LEARNING_RATE": 3e-4,
        }
    ),
}
DEFAULT_MINUTES = {"resnet18": 7.0, "resnet50": 30.0}


# ---------------------------------------------------------------------------- the classes
def probe_seconds(repeats: int = 5) -> float:
    """Seconds of a fixed convolution workload (four 3×3 convolutions over 8 × 64² × 64 and
    their gradient) in the precision training would use here: the machine's speed for the
    shapes recipe, load included. About two seconds, tracing included."""
    import tensorflow as tf

    from mrcnn.precision import training_precision

    dtype = tf.bfloat16 if training_precision("auto").precision != "float32" else tf.float32
    inputs = tf.random.stateless_normal([8, 64, 64, 64], seed=[1, 2], dtype=dtype)
    kernel = tf.Variable(tf.random.stateless_normal([3, 3, 64, 64], seed=[3, 4]) * 0.05)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            features = inputs
            for _ in range(4):
                features = tf.nn.relu(tf.nn.conv2d(features, tf.cast(kernel, dtype), 1, "SAME"))
            loss = tf.reduce_mean(tf.cast(features, tf.float32))
        return tape.gradient(loss, kernel)

    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def choose_classes(
    minutes: float, requested: str = "auto", probe: float | None = None
) -> ClassChoice:
    """Three classes where this machine trains enough steps in `minutes` for mask AP50 ≥ 0.90,
    else one class ("shape"), which learns about three times faster per step.

    Args:
        requested: ``auto``, ``3`` or ``1``.
        probe: `probe_seconds()` (measured when None and `requested` is ``auto``).
    """
    if requested == "3":
        return ClassChoice(CLASSES, None, "three classes, as asked (--classes 3)")
    if requested == "1":
        return ClassChoice(ONE_CLASS, None, "one class, as asked (--classes 1)")
    if requested != "auto":
        raise InvalidSetting(f"classes must be auto, 3 or 1, got {requested!r}")
    per_step = STEP_OVER_PROBE * (probe_seconds() if probe is None else probe)
    steps = max(0.0, 60 * minutes - BUILD_SECONDS) / per_step
    if steps >= STEPS_FOR_THREE_CLASSES:
        return ClassChoice(
            CLASSES,
            per_step,
            f"about {per_step:.2f} s per step here: "
            f"{steps:.0f} steps in {minutes:g} minutes, enough for three classes",
        )
    return ClassChoice(
        ONE_CLASS,
        per_step,
        (
            f"about {per_step:.2f} s per step here: {steps:.0f} steps in {minutes:g} minutes, "
            f"fewer than the {STEPS_FOR_THREE_CLASSES} three classes need for mask AP50 0.90, so "
            "one class 'shape' (--classes 3 forces three; --minutes gives more time)"
        ),
    )


# ---------------------------------------------------------------------------- synthetic data
def write_labelme_folder(
    folder: Path, count: int, size: int = SIZE, seed: int = 1, classes: tuple[str, ...] = CLASSES
) -> list[Path]:
    """Write `count` annotated shapes images (`shapes_<n>.png` + `.json`) and `labels.txt`.

    Shapes overlap as they do in `incoming/` and in real photos; each is annotated by the
    outline of what is visible of it, as an annotator would draw it (several polygons sharing
    a `group_id` where it shows in pieces or with a hole). With `ONE_CLASS` every shape is
    labelled "shape".

    Returns:
        The JSON files written.
    """
    if count < 1:
        raise InvalidSetting(f"need at least 1 annotated image, got {count}")
    if classes not in (CLASSES, ONE_CLASS):
        raise InvalidSetting(f"classes must be {CLASSES} or {ONE_CLASS}, got {classes}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(classes) + "\n")
    shapes = ShapesDataset()
    shapes.load_shapes(count, size, size, seed=seed)  # specs only; drawn when loaded
    shapes.prepare()
    written: list[Path] = []
    for image_id in shapes.image_ids:
        masks, class_ids = shapes.load_mask(image_id)
        drawn = [
            shape
            for number, class_id in enumerate(class_ids, start=1)
            for shape in instance_shapes(
                classes[(class_id - 1) % len(classes)], masks[..., number - 1], number
            )
        ]
        name = f"shapes_{image_id:04d}.png"
        PIL.Image.fromarray(shapes.load_image(image_id)).save(folder / name)
        path = folder / name.replace(".png", ".json")
        path.write_text(json.dumps(labelme_file(name, size, size, drawn), indent=1))
        written.append(path)
    return written


def write_incoming(folder: Path, count: int, size: int = SIZE, seed: int = 2) -> list[Path]:
    """Write `count` plain held-out shapes images (`incoming_<n>.jpg`, JPEG quality 95)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = ShapesDataset()
    images.load_shapes(count, size, size, seed=seed)
    images.prepare()
    paths = [folder / f"incoming_{image_id:04d}.jpg" for image_id in images.image_ids]
    for image_id, path in zip(images.image_ids, paths):
        PIL.Image.fromarray(images.load_image(image_id)).save(path, quality=95)
    return paths


# ---------------------------------------------------------------------------- training config
def training_config(
    minutes: float,
    overrides: dict[str, Any] | None = None,
    backbone: str = "resnet18",
    classes: tuple[str, ...] = CLASSES,
) -> dict[str, Any]:
    """The `shapes` preset trained from scratch for `minutes` of wall-clock time.

    The preset's default stages (heads, then all layers at lr / 10) suit pretrained backbones;
    from random weights every layer must learn, so the demo trains `all` at the preset's
    LEARNING_RATE (AdamW, warmup) until three quarters of the budget have passed, then at a
    tenth of it. Training stops on the clock (model building included), so a slow machine
    does fewer steps in the same time rather than taking longer; it computes in bfloat16
    where the CPU has it natively (TRAINING_PRECISION and INFERENCE_PRECISION "auto").

    Args:
        minutes: training time budget, model building included.
        overrides: extra `mrcnn.Config` values (tests shrink the model with them).
        backbone: one of `RECIPES`.
        classes: `CLASSES` or `ONE_CLASS` (see `choose_classes`).
    """
    from tasks.training.config import PRESETS

    if not minutes > 0:
        raise InvalidSetting(f"minutes must be positive, got {minutes}")
    if backbone not in RECIPES:
        raise InvalidSetting(f"backbone must be one of {sorted(RECIPES)}, got {backbone!r}")
    recipe = RECIPES[backbone]
    rate = {**PRESETS["shapes"]["config"], **recipe.overrides}["LEARNING_RATE"]
    return {
        "preset": "shapes",
        "minutes": minutes,
        "classes": list(classes),
        "config": {
            **recipe.overrides,
            "STEPS_PER_EPOCH": STEPS_PER_EPOCH,
            "TRAINING_PRECISION": "auto",
            "INFERENCE_PRECISION": "auto",
            **(overrides or {}),
        },
        "stages": [
            {"layers": "all", "until": LOW_RATE_FROM, "learning_rate": rate},
            {"layers": "all", "until": 1.0, "learning_rate": rate / 10},
        ],
    }


# ---------------------------------------------------------------------------- the job
def run(
    output: Path,
    minutes: float = 7.0,
    images: int = 300,
    incoming: int = 30,
    overrides: dict[str, Any] | None = None,
    backbone: str = "resnet18",
    grid: Path | None = None,
    classes: str = "auto",
) -> dict[str, Any]:
    """Generate the data, train to `shapes@production`, run batch inference.

    Args:
        output: folder for everything (created).
        minutes: training budget (wall clock, model building included).
        images: annotated images (about 20 % go to the val split).
        incoming: held-out images for batch inference.
        overrides: `mrcnn.Config` values for the training config.
        backbone: the recipe (`RECIPES`).
        grid: where the overlay grid goes (default `<output>/overlay_grid.png`).
        classes: ``auto`` (`choose_classes`; the ResNet-50 recipe always trains three),
            ``3`` or ``1``.

    Returns:
        `{pipeline, inference, metrics, history, classes (a ClassChoice), summary: (columns,
        rows), paths, grid, report}`.
    """
    from flows.batch_inference import batch_inference
    from flows.nightly_report import nightly_report
    from flows.training_pipeline import training_pipeline
    from mrcnn_pipeline.results import summarize

    if incoming < 1:
        raise InvalidSetting(f"need at least 1 incoming image, got {incoming}")
    output = output.resolve()
    paths = {
        name: output / name for name in ("labelme", "incoming", "dataset", "registry", "results")
    }
    choice = choose_classes(
        minutes, "3" if backbone != "resnet18" and classes == "auto" else classes
    )
    print(f"classes: {', '.join(choice.classes)} ({choice.reason})", flush=True)
    write_labelme_folder(paths["labelme"], images, classes=choice.classes)
    write_incoming(paths["incoming"], incoming)
    pipeline = training_pipeline(
        source=str(paths["labelme"]),
        dataset=str(paths["dataset"]),
        config=training_config(minutes, overrides, backbone, choice.classes),
        registry=str(paths["registry"]),
        labels=str(paths["labelme"] / "labels.txt"),
    )
    inference = batch_inference(
        input_uri=str(paths["incoming"]),
        output_uri=str(paths["results"]),
        model="shapes@production",
        registry=str(paths["registry"]),
    )
    report = nightly_report(
        output=str(paths["results"]),
        date=datetime.date.fromisoformat(inference.run_date),
        registry=str(paths["registry"]),
    )
    metrics = json.loads(Path(pipeline["metrics"]).read_text())
    history = json.loads((Path(pipeline["run_dir"]) / "history.json").read_text())
    overlays = paths["results"] / "overlays" / f"run_date={inference.run_date}"
    grid = overlay_grid(sorted(overlays.rglob("*.jpg")), grid or output / "overlay_grid.png")
    return {
        "pipeline": pipeline,
        "inference": inference,
        "metrics": metrics,
        "history": history,
        "classes": choice,
        "summary": summarize(str(paths["results"])),
        "paths": paths,
        "grid": grid,
        "report": report.report,
    }


def nothing_baseline(area: dict[str, Any]) -> float:
    """The area-ratio error of a model that finds nothing: the mean true share, in pp."""
    shares = [totals["gt_mean_pct"] for totals in area["per_class"].values()]
    return sum(shares) / max(len(shares), 1)


def training_line(history: list[dict[str, Any]]) -> str:
    """Steps, minutes, seconds per step and precision of the training run, on this CPU."""
    from mrcnn.hardware import detect

    steps = sum(row["steps"] for row in history)
    seconds = sum(row["seconds"] for row in history)
    precision = "/".join(sorted({row["precision"] for row in history}))
    return (
        f"training: {steps} steps in {history[-1]['elapsed'] / 60:.1f} minutes "
        f"({seconds / max(steps, 1):.2f} s/step, {precision}) on "
        f"{detect(include_gpus=False).describe()}"
    )


def overlay_grid(
    pictures: list[Path], path: Path, columns: int = 4, count: int = 12, scale: int = 2
) -> Path:
    """The first `count` overlay pictures, `scale` times enlarged, `columns` a row, as a PNG."""
    chosen = [PIL.Image.open(picture).convert("RGB") for picture in pictures[:count]]
    if not chosen:
        raise ValueError("no overlay pictures to put in a grid")
    width, height = (scale * side for side in chosen[0].size)
    columns = min(columns, len(chosen))
    rows = -(-len(chosen) // columns)
    grid = PIL.Image.new("RGB", (columns * width, rows * height), "white")
    for number, picture in enumerate(chosen):
        place = ((number % columns) * width, (number // columns) * height)
        grid.paste(picture.resize((width, height), PIL.Image.Resampling.NEAREST), place)
    grid.save(path)
    return path


def report(outcome: dict[str, Any]) -> str:
    """What the demo prints: evaluation, the per-class summary and where the files are."""
    from mrcnn_pipeline.results import render

    pipeline, inference, metrics = outcome["pipeline"], outcome["inference"], outcome["metrics"]
    paths, (columns, rows) = outcome["paths"], outcome["summary"]
    decision = (
        "promoted to production"
        if pipeline["promoted"]
        else "not promoted (production keeps a better version)"
    )
    segm, area = metrics["segm"], metrics["area_ratio_error"]
    version_dir = paths["registry"] / "shapes" / "versions" / str(pipeline["version"])
    day = inference.run_date
    return "\n".join(
        [
            "",
            f"registered {pipeline['reference']}: {decision}",
            f"classes: {', '.join(outcome['classes'].classes)} ({outcome['classes'].reason})",
            training_line(outcome["history"]),
            f"validation ({metrics['images']} images): mask AP50 {segm['AP50']:.3f}, mask AP "
            f"{segm['AP']:.3f}, box AP {metrics['bbox']['AP']:.3f}",
            f"area-ratio error per class and image: {area['mean_mae_pp']:.2f} percentage points "
            f"(predicting nothing: {nothing_baseline(area):.2f})",
            f"batch inference with {inference.model_name} {inference.model_version}: "
            f"{inference.processed} images processed, {inference.skipped} skipped (already "
            f"done), {inference.errors} errors",
            "",
            f"per-class summary (mrcnn-pipeline results --output {paths['results']}):",
            render(columns, rows, "table"),
            f"overlays:      {paths['results'] / 'overlays' / f'run_date={day}'} (masks, boxes, "
            "scores and area % drawn on each image)",
            f"overlay grid:  {outcome['grid']}",
            f"report:        {outcome['report']} (the night's numbers, charts and pictures; "
            "open it in a browser)",
            f"Parquet:       {paths['results']}/{{area_ratios,instances,errors}}/run_date={day}/ "
            "(per image and class area ratios; detections; unreadable images)",
            f"model:         {version_dir} (MODEL_CARD.md, metrics.json, lineage.json)",
            f"training run:  {pipeline['run_dir']} (loss_curve.png, history.json)",
            f"metrics:       {pipeline['metrics']}",
            f"dataset:       {pipeline['dataset']} (report.json)",
            f"annotations:   {paths['labelme']}",
        ]
    )


class _HideFinishedTasks(logging.Filter):
    """Drops the "Finished in state Completed()" line of each task run (hundreds of them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Finished in state Completed")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mrcnn_pipeline.demo`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument(
        "--backbone",
        choices=sorted(RECIPES),
        default="resnet18",
        help="resnet18: the light model (default); resnet50: matterport's "
        "ResNet-50 model and heads, for a longer run",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help="training budget on a 2-core CPU (default 7 for resnet18, 30 for resnet50)",
    )
    parser.add_argument(
        "--grid",
        type=Path,
        help="where to write the overlay grid PNG (default <output>/overlay_grid.png)",
    )
    parser.add_argument("--images", type=int, default=300, help="annotated images (default 300)")
    parser.add_argument(
        "--incoming", type=int, default=30, help="held-out images for batch inference (default 30)"
    )
    parser.add_argument(
        "--classes",
        choices=("auto", "3", "1"),
        default="auto",
        help="3: square, circle, triangle; 1: every shape is a 'shape', which "
        "learns about three times faster per step; auto (default): 3 where "
        "this machine trains enough steps in --minutes for mask AP50 0.90",
    )
    args = parser.parse_args(argv)
    logging.getLogger("prefect.task_runs").addFilter(_HideFinishedTasks())
    ensure_api_or_exit("python -m mrcnn_pipeline.demo")
    minutes = args.minutes or DEFAULT_MINUTES[args.backbone]
    print(
        report(
            run(
                args.output,
                minutes,
                args.images,
                args.incoming,
                backbone=args.backbone,
                grid=args.grid,
                classes=args.classes,
            )
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
