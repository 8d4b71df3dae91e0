"""Pipeline throughput: the `batch-inference` flow against the bare `detect()` loop, and its memory.

    python -m benchmarks.pipeline [--images 200] [--rss-images 1000] [--rss-every 50]
                                  [--height 480] [--width 640] [--batch-size 4]
                                  [--shard-size 64] [--no-s3] [--quick]

Images: synthetic shapes (`mrcnn.shapes`, seed 0) saved as JPEG (quality 90), `--width` x
`--height` (640x480), in a temporary folder. Model: `SMALL_MODEL`, a ResNet50-FPN at 256²
with 3 classes and random weights; DETECTION_MIN_CONFIDENCE 0 makes every image give
DETECTION_MAX_INSTANCES (20) instances, so masks, area ratios and overlays are real work.
Each part runs in its own child process (own TensorFlow, own peak RSS):

- `bare`: `model.detect()` over the decoded images held in memory, `--batch-size` per call,
  after one warm-up call; decoding is not timed (the strictest baseline).
- `flow_local`: `batch_inference(...)` over the folder into a local output folder, overlays on
  (the nightly default), timed around the call, after a warm-up run on `WARMUP_IMAGES`
  images (model loaded and traced once per process, as on a long-lived worker).
- `flow_s3`: the same with images and output on a SeaweedFS server started for the run
  (`tests/support/seaweed.py`); skipped with `--no-s3` or without the `weed` binary.
- `rss`: the flow over `--rss-images` images (copies of the folder), shards of
  `--rss-every` images; the process RSS is sampled as each shard finishes.

The JSON gives images per second for each part, the ratio flow/bare (issue 6 target >= 0.9),
each part's peak RSS and the RSS samples with the growth after the first 100 images.
`--quick` (24 images at 320x240, 48 for RSS every 8) checks the script, nothing more.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

SMALL_MODEL = dict(
    NAME="bench-pipeline",
    BACKBONE="resnet50",
    NUM_CLASSES=4,
    IMAGE_MIN_DIM=256,
    IMAGE_MAX_DIM=256,
    RPN_ANCHOR_SCALES=(16, 32, 64, 128, 256),
    POST_NMS_ROIS_INFERENCE=200,
    DETECTION_MAX_INSTANCES=20,
    DETECTION_MIN_CONFIDENCE=0.0,
    SEED=0,
)
CLASS_NAMES = ["square", "circle", "triangle"]
WARMUP_IMAGES = 4
RUN_DATE = "2026-01-01"
PARTS = ("bare", "flow_local", "flow_s3", "rss")


# ---------------------------------------------------------------------- data (parent)
def write_images(folder: Path, count: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """`count` shapes images as JPEG files `folder/NNNNN.jpg` (no TensorFlow needed)."""
    from PIL import Image

    from mrcnn.shapes import ShapesDataset

    shapes = ShapesDataset()
    shapes.load_shapes(count, height, width, seed=seed, max_shapes=6)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(shapes.load_image(index)).save(path, quality=90)
        paths.append(path)
    return paths


def copy_images(images: list[Path], folder: Path, count: int) -> None:
    """`count` images in `folder/copyK/`: the listing repeated under new names (new URIs)."""
    for index in range(count):
        source = images[index % len(images)]
        target = folder / f"copy{index // len(images)}" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


# ---------------------------------------------------------------------- children
def save_model(folder: str) -> dict[str, Any]:
    """Child `model`: random-weight SMALL_MODEL files, as training leaves them."""
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    config = Config(**SMALL_MODEL)
    model = MaskRCNN("inference", config, os.path.join(folder, "logs"))
    model.save_weights(os.path.join(folder, "model.weights.h5"))
    Path(folder, "config.json").write_text(json.dumps(config.to_dict()))
    Path(folder, "classes.json").write_text(json.dumps(CLASS_NAMES))
    return {"saved": folder}


def model_files(folder: str) -> dict[str, str]:
    return {
        "weights": os.path.join(folder, "model.weights.h5"),
        "config": os.path.join(folder, "config.json"),
    }


def bare_loop(job: dict[str, Any]) -> dict[str, Any]:
    """Child `bare`: detect() over the decoded images, batch by batch."""
    from tasks.inference.image_decoding import decode_image
    from tasks.inference.shards import find_images
    from tasks.models import build, resolve

    model = build(resolve(**model_files(job["model"])), batch_size=job["batch_size"])
    refs = find_images(job["input"])
    images = [decode_image(Path(ref.uri).read_bytes(), ref.uri) for ref in refs]
    batch = job["batch_size"]
    model.detect(images[:batch])  # warm-up: tracing and first-call allocations
    start = time.perf_counter()
    instances = 0
    for first in range(0, len(images), batch):
        instances += sum(len(r["class_ids"]) for r in model.detect(images[first : first + batch]))
    seconds = time.perf_counter() - start
    return {
        "images": len(images),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(images) / seconds, 3),
        "instances_per_image": round(instances / len(images), 2),
        "peak_rss_mib": common.peak_rss_mib(),
    }


def flow_run(job: dict[str, Any]) -> dict[str, Any]:
    """Child `flow_local` / `flow_s3`: the flow on the folder, after a warm-up run."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.batch_inference import batch_inference

    parameters = dict(
        run_date=RUN_DATE,
        batch_size=job["batch_size"],
        shard_size=job["shard_size"],
        **model_files(job["model"]),
    )
    with prefect_test_harness(server_startup_timeout=120):
        batch_inference(input_uri=job["warmup"], output_uri=job["output"] + "-warmup", **parameters)
        start = time.perf_counter()
        summary = batch_inference(input_uri=job["input"], output_uri=job["output"], **parameters)
        seconds = time.perf_counter() - start
    return {
        "images": summary.processed,
        "errors": summary.errors,
        "shards": summary.shards,
        "seconds": round(seconds, 2),
        "images_per_second": round(summary.processed / seconds, 3),
        "peak_rss_mib": common.peak_rss_mib(),
    }


