"""ONNX exports: ``model.onnx`` converted by tf2onnx, run by ONNX Runtime on the CPU.

Both need the ``onnx`` extra. The graph runs in the precision it was exported in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrcnn.export_formats import ExportFormat, Predict, optional_module

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


def write_onnx(predict: Any, folder: Path) -> None:
    """Convert the traced predict function to ``model.onnx``."""
    tf2onnx = optional_module("tf2onnx", "onnx", "ONNX export")
    tf2onnx.convert.from_function(
        predict,
        input_signature=predict.input_signature,
        opset=ONNX_OPSET,
        output_path=str(folder / ONNX_FILE),
    )


def load_onnx(folder: Path, precision: str, threads: int | None) -> Predict:
    """``model.onnx`` in an ONNX Runtime CPU session.

    Args:
        precision: unused (the graph runs as exported).
        threads: ONNX Runtime's intra-op threads (default: its own choice).
    """
    onnxruntime = optional_module("onnxruntime", "onnx", "running an ONNX export")
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]

    def predict(images: Any, metas: Any) -> dict[str, np.ndarray]:
        feed = {"images": np.asarray(images, np.float32), "metas": np.asarray(metas, np.float32)}
        return dict(zip(names, session.run(names, feed)))

    return predict


FORMAT = ExportFormat(
    name="onnx",
    title="ONNX",
    help="ONNX (model.onnx by tf2onnx, run by ONNX Runtime)",
    graph_file=ONNX_FILE,
    runtime="onnxruntime",
    write=write_onnx,
    load=load_onnx,
    extra="onnx",
)
