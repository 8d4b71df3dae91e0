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

from tasks.inference.area_ratios import area_rows, instance_rows
from tasks.parquet_schemas import AreaRatioRow, InstanceRow, RunStamp, rows_to_table
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


def write_day(
    out: Path,
    day: str,
    results: Sequence[Result],
    class_names: Sequence[str],
    model: tuple[str, str] = ("shapes", "1"),
) -> None:
    """Write ``area_ratios`` and ``instances`` of one run_date under ``out``."""
    name, version = model
    stamp = RunStamp(name, version, f"run-{day}")
    areas, instances = [], []
    for result in results:
        found = _detection(result)
        areas += area_rows(result.uri, result.height, result.width, found, class_names, stamp, NOW)
        instances += instance_rows(result.uri, found, class_names, stamp)
    tables = {
        "area_ratios": rows_to_table(AreaRatioRow, areas),
        "instances": rows_to_table(InstanceRow, instances),
    }
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
    return {
        "masks": np.stack(masks, -1) if masks else np.zeros((result.height, result.width, 0), bool),
        "class_ids": np.array([item.class_id for item in result.detections], np.int32),
        "scores": np.array([item.score for item in result.detections], np.float32),
        "rois": np.array([_box(mask) for mask in masks], np.int32).reshape(-1, 4),
    }


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The mask's bounding box, y2/x2 exclusive."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
