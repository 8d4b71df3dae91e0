"""`resolve`: every way to name a model, turned into one pinned `ModelArtifact`.

Sources, tried in this order:

- ``weights=`` + ``config=`` (and optionally ``classes=``): a weights file and its
  ``config.json``; class names from ``classes``, else ``classes.json`` beside the config, else
  ``class_<id>``.
- an export folder (holds ``mrcnn_config.json``, written by ``MaskRCNN.export`` or
  ``mrcnn-pipeline export-model``);
- a checkpoint file (``.h5``): its settings from ``config.json`` beside it or in the run
  folder above ``checkpoints/``;
- a training run folder: its newest checkpoint;
- a registry reference ``NAME@ALIAS``, ``NAME@vN`` or ``NAME`` (the newest version).

An alias is read once, here: the artifact names the exact version (``NAME@vN``), so a moved
alias cannot mix versions within one run. Files outside the registry are pinned by content
hash. Only metadata is read (and weights hashed); nothing is built, and nothing a file names
is imported: the settings are checked as an `mrcnn.Config`, whose BACKBONE is a built-in name
or one of the callables the caller allows (``backbones``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

from mrcnn import export_openvino, export_registry
from mrcnn.config import AllowedBackbones, Backbone, Config, NamedBackbone
from tasks import registry, storage
from tasks.failures import InvalidInput, InvalidSetting, MissingInput
from tasks.models.artifact import (
    CLASSES_FILE,
    CONFIG_FILE,
    EXPORT_CONFIG_FILE,
    EXPORT_MODEL_FILE,
    KERAS,
    ModelArtifact,
)
from tasks.models.int8 import int8_verdict
from tasks.training import runs as training_runs

BACKGROUND_NAMES = ("BG", "_background_", "background")


def resolve(
    source: str | None = None,
    registry_uri: str | None = None,
    *,
    weights: str | None = None,
    config: str | None = None,
    classes: str | None = None,
    backbones: AllowedBackbones = (),
) -> ModelArtifact:
    """Pin a model source to one artifact (see the module docstring for the forms).

    Args:
        backbones: callable backbones the caller allows (as in `mrcnn.Config.from_dict`): a
            model whose config names one of them by ``module:qualname`` resolves with that
            callable; a config naming any other code is refused.

    Raises:
        FileNotFoundError: nothing at the source, or a file it needs is missing (named).
        ValueError: contradictory or malformed inputs, or invalid settings (the file named).
    """
    if weights or config:
        if not (weights and config):
            raise InvalidSetting(
                "a weights file needs its config file (config.json) and vice "
                f"versa; got weights={weights!r}, config={config!r}"
            )
        if source:
            raise InvalidSetting(f"give either model={source!r} or weights + config, not both")
        return _from_weights(weights, config, classes, weights, backbones)
    if not source:
        raise InvalidSetting(
            "no model: give a registry reference (NAME@ALIAS), a run folder, a "
            "checkpoint, an export folder, or weights + config"
        )
    if classes:
        raise InvalidSetting(
            f"classes={classes!r} goes with weights + config; model {source!r} "
            "names its own classes"
        )
    if storage.is_file(storage.join(source, EXPORT_CONFIG_FILE)):
        return _from_export(source, backbones)
    if source.endswith(".h5"):
        return _from_checkpoint(source, source, backbones)
    checkpoints = (
        training_runs.list_checkpoints(source) if "://" in source or _local_folder(source) else {}
    )
    if checkpoints:
        return _from_checkpoint(checkpoints[max(checkpoints)], source, backbones)
    if "://" not in source and registry.REFERENCE.fullmatch(source):
        if not registry_uri:
            raise InvalidSetting(f"model {source!r} is a registry reference: give the registry")
        return _from_registry(source, registry_uri, backbones)
    raise MissingInput(
        f"model {source!r} is neither a registry reference (NAME@ALIAS, "
        "NAME@vN, NAME), an export folder, a checkpoint nor a run folder "
        "with checkpoints"
    )


def _local_folder(path: str) -> bool:
    return storage.exists(path) and not storage.is_file(path)


def _from_registry(reference: str, registry_uri: str, backbones: AllowedBackbones) -> ModelArtifact:
    version = registry.resolve(reference, registry_uri)
    config_uri = version.file(CONFIG_FILE)
    settings = storage.read_json(config_uri, "model config")
    return ModelArtifact(
        name=version.name,
        version=str(version.version),
        format=KERAS,
        uri=version.file(registry.WEIGHTS_FILE),
        config=settings,
        class_names=tuple(storage.read_json(version.file(CLASSES_FILE), "class list")),
        origin=reference,
        reference=version.reference,
        registry_uri=registry_uri,
        backbone=_allowed_backbone(settings, f"model config {config_uri!r}", backbones),
    )


def _from_checkpoint(uri: str, origin: str, backbones: AllowedBackbones) -> ModelArtifact:
    beside = storage.join(posixpath.dirname(uri) or ".", CONFIG_FILE)
    folder = posixpath.dirname(beside) if storage.is_file(beside) else uri.rsplit("/", 2)[0]
    config = storage.join(folder, CONFIG_FILE)
    if not storage.is_file(config):
        raise MissingInput(
            f"checkpoint {uri!r} has no {CONFIG_FILE} beside it nor in its "
            f"run folder {folder!r}; pass weights + config instead"
        )
    return _from_weights(uri, config, None, origin, backbones)


def _from_weights(
    weights: str, config_uri: str, classes: str | None, origin: str, backbones: AllowedBackbones
) -> ModelArtifact:
    settings = storage.read_json(config_uri, "model config")
    if not isinstance(settings, dict):
        raise InvalidInput(f"model config {config_uri!r} must be a JSON object of Config settings")
    backbone = _allowed_backbone(settings, f"model config {config_uri!r}", backbones)
    digest = hashlib.sha256(registry.read_weights(weights)).hexdigest()
    names = _class_names(
        classes, posixpath.dirname(config_uri) or ".", int(settings.get("NUM_CLASSES", 1)) - 1
    )
    return ModelArtifact(
        name=str(settings.get("NAME", "model")),
        version=f"sha256-{digest[:16]}",
        format=KERAS,
        uri=weights,
        config=settings,
        class_names=names,
        origin=origin,
        sha256=digest,
        backbone=backbone,
    )


def _from_export(folder: str, backbones: AllowedBackbones) -> ModelArtifact:
    folder = folder.rstrip("/")
    config_uri = storage.join(folder, EXPORT_CONFIG_FILE)
    settings = storage.read_json(config_uri, "export config")
    # The graph holds the backbone: a callable BACKBONE stays a name (mrcnn.NamedBackbone).
    _allowed_backbone(settings, f"export config {config_uri!r}", backbones, exported=True)
    files = sorted(storage.list_files(folder))
    # Listed files come back as absolute paths, also for a folder given relative to the cwd.
    names = {storage.relative_path(uri, folder) for uri in files}
    fmt = export_registry.format_of(names)
    if fmt is None:
        raise MissingInput(
            f"export folder {folder!r} has {EXPORT_CONFIG_FILE} but no "
            f"graph ({' or '.join(export_registry.GRAPH_FILES)})"
        )
    digest = _folder_digest(folder, files)
    origin_file = storage.join(folder, EXPORT_MODEL_FILE)
    described = (
        storage.read_json(origin_file, "export origin") if EXPORT_MODEL_FILE in names else {}
    )
    names = _class_names(None, folder, int(settings.get("NUM_CLASSES", 1)) - 1)
    return ModelArtifact(
        name=str(described.get("name", settings.get("NAME", "model"))),
        version=str(described.get("version", f"sha256-{digest[:16]}")),
        format=fmt.name,
        uri=folder,
        config=settings,
        class_names=names,
        origin=folder,
        sha256=digest,
        int8_check=int8_verdict(folder, files) if fmt is export_openvino.FORMAT else None,
    )


def _allowed_backbone(
    settings: Any, source: str, backbones: AllowedBackbones, exported: bool = False
) -> Backbone | None:
    """Check stored settings as a `Config`; the callable BACKBONE it names, if allowed.

    Raises:
        ValueError: naming ``source``: invalid settings, or a BACKBONE that is neither built
            in nor one of ``backbones`` (nothing is imported).
    """
    backbone = Config.from_dict(settings, backbones, source=source, exported=exported).BACKBONE
    return None if isinstance(backbone, (str, NamedBackbone)) else backbone


def _folder_digest(folder: str, files: list[str]) -> str:
    digest = hashlib.sha256()
    for uri in files:
        digest.update(storage.relative_path(uri, folder).encode() + b"\0")
        digest.update(storage.read_bytes(uri))
    return digest.hexdigest()


def _class_names(classes: str | None, folder: str, count: int) -> tuple[str, ...]:
    """Names from ``classes``, else ``classes.json`` in ``folder``, else ``class_<id>``."""
    source = classes
    if source is None:
        beside = storage.join(folder, CLASSES_FILE)
        source = beside if storage.is_file(beside) else None
    if source is None:
        return tuple(f"class_{index}" for index in range(1, count + 1))
    names = _parse_names(storage.read_bytes(source).decode("utf-8"), source)
    if names and names[0] in BACKGROUND_NAMES:
        names = names[1:]  # tolerate a list written with matterport's background entry
    if len(names) != count:
        raise InvalidInput(
            f"classes file {source!r} names {len(names)} classes but the config "
            f"has NUM_CLASSES={count + 1} (background + {count})"
        )
    return tuple(names)


def _parse_names(text: str, source: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except ValueError as error:
            raise InvalidInput(f"classes file {source!r} is not valid JSON: {error}") from None
        if not all(isinstance(name, str) for name in names):
            raise InvalidInput(f"classes file {source!r} must be a JSON list of strings")
        return names
    return [line.strip() for line in stripped.splitlines() if line.strip()]
