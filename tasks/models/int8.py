"""INT8 exports: calibrate on the user's images, quantize, check, and write only what passed.

`export_int8` turns a Keras model into an OpenVINO INT8 export folder:

1. the float32 OpenVINO IR is written to a temporary folder;
2. NNCF calibrates on up to ``calibration_images`` images of ``calibration`` and quantizes it
   (`mrcnn.quantize`);
3. both models detect the held-out images and the INT8 one is judged against float32
   (`mrcnn.int8_check`);
4. only when the check passed is the folder written to the output: the INT8 IR,
   ``mrcnn_config.json``, ``classes.json``, ``model.json`` and the check's report
   ``int8_check.json``. A failed check raises `Int8CheckFailed` and writes nothing.

Calibration and held-out images come from a canonical dataset (its ``train`` split
calibrates, its ``val`` split with its ground truth is held out) or from an image folder
(about a fifth of the images, chosen by a hash of their path, is held out and float32's
detections are the reference), local or ``s3://``. ``check`` names another dataset or folder
to hold out instead.

The export's ``model.json`` records the version as ``<version>-int8``, so the output tables
never mix INT8 results with the float32 model's under one identity, and the processed-image
index treats INT8 as a model of its own. Beside a registry version the export goes to
``versions/<N>/exports/openvino-int8/`` and the version's ``MODEL_CARD.md`` shows the check.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn.export_openvino import OPENVINO_FILE
from mrcnn.int8_check import CheckImage, Tolerances
from mrcnn.intensity import Normalization
from mrcnn.quantize import DEFAULT_FLOAT_PARTS
from tasks import registry, storage
from tasks.annotations.canonical import ANNOTATIONS_FOLDER, split_of
from tasks.failures import InvalidInput, InvalidSetting, MissingInput
from tasks.models.artifact import CLASSES_FILE, EXPORT_MODEL_FILE, KERAS, ModelArtifact
from tasks.models.exports import EXPORTS_FOLDER, upload_folder
from tasks.models.runtimes import keras_model, model_config

CHECK_FILE = "int8_check.json"  # the check's report, inside the INT8 export folder
INT8_FOLDER = "openvino-int8"  # <registry>/<name>/versions/<N>/exports/openvino-int8/
VERSION_SUFFIX = "-int8"
HELD_OUT_SHARE = 0.2  # of an image folder, when no separate held-out set is given
DEFAULT_CALIBRATION_IMAGES = 100
DEFAULT_CHECK_IMAGES = 50


class Int8CheckFailed(InvalidInput):
    """The INT8 model differs from float32 beyond the tolerances; nothing was written."""


@dataclasses.dataclass(frozen=True)
class Int8Request:
    """What to quantize with and how strictly to check.

    Attributes:
        calibration: a canonical dataset or an image folder (URI).
        calibration_images: the most calibration images to read.
        check: a dataset or folder of held-out images (default: held out of ``calibration``).
        check_images: the most held-out images to compare.
        tolerances: `mrcnn.int8_check.Tolerances`.
        float_parts: `mrcnn.quantize.FLOAT_PARTS` names kept in float32.
        write_failed: write the export even when the check fails (its report says so, and
            ``infer --precision int8`` refuses it); for inspecting a failed quantization.
    """

    calibration: str
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    check: str | None = None
    check_images: int = DEFAULT_CHECK_IMAGES
    tolerances: Tolerances = Tolerances()
    float_parts: tuple[str, ...] = DEFAULT_FLOAT_PARTS
    write_failed: bool = False

    def __post_init__(self) -> None:
        for name in ("calibration_images", "check_images"):
            if getattr(self, name) < 1:
                raise InvalidSetting(
                    f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}"
                )


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images of one source as the check and the calibration read them.

    Attributes:
        description: what they are, naming the user's URI (for reports and errors).
        uris: the image files.
        normalization: how their intensities become 0-255 (the model's
            INTENSITY_NORMALIZATION, as `detect` receives images in the pipeline).
        truth: for a dataset split, each image's `mrcnn.dataset.CocoDataset` and image id
            (its ground truth); None for an image folder.
    """

    description: str
    uris: tuple[str, ...]
    normalization: Normalization = Normalization()
    truth: Mapping[str, tuple[Any, int]] | None = None

    def images(self, count: int) -> LazyImages:
        """Up to ``count`` of the images, spread over the set (see `spread`), read lazily."""
        return LazyImages(spread(self.uris, count), self.normalization)


@dataclasses.dataclass(frozen=True)
class Int8Export:
    """Where the INT8 export went and its check's report (``int8_check.json``)."""

    uri: str
    report: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


def int8_export_uri(artifact: ModelArtifact) -> str:
    """``versions/<N>/exports/openvino-int8`` beside a registry version.

    Raises:
        ValueError: the model is not a registry version (then an output must be given).
    """
    if not artifact.reference:
        raise InvalidSetting(f"model {artifact.origin!r} is not a registry version: give --output")
    return storage.join(artifact.uri.rsplit("/", 1)[0], EXPORTS_FOLDER, INT8_FOLDER)


