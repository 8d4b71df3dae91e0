"""`build`: a `ModelArtifact` made into a model that detects, once per process.

Runtimes (`tasks.models.runtime_registry`): ``"tensorflow"`` runs Keras weights (a `MaskRCNN`
built from the config) and SavedModel exports; ``"onnxruntime"`` runs ONNX exports (extra
``onnx``); ``"openvino"`` runs OpenVINO IR exports (extra ``openvino``). An export is loaded by
its format's own loader (`mrcnn.export_registry`). Every runtime gives the same
`detect(images)` contract as `MaskRCNN.detect`.

Precision (``"float32"``, ``"bfloat16"`` or ``"auto"``, default the model's
INFERENCE_PRECISION) can be chosen at build time for Keras weights and the export formats that
choose it when loaded (OpenVINO IR), and is resolved for this machine by `mrcnn.precision`
(bfloat16 only where the CPU has it natively); a SavedModel or ONNX graph runs in the precision
it was exported with. ``"int8"`` runs an INT8 OpenVINO export (`tasks.models.int8`) whose check
passed, and nothing else; an INT8 export runs at no other precision, so no default and no
``"auto"`` ever switches a model to INT8. `LoadedModel.precision` records what runs, and why.

Building a graph and reading its weights takes seconds, so the shard tasks of one worker
process share one built model (keyed on the artifact, runtime, batch size and threshold).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mrcnn import export_registry
from mrcnn.precision import INFERENCE_PRECISIONS
from tasks import registry, storage
from tasks.failures import InvalidInput, InvalidSetting
from tasks.models.artifact import KERAS, ModelArtifact
from tasks.models.runtime_registry import chooses_precision, get_runtime, runtimes_running

INT8 = "int8"  # an INT8 OpenVINO export whose check passed; never chosen by "auto"
PRECISIONS: tuple[str, ...] = (*INFERENCE_PRECISIONS, INT8)
Detect = Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A built model and what the output tables record about it.

    Attributes:
        artifact: what was built.
        runtime: the runtime that runs it.
        config: the `mrcnn.Config` it runs with (this run's batch size).
        detect: `MaskRCNN.detect`'s contract: RGB images in, one result dict per image out.
        precision: the `mrcnn.precision.PrecisionChoice` it computes in.
    """

    artifact: ModelArtifact
    runtime: str
    config: Any
    detect: Detect
    precision: Any

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.artifact.class_names

    @property
    def name(self) -> str:
        return self.artifact.name

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def key(self) -> str:
        return self.artifact.identity


_cache: dict[tuple[ModelArtifact, str, int, float | None, str | None], LoadedModel] = {}
_lock = threading.Lock()


def build(
    artifact: ModelArtifact,
    runtime: str = "tensorflow",
    batch_size: int = 1,
    min_confidence: float | None = None,
    precision: str | None = None,
) -> LoadedModel:
    """The artifact ready to detect, built at most once per process.

    Args:
        runtime: a name in `tasks.models.runtime_registry.NAMES`; it must run the
            artifact's format.
        batch_size: images per `detect` batch.
        min_confidence: DETECTION_MIN_CONFIDENCE for Keras weights; an export keeps the one
            it was exported with (filter its results afterwards).
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"`` for Keras weights and the
            formats that choose it when loaded (default: the model's INFERENCE_PRECISION);
            ``"int8"`` for an INT8 OpenVINO export whose check passed.

    Raises:
        ValueError: unknown runtime, a format the runtime does not run, a precision the
            format cannot change, INT8 on a float model or a float precision on an INT8
            export, an INT8 export that did not pass its check, weights that changed since
            `resolve`, or weights that do not fit the config.
    """
    check_runtime(artifact, runtime, precision)
    if batch_size < 1:
        raise InvalidSetting(f"batch_size must be >= 1, got {batch_size}")
    key = (
        artifact,
        runtime,
        batch_size,
        min_confidence if artifact.format == KERAS else None,
        precision,
    )
    with _lock:  # threads of one worker wait for a single build
        if key not in _cache:
            _cache.clear()  # one model per process: moving to another frees the old one
            _cache[key] = _build(artifact, runtime, batch_size, min_confidence, precision)
        return _cache[key]


def check_runtime(artifact: ModelArtifact, runtime: str, precision: str | None = None) -> None:
    """Raise ValueError unless ``runtime`` runs the artifact's format in ``precision``."""
    if artifact.format not in get_runtime(runtime).formats:
        runs = runtimes_running(artifact.format)
        raise InvalidSetting(
            f"model {artifact.origin!r} is a {artifact.format} model, which "
            f"runtime {runtime!r} does not run (use {' or '.join(runs)}, or "
            "export it with mrcnn-pipeline export-model)"
        )
    if artifact.int8_check or precision == INT8:
        _check_int8(artifact, precision)
        return
    if precision is None:
        return
    if precision not in PRECISIONS:
        raise InvalidSetting(f"precision must be one of {PRECISIONS}, got {precision!r}")
    exported = artifact.config.get("INFERENCE_PRECISION", "float32")
    if not chooses_precision(artifact.format) and precision not in ("auto", exported):
        choosing = [fmt.title for fmt in export_registry.FORMATS if fmt.chooses_precision]
        raise InvalidSetting(
            f"model {artifact.origin!r} is a {artifact.format} export in "
            f"{exported}; its precision cannot change to {precision} (run the "
            f"Keras weights or an {' or '.join(choosing)} export for that)"
        )


