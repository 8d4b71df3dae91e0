"""Every runtime the pipeline runs models in, one registration line each.

A runtime runs Keras weights (TensorFlow only) and the export formats whose loader runs in it
(`mrcnn.export_formats.ExportFormat.runtime`), so a format registered in
`mrcnn.export_registry` is run by its runtime without a line here. The records carry no code
of their own (loading is the format's), so they are declared here rather than in a module each.
The ``--runtime`` choices and help, the check that a runtime runs a model, the model formats
whose precision is chosen when built and ``batch-inference``'s ``isolate_shards`` default all
come from these records.
"""

from __future__ import annotations

import dataclasses

from mrcnn import export_registry
from tasks.failures import InvalidSetting
from tasks.models.artifact import KERAS


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One ``--runtime``.

    Attributes:
        name: the ``--runtime`` value, and the `ExportFormat.runtime` of the formats it runs.
        runs_keras: it builds Keras weights as a `MaskRCNN` (only TensorFlow can).
        isolate_shards: ``batch-inference`` runs its shards in child processes by default,
            because its native code has crashed a worker process
            (`tasks.inference.shard_process`).
    """

    name: str
    runs_keras: bool = False
    isolate_shards: bool = False

    @property
    def formats(self) -> tuple[str, ...]:
        """The model formats it runs: ``keras`` (if it does), then its export formats."""
        exports = tuple(fmt.name for fmt in export_registry.FORMATS if fmt.runtime == self.name)
        return ((KERAS,) if self.runs_keras else ()) + exports

    @property
    def help(self) -> str:
        """``name (what it runs)`` for ``--help``, e.g. ``onnxruntime (ONNX exports)``."""
        runs = ["Keras weights"] if self.runs_keras else []
        runs += [
            f"{fmt.title} exports" for fmt in export_registry.FORMATS if fmt.runtime == self.name
        ]
        return f"{self.name} ({', '.join(runs)})"


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("tensorflow", runs_keras=True),
    Runtime("onnxruntime"),
    Runtime("openvino", isolate_shards=True),  # its first inference has crashed intermittently
)
NAMES: tuple[str, ...] = tuple(runtime.name for runtime in RUNTIMES)
DEFAULT_RUNTIME = "tensorflow"


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``.

    Raises:
        ValueError: no such runtime, naming the registered ones.
    """
    for runtime in RUNTIMES:
        if runtime.name == name:
            return runtime
    raise InvalidSetting(f"runtime must be one of {', '.join(NAMES)}, got {name!r}")


def runtimes_running(model_format: str) -> tuple[str, ...]:
    """The names of the runtimes that run models in ``model_format``."""
    return tuple(runtime.name for runtime in RUNTIMES if model_format in runtime.formats)


def chooses_precision(model_format: str) -> bool:
    """Whether a model in ``model_format`` computes in the precision chosen when it is built
    (Keras weights, and formats whose loader chooses it); else it runs as exported."""
    return model_format == KERAS or export_registry.get_format(model_format).chooses_precision
