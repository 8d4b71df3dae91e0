"""Resolve a model for batch inference and keep it loaded once per worker process.

Two sources:

- a registry reference ``NAME@ALIAS`` / ``NAME@vN`` / ``NAME`` (newest), loaded by
  ``tasks.registry.load_model``;
- a weights file plus the ``config.json`` that training writes beside it; class names come
  from an explicit classes file, else ``classes.json`` beside the config, else ``class_<id>``.

Building a Mask R-CNN graph and reading its weights takes seconds, so every shard task of a
worker process reuses one loaded model (:func:`cached_model`). The flow first calls
:func:`resolve_model` to learn the exact version and pins it in the spec it hands to shards
(``NAME@vN``, or the weights' content hash), so a moved alias cannot mix versions in one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
import tempfile
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tasks import storage

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

REFERENCE = re.compile(r"[A-Za-z0-9][\w\-]*(@[\w\-]+)?")  # NAME, NAME@ALIAS, NAME@vN


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where the model comes from (plain strings: it travels to workers).

    Attributes:
        reference: registry reference ``NAME@ALIAS``, ``NAME@vN`` or ``NAME``; or None with
            ``weights``.
        registry_uri: registry root for ``reference``.
        weights: ``.weights.h5`` / ``.h5`` URI, with ``config``.
        config: ``config.json`` URI (``mrcnn.Config.to_dict()``).
        classes: optional classes file URI: a JSON list or one name per line.
        sha256: the weights' content hash once resolved; a mismatch at load is an error.
        batch_size: images per ``detect()`` batch (the config's IMAGES_PER_GPU).
        min_confidence: overrides the config's DETECTION_MIN_CONFIDENCE (weights path).
    """

    reference: str | None = None
    registry_uri: str | None = None
    weights: str | None = None
    config: str | None = None
    classes: str | None = None
    sha256: str | None = None
    batch_size: int = 1
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.weights or self.config:
            if not (self.weights and self.config):
                raise ValueError("a weights file needs its config file (config.json) and vice "
                                 f"versa; got weights={self.weights!r}, config={self.config!r}")
            if self.reference:
                raise ValueError(f"give either model={self.reference!r} or weights + config, "
                                 "not both")
        elif not self.reference:
            raise ValueError("no model: give a registry reference (NAME@ALIAS) or weights + config")
        elif not REFERENCE.fullmatch(self.reference):
            raise ValueError(f"model reference {self.reference!r} must look like NAME@ALIAS, "
                             "NAME@vN or NAME (e.g. roads@production)")
        elif not self.registry_uri:
            raise ValueError(f"model {self.reference!r} is a registry reference: give registry_uri")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A ready inference model and what the output tables record about it."""

    model: MaskRCNN
    class_names: tuple[str, ...]
    name: str
    version: str
    spec: ModelSpec  # pinned: loads exactly this version again

    @property
    def key(self) -> str:
        """``name@version``: the identity the processed-image manifest compares."""
        return f"{self.name}@{self.version}"


_cache: dict[ModelSpec, LoadedModel] = {}
_lock = threading.Lock()


def resolve_model(spec: ModelSpec) -> LoadedModel:
    """Pin ``spec`` to an exact version now and return that model, loading it if needed.

    An alias is looked up afresh on every call; the weights are hashed. The result's ``spec``
    is pinned (``NAME@vN``, or the weights' sha256): shards pass it to :func:`cached_model`.
    """
    if spec.reference:
        registry = _registry()
        pinned = dataclasses.replace(
            spec, reference=registry.resolve(spec.reference, spec.registry_uri).reference)
        return _cached(pinned, lambda: _from_registry(pinned, registry))
    data = _registry().read_weights(spec.weights)  # names the user's file when it is no HDF5
    digest = hashlib.sha256(data).hexdigest()
    if spec.sha256 and spec.sha256 != digest:
        raise ValueError(f"weights {spec.weights!r} changed during the run (sha256 {digest[:12]}, "
                         f"expected {spec.sha256[:12]})")
    pinned = dataclasses.replace(spec, sha256=digest)
    return _cached(pinned, lambda: _from_files(pinned, data))


def cached_model(pinned: ModelSpec) -> LoadedModel:
    """The model of a pinned spec, loaded at most once per process.

    Shard tasks in threads of one process share it (TensorFlow releases the GIL while it
    computes); a Dask worker process loads it on its first shard.
    """
    with _lock:
        loaded = _cache.get(pinned)
    return loaded or resolve_model(pinned)


def _cached(pinned: ModelSpec, build: Callable[[], LoadedModel]) -> LoadedModel:
    with _lock:  # threads of one worker wait for a single load
        if pinned not in _cache:
            _cache.clear()  # one model per process: moving to another model frees the old one
            _cache[pinned] = build()
        return _cache[pinned]


def _registry() -> ModuleType:
    try:
        from tasks import registry
    except ImportError as error:
        raise RuntimeError(f"the model registry (tasks.registry) is not available ({error}); "
                           "pass weights + config files instead") from None
    return registry


def _from_registry(pinned: ModelSpec, registry: ModuleType) -> LoadedModel:
    model, class_names, name, version = registry.load_model(pinned.reference, pinned.registry_uri)
    _configure(model, pinned.batch_size)
    return LoadedModel(model, tuple(class_names), name, str(version), pinned)


def _from_files(pinned: ModelSpec, data: bytes) -> LoadedModel:
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    settings = _read_json(pinned.config, "model config")
    if not isinstance(settings, dict):
        raise ValueError(f"model config {pinned.config!r} must be a JSON object of Config "
                         "settings")
    settings.update(IMAGES_PER_GPU=pinned.batch_size, GPU_COUNT=1)
    if pinned.min_confidence is not None:
        settings["DETECTION_MIN_CONFIDENCE"] = pinned.min_confidence
    config = Config.from_dict(settings)
    class_names = read_class_names(pinned, config.NUM_CLASSES - 1)
    with tempfile.TemporaryDirectory(prefix="mrcnn-weights-") as folder:
        model = MaskRCNN("inference", config, folder)
        # Keras reads weights from a local path; remote files go through a temporary copy.
        suffix = ".weights.h5" if pinned.weights.endswith(".weights.h5") else ".h5"
        local = os.path.join(folder, "model" + suffix)
        with open(local, "wb") as handle:
            handle.write(data)
        try:
            model.load_weights(local)
        except (ValueError, OSError) as error:  # name the user's file, not the copy
            message = str(error).replace(local, pinned.weights)
            raise ValueError(f"weights {pinned.weights!r} do not load into the model of "
                             f"{pinned.config!r}: {message}") from None
    return LoadedModel(model, class_names, str(config.NAME), f"sha256-{pinned.sha256[:16]}",
                       pinned)


def _configure(model: MaskRCNN, batch_size: int) -> None:
    """Give a registry model this run's batch size (the graph itself is batch-agnostic)."""
    from mrcnn.config import Config

    if model.config.IMAGES_PER_GPU * model.config.GPU_COUNT != batch_size:
        model.config = Config.from_dict({**model.config.to_dict(), "IMAGES_PER_GPU": batch_size,
                                         "GPU_COUNT": 1})


def read_class_names(spec: ModelSpec, num_classes: int) -> tuple[str, ...]:
    """Class names without the background (id k is ``names[k - 1]``).

    Raises:
        ValueError: the file's count disagrees with the config's NUM_CLASSES - 1.
    """
    source = spec.classes
    if source is None:
        beside = storage.join(posixpath.dirname(spec.config) or ".", "classes.json")
        source = beside if storage.is_file(beside) else None
    if source is None:
        return tuple(f"class_{index}" for index in range(1, num_classes + 1))
    names = _parse_names(storage.read_bytes(source).decode("utf-8"), source)
    if names and names[0] in ("BG", "_background_", "background"):
        names = names[1:]  # tolerate a list written with matterport's background entry
    if len(names) != num_classes:
        raise ValueError(f"classes file {source!r} names {len(names)} classes but the config "
                         f"has NUM_CLASSES={num_classes + 1} (background + {num_classes})")
    return tuple(names)


def _parse_names(text: str, source: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        names = json.loads(stripped)
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"classes file {source!r} must be a JSON list of strings")
        return names
    return [line.strip() for line in stripped.splitlines() if line.strip()]


def _read_json(uri: str, what: str) -> Any:
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {uri!r} not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {uri!r} is not valid JSON: {error}") from None
