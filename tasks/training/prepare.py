"""Staged training from the canonical dataset into a run folder on any URI, resumable.

`prepare_training` checks every input and writes the run record (`tasks.training.runs`);
`train_stages` runs the stages in a child process (`tasks.training.process`). Resuming loads
the newest checkpoint and continues the cumulative epoch count: stages that ended at or before
it are skipped, the interrupted one runs to its end. The optimizer state is not restored
(matterport's `last` did not restore it either).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from tasks import registry, storage
from tasks.failures import AlreadyExists, InvalidInput, InvalidSetting, MissingInput
from tasks.models import resolve
from tasks.models.artifact import CLASSES_FILE, CONFIG_FILE
from tasks.training.auto_config import auto_choices, choices_table, with_auto_config
from tasks.training.config import (
    CLASS_SPECIFIC_LAYERS,
    COCO_CLASS_COUNT,
    TrainingConfig,
    parse_init,
)
from tasks.training.data import FetchedDataset, check_classes, fetch_dataset
from tasks.training.process import run_training_process
from tasks.training.request import InitialWeights, TrainingRequest
from tasks.training.runs import RUN_FILE, dump_json, list_checkpoints, read_history


# ---------------------------------------------------------------------------- preparing a run
def prepare_training(
    dataset: str,
    training: TrainingConfig,
    run_dir: str,
    resume: bool,
    registry_uri: str,
    work_dir: str,
    flow_run_id: str | None = None,
) -> TrainingRequest:
    """Check every input and gather what the training process needs.

    Args:
        dataset: canonical dataset URI.
        training: the validated training config.
        run_dir: the run folder URI; with checkpoints in it, `resume` must be set.
        resume: continue from the run folder's newest checkpoint.
        registry_uri: registry for `init_with: model:<reference>`.
        work_dir: local scratch folder (dataset copy, weight files, child I/O).
        flow_run_id: recorded in `run.json`.

    Raises:
        FileNotFoundError, FileExistsError, ValueError: each naming the bad input.
    """
    fetched = fetch_dataset(dataset, work_dir)
    check_classes(training.classes, fetched, "the training config")
    choices = []
    if training.auto_config:
        choices = [choice.to_dict() for choice in auto_choices(training, fetched.root)]
        training = with_auto_config(training, choices)
    config = training.mrcnn_config()
    if not fetched.images["train"]:
        raise InvalidInput(f"split 'train' of dataset {dataset!r} has no images")
    if config.VALIDATION_STEPS and not fetched.images["val"]:
        raise InvalidInput(
            f"split 'val' of dataset {dataset!r} has no images; set config "
            "VALIDATION_STEPS: 0 to train without validation"
        )
    checkpoints = list_checkpoints(run_dir)
    kind, target = parse_init(training.init_with)
    if checkpoints and not (resume or kind == "last"):
        raise AlreadyExists(
            f"run folder {run_dir!r} already has checkpoints (up to epoch "
            f"{max(checkpoints)}); resume it or choose another run folder"
        )
    if kind == "last" and not checkpoints:
        raise MissingInput(f"init_with 'last': no checkpoint in run folder {run_dir!r}")
    stages = [stage.to_dict() for stage in training.resolved_stages()]
    if checkpoints:
        epoch = max(checkpoints)
        init = InitialWeights(
            "resume",
            checkpoints[epoch],
            _download_weights(checkpoints[epoch], work_dir),
            epoch=epoch,
        )
    else:
        init = _initial_weights(kind, target, training, registry_uri, work_dir)
    _start_or_check_run(
        run_dir, training, config.to_dict(), stages, fetched, flow_run_id, init.model, choices
    )
    return TrainingRequest(
        config=config.to_dict(),
        classes=training.classes,
        stages=stages,
        dataset={"uri": fetched.uri, "hash": fetched.content_hash},
        dataset_root=fetched.root,
        run_dir=run_dir,
        work_dir=work_dir,
        init=init,
        history=[row for row in read_history(run_dir) if row["epoch"] <= init.epoch],
        budget_seconds=60.0 * training.minutes if training.minutes else None,
        auto_config=choices,
    )


def _start_or_check_run(
    run_dir: str,
    training: TrainingConfig,
    config: dict[str, Any],
    stages: list[dict[str, Any]],
    fetched: FetchedDataset,
    flow_run_id: str | None,
    init_model: str | None,
    auto_config: list[dict[str, Any]],
) -> None:
    """Write run.json, config.json, classes.json; a resumed run must keep classes and model.

    ``init_model`` is the registry version ``init_with: model:`` resolved to (None otherwise):
    an alias may move, the version it meant is what lineage needs.
    """
    run_uri = storage.join(run_dir, RUN_FILE)
    if storage.is_file(run_uri):
        run = storage.read_json(run_uri, "run record")
        if run["classes"] != training.classes or run["config"] != config:
            raise InvalidSetting(
                f"run folder {run_dir!r} was started with other classes or model "
                "settings; use a new run folder for this training config"
            )
        run.update(stages=stages, training_config=training.to_dict())  # stages may be extended
    else:
        run = {
            "name": training.name,
            "classes": training.classes,
            "config": config,
            "training_config": training.to_dict(),
            "stages": stages,
            "dataset": {"uri": fetched.uri, "hash": fetched.content_hash},
            "init_with": training.init_with,
            "init_model": init_model,
            "auto_config": auto_config,
            "flow_run_id": flow_run_id,
            "started_at": registry.now_iso(),
        }
    storage.write_bytes(run_uri, dump_json(run))
    storage.write_bytes(storage.join(run_dir, CONFIG_FILE), dump_json(config))
    storage.write_bytes(storage.join(run_dir, CLASSES_FILE), dump_json(training.classes))


def _download_weights(uri: str, work_dir: str) -> str:
    """Copy a weight file to `work_dir/weights/` (checked to be HDF5); returns the path."""
    path = os.path.join(work_dir, "weights", uri.rstrip("/").rsplit("/", 1)[-1])
    storage.write_bytes(path, registry.read_weights(uri))
    return path


def _initial_weights(
    kind: str, target: str | None, training: TrainingConfig, registry_uri: str, work_dir: str
) -> InitialWeights:
    """Where the first stage starts: nothing, ImageNet, COCO or a registered model."""
    init = InitialWeights(kind)
    if kind == "model":
        artifact = resolve(target, registry_uri)
        if artifact.format != "keras":
            raise InvalidSetting(
                f"init_with 'model:{target}' is a {artifact.format} export; "
                "training starts from Keras weights (a registry version, run "
                "folder or checkpoint)"
            )
        other_classes = list(artifact.class_names) != training.classes
        init = InitialWeights(
            kind,
            artifact.uri,
            model=artifact.identity,
            exclude=CLASS_SPECIFIC_LAYERS if other_classes else None,
        )
    elif kind in ("imagenet", "coco"):
        other_classes = kind == "coco" and len(training.classes) + 1 != COCO_CLASS_COUNT
        init = InitialWeights(
            kind, target, exclude=CLASS_SPECIFIC_LAYERS if other_classes else None
        )
    if init.uri:
        init = dataclasses.replace(init, path=_download_weights(init.uri, work_dir))
    return init


# ---------------------------------------------------------------------------- Prefect tasks
@task(name="prepare-training-run", cache_policy=NO_CACHE, persist_result=False)
def prepare_training_run(
    dataset: str,
    training: TrainingConfig,
    run_dir: str,
    resume: bool,
    registry_uri: str,
    work_dir: str,
    flow_run_id: str | None = None,
) -> TrainingRequest:
    """Task form of `prepare_training`; logs the values chosen from the data."""
    request = prepare_training(
        dataset, training, run_dir, resume, registry_uri, work_dir, flow_run_id
    )
    if request.auto_config:
        get_run_logger().info(
            "config chosen from the data (auto_config):\n%s", choices_table(request.auto_config)
        )
    return request


@task(name="train-stages", cache_policy=NO_CACHE, persist_result=False)
def train_stages(request: TrainingRequest, timeout_minutes: float | None = None) -> dict[str, Any]:
    """Run the remaining stages in a training process, with a progress artifact per epoch.

    Returns:
        `{epoch, history}` after the last stage.
    """
    logger = get_run_logger()
    progress_of = _budget_progress if request.budget_seconds else _epoch_progress
    done, description = progress_of(
        request, {"epoch": request.init.epoch, "elapsed": request.elapsed_seconds}
    )
    if done >= 1:
        logger.info("%s of %s: done already", description, request.run_dir)
        return {"epoch": request.init.epoch, "history": request.history}
    progress = create_progress_artifact(
        100.0 * done, key="train-model-progress", description=description
    )

    def relay(event: dict[str, Any]) -> None:
        row = event["row"]
        share, text = progress_of(request, row)
        update_progress_artifact(progress, 100.0 * min(share, 1.0), description=text)
        logger.info(
            "%s (stage %d, %s, lr %g): loss %.4f, %.2f s/step",
            text,
            row["stage"],
            row["layers"],
            row["learning_rate"],
            row.get("loss", float("nan")),
            row["seconds"] / max(row.get("steps", 1), 1),
        )

    timeout = timeout_minutes * 60 if timeout_minutes else None
    return run_training_process(request, relay, timeout)


def _epoch_progress(request: TrainingRequest, row: dict[str, Any]) -> tuple[float, str]:
    total = request.total_epochs
    return row["epoch"] / total, f"epoch {row['epoch']} of {total}"


def _budget_progress(request: TrainingRequest, row: dict[str, Any]) -> tuple[float, str]:
    """The share of the time budget spent, and a line with the time left."""
    budget, elapsed = request.budget_seconds, float(row.get("elapsed", 0.0))
    left = max(budget - elapsed, 0.0)
    return elapsed / budget, (
        f"epoch {row['epoch']}: {elapsed / 60:.1f} of {budget / 60:.1f} "
        f"minutes, {left / 60:.1f} left"
    )
