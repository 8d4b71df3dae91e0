"""Staged training from the canonical dataset into a run folder on any URI, resumable.

Run folder (`run_dir`: a local path or `s3://...`)::

    run.json          name, classes, dataset URI + content hash, training config, stages,
                      initial weights, training flow run id, start time
    config.json       the mrcnn Config (`to_dict`); classes.json: class names without BG
    checkpoints/mask_rcnn_<name>_<epoch:04d>.weights.h5     uploaded after every epoch
    history.json      one row per finished epoch: stage, layers, learning rate, seconds, losses
    metrics.json      summary and history, written when the stages are done; loss_curve.png

The model is built and trained in a child process (`run_training_process`): TensorFlow's
memory returns to the system when it exits, and the parent can stop it (a Prefect task
timeout cannot interrupt `fit` in a thread). The child reports each epoch through a JSON-lines
file. Resuming loads the newest checkpoint and continues the cumulative epoch count: stages
that ended at or before it are skipped, the interrupted one runs to its end. The optimizer
state is not restored (matterport's `last` did not restore it either).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from tasks import registry, storage
from tasks.training_config import (CLASS_SPECIFIC_LAYERS, COCO_CLASS_COUNT, TrainingConfig,
                                   parse_init)

SPLITS = ("train", "val")
RUN_FILE, HISTORY_FILE, METRICS_FILE, CURVE_FILE = ("run.json", "history.json", "metrics.json",
                                                    "loss_curve.png")
CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_NAME = re.compile(r"mask_rcnn_[\w-]+_(\d{4,})\.weights\.h5")
RUNS_FOLDER = ".runs"  # default home of run folders, beside the registry's models
Report = Callable[[dict[str, Any]], None]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode("utf-8")


# ---------------------------------------------------------------------------- run folders
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
    runs = {storage.relative_path(uri, base).split("/")[0]
            for uri in storage.list_files(base, (".weights.h5",))}
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


def read_json_file(uri: str, what: str) -> Any:
    """Parse a JSON file; errors name `what` and the URI."""
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {uri!r} not found") from None
    except ValueError as error:
        raise ValueError(f"{what} {uri!r} is not valid JSON: {error}") from None


def read_history(run_dir: str) -> list[dict[str, Any]]:
    """The per-epoch rows written so far (empty for a new run)."""
    try:
        return json.loads(storage.read_bytes(storage.join(run_dir, HISTORY_FILE)))
    except FileNotFoundError:
        return []


def collect_run(run_dir: str) -> dict[str, Any]:
    """What registering a finished run needs: its last checkpoint, config, classes, lineage.

    Raises:
        FileNotFoundError: not a run folder, or no checkpoint.
        ValueError: the run stopped before its last stage ended (resume it first).
    """
    run = read_json_file(storage.join(run_dir, RUN_FILE), "run record")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise FileNotFoundError(f"run folder {run_dir!r} has no checkpoint")
    epoch, planned = max(checkpoints), run["stages"][-1]["epochs"]
    if epoch < planned:
        raise ValueError(f"run {run_dir!r} stopped at epoch {epoch} of {planned}; resume it first")
    seconds = sum(row.get("seconds", 0.0) for row in read_history(run_dir))
    return {"name": run["name"], "weights": checkpoints[epoch],
            "config": read_json_file(storage.join(run_dir, "config.json"), "model config"),
            "classes": read_json_file(storage.join(run_dir, "classes.json"), "class list"),
            "lineage": {"dataset": run["dataset"], "training_config": run["training_config"],
                        "stages": run["stages"], "init_weights": run["init_with"],
                        "run_dir": run_dir, "checkpoint": checkpoints[epoch], "epochs": epoch,
                        "training_flow_run_id": run["flow_run_id"],
                        "training_seconds": round(seconds, 3)}}


# ---------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class FetchedDataset:
    """The canonical dataset in a local folder (`<root>/images`, `<root>/annotations`)."""

    uri: str
    root: str
    content_hash: str  # sha256 over annotation files and image bytes
    class_names: list[str]
    images: dict[str, int]  # images per split


def fetch_dataset(uri: str, cache_dir: str, splits: Sequence[str] = SPLITS) -> FetchedDataset:
    """Make the dataset at `uri` readable locally (remote files are copied) and hash it.

    Raises:
        FileNotFoundError: the dataset, a split's annotation file or an image is missing.
        ValueError: invalid JSON, or splits whose categories differ.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"dataset {uri!r} does not exist")
    local = storage.is_local(uri)
    uri = absolute(uri)
    root = uri if local else os.path.join(cache_dir, "dataset")
    digest, documents, names = hashlib.sha256(), {}, {}
    for split in splits:
        ann_uri = storage.join(uri, "annotations", f"{split}.json")
        try:
            raw = storage.read_bytes(ann_uri)
            documents[split] = json.loads(raw)
        except FileNotFoundError:
            raise FileNotFoundError(f"dataset {uri!r} has no {split!r} split: {ann_uri!r} "
                                    "not found") from None
        except ValueError as error:
            raise ValueError(f"{split} annotations {ann_uri!r} are not valid JSON: {error}") from None
        names[split] = [c["name"] for c in sorted(documents[split].get("categories", []),
                                                  key=lambda c: c["id"])]
        digest.update(f"annotations/{split}.json:{hashlib.sha256(raw).hexdigest()}\n".encode())
        if not local:
            storage.write_bytes(os.path.join(root, "annotations", f"{split}.json"), raw)
    if len({tuple(v) for v in names.values()}) > 1:
        raise ValueError(f"the splits of dataset {uri!r} have different categories: {names}")
    files = sorted({image["file_name"] for doc in documents.values() for image in doc.get("images", [])})
    with ThreadPoolExecutor(8) as pool:
        for file_name, image_hash in zip(files, pool.map(lambda f: _fetch_image(uri, root, f, local), files)):
            digest.update(f"images/{file_name}:{image_hash}\n".encode())
    return FetchedDataset(uri, root, digest.hexdigest(), names[splits[0]],
                          {split: len(doc.get("images", [])) for split, doc in documents.items()})


