"""Exports of an inference model that serving runtimes load, and loading them back.

Every export is a folder with the model's settings in `mrcnn_config.json` and one graph with
the same contract, `(images [B, H, W, 3], metas [B, M]) -> (detections [B, D, 6], masks
[B, D, h, w])` (see `MaskRCNN.export` for the meaning of each):

- `"saved_model"`: a TensorFlow SavedModel written by `keras.export.ExportArchive` with the
  signature `serving_default`; it loads in `tf.saved_model.load`, `saved_model_cli run`, the
  C++ loader and so TF Serving. The weights are stored once (only the variables the endpoint
  reads are tracked).
- `"onnx"`: `model.onnx` converted by tf2onnx (the `onnx` extra), run by ONNX Runtime.
- `"openvino"`: OpenVINO IR (`model.xml` + `model.bin`, the `openvino` extra), run by
  OpenVINO's CPU plugin in float32 or bfloat16 (see `mrcnn.export_openvino`).

`load_exported(path)` reads any of them back as a `detect`-like callable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.export_openvino import OPENVINO_FILE, openvino_predict, write_openvino

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

EXPORT_CONFIG = "mrcnn_config.json"
ONNX_FILE = "model.onnx"
SAVED_MODEL_FILE = "saved_model.pb"
FORMATS = ("saved_model", "onnx", "openvino")
GRAPH_FILES = {"saved_model": SAVED_MODEL_FILE, "onnx": ONNX_FILE, "openvino": OPENVINO_FILE}
ONNX_OPSET = 17
Predict = Callable[..., dict[str, Any]]  # predict(images=..., metas=...) -> detections, masks


def export_model(model: MaskRCNN, path: str | os.PathLike, format: str = "saved_model") -> None:
    """Write `model`'s predict graph as `format` into the folder `path`, with its config."""
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {format!r}")
    if model.mode != "inference":
        raise RuntimeError("create the model with mode='inference' to export it")
    Path(path).mkdir(parents=True, exist_ok=True)
    predict = model._predict_fn()
    if format == "saved_model":
        _write_saved_model(predict, str(path))
    elif format == "onnx":
        _write_onnx(predict, Path(path, ONNX_FILE))
    else:
        write_openvino(predict, Path(path))
    # The precision the graph was built in, not "auto": the export runs as written.
    settings = {**model.config.to_dict(), "INFERENCE_PRECISION": model.precision.precision}
    Path(path, EXPORT_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True))


def _write_saved_model(predict: tf.types.experimental.PolymorphicFunction, path: str) -> None:
    import keras

    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's own variables are saved, and tracking the model
    # as well would store every weight a second time under `variables/`.
    archive.add_endpoint("serving_default", predict, input_signature=predict.input_signature)
    archive.write_out(path, verbose=False)


def _write_onnx(predict: tf.types.experimental.PolymorphicFunction, path: Path) -> None:
    try:
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx: pip install 'mrcnn-pipeline[onnx]'") from None
    tf2onnx.convert.from_function(predict, input_signature=predict.input_signature,
                                  opset=ONNX_OPSET, output_path=str(path))


def exported_format(path: str | os.PathLike) -> str:
    """The format of an export folder, from the files in it.

    Raises:
        FileNotFoundError: no `mrcnn_config.json`, or no graph file next to it.
    """
    folder = Path(path)
    if not (folder / EXPORT_CONFIG).is_file():
        raise FileNotFoundError(f"{folder / EXPORT_CONFIG} not found: is {str(path)!r} a folder "
                                "written by MaskRCNN.export?")
    for format, graph_file in GRAPH_FILES.items():
        if (folder / graph_file).is_file():
            return format
    raise FileNotFoundError(f"export folder {str(path)!r} has {EXPORT_CONFIG} but no graph file "
                            f"({', '.join(GRAPH_FILES.values())})")


def exported_config(path: str | os.PathLike) -> Config:
    """The settings saved with an export.

    A callable BACKBONE stays a `NamedBackbone`: the graph holds the backbone, and nothing
    named in the file is imported.
    """
    exported_format(path)
    file = Path(path, EXPORT_CONFIG)
    return Config.from_dict(json.loads(file.read_text()), source=f"export config {str(file)!r}",
                            exported=True)


def load_predict(path: str | os.PathLike, threads: int | None = None,
                 precision: str | None = None) -> Predict:
    """The export's predict function, run by its own runtime (TensorFlow, ONNX Runtime, OpenVINO).

    Args:
        threads: ONNX Runtime's intra-op or OpenVINO's inference threads (default: theirs).
        precision: OpenVINO's ``"float32"`` or ``"bfloat16"`` (default: the export's
            INFERENCE_PRECISION); the other formats run as exported.
    """
    format = exported_format(path)
    if format == "saved_model":
        return tf.saved_model.load(str(path)).signatures["serving_default"]
    if format == "onnx":
        return _onnx_predict(Path(path, ONNX_FILE), threads)
    return openvino_predict(path, precision or exported_config(path).INFERENCE_PRECISION, threads)


def _onnx_predict(path: Path, threads: int | None) -> Predict:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("running an ONNX export needs onnxruntime: pip install "
                          "'mrcnn-pipeline[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def predict(images: Any, metas: Any) -> dict[str, np.ndarray]:
        feed = {"images": np.asarray(images, np.float32), "metas": np.asarray(metas, np.float32)}
        return dict(zip(names, session.run(names, feed)))

    return predict


def load_exported(path: str | os.PathLike, precision: str | None = None
                  ) -> Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]:
    """Load a folder written by `MaskRCNN.export` as a `detect`-like callable.

    The callable takes a list of RGB `[H, W, 3]` images and returns one dict per image with
    `rois`, `class_ids`, `scores` and `masks`, as `MaskRCNN.detect` does; the model's
    settings come from the `mrcnn_config.json` saved next to the graph. ``precision``: see
    `load_predict`.
    """
    from mrcnn.model import detect_with

    config = exported_config(path)
    predict = load_predict(path, precision=precision)

    def detect(images: Sequence[np.ndarray], verbose: int = 0) -> list[dict[str, np.ndarray]]:
        return detect_with(predict, config, images, verbose)

    return detect