def _check_int8(artifact: ModelArtifact, precision: str | None) -> None:
    """INT8 runs only when asked for, and only an export whose check passed."""
    how = (
        "export one with mrcnn-pipeline export-model --format openvino --precision int8 "
        "--calibration URI"
    )
    if not artifact.int8_check:
        precision_of = artifact.config.get("INFERENCE_PRECISION", "float32")
        raise InvalidSetting(
            f"model {artifact.origin!r} is not an INT8 export (format "
            f"{artifact.format}, {precision_of}): {how}"
        )
    if artifact.int8_check != "passed":
        why = (
            "failed its check (see its int8_check.json)"
            if artifact.int8_check == "failed"
            else "has no check report (int8_check.json)"
        )
        raise InvalidSetting(f"INT8 export {artifact.origin!r} {why}: it does not run; {how}")
    if precision != INT8:
        raise InvalidSetting(
            f"model {artifact.origin!r} is an INT8 export: run it with "
            f"--precision int8 (no other precision, {precision or 'the default'} "
            "included, switches a model to INT8)"
        )


def _build(
    artifact: ModelArtifact,
    runtime: str,
    batch_size: int,
    min_confidence: float | None,
    precision: str | None,
) -> LoadedModel:
    from mrcnn.precision import PrecisionChoice, inference_precision

    overrides: dict[str, Any] = {"IMAGES_PER_GPU": batch_size, "GPU_COUNT": 1}
    if precision == INT8:  # its float parts run in float32, as its check measured them
        config = model_config(artifact, **overrides)
        chosen = PrecisionChoice(
            INT8, INT8, "INT8 export whose check passed; float parts in float32"
        )
        return LoadedModel(artifact, runtime, config, _exported_detect(artifact, config), chosen)
    if precision and chooses_precision(artifact.format):
        overrides["INFERENCE_PRECISION"] = precision
    if artifact.format == KERAS:
        if min_confidence is not None:
            overrides["DETECTION_MIN_CONFIDENCE"] = min_confidence
        model = keras_model(artifact, model_config(artifact, **overrides))
        return LoadedModel(artifact, runtime, model.config, model.detect, model.precision)
    config = model_config(artifact, **overrides)
    if chooses_precision(artifact.format):
        chosen = inference_precision(config.INFERENCE_PRECISION)
    else:  # the graph was written in one precision
        exported = config.INFERENCE_PRECISION
        chosen = PrecisionChoice(precision or exported, exported, f"exported in {exported}")
    return LoadedModel(artifact, runtime, config, _exported_detect(artifact, config), chosen)


def model_config(artifact: ModelArtifact, **overrides: Any) -> Any:
    """The artifact's `mrcnn.Config` with ``overrides`` (e.g. this run's batch size).

    A callable BACKBONE is the artifact's own `backbone`, the callable its resolver was given;
    an export's stays a name (its graph holds the backbone).
    """
    from mrcnn.config import Config

    settings = {**artifact.config, **overrides}
    allowed = {str(settings.get("BACKBONE")): artifact.backbone} if artifact.backbone else {}
    return Config.from_dict(
        settings,
        allowed,
        source=f"config of model {artifact.origin!r}",
        exported=artifact.format != KERAS,
    )


def keras_model(artifact: ModelArtifact, config: Any) -> Any:
    """A `MaskRCNN` in inference mode with ``config`` and the artifact's weights."""
    from mrcnn.model import MaskRCNN

    data = registry.read_weights(artifact.uri)  # names the user's file when it is no HDF5
    if artifact.sha256 and hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise InvalidInput(
            f"weights {artifact.uri!r} changed since the model was resolved "
            f"(expected sha256 {artifact.sha256[:12]})"
        )
    with tempfile.TemporaryDirectory(prefix="mrcnn-weights-") as folder:
        model = MaskRCNN("inference", config, folder)
        # Keras reads weights from a local path; remote files go through a temporary copy.
        suffix = ".weights.h5" if artifact.uri.endswith(".weights.h5") else ".h5"
        local = os.path.join(folder, "model" + suffix)
        with open(local, "wb") as handle:
            handle.write(data)
        try:
            model.load_weights(local, by_name=True)
        except (ValueError, OSError) as error:  # name the user's file, not the copy
            raise InvalidInput(
                f"weights {artifact.uri!r} do not fit the model of {artifact.origin!r}: "
                f"{str(error).replace(local, artifact.uri)}"
            ) from None
    return model


def _exported_detect(artifact: ModelArtifact, config: Any) -> Detect:
    from mrcnn.export import load_predict
    from mrcnn.model import detect_with

    precision = config.INFERENCE_PRECISION
    if storage.is_local(artifact.uri):
        predict = load_predict(artifact.uri.removeprefix("file://"), precision=precision)
    else:  # the loaders read local files; both hold the model in memory once loaded
        with tempfile.TemporaryDirectory(prefix="mrcnn-export-") as folder:
            for uri in storage.list_files(artifact.uri):
                storage.copy_file(
                    uri, os.path.join(folder, storage.relative_path(uri, artifact.uri))
                )
            predict = load_predict(folder, precision=precision)

    def detect(images: Sequence[np.ndarray], verbose: int = 0) -> list[dict[str, np.ndarray]]:
        return detect_with(predict, config, images, verbose)

    return detect
