"""The training process: builds the model, trains the stages, reports every epoch.

The model is built and trained in a child process (`run_training_process`): TensorFlow's
memory returns to the system when it exits, and the parent can stop it (a Prefect task
timeout cannot interrupt `fit` in a thread). The child reports each epoch through a JSON-lines
file; after each epoch its checkpoint and history row are uploaded to the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks import storage
from tasks.failures import (
    AccessDenied,
    AlreadyExists,
    InvalidInput,
    InvalidSetting,
    MissingInput,
    StorageRefused,
    StorageUnavailable,
    UserError,
)
from tasks.training.data import load_split
from tasks.training.request import TrainingRequest
from tasks.training.runs import CHECKPOINT_FOLDER, HISTORY_FILE, dump_json

Report = Callable[[dict[str, Any]], None]


class RunClock:
    """Seconds of the run spent so far, across the attempts of a resumed run."""

    def __init__(self, spent_before: float = 0.0) -> None:
        self.started = time.monotonic() - spent_before

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def at(self, seconds: float) -> float:
        """The `time.monotonic()` value when `seconds` of the run will have passed."""
        return self.started + seconds


class EpochRecorder:
    """After every epoch: upload the checkpoint, then append and upload the history row."""

    def __init__(
        self,
        model: Any,
        run_dir: str,
        stage_number: int,
        stage: dict[str, Any],
        history: list[dict[str, Any]],
        report: Report,
        clock: RunClock,
    ) -> None:
        self.model, self.run_dir, self.stage_number, self.stage = (
            model,
            run_dir,
            stage_number,
            stage,
        )
        self.history, self.report, self.clock = history, report, clock
        self._started, self._steps = time.monotonic(), 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started, self._steps = time.monotonic(), 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import keras

        done = epoch + 1  # Keras counts from 0, checkpoint names from 1
        local = self.model.checkpoint_path.format(epoch=done)
        storage.copy_file(
            local, storage.join(self.run_dir, CHECKPOINT_FOLDER, os.path.basename(local))
        )
        os.remove(local)  # the run folder holds it now
        rate = keras.ops.convert_to_numpy(self.model.keras_model.optimizer.learning_rate)
        row = {
            **{key: float(value) for key, value in (logs or {}).items()},
            "epoch": done,
            "stage": self.stage_number,
            "layers": self.stage["layers"],
            "learning_rate": float(rate),
            "seconds": round(time.monotonic() - self._started, 3),
            "steps": self._steps,
            "elapsed": round(self.clock.elapsed(), 3),
            "replicas": int(self.model.strategy.num_replicas_in_sync),
            "precision": self.model.precision.precision,
        }
        self.history.append(row)
        storage.write_bytes(storage.join(self.run_dir, HISTORY_FILE), dump_json(self.history))
        self.report({"type": "epoch", "row": row})

    def callback(self) -> Any:
        import keras

        return keras.callbacks.LambdaCallback(
            on_epoch_begin=self.on_epoch_begin,
            on_train_batch_end=self.on_train_batch_end,
            on_epoch_end=self.on_epoch_end,
        )


def run_training(
    request: TrainingRequest,
    report: Report,
    extra_callbacks: Sequence[Any] = (),
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Build the model, load the initial weights and run the stages not yet done.

    Runs in the training process (or in-process in tests). Under a time budget the clock
    starts here (model building counts) and each stage stops when its share has passed.
    Returns `{epoch, history}`.
    """
    from mrcnn.augment import Augmentation
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    clock = RunClock(request.elapsed_seconds)
    config = Config.from_dict(request.config, source=f"model config of run {request.run_dir!r}")
    root, classes = request.dataset_root, request.classes
    train_set = load_split(root, "train", classes, config)
    val_set = load_split(root, "val", classes, config) if config.VALIDATION_STEPS else None
    model = MaskRCNN("training", config, os.path.join(request.work_dir, "logs"))
    init = request.init
    if init.path:
        try:
            model.load_weights(
                init.path, by_name=True, exclude=list(init.exclude) if init.exclude else None
            )
        except ValueError as error:
            raise InvalidInput(
                f"initial weights {init.uri!r} do not fit the model: {error}"
            ) from None
    model.epoch = init.epoch  # our checkpoint names do not carry matterport's run folder
    history = list(request.history)
    budget = request.budget_seconds
    for number, stage in enumerate(request.stages, start=1):
        last = number == len(request.stages)
        if budget:
            # The last stage runs at least one step, so that a run always ends in a checkpoint.
            ends_at = stage["until"] * budget
            if clock.elapsed() >= ends_at and not last:
                continue  # its share of the budget is spent (before a resume, or building)
        elif stage["epochs"] <= model.epoch:
            continue  # finished before a resume
        recorder = EpochRecorder(model, request.run_dir, number, stage, history, report, clock)
        augmentation = (
            Augmentation.from_dict(stage["augmentation"]) if stage["augmentation"] else None
        )
        model.train(
            train_set,
            val_set,
            stage["learning_rate"],
            stage["epochs"],
            stage["layers"],
            augmentation=augmentation,
            custom_callbacks=[recorder.callback(), *extra_callbacks],
            verbose=verbose,
            until=clock.at(ends_at) if budget else None,
        )
    return {"epoch": model.epoch, "history": history}


