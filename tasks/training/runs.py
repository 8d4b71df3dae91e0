"""Training run folders: where a run keeps its record, checkpoints and history.

Run folder (`run_dir`: a local path or `s3://...`)::

    run.json          name, classes, dataset URI + content hash, training config, stages,
                      initial weights, training flow run id, start time
    config.json       the mrcnn Config (`to_dict`); classes.json: class names without BG
    checkpoints/mask_rcnn_<name>_<epoch:04d>.weights.h5     uploaded after every epoch
    history.json      one row per finished epoch: stage, layers, learning rate, seconds,
                      replicas, precision (mrcnn.precision: what that epoch computed in), losses
    metrics.json      summary and history, written when the stages are done; loss_curve.png
"""

from __future__ import annotations

import datetime
import json
import os
import re
from typing import Any

from tasks import storage
from tasks.failures import InvalidSetting, MissingInput
from tasks.models.artifact import CLASSES_FILE, CONFIG_FILE

RUN_FILE, HISTORY_FILE, METRICS_FILE, CURVE_FILE = (
    "run.json",
    "history.json",
    "metrics.json",
    "loss_curve.png",
)
CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_NAME = re.compile(r"mask_rcnn_[\w-]+_(\d{4,})\.weights\.h5")
RUNS_FOLDER = ".runs"  # default home of run folders, beside the registry's models


def dump_json(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode("utf-8")


def absolute(uri: str) -> str:
    """Local paths made absolute (so that records stay valid from any folder); URIs as given."""
    return os.path.abspath(uri.removeprefix("file://")) if storage.is_local(uri) else uri


def default_run_dir(registry_uri: str, name: str) -> str:
    """A new run folder `<registry>/.runs/<name>-<UTC time>`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return storage.join(registry_uri, RUNS_FOLDER, f"{name}-{stamp}")


def newest_run(registry_uri: str, name: str) -> str | None:
    """The newest run folder of `name` under `<registry>/.runs` that holds a checkpoint."""
    base = storage.join(registry_uri, RUNS_FOLDER)
    runs = {
        storage.relative_path(uri, base).split("/")[0]
        for uri in storage.list_files(base, (".weights.h5",))
    }
    ours = sorted(run for run in runs if re.fullmatch(rf"{re.escape(name)}-\d{{8}}T\d{{6}}", run))
    return storage.join(base, ours[-1]) if ours else None


def list_checkpoints(run_dir: str) -> dict[int, str]:
    """Checkpoint URIs of a run folder by epoch."""
    found = {}
    for uri in storage.list_files(storage.join(run_dir, CHECKPOINT_FOLDER), (".weights.h5",)):
        match = CHECKPOINT_NAME.fullmatch(uri.rsplit("/", 1)[-1])
        if match:
            found[int(match.group(1))] = uri
    return dict(sorted(found.items()))


def read_history(run_dir: str) -> list[dict[str, Any]]:
    """The per-epoch rows written so far (empty for a new run)."""
    try:
        return storage.read_json(storage.join(run_dir, HISTORY_FILE), "training history")
    except FileNotFoundError:
        return []


def _check_finished(
    run: dict[str, Any], run_dir: str, epoch: int, history: list[dict[str, Any]]
) -> None:
    """Raise ValueError unless the last stage ended: at its epoch, or when the budget ran out."""
    minutes = (run.get("training_config") or {}).get("minutes")
    if minutes:
        spent = float(history[-1].get("elapsed", 0.0)) / 60 if history else 0.0
        if spent < minutes:
            raise InvalidSetting(
                f"run {run_dir!r} stopped after {spent:.1f} of its {minutes:g} "
                "minutes; resume it first"
            )
        return
    planned = run["stages"][-1]["epochs"]
    if epoch < planned:
        raise InvalidSetting(
            f"run {run_dir!r} stopped at epoch {epoch} of {planned}; resume it first"
        )


def collect_run(run_dir: str) -> dict[str, Any]:
    """What registering a finished run needs: its last checkpoint, config, classes, lineage.

    Raises:
        FileNotFoundError: not a run folder, or no checkpoint.
        ValueError: the run stopped before its last stage ended (resume it first).
    """
    run = storage.read_json(storage.join(run_dir, RUN_FILE), "run record")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise MissingInput(f"run folder {run_dir!r} has no checkpoint")
    epoch, history = max(checkpoints), read_history(run_dir)
    _check_finished(run, run_dir, epoch, history)
    seconds = sum(row.get("seconds", 0.0) for row in history)
    # A resumed run may have trained on other machines, in another precision.
    precisions = sorted({row.get("precision", "float32") for row in history})
    return {
        "name": run["name"],
        "weights": checkpoints[epoch],
        "config": storage.read_json(storage.join(run_dir, CONFIG_FILE), "model config"),
        "classes": storage.read_json(storage.join(run_dir, CLASSES_FILE), "class list"),
        "lineage": {
            "dataset": run["dataset"],
            "training_config": run["training_config"],
            "stages": run["stages"],
            "init_weights": run["init_with"],
            "init_model": run.get("init_model"),
            "run_dir": run_dir,
            "checkpoint": checkpoints[epoch],
            "epochs": epoch,
            "training_flow_run_id": run["flow_run_id"],
            "training_seconds": round(seconds, 3),
            "training_precision": precisions,
        },
    }
