"""Models as the pipeline sees them: resolve a source once, build it where it runs.

- `artifact`: `ModelArtifact`, the pinned model (plain data that travels to workers).
- `sources`: `resolve`, every way to name a model (registry reference, run folder,
  checkpoint, weights + config, export folder) → one `ModelArtifact`. Start here to see
  where a model reference goes.
- `runtime_registry`: the runtimes (`Runtime`: which model formats each runs, its defaults).
- `runtimes`: `build`, a `ModelArtifact` in a runtime → a model that detects, once per process.
- `exports`, `int8`: a Keras model written as an export folder; INT8 ones calibrated on the
  user's images and written only when they pass their check against float32.
"""

from tasks.models.artifact import FORMATS, ModelArtifact
from tasks.models.runtime_registry import RUNTIMES, Runtime, get_runtime
from tasks.models.runtimes import PRECISIONS, LoadedModel, build, check_runtime
from tasks.models.sources import resolve

__all__ = [
    "FORMATS",
    "PRECISIONS",
    "RUNTIMES",
    "LoadedModel",
    "ModelArtifact",
    "Runtime",
    "build",
    "check_runtime",
    "get_runtime",
    "resolve",
]