def export_int8(
    artifact: ModelArtifact, request: Int8Request, output: str | None = None
) -> Int8Export:
    """Quantize the artifact's model, check it, and write the INT8 export if it passed.

    Returns:
        The export's URI and report.

    Raises:
        Int8CheckFailed: the check failed (one line: the verdict and the numbers); nothing
            is written unless ``request.write_failed``.
        ValueError / FileNotFoundError: a model that is an export already, a calibration or
            held-out source that does not exist, holds no images, or names other classes.
    """
    from mrcnn.export import load_exported
    from mrcnn.int8_check import check_int8
    from mrcnn.quantize import QuantizationSettings, quantize_openvino

    if artifact.format != KERAS:
        raise InvalidSetting(
            f"model {artifact.origin!r} is a {artifact.format} export already; "
            "quantize from its Keras weights"
        )
    target = output or int8_export_uri(artifact)
    settings = QuantizationSettings(request.calibration_images, request.float_parts)
    config = model_config(artifact, IMAGES_PER_GPU=1, GPU_COUNT=1)
    with tempfile.TemporaryDirectory(prefix="mrcnn-int8-") as work:
        calibration, held_out = image_sets(request, artifact.class_names, config, work)
        float_folder, int8_folder = Path(work, "float32"), Path(work, "int8")
        keras_model(artifact, config).export(float_folder, format="openvino")
        quantized = quantize_openvino(
            float_folder, int8_folder, calibration.images(request.calibration_images), settings
        )
        check = check_int8(
            load_exported(float_folder, precision="float32"),
            load_exported(int8_folder, precision="float32"),
            check_images(held_out, request.check_images),
            artifact.class_names,
            request.tolerances,
        )
        report = {
            "passed": check.passed,
            "summary": check.summary(),
            "check": check.to_dict(),
            "quantization": {
                **settings.to_dict(),
                "quantizers": quantized.quantizers,
                "float_nodes": quantized.float_nodes,
            },
            "calibration": {
                "source": calibration.description,
                "images": quantized.calibration_images,
            },
            "held_out": {"source": held_out.description, "images": check.images},
            "model": artifact.describe(),
            "machine": _machine(),
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        }
        if not check.passed and not request.write_failed:
            raise Int8CheckFailed(f"{check.summary()}; nothing written to {target}")
        _write_json(int8_folder / CHECK_FILE, report)
        _write_json(
            int8_folder / EXPORT_MODEL_FILE,
            {
                "name": artifact.name,
                "version": artifact.version + VERSION_SUFFIX,
                "format": "openvino",
                "precision": "int8",
                "source": artifact.describe(),
            },
        )
        _write_json(int8_folder / CLASSES_FILE, list(artifact.class_names))
        upload_folder(int8_folder, target)
    if artifact.reference and output is None:
        refresh_model_card(artifact, report)
    return Int8Export(target, report)


# ---------------------------------------------------------------------------- images
def image_sets(
    request: Int8Request, class_names: Sequence[str], config: Any, work: str
) -> tuple[ImageSet, ImageSet]:
    """The calibration images and the held-out images of a request.

    Args:
        class_names: the model's, which a dataset's categories must equal.
        config: the model's `mrcnn.config.Config` (how images are read).
        work: a local folder for a remote dataset's copy.

    Raises:
        FileNotFoundError: a source that does not exist.
        ValueError: a source without images, a dataset naming other classes, or one image
            folder too small to hold any image out.
    """
    if request.check:
        calibration = _source(
            request.calibration, "train", class_names, config, work, "calibration"
        )
        return calibration, _source(request.check, "val", class_names, config, work, "held-out")
    if _is_dataset(request.calibration):
        return (
            _source(request.calibration, "train", class_names, config, work, "calibration"),
            _source(request.calibration, "val", class_names, config, work, "held-out"),
        )
    images = _folder_images(request.calibration, "calibration")
    held = tuple(
        uri
        for uri in images
        if split_of(storage.relative_path(uri, request.calibration), HELD_OUT_SHARE) == "val"
    )
    if not held or len(held) == len(images):  # too few images for the hash to split them
        if len(images) < 2:
            raise InvalidInput(
                f"calibration folder {request.calibration!r} holds "
                f"{len(images)} image: give at least 2 (one is held out to check "
                "the INT8 model) or a held-out set with --check"
            )
        held = images[-max(1, round(len(images) * HELD_OUT_SHARE)) :]
    kept = tuple(uri for uri in images if uri not in set(held))
    normalization = Normalization.from_config(config)
    return (
        ImageSet(
            f"image folder {request.calibration} (without its held-out fifth)", kept, normalization
        ),
        ImageSet(
            f"image folder {request.calibration} (a fifth held out by path hash)",
            held,
            normalization,
        ),
    )


