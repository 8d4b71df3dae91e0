"""A/B timing of our model's inference under several Config overrides, in one process.

    python -m benchmarks.variants --size 512 --batch 1 --rounds 6 \
        --variant base '{}' --variant rois300 '{"POST_NMS_ROIS_INFERENCE": 300}'

For before/after checks of one change on a machine shared with other work: every variant is
built once (same seed, so the same random weights), then the rounds call each variant in
turn, so load changes hit all of them alike. The JSON gives each variant's seconds per image
(median, min, max), its ratio to the first variant and the load average at start and end.
Defaults are the speed benchmark's: ResNet50-FPN, 81 classes, DETECTION_MIN_CONFIDENCE 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

from benchmarks import common
from benchmarks.inference import NUM_CLASSES


def _model(size: int, batch: int, overrides: dict[str, Any], model_dir: str):
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    settings = {
        "NAME": "bench",
        "BACKBONE": "resnet50",
        "NUM_CLASSES": NUM_CLASSES,
        "IMAGE_MIN_DIM": size,
        "IMAGE_MAX_DIM": size,
        "IMAGES_PER_GPU": batch,
        "SEED": 0,
        "DETECTION_MIN_CONFIDENCE": 0.0,
        **overrides,
    }
    return MaskRCNN("inference", Config(**settings), model_dir)


def run(
    size: int, batch: int, variants: list[tuple[str, dict]], rounds: int, warmup: int
) -> dict[str, Any]:
    """Time `detect` of each variant, interleaved, `rounds` times after `warmup` calls each."""
    images = common.random_images(batch, size)
    seconds: dict[str, list[float]] = {name: [] for name, _ in variants}
    detections: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as model_dir:
        models = {name: _model(size, batch, overrides, model_dir) for name, overrides in variants}
        for name, model in models.items():
            for _ in range(warmup):
                detections[name] = sum(len(r["class_ids"]) for r in model.detect(images)) / batch
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.detect(images)
                seconds[name].append(time.perf_counter() - start)
    base = common.summarize(seconds[variants[0][0]], scale=batch)["median"]
    results = []
    for name, overrides in variants:
        summary = common.summarize(seconds[name], scale=batch)
        results.append(
            {
                "variant": name,
                "overrides": overrides,
                "seconds_per_image": summary,
                "detections_per_image": detections[name],
                "ratio_to_first": round(summary["median"] / base, 3),
            }
        )
    return {"size": size, "batch": batch, "rounds": rounds, "warmup": warmup, "results": results}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        metavar=("NAME", "JSON"),
        required=True,
        help="a name and a JSON object of Config overrides; the first is the baseline",
    )
    args = parser.parse_args(argv)
    try:
        args.variant = [(name, json.loads(text)) for name, text in args.variant]
    except json.JSONDecodeError as error:
        parser.error(f"--variant overrides must be a JSON object: {error}")
    if not all(isinstance(overrides, dict) for _, overrides in args.variant):
        parser.error(
            "--variant overrides must be a JSON object, e.g. '{\"POST_NMS_ROIS_INFERENCE\": 300}'"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    document = common.header("variants", argv)
    document.update(run(args.size, args.batch, args.variant, args.rounds, args.warmup))
    document["load_average_at_end"] = common.load_average()
    common.emit(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
