"""Export a resolved Keras model for serving, to any folder URI or beside its registry version.

An export folder holds the graph (its format's ``graph_file``, `mrcnn.export_registry`),
``mrcnn_config.json``, ``classes.json`` and ``model.json`` (``{"name", "version", "format",
"source"}``), so it is itself a source for `tasks.models.resolve`: a registry version's export
keeps the version's identity (``NAME@N``) in the tables.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mrcnn.export_registry import get_format
from tasks import storage
from tasks.failures import InvalidSetting
from tasks.models.artifact import (
    CLASSES_FILE,
    EXPORT_CONFIG_FILE,
    EXPORT_MODEL_FILE,
    KERAS,
    ModelArtifact,
)
from tasks.models.runtimes import keras_model, model_config

EXPORTS_FOLDER = "exports"  # <registry>/<name>/versions/<N>/exports/<format>/


def default_export_uri(artifact: ModelArtifact, format: str) -> str:
    """``versions/<N>/exports/<format>`` for a registry version.

    Raises:
        ValueError: the model is not a registry version (then an output must be given).
    """
    if not artifact.reference:
        raise InvalidSetting(f"model {artifact.origin!r} is not a registry version: give --output")
    version_folder = artifact.uri.rsplit("/", 1)[0]
    return storage.join(version_folder, EXPORTS_FOLDER, format)


def export_artifact(artifact: ModelArtifact, format: str, output: str | None = None) -> str:
    """Write the artifact as ``format`` to ``output`` (default: beside its registry version).

    Returns:
        The export folder URI.

    Raises:
        ValueError: a format `mrcnn.export_registry` does not list, or a model that is an
            export already.
        OutputNotWritable: ``output`` cannot take files (checked before the model is built).
    """
    get_format(format)
    if artifact.format != KERAS:
        raise InvalidSetting(
            f"model {artifact.origin!r} is a {artifact.format} export already; "
            "export from its Keras weights"
        )
    target = output or default_export_uri(artifact, format)
    storage.probe_writable(target, keep_folders=False)  # before the model is built
    model = keras_model(artifact, model_config(artifact, IMAGES_PER_GPU=1, GPU_COUNT=1))
    with tempfile.TemporaryDirectory(prefix="mrcnn-export-") as folder:
        model.export(folder, format=format)
        origin = {
            "name": artifact.name,
            "version": artifact.version,
            "format": format,
            "source": artifact.describe(),
        }
        _write(os.path.join(folder, EXPORT_MODEL_FILE), origin)
        _write(os.path.join(folder, CLASSES_FILE), list(artifact.class_names))
        upload_folder(Path(folder), target)
    return target


def upload_folder(folder: Path, target: str) -> None:
    """Copy a local export folder to ``target``, its config last: `resolve` takes a folder
    for an export once ``mrcnn_config.json`` is there."""
    files = sorted(
        str(path.relative_to(folder)).replace(os.sep, "/")
        for path in folder.rglob("*")
        if path.is_file()
    )
    files.sort(key=lambda name: name == EXPORT_CONFIG_FILE)
    for relative in files:
        storage.write_bytes(storage.join(target, relative), (folder / relative).read_bytes())


def _write(path: str, value: object) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
