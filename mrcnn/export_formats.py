"""What the exporter knows about one export format, as one typed record.

Each format module (`mrcnn.export_saved_model`, `mrcnn.export_onnx`, `mrcnn.export_openvino`)
declares its ``FORMAT``; `mrcnn.export_registry` lists them, one line each. Writing and loading
an export (`mrcnn.export`), telling an export folder's format from its files, the pipeline's
model formats and runtimes (`tasks.models`) and the command line's ``--format`` and
``--runtime`` choices and help are all derived from these records, so a new format is a new
module plus its registration line.

Every format's graph has one contract, ``(images [B, H, W, 3], metas [B, M]) -> {"detections":
[B, D, 6], "masks": [B, D, h, w]}`` (see `mrcnn.model.MaskRCNN.export`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrcnn.errors import InvalidSetting

# predict(images=..., metas=...) -> {"detections": ..., "masks": ...}
Predict = Callable[..., dict[str, Any]]
# write(predict, folder, **options): the traced predict `tf.function` into the folder.
Write = Callable[..., None]
# load(folder, precision, threads) -> Predict. ``precision`` is an INFERENCE_PRECISION value
# (read only by formats that choose it at load time); ``threads`` is the runtime's thread
# count, None for its own choice.
Load = Callable[[Path, str, int | None], Predict]


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One format ``MaskRCNN.export`` writes and `mrcnn.export.load_predict` runs.

    Attributes:
        name: the ``format`` value, e.g. ``"onnx"``.
        title: what it is called in prose, e.g. ``"ONNX"`` ("ONNX exports").
        help: one line for ``--help``: what it is and what reads it.
        graph_file: the file that makes a folder an export in this format (unique among the
            formats: an export's format is read from its files).
        runtime: the library its loader runs the graph in (``"tensorflow"``,
            ``"onnxruntime"``, ``"openvino"``); the pipeline's runtime of that name runs it.
        write: writes the graph (see ``Write``).
        load: reads it back as a predict function (see ``Load``).
        chooses_precision: the loader computes in the precision asked for at load time;
            otherwise the graph runs in the precision it was exported in.
        extra: the ``mrcnn-pipeline`` extra that installs what ``write`` and ``load`` need
            (None: TensorFlow only).
        options: keyword arguments ``write`` takes besides the function and the folder.
    """

    name: str
    title: str
    help: str
    graph_file: str
    runtime: str
    write: Write
    load: Load
    chooses_precision: bool = False
    extra: str | None = None
    options: tuple[str, ...] = ()

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ValueError for an option ``write`` does not take, naming the ones it takes."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "none"
            raise InvalidSetting(
                f"export format {self.name!r} takes no option {unknown[0]!r} (its options: {takes})"
            )


def optional_module(module: str, extra: str, purpose: str) -> Any:
    """Import ``module``, which the ``extra`` installs.

    Raises:
        ImportError: it is not installed, saying which extra to install for ``purpose``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{purpose} needs {module}: pip install 'mrcnn-pipeline[{extra}]'"
        ) from None