def _fetch_image(uri: str, root: str, file_name: str, local: bool) -> str:
    image_uri = storage.join(uri, "images", file_name)
    try:
        data = storage.read_bytes(image_uri)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {image_uri!r} of dataset {uri!r} not found") from None
    if not local:
        storage.write_bytes(os.path.join(root, "images", file_name), data)
    return hashlib.sha256(data).hexdigest()


def check_classes(expected: Sequence[str], fetched: FetchedDataset, owner: str) -> None:
    """Raise ValueError when `owner`'s classes differ from the dataset's categories."""
    if list(expected) != fetched.class_names:
        raise ValueError(f"the classes of {owner} {list(expected)} differ from the categories of "
                         f"dataset {fetched.uri!r} (in id order): {fetched.class_names}")


def load_split(root: str, subset: str, class_names: Sequence[str]) -> Any:
    """A prepared `mrcnn.dataset.CocoDataset` of one split of a fetched dataset."""
    from mrcnn.dataset import CocoDataset

    dataset = CocoDataset()
    dataset.load_coco(root, subset, class_names=list(class_names))
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------- preparing a run
def prepare_training(dataset: str, training: TrainingConfig, run_dir: str, resume: bool,
                     registry_uri: str, work_dir: str, flow_run_id: str | None = None
                     ) -> dict[str, Any]:
    """Check every input and gather what the training process needs (a JSON-able request).

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
    config = training.mrcnn_config()
    if not fetched.images["train"]:
        raise ValueError(f"split 'train' of dataset {dataset!r} has no images")
    if config.VALIDATION_STEPS and not fetched.images["val"]:
        raise ValueError(f"split 'val' of dataset {dataset!r} has no images; set config "
                         "VALIDATION_STEPS: 0 to train without validation")
    checkpoints = list_checkpoints(run_dir)
    kind, target = parse_init(training.init_with)
    if checkpoints and not (resume or kind == "last"):
        raise FileExistsError(f"run folder {run_dir!r} already has checkpoints (up to epoch "
                              f"{max(checkpoints)}); resume it or choose another run folder")
    if kind == "last" and not checkpoints:
        raise FileNotFoundError(f"init_with 'last': no checkpoint in run folder {run_dir!r}")
    stages = [stage.to_dict() for stage in training.resolved_stages()]
    _start_or_check_run(run_dir, training, config.to_dict(), stages, fetched, flow_run_id)
    if checkpoints:
        epoch = max(checkpoints)
        init = {"kind": "resume", "uri": checkpoints[epoch], "exclude": None, "epoch": epoch,
                "path": _download_weights(checkpoints[epoch], work_dir)}
    else:
        init = _initial_weights(kind, target, training, registry_uri, work_dir)
    return {"config": config.to_dict(), "classes": training.classes, "stages": stages,
            "dataset": {"uri": fetched.uri, "hash": fetched.content_hash},
            "dataset_root": fetched.root, "run_dir": run_dir, "work_dir": work_dir,
            "init": init, "history": [r for r in read_history(run_dir) if r["epoch"] <= init["epoch"]]}


def _start_or_check_run(run_dir: str, training: TrainingConfig, config: dict[str, Any],
                        stages: list[dict[str, Any]], fetched: FetchedDataset,
                        flow_run_id: str | None) -> None:
    """Write run.json, config.json, classes.json; a resumed run must keep classes and model."""
    run_uri = storage.join(run_dir, RUN_FILE)
    if storage.is_file(run_uri):
        run = read_json_file(run_uri, "run record")
        if run["classes"] != training.classes or run["config"] != config:
            raise ValueError(f"run folder {run_dir!r} was started with other classes or model "
                             "settings; use a new run folder for this training config")
        run.update(stages=stages, training_config=training.to_dict())  # stages may be extended
    else:
        run = {"name": training.name, "classes": training.classes, "config": config,
               "training_config": training.to_dict(), "stages": stages,
               "dataset": {"uri": fetched.uri, "hash": fetched.content_hash},
               "init_with": training.init_with, "flow_run_id": flow_run_id,
               "started_at": registry.now_iso()}
    storage.write_bytes(run_uri, _dumps(run))
    storage.write_bytes(storage.join(run_dir, "config.json"), _dumps(config))
    storage.write_bytes(storage.join(run_dir, "classes.json"), _dumps(training.classes))


def _download_weights(uri: str, work_dir: str) -> str:
    """Copy a weight file to `work_dir/weights/` (checked to be HDF5); returns the path."""
    path = os.path.join(work_dir, "weights", uri.rstrip("/").rsplit("/", 1)[-1])
    storage.write_bytes(path, registry.read_weights(uri))
    return path


def _initial_weights(kind: str, target: str | None, training: TrainingConfig,
                     registry_uri: str, work_dir: str) -> dict[str, Any]:
    """Where the first stage starts: nothing, ImageNet, COCO or a registered model."""
    init = {"kind": kind, "uri": None, "path": None, "exclude": None, "epoch": 0}
    if kind == "model":
        version = registry.resolve(target, registry_uri)
        init["uri"] = version.file(registry.WEIGHTS_FILE)
        if version.read_json("classes.json") != training.classes:
            init["exclude"] = list(CLASS_SPECIFIC_LAYERS)
    elif kind in ("imagenet", "coco"):
        init["uri"] = target
        if kind == "coco" and len(training.classes) + 1 != COCO_CLASS_COUNT:
            init["exclude"] = list(CLASS_SPECIFIC_LAYERS)
    if init["uri"]:
        init["path"] = _download_weights(init["uri"], work_dir)
    return init


# ---------------------------------------------------------------------------- the training process
class EpochRecorder:
    """After every epoch: upload the checkpoint, then append and upload the history row."""

    def __init__(self, model: Any, run_dir: str, stage_number: int, stage: dict[str, Any],
                 history: list[dict[str, Any]], report: Report) -> None:
        self.model, self.run_dir, self.stage_number, self.stage = model, run_dir, stage_number, stage
        self.history, self.report = history, report
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import keras

        done = epoch + 1  # Keras counts from 0, checkpoint names from 1
        local = self.model.checkpoint_path.format(epoch=done)
        storage.copy_file(local, storage.join(self.run_dir, CHECKPOINT_FOLDER, os.path.basename(local)))
        os.remove(local)  # the run folder holds it now
        rate = keras.ops.convert_to_numpy(self.model.keras_model.optimizer.learning_rate)
        row = {**{key: float(value) for key, value in (logs or {}).items()},
               "epoch": done, "stage": self.stage_number, "layers": self.stage["layers"],
               "learning_rate": float(rate), "seconds": round(time.monotonic() - self._started, 3),
               "replicas": int(self.model.strategy.num_replicas_in_sync)}
        self.history.append(row)
        storage.write_bytes(storage.join(self.run_dir, HISTORY_FILE), _dumps(self.history))
        self.report({"type": "epoch", "row": row})

    def callback(self) -> Any:
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_begin=self.on_epoch_begin,
                                              on_epoch_end=self.on_epoch_end)


def run_training(request: dict[str, Any], report: Report, extra_callbacks: Sequence[Any] = (),
                 verbose: int | str = "auto") -> dict[str, Any]:
    """Build the model, load the initial weights and run the stages not yet done.

    Runs in the training process (or in-process in tests). Returns `{epoch, history}`.
    """
    from mrcnn.augment import Augmentation
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    config = Config.from_dict(request["config"])
    root, classes = request["dataset_root"], request["classes"]
    train_set = load_split(root, "train", classes)
    val_set = load_split(root, "val", classes) if config.VALIDATION_STEPS else None
    model = MaskRCNN("training", config, os.path.join(request["work_dir"], "logs"))
    init = request["init"]
    if init["path"]:
        try:
            model.load_weights(init["path"], by_name=True, exclude=init["exclude"])
        except ValueError as error:
            raise ValueError(f"initial weights {init['uri']!r} do not fit the model: {error}") from None
    model.epoch = init["epoch"]  # our checkpoint names do not carry matterport's run folder
    history = list(request["history"])
    for number, stage in enumerate(request["stages"], start=1):
        if stage["epochs"] <= model.epoch:
            continue  # finished before a resume
        recorder = EpochRecorder(model, request["run_dir"], number, stage, history, report)
        augmentation = Augmentation.from_dict(stage["augmentation"]) if stage["augmentation"] else None
        model.train(train_set, val_set, stage["learning_rate"], stage["epochs"], stage["layers"],
                    augmentation=augmentation, custom_callbacks=[recorder.callback(), *extra_callbacks],
                    verbose=verbose)
    return {"epoch": model.epoch, "history": history}


def main(argv: Sequence[str]) -> int:
    """Entry of the training process: `REQUEST_JSON EVENTS_JSONL`; events go to the file."""
    request = json.loads(Path(argv[0]).read_text())
    with open(argv[1], "a", encoding="utf-8") as events:
        def report(event: dict[str, Any]) -> None:
            events.write(json.dumps(event) + "\n")
            events.flush()

        try:
            report({"type": "done", "result": run_training(request, report)})
        except Exception as error:  # the parent re-raises it
            report({"type": "error", "error": type(error).__name__, "message": str(error),
                    "traceback": traceback.format_exc()})
            return 1
    return 0


_REBUILT_ERRORS = {cls.__name__: cls for cls in (ValueError, TypeError, KeyError, FileNotFoundError,
                                                  FileExistsError, PermissionError, TimeoutError,
                                                  MemoryError, RuntimeError)}


def run_training_process(request: dict[str, Any], on_event: Report,
                         timeout_seconds: float | None = None) -> dict[str, Any]:
    """Run `run_training` in a child Python process and relay its epoch events.

    Returns:
        The child's result `{epoch, history}`.

    Raises:
        The child's error (same type for the common built-in ones), TimeoutError after
        `timeout_seconds` (the child is stopped), RuntimeError if the child dies silently.
    """
    work = Path(request["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    request_path, events_path = work / "request.json", work / "events.jsonl"
    request_path.write_text(json.dumps(request))
    events_path.write_text("")
    code = "import sys; from tasks.training import main; sys.exit(main(sys.argv[1:]))"
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", **os.environ}
    process = subprocess.Popen([sys.executable, "-c", code, str(request_path), str(events_path)], env=env)
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    outcome, offset = None, 0
    try:
        while outcome is None:
            finished = process.poll() is not None
            events, offset = _read_events(events_path, offset)
            for event in events:
                if event["type"] == "epoch":
                    on_event(event)
                else:
                    outcome = event
            if finished:
                break
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"training exceeded {timeout_seconds:.0f} s and was stopped")
            time.sleep(0.5)
    finally:
        _stop(process)
    if outcome is None:
        raise RuntimeError(f"the training process exited with code {process.returncode} without "
                           "a result (killed, or out of memory?)")
    if outcome["type"] == "error":
        error = _REBUILT_ERRORS.get(outcome["error"])
        if error is None:
            raise RuntimeError(f"training failed: {outcome['traceback']}")
        raise error(outcome["message"])
    return outcome["result"]


def _read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after `offset`; returns them and the new offset."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[:data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()], offset + len(complete)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------- Prefect tasks
@task(name="prepare-training-run", cache_policy=NO_CACHE, persist_result=False)
def prepare_training_run(dataset: str, training: TrainingConfig, run_dir: str, resume: bool,
                         registry_uri: str, work_dir: str, flow_run_id: str | None = None
                         ) -> dict[str, Any]:
    """Task form of `prepare_training`."""
    return prepare_training(dataset, training, run_dir, resume, registry_uri, work_dir, flow_run_id)


@task(name="train-stages", cache_policy=NO_CACHE, persist_result=False)
def train_stages(request: dict[str, Any], timeout_minutes: float | None = None) -> dict[str, Any]:
    """Run the remaining stages in a training process, with a progress artifact per epoch.

    Returns:
        `{epoch, history}` after the last stage.
    """
    logger = get_run_logger()
    total, start = request["stages"][-1]["epochs"], request["init"]["epoch"]
    if start >= total:
        logger.info("all %d epochs of %s are done already", total, request["run_dir"])
        return {"epoch": start, "history": request["history"]}
    progress = create_progress_artifact(100.0 * start / total, key="train-model-progress",
                                        description=f"epoch {start} of {total}")

    def relay(event: dict[str, Any]) -> None:
        row = event["row"]
        update_progress_artifact(progress, 100.0 * row["epoch"] / total,
                                 description=f"epoch {row['epoch']} of {total}")
        logger.info("epoch %d of %d (stage %d, %s, lr %g): loss %.4f", row["epoch"], total,
                    row["stage"], row["layers"], row["learning_rate"], row.get("loss", float("nan")))

    timeout = timeout_minutes * 60 if timeout_minutes else None
    return run_training_process(request, relay, timeout)