def main(argv: Sequence[str]) -> int:
    """Entry of the training process: `REQUEST_JSON EVENTS_JSONL`; events go to the file."""
    request = TrainingRequest.from_json(Path(argv[0]).read_text())
    with open(argv[1], "a", encoding="utf-8") as events:

        def report(event: dict[str, Any]) -> None:
            events.write(json.dumps(event) + "\n")
            events.flush()

        try:
            report({"type": "done", "result": run_training(request, report)})
        except Exception as error:  # the parent re-raises it
            report(
                {
                    "type": "error",
                    "error": type(error).__name__,
                    "message": str(error),
                    "traceback": traceback.format_exc(),
                }
            )
            return 1
    return 0


# The child's error is raised again in the parent by name: a user error stays a user error
# (one line in the CLI); a programming error stays the same built-in type.
_REBUILT_ERRORS = {
    cls.__name__: cls
    for cls in (
        InvalidInput,
        InvalidSetting,
        MissingInput,
        AlreadyExists,
        AccessDenied,
        StorageRefused,
        StorageUnavailable,
        ValueError,
        TypeError,
        KeyError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        TimeoutError,
        MemoryError,
        RuntimeError,
    )
}


def run_training_process(
    request: TrainingRequest, on_event: Report, timeout_seconds: float | None = None
) -> dict[str, Any]:
    """Run `run_training` in a child Python process and relay its epoch events.

    Returns:
        The child's result `{epoch, history}`.

    Raises:
        The child's error (same type for the common built-in ones), TimeoutError after
        `timeout_seconds` (the child is stopped), RuntimeError if the child dies silently.
    """
    work = Path(request.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    request_path, events_path = work / "request.json", work / "events.jsonl"
    request_path.write_text(request.to_json())
    events_path.write_text("")
    code = "import sys; from tasks.training.process import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(request_path), str(events_path)],
        env=training_environment(os.environ),
    )
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
        raise RuntimeError(
            f"the training process exited with code {process.returncode} without "
            "a result (killed, or out of memory?)"
        )
    if outcome["type"] == "error":
        raise rebuilt_error(outcome)
    return outcome["result"]


def rebuilt_error(outcome: Mapping[str, str]) -> Exception:
    """The training process's error for the parent to raise: a user error as the same kind
    with its one-line message; anything else carries the child's traceback as a note."""
    kind = _REBUILT_ERRORS.get(outcome["error"])
    if kind is None:
        return RuntimeError(f"training failed: {outcome['traceback']}")
    error = kind(outcome["message"])
    if not isinstance(error, UserError):
        error.add_note(f"in the training process:\n{outcome['traceback']}")
    return error


def training_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The training process's environment: the parent's, with TensorFlow quiet and oneDNN on.

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on an
    AVX2-only AMD EPYC a ResNet-18 training step took 2.85 s with oneDNN against 4.1 s with
    Eigen's kernels. Values the user set win.
    """
    return {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1", **parent}


def _read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after `offset`; returns them and the new offset."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()], offset + len(
        complete
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
