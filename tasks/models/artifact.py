"""`ModelArtifact`: one pinned, loadable model, whatever it came from.

An artifact is plain data (it travels from a flow to its workers): which exact weights or
export, in what format, with which settings and class names, and under which identity the
output tables record it. `tasks.models.resolve` makes one; `tasks.models.build` turns it into
a model that detects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mrcnn import export_registry
from mrcnn.export import EXPORT_CONFIG
from tasks.failures import InvalidInput

# The files a model's settings live in, wherever it is stored.
CONFIG_FILE = "config.json"  # mrcnn.Config.to_dict() beside weights (run folders, registry)
CLASSES_FILE = "classes.json"  # class names without the background, in class-id order
EXPORT_CONFIG_FILE = EXPORT_CONFIG  # the same settings inside an export folder
EXPORT_MODEL_FILE = "model.json"  # an export's origin: {"name", "version", "source"}

KERAS = "keras"  # a weights file, built as a MaskRCNN; the other formats are exports
FORMATS: tuple[str, ...] = (KERAS, *export_registry.NAMES)


@dataclasses.dataclass(frozen=True)
class ModelArtifact:
    """A model pinned to exact bytes.

    Attributes:
        name: the model's name (registry name, else the config's NAME).
        version: the registry version number as text (``"3"``), or ``"sha256-<16 hex>"`` of
            the weights for a model outside the registry.
        format: ``"keras"`` (a weights file) or an export format of
            `mrcnn.export_registry` (an export folder written by ``MaskRCNN.export``).
        uri: the weights file, or the export folder.
        config: ``mrcnn.Config.to_dict()`` of the model.
        class_names: without the background; class id k is ``class_names[k - 1]``.
        origin: the source as it was given (``roads@production``, a run folder, a path).
        reference: the pinned registry reference (``roads@v3``), for registry models.
        registry_uri: the registry the reference lives in.
        sha256: the content hash of the weights (files outside the registry); building checks
            the bytes still have it.
        backbone: the callable the config's BACKBONE names, as the caller of `resolve` gave
            it (None for a built-in backbone); never imported from a name in a file.
        int8_check: for an INT8 OpenVINO export, its check's verdict (``"passed"``,
            ``"failed"``, or ``"missing"`` for an INT8 graph without its report); None for a
            float model. Only a passed one runs, and only at precision ``"int8"``.
    """

    name: str
    version: str
    format: str
    uri: str
    # Compared (two configs over the same weights are two models) but not hashed (a dict).
    config: dict[str, Any] = dataclasses.field(hash=False, repr=False)
    class_names: tuple[str, ...]
    origin: str
    reference: str | None = None
    registry_uri: str | None = None
    sha256: str | None = None
    backbone: Callable[..., Any] | None = None
    int8_check: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"model format must be one of {FORMATS}, got {self.format!r}")
        if self.config.get("NUM_CLASSES") != len(self.class_names) + 1:
            raise InvalidInput(
                f"model {self.origin!r}: {len(self.class_names)} class names but "
                f"NUM_CLASSES={self.config.get('NUM_CLASSES')} (background + "
                f"{self.config.get('NUM_CLASSES', 1) - 1}) in its config"
            )

    @property
    def identity(self) -> str:
        """``name@version``: what the tables record and the processed-image index compares."""
        return f"{self.name}@{self.version}"

    @property
    def min_confidence(self) -> float:
        """DETECTION_MIN_CONFIDENCE in the model's config (applied inside its graph)."""
        return float(self.config.get("DETECTION_MIN_CONFIDENCE", 0.7))

    def describe(self) -> dict[str, Any]:
        """What metrics and records say about the model (JSON-able)."""
        described = {
            "identity": self.identity,
            "format": self.format,
            "uri": self.uri,
            "origin": self.origin,
        }
        if self.reference:
            described.update(reference=self.reference, registry=self.registry_uri)
        if self.sha256:
            described["sha256"] = self.sha256
        if self.int8_check:
            described["int8_check"] = self.int8_check
        return described
