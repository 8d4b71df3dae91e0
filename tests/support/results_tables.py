"""Batch-inference tables written directly (one file per table and day), for reader tests.

The documented readers glob ``<table>/*/*.parquet``, so a file placed in a partition folder
reads like a committed one; the commit protocol has its own tests.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.annotations.rle import rle_string
from tasks.inference.area_ratios import area_rows
from tasks.parquet_schemas import to_table
from tests.support.builders import image_bytes, write

NOW = datetime.datetime(2026, 6, 1, 2, 0, tzinfo=datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Detected:
    """One detection: class id (1-based), score and mask."""

    class_id: int
    score: float
    mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class Result:
    """One image's result: where it is, its size and its detections."""

    uri: str
    height: int
    width: int
    detections: tuple[Detected, ...] = ()


def write_day(out: Path, day: str, results: Sequence[Result], class_names: Sequence[str],
              model: tuple[str, str] = ("shapes", "1")) -> None:
    """Write ``area_ratios`` and ``instances`` of one run_date under ``out``."""
    areas, instances = [], []
    for result in results:
        found = _detection(result)
        areas += [{**row, "inferred_at": NOW} for row in
                  area_rows(result.uri, result.height, result.width, found, class_names)]
        for index, item in enumerate(result.detections):
            ys, xs = np.nonzero(item.mask)
            instances.append({"image_uri": result.uri, "instance_index": index,
                              "class_id": item.class_id, "class_name": class_names[item.class_id - 1],
                              "score": item.score, "y1": int(ys.min()), "x1": int(xs.min()),
                              "y2": int(ys.max()) + 1, "x2": int(xs.max()) + 1,
                              "pixel_count": int(item.mask.sum()),
                              "mask_rle": rle_string(item.mask)})
    name, version = model
    tables = {"area_ratios": to_table("area_ratios", areas, {
                  "model_name": name, "model_version": version, "run_id": f"run-{day}"}),
              "instances": to_table("instances", instances, {"model_version": version,
                                                             "run_id": f"run-{day}"})}
    for table, data in tables.items():
        folder = out / table / f"run_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, folder / f"part-{version}.parquet")


def write_images(results: Sequence[Result]) -> None:
    """Write a random image of the right size at each result's (local) URI."""
    for seed, result in enumerate(results):
        write(Path(result.uri), image_bytes(result.height, result.width, seed=seed))


def _detection(result: Result) -> dict[str, np.ndarray]:
    masks = [item.mask for item in result.detections]
    return {"masks": np.stack(masks, -1) if masks else np.zeros((result.height, result.width, 0),
                                                                 bool),
            "class_ids": np.array([item.class_id for item in result.detections], np.int32),
            "scores": np.array([item.score for item in result.detections], np.float32),
            "rois": np.zeros((len(masks), 4), np.int32)}
