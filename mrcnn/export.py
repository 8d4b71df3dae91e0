"""Exports of an inference model that serving runtimes load, and loading them back.

Every export is a folder with the model's settings in `mrcnn_config.json` and one graph with
the same contract, `(images [B, H, W, 3], metas [B, M]) -> (detections [B, D, 6], masks
[B, D, h, w])` (see `MaskRCNN.export` for the meaning of each), in one of the formats of
`mrcnn.export_registry`:

- `"saved_model"`: a TensorFlow SavedModel (`mrcnn.export_saved_model`); it loads in
  `tf.saved_model.load`, `saved_model_cli run`, the C++ loader and so TF Serving.
- `"onnx"`: `model.onnx` converted by tf2onnx and run by ONNX Runtime (`mrcnn.export_onnx`,
  the `onnx` extra).
- `"openvino"`: OpenVINO IR (`model.xml` + `model.bin`), run by OpenVINO's CPU plugin in
  float32 or bfloat16 (`mrcnn.export_openvino`, the `openvino` extra).

`load_exported(path)` reads any of them back as a `detect`-like callable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrcnn.config import Config
from mrcnn.errors import MissingInput
from mrcnn.export_formats import ExportFormat, Predict
from mrcnn.export_registry import GRAPH_FILES, format_of, get_format

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

EXPORT_CONFIG = "mrcnn_config.json"


def export_model(
    model: MaskRCNN, path: str | os.PathLike, format: str = "saved_model", **options: Any
) -> None:
    """Write `model`'s predict graph as `format` into the folder `path`, with its config.

    Args:
        format: a name in `mrcnn.export_registry.NAMES`.
        options: the format's own settings (`ExportFormat.options`).

    Raises:
        ValueError: an unknown format, or an option it does not take (nothing is written).
        RuntimeError: a model not in inference mode.
    """
    fmt = get_format(format)
    fmt.check_options(options)
    if model.mode != "inference":
        raise RuntimeError("create the model with mode='inference' to export it")
    Path(path).mkdir(parents=True, exist_ok=True)
    fmt.write(model._predict_fn(), Path(path), **options)
    # The precision the graph was built in, not "auto": the export runs as written.
    settings = {**model.config.to_dict(), "INFERENCE_PRECISION": model.precision.precision}
    Path(path, EXPORT_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True))


def exported_format(path: str | os.PathLike) -> str:
    """The format of an export folder, from the files in it.

    Raises:
        FileNotFoundError: no `mrcnn_config.json`, or no graph file next to it.
    """
    return _export_format(path).name


def _export_format(path: str | os.PathLike) -> ExportFormat:
    folder = Path(path)
    if not (folder / EXPORT_CONFIG).is_file():
        raise MissingInput(
            f"{folder / EXPORT_CONFIG} not found: is {str(path)!r} a folder "
            "written by MaskRCNN.export?"
        )
    fmt = format_of({name for name in GRAPH_FILES if (folder / name).is_file()})
    if fmt is None:
        raise MissingInput(
            f"export folder {str(path)!r} has {EXPORT_CONFIG} but no graph "
            f"file ({', '.join(GRAPH_FILES)})"
        )
    return fmt


def exported_config(path: str | os.PathLike) -> Config:
    """The settings saved with an export.

    A callable BACKBONE stays a `NamedBackbone`: the graph holds the backbone, and nothing
    named in the file is imported.
    """
    exported_format(path)
    file = Path(path, EXPORT_CONFIG)
    return Config.from_dict(
        json.loads(file.read_text()), source=f"export config {str(file)!r}", exported=True
    )


def load_predict(
    path: str | os.PathLike, threads: int | None = None, precision: str | None = None
) -> Predict:
    """The export's predict function, run by its format's runtime (`ExportFormat.load`).

    Args:
        threads: the runtime's threads, e.g. ONNX Runtime's intra-op or OpenVINO's inference
            threads (default: its own choice).
        precision: an INFERENCE_PRECISION value for formats that choose it at load time
            (OpenVINO: ``"float32"``, ``"bfloat16"``, ``"auto"``; default: the export's
            INFERENCE_PRECISION); the other formats run as exported.
    """
    fmt = _export_format(path)
    return fmt.load(Path(path), precision or exported_config(path).INFERENCE_PRECISION, threads)


def load_exported(
    path: str | os.PathLike, precision: str | None = None
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