def rss_run(job: dict[str, Any]) -> dict[str, Any]:
    """Child `rss`: the flow over many images, sampling RSS as each shard finishes."""
    import psutil
    from prefect.testing.utilities import prefect_test_harness

    from flows.batch_inference import batch_inference, progress_listener

    process = psutil.Process()
    samples: list[tuple[int, float]] = []

    def sample(done: int, todo: int) -> None:
        samples.append((done, round(process.memory_info().rss / 2**20, 1)))

    start = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120), progress_listener(sample):
        summary = batch_inference(
            input_uri=job["input"],
            output_uri=job["output"],
            run_date=RUN_DATE,
            batch_size=job["batch_size"],
            shard_size=job["shard_size"],
            **model_files(job["model"]),
        )
    seconds = time.perf_counter() - start
    after = [rss for done, rss in samples if done >= min(100, samples[-1][0])]
    return {
        "images": summary.processed,
        "seconds_including_model_load": round(seconds, 2),
        "rss_samples_images_mib": samples,
        "rss_mib_after_first_100": after[0],
        "rss_mib_max_after_first_100": max(after),
        "growth_after_first_100_mib": round(after[-1] - after[0], 1),
        "peak_rss_mib": common.peak_rss_mib(),
    }


CHILDREN = {
    "model": lambda job: save_model(job["model"]),
    "bare": bare_loop,
    "flow": flow_run,
    "rss": rss_run,
}


# ---------------------------------------------------------------------- parent
def main(argv: list[str]) -> dict[str, Any]:
    """Parse arguments, make the data, run each part in a child, and merge the figures."""
    args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        return CHILDREN[job["child"]](job)
    report = common.header("pipeline", argv)
    report.update(
        settings={
            "images": args.images,
            "size": [args.height, args.width],
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
            "rss_images": args.rss_images,
            "rss_every": args.rss_every,
            "model": SMALL_MODEL,
            "run_date": RUN_DATE,
        }
    )
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        root = Path(work)
        os.environ.update(
            PREFECT_HOME=str(root / "prefect-home"),
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        images = write_images(root / "images", args.images, args.height, args.width)
        write_images(root / "warmup", WARMUP_IMAGES, args.height, args.width)
        copy_images(images, root / "many", args.rss_images)
        (root / "model").mkdir()
        base = {
            "model": str(root / "model"),
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
        }
        parts: dict[str, Any] = {"model": child({"child": "model", **base})}
        parts["bare"] = child({"child": "bare", "input": str(root / "images"), **base})
        parts["flow_local"] = child(
            {
                "child": "flow",
                "input": str(root / "images"),
                "warmup": str(root / "warmup"),
                "output": str(root / "out"),
                **base,
            }
        )
        parts["flow_s3"] = s3_part(root, base) if args.s3 else {"skipped": "--no-s3"}
        parts["rss"] = child(
            {
                "child": "rss",
                "input": str(root / "many"),
                "output": str(root / "out-rss"),
                **base,
                "shard_size": args.rss_every,
            }
        )
    del parts["model"]
    report["parts"] = parts
    bare = parts["bare"].get("images_per_second")
    report["ratios_flow_over_bare"] = {
        name: common.ratio(parts[name].get("images_per_second"), bare)
        for name in ("flow_local", "flow_s3")
    }
    report["load_average_at_end"] = common.load_average()
    return report


def s3_part(root: Path, base: dict[str, Any]) -> dict[str, Any]:
    """Upload the images to a fresh SeaweedFS server and run the flow against it."""
    from tasks import storage
    from tests.support.seaweed import seaweed_server, weed_binary

    try:
        weed_binary()
    except FileNotFoundError as error:
        return {"skipped": str(error)}
    (root / "seaweed").mkdir()
    with seaweed_server(root / "seaweed") as server:
        saved = dict(os.environ)
        os.environ.update(server.environment)  # the child inherits the credentials
        try:
            prefix = f"s3://{server.bucket}/bench"
            for folder in ("images", "warmup"):
                for path in sorted((root / folder).iterdir()):
                    storage.write_bytes(f"{prefix}/{folder}/{path.name}", path.read_bytes())
            return child(
                {
                    "child": "flow",
                    "input": f"{prefix}/images/",
                    "warmup": f"{prefix}/warmup/",
                    "output": f"{prefix}/out",
                    **base,
                }
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)


def child(job: dict[str, Any]) -> dict[str, Any]:
    return common.run_child("benchmarks.pipeline", ["--child", json.dumps(job)])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--images", type=int, default=200, help="images timed per part (200)")
    parser.add_argument("--rss-images", type=int, default=1000, help="images of the RSS run (1000)")
    parser.add_argument(
        "--rss-every", type=int, default=50, help="RSS sample (and shard) size (50)"
    )
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=4, help="images per detect() call (4)")
    parser.add_argument("--shard-size", type=int, default=64, help="images per flow task (64)")
    parser.add_argument("--no-s3", dest="s3", action="store_false", help="skip the SeaweedFS part")
    parser.add_argument("--quick", action="store_true", help="smoke run: 24 images at 320x240")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rss_images, args.rss_every = 24, 48, 8
        args.height, args.width, args.shard_size = 240, 320, 8
    for name in (
        "images",
        "rss_images",
        "rss_every",
        "batch_size",
        "shard_size",
        "height",
        "width",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