def _is_dataset(uri: str) -> bool:
    return storage.is_file(storage.join(uri, ANNOTATIONS_FOLDER, "train.json"))


def _source(
    uri: str, split: str, class_names: Sequence[str], config: Any, work: str, role: str
) -> ImageSet:
    if not storage.exists(uri):
        raise MissingInput(f"{role} images {uri!r} not found")
    normalization = Normalization.from_config(config)
    if not _is_dataset(uri):
        return ImageSet(f"image folder {uri}", _folder_images(uri, role), normalization)
    from tasks.training.data import check_classes, fetch_dataset, load_split

    fetched = fetch_dataset(uri, os.path.join(work, f"{role}-dataset"), splits=(split,))
    check_classes(class_names, fetched, "the model")
    dataset = load_split(fetched.root, split, class_names, config)
    uris = tuple(dataset.image_info[i]["path"] for i in dataset.image_ids)
    if not uris:
        raise InvalidInput(f"{role} dataset {uri!r} has no images in its {split!r} split")
    truth = {dataset.image_info[i]["path"]: (dataset, i) for i in dataset.image_ids}
    return ImageSet(f"dataset {uri}, {split} split", uris, normalization, truth)


def _folder_images(uri: str, role: str) -> tuple[str, ...]:
    from tasks.inference.shards import find_images

    if not storage.exists(uri):
        raise MissingInput(f"{role} images {uri!r} not found")
    images = tuple(ref.uri for ref in find_images(uri))
    if not images:
        raise InvalidInput(f"{role} folder {uri!r} holds no images (jpg, png, tif, bmp, webp)")
    return images


def spread(uris: Sequence[str], count: int) -> tuple[str, ...]:
    """``count`` of ``uris`` evenly spaced over the sorted list (all of them when fewer): a
    folder sorted by site or date is sampled across, not from its start."""
    if count >= len(uris):
        return tuple(uris)
    return tuple(uris[int(i)] for i in np.linspace(0, len(uris) - 1, count).round())


class LazyImages(Sequence[np.ndarray]):
    """Images read and decoded when indexed (NNCF reads the calibration set more than once,
    and a few hundred full-size photos would not fit in memory at once)."""

    def __init__(self, uris: Sequence[str], normalization: Normalization | None = None) -> None:
        self.uris, self.normalization = tuple(uris), normalization or Normalization()

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return LazyImages(self.uris[index], self.normalization)
        return read_image(self.uris[index], self.normalization)


def read_image(uri: str, normalization: Normalization) -> np.ndarray:
    """An image file as the pipeline gives it to `detect` (`tasks.inference.image_decoding`)."""
    from tasks.inference.image_decoding import decode_image

    return decode_image(storage.read_bytes(uri), uri, normalization=normalization)


def check_images(images: ImageSet, limit: int) -> Iterator[CheckImage]:
    """Up to ``limit`` held-out images, with ground truth where the set has it."""
    for uri in spread(images.uris, limit):
        if images.truth is None:
            yield CheckImage(read_image(uri, images.normalization))
        else:
            dataset, image_id = images.truth[uri]
            masks, class_ids = dataset.load_mask(image_id)
            yield CheckImage(dataset.load_image(image_id), class_ids, masks)


# ---------------------------------------------------------------------------- reports
def int8_verdict(folder: str, files: Sequence[str]) -> str | None:
    """``"passed"`` or ``"failed"`` for an OpenVINO export folder with an INT8 check report,
    ``"missing"`` for an INT8 graph without one (quantized elsewhere), None for a float graph.

    Args:
        files: the URIs in ``folder`` (as `tasks.storage.list_files` lists them).
    """
    report_uri = storage.join(folder, CHECK_FILE)
    if report_uri in files:
        report = storage.read_json(report_uri, "INT8 check report")
        return "passed" if isinstance(report, dict) and report.get("passed") is True else "failed"
    graph = storage.read_bytes(storage.join(folder, OPENVINO_FILE))
    return "missing" if b'type="FakeQuantize"' in graph else None


def refresh_model_card(artifact: ModelArtifact, report: dict[str, Any]) -> None:
    """Rewrite the registry version's ``MODEL_CARD.md`` with the INT8 check's section."""
    from tasks.registry.documents import model_card

    version = registry.resolve(str(artifact.reference), str(artifact.registry_uri))
    card = model_card(
        version,
        version.read_json(CLASSES_FILE),
        version.read_json("config.json"),
        version.read_json("metrics.json"),
        version.read_json(registry.COMMIT_FILE),
        int8_check=report,
    )
    storage.write_bytes(version.file("MODEL_CARD.md"), card.encode())


def _machine() -> dict[str, Any]:
    from mrcnn.hardware import detect

    versions = {}
    for package in ("openvino", "nncf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": detect(include_gpus=False).describe(), **versions}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
