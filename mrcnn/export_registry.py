"""Every export format ``MaskRCNN.export`` writes, one registration line each.

A new format is a module declaring its ``FORMAT`` (`mrcnn.export_formats.ExportFormat`) and one
line in ``FORMATS`` below; the exporter, the loaders, the pipeline's model formats and
runtimes and the command line take it from here. Importing this module loads neither
TensorFlow nor any runtime: the format modules import them when they write or load.
"""

from __future__ import annotations

from collections.abc import Collection

from mrcnn import export_onnx, export_openvino, export_saved_model
from mrcnn.errors import InvalidSetting
from mrcnn.export_formats import ExportFormat

FORMATS: tuple[ExportFormat, ...] = (
    export_saved_model.FORMAT,
    export_onnx.FORMAT,
    export_openvino.FORMAT,
)
NAMES: tuple[str, ...] = tuple(fmt.name for fmt in FORMATS)
GRAPH_FILES: tuple[str, ...] = tuple(fmt.graph_file for fmt in FORMATS)


def get_format(name: str) -> ExportFormat:
    """The export format registered as ``name``.

    Raises:
        ValueError: no such format, naming the registered ones.
    """
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise InvalidSetting(f"unknown export format {name!r} (one of {', '.join(NAMES)})")


def format_of(files: Collection[str]) -> ExportFormat | None:
    """The format whose graph file is among ``files`` (names inside an export folder)."""
    return next((fmt for fmt in FORMATS if fmt.graph_file in files), None)
