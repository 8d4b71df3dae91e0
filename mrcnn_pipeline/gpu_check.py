"""`make gpu-check`: does this machine's GPU train and detect as the CPU does, and how fast?

On a machine where TensorFlow sees a GPU (the `gpu` extra: `pip install -c constraints.txt
-e '.[gpu]'`), in about five minutes:

1. **Training** — the `shapes` recipe from scratch on the GPU for `--steps` steps in
   `--precision` (`mixed_float16` by default: float16 with loss scaling); it must learn: the
   loss of the last epoch below half of the first, and mask AP50 on held-out shapes at least
   `--min-ap50`.
2. **Parity** — the trained weights detect the held-out images on the GPU and on the CPU in
   float32 (TF32 off): the same detections, boxes within 2 px, scores within 1e-3, masks IoU
   at least 0.97.
3. **Speed** — detect calls at 512², batch 4, on the GPU and on the CPU: images per second.

Without a GPU it prints one line and exits 0. Exit 1 when training does not learn or the
detections differ. Nothing here has run on a GPU in this project's own measurements: the
figures it prints are the user's to report.

    python -m mrcnn_pipeline.gpu_check [--steps 200] [--precision mixed_float16] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

SIZE = 128  # the shapes images
PARITY = {"box_px": 2.0, "score": 1e-3, "mask_iou": 0.97}


@dataclasses.dataclass(frozen=True)
class TrainingCheck:
    steps: int
    seconds_per_step: float
    first_loss: float
    last_loss: float
    mask_ap50: float
    precision: str

    def learns(self, min_ap50: float) -> bool:
        return self.last_loss < 0.5 * self.first_loss and self.mask_ap50 >= min_ap50


@dataclasses.dataclass(frozen=True)
class ParityCheck:
    images: int
    detections: int
    same_classes: bool
    max_box_px: float
    max_score: float
    min_mask_iou: float

    @property
    def passed(self) -> bool:
        return (
            self.same_classes
            and self.max_box_px <= PARITY["box_px"]
            and self.max_score <= PARITY["score"]
            and self.min_mask_iou >= PARITY["mask_iou"]
        )


def shapes(count: int, seed: int) -> Any:
    from mrcnn.shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(count, SIZE, SIZE, seed=seed)
    dataset.prepare()
    return dataset


def shapes_config(**overrides: Any) -> Any:
    from tasks.training.config import load_training_config

    return load_training_config(
        {"preset": "shapes", "epochs": 1, "config": {"VALIDATION_STEPS": 0, **overrides}}
    ).mrcnn_config()


def check_training(
    device: str, steps: int, precision: str, folder: str, val_images: int = 30
) -> tuple[TrainingCheck, str]:
    """Train the shapes recipe on `device`; returns the check and the final weights' path."""
    import tensorflow as tf

    from mrcnn.augment import Augmentation
    from mrcnn.evaluation import DetectionEvaluator
    from mrcnn.model import MaskRCNN

    epoch_steps = max(1, steps // 4)
    config = shapes_config(STEPS_PER_EPOCH=epoch_steps, TRAINING_PRECISION=precision)
    with tf.device(device):
        model = MaskRCNN("training", config, folder)
        started = time.perf_counter()
        history = model.train(
            shapes(240, 1),
            None,
            config.LEARNING_RATE,
            4,
            "all",
            augmentation=Augmentation(hflip=0.5, vflip=0.5),
            verbose=0,
        )
        seconds = time.perf_counter() - started
    weights = model.find_last()
    val = shapes(val_images, 2)
    results = detect_on(device, weights, [val.load_image(i) for i in val.image_ids])
    evaluator = DetectionEvaluator(val.class_names)
    for image_id, result in zip(val.image_ids, results):
        masks, class_ids = val.load_mask(image_id)
        evaluator.process(int(image_id), class_ids, masks, result)
    losses = history.history["loss"]
    check = TrainingCheck(
        4 * epoch_steps,
        seconds / (4 * epoch_steps),
        float(losses[0]),
        float(losses[-1]),
        float(evaluator.evaluate()["segm"]["AP50"]),
        model.precision.precision,
    )
    return check, weights


def detect_on(device: str, weights: str, images: list[np.ndarray], batch: int = 4) -> list[dict]:
    """Detections of `images` by the shapes model with `weights`, computed on `device`."""
    import tensorflow as tf

    from mrcnn.model import MaskRCNN

    config = shapes_config(IMAGES_PER_GPU=batch, INFERENCE_PRECISION="float32")
    with tf.device(device), tempfile.TemporaryDirectory() as logs:
        model = MaskRCNN("inference", config, logs)
        model.load_weights(weights, by_name=True)
        return model.detect(images)


def compare(first: list[dict], second: list[dict]) -> ParityCheck:
    """How far two runs' detections of the same images are apart."""
    from mrcnn.masks import compute_overlaps_masks

    same, box, score, iou, count = True, 0.0, 0.0, 1.0, 0
    for a, b in zip(first, second):
        if len(a["class_ids"]) != len(b["class_ids"]) or (a["class_ids"] != b["class_ids"]).any():
            same = False
            continue
        count += len(a["class_ids"])
        if not len(a["class_ids"]):
            continue
        box = max(box, float(np.abs(a["rois"].astype(float) - b["rois"]).max()))
        score = max(score, float(np.abs(a["scores"] - b["scores"]).max()))
        iou = min(iou, float(np.diag(compute_overlaps_masks(a["masks"], b["masks"])).min()))
    return ParityCheck(len(first), count, same, box, score, iou)


def images_per_second(
    device: str, weights: str, size: int = 512, batch: int = 4, calls: int = 5
) -> float:
    """Steady detect throughput at `size`², `batch` images per call (one warm-up call)."""
    import tensorflow as tf

    from mrcnn.model import MaskRCNN

    config = shapes_config(IMAGES_PER_GPU=batch, IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size)
    images = [
        np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        for i in range(batch)
    ]
    with tf.device(device), tempfile.TemporaryDirectory() as logs:
        model = MaskRCNN("inference", config, logs)
        model.load_weights(weights, by_name=True)
        model.detect(images)
        started = time.perf_counter()
        for _ in range(calls):
            model.detect(images)
        return calls * batch / (time.perf_counter() - started)


def run(gpu: str, steps: int, precision: str, min_ap50: float) -> dict[str, Any]:
    """The three checks with `gpu` against the CPU (see the module docstring)."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)  # parity in float32
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        training, weights = check_training(gpu, steps, precision, folder)
        val = shapes(16, 3)
        images = [val.load_image(i) for i in val.image_ids]
        parity = compare(detect_on(gpu, weights, images), detect_on("/CPU:0", weights, images))
        speed = {device: round(images_per_second(device, weights), 2) for device in (gpu, "/CPU:0")}
    return {
        "device": gpu,
        "training": dataclasses.asdict(training),
        "learns": training.learns(min_ap50),
        "parity": dataclasses.asdict(parity),
        "parity_passed": parity.passed,
        "tolerances": PARITY,
        "images_per_second_512_batch4": speed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument(
        "--precision",
        default="mixed_float16",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
    )
    parser.add_argument(
        "--min-ap50", type=float, default=0.5, help="least mask AP50 after training (default 0.5)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print(
            "gpu-check: TensorFlow sees no GPU here (install the gpu extra: pip install -c "
            "constraints.txt -e '.[gpu]'); nothing to check"
        )
        return 0
    outcome = run("/GPU:0", args.steps, args.precision, args.min_ap50)
    print(json.dumps(outcome, indent=2) if args.json else _text(outcome))
    return 0 if outcome["learns"] and outcome["parity_passed"] else 1


def _text(outcome: dict[str, Any]) -> str:
    training, parity = outcome["training"], outcome["parity"]
    speed = outcome["images_per_second_512_batch4"]
    return "\n".join(
        [
            f"training on {outcome['device']} ({training['precision']}): "
            f"{training['steps']} steps at {training['seconds_per_step']:.3f} s, "
            f"loss {training['first_loss']:.3f} -> {training['last_loss']:.3f}, "
            f"mask AP50 {training['mask_ap50']:.3f}: "
            + ("learns" if outcome["learns"] else "DOES NOT LEARN"),
            f"parity with the CPU over {parity['images']} images ({parity['detections']} "
            f"detections): boxes {parity['max_box_px']:.2f} px, scores {parity['max_score']:.1e}, "
            f"mask IoU >= {parity['min_mask_iou']:.3f}: "
            + ("same" if outcome["parity_passed"] else "DIFFERENT"),
            "detect 512², batch 4: "
            + ", ".join(f"{device} {value} images/s" for device, value in speed.items()),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
