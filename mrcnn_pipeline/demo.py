"""Demo: train Mask R-CNN from scratch on synthetic shapes for a few minutes, then detect.

Writes to `--output`: the checkpoints (`logs/`), `detections.json` (boxes, classes, scores and
per-class area ratios of each held-out image) and `overlays/<n>.png` pictures.

    python -m mrcnn_pipeline.demo --output demo_output --minutes 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from mrcnn.config import Config
from mrcnn.evaluation import DetectionEvaluator
from mrcnn.model import MaskRCNN
from mrcnn.shapes import ShapesDataset
from mrcnn.visualize import draw_instances, save_image


class ShapesConfig(Config):
    """Small images and a from-scratch recipe that learns on a CPU in minutes."""

    NAME = "shapes"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 8
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 32
    POST_NMS_ROIS_TRAINING = 256
    POST_NMS_ROIS_INFERENCE = 128
    MAX_GT_INSTANCES = 8
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 0
    OPTIMIZER = "adamw"
    LEARNING_RATE = 3e-4
    WARMUP_STEPS = 50
    TRAIN_BN = True
    DETECTION_MIN_CONFIDENCE = 0.7
    SEED = 0


class TimeLimit(keras.callbacks.Callback):
    """Stop training once `seconds` have passed (checked after every step)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.deadline = time.monotonic() + seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


def area_ratios(result: dict, class_names: list[str]) -> dict[str, float]:
    """Fraction of the image covered by the union of each class's instance masks."""
    masks = result["masks"]
    pixels = masks.shape[0] * masks.shape[1]
    return {class_names[c]: float(masks[:, :, result["class_ids"] == c].any(axis=2).sum() / pixels)
            for c in range(1, len(class_names))}


def run(output: Path, minutes: float, train_images: int = 500, val_images: int = 50) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    config = ShapesConfig()
    train = ShapesDataset()
    train.load_shapes(train_images, 128, 128, seed=1)
    train.prepare()
    val = ShapesDataset()
    val.load_shapes(val_images, 128, 128, seed=2)
    val.prepare()

    model = MaskRCNN("training", config, output / "logs")
    started = time.monotonic()
    model.train(train, None, config.LEARNING_RATE, epochs=1000, layers="all",
                custom_callbacks=[TimeLimit(minutes * 60)], verbose=2)
    train_seconds = time.monotonic() - started

    detector = MaskRCNN("inference", config, output / "logs")
    detector.load_weights(model.find_last())
    evaluator = DetectionEvaluator(val.class_names)
    records = []
    for image_id in val.image_ids:
        image = val.load_image(image_id)
        result = detector.detect([image])[0]
        gt_masks, gt_class_ids = val.load_mask(image_id)
        evaluator.process(image_id, gt_class_ids, gt_masks, result)
        ratios = area_ratios(result, val.class_names)
        lines = [f"{name}: {100 * ratio:.1f}%" for name, ratio in ratios.items() if ratio > 0]
        picture = draw_instances(image, result["rois"], result["masks"], result["class_ids"], val.class_names,
                                 result["scores"], text_lines=lines)
        save_image(picture, output / "overlays" / f"{image_id:03d}.png")
        records.append({"image": int(image_id), "area_ratios": ratios,
                        "detections": [{"class": val.class_names[c], "score": round(float(s), 4),
                                        "box_y1x1y2x2": [int(v) for v in box]}
                                       for c, s, box in zip(result["class_ids"], result["scores"], result["rois"])]})
    metrics = evaluator.evaluate()
    summary = {"train_seconds": round(train_seconds, 1), "epochs": model.epoch,
               "mask_mAP50": metrics["mAP50"], "segm_AP": metrics["segm"]["AP"], "bbox_AP": metrics["bbox"]["AP"]}
    (output / "detections.json").write_text(json.dumps({"summary": summary, "images": records}, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    args = parser.parse_args(argv)
    summary = run(args.output, args.minutes)
    print(json.dumps(summary, indent=2))
    print(f"overlays: {args.output / 'overlays'}  detections: {args.output / 'detections.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
