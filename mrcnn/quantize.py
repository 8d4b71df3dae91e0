"""Post-training INT8 quantization of an OpenVINO IR export with NNCF.

NNCF runs the float32 IR on calibration images (molded exactly as `detect` molds them),
records the range of every activation that feeds a quantizable operation, and inserts
quantize/dequantize pairs there; OpenVINO's CPU plugin then runs those convolutions and
matrix products on 8-bit integers (VNNI or AMX-INT8 where the CPU has them, AVX2 integer
kernels elsewhere) and everything else in float32.

Left alone, NNCF also quantizes the box arithmetic between the heads and NMS: the decoding of
the RPN's and the box head's deltas into corners, clipping, and ROI Align's choice of pyramid
level. Eight bits over a whole image's coordinate range move a box corner by up to 1/256 of
the image, which changes which boxes NMS keeps and where the masks are pasted. Which parts
stay in float is a `FloatPart` each; `DEFAULT_FLOAT_PARTS` is the choice measured in
`docs/tutorials/int8.md` (accuracy against float32 on held-out images, and speed). It keeps
the box-delta layers in float32 too: they are a few thousandths of the work, and with the box
head's deltas in INT8 OpenVINO 2026.4's CPU plugin fails to compile some graphs (its
low-precision Reshape transformation, e.g. at POST_NMS_ROIS_INFERENCE 200).

Needs the `openvino` extra (openvino and nncf).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn.config import Config
from mrcnn.errors import InvalidInput, InvalidSetting
from mrcnn.export_openvino import OPENVINO_FILE, graph_nodes, openvino_module

EXPORT_CONFIG = "mrcnn_config.json"  # mrcnn.export.EXPORT_CONFIG (not imported: no cycle)
PRESETS = ("performance", "mixed")  # NNCF: symmetric activations, or asymmetric ones
# Layers whose output is a box or a box delta, by the Keras layer name in the IR's node names.
_BOX_ARITHMETIC = re.compile(
    r".*/(ROI|mrcnn_detection|roi_align_classifier|roi_align_mask)"
    r"(_\d+)?/"
)
_BOX_DELTA_LAYERS = re.compile(r".*/(rpn_bbox_pred|mrcnn_bbox_fc)(_\d+)?/")
_CLASSIFIER_LAYER = re.compile(r".*/mrcnn_class_logits(_\d+)?/")


@dataclasses.dataclass(frozen=True)
class FloatPart:
    """A part of the graph that can be kept in float32 when the rest is quantized.

    Attributes:
        name: the value of ``--keep-float`` and of `QuantizationSettings.float_parts`.
        description: what it is, for reports and ``--help``.
    """

    name: str
    description: str


FLOAT_PARTS = {
    part.name: part
    for part in (
        FloatPart(
            "box_arithmetic",
            "decoding deltas into boxes, clipping, NMS inputs and ROI "
            "Align's pyramid level (proposal and detection layers)",
        ),
        FloatPart("box_deltas", "the layers that predict box deltas (RPN and box head)"),
        FloatPart(
            "classifier",
            "the box head's class logits layer (the scores compared with DETECTION_MIN_CONFIDENCE)",
        ),
        FloatPart("softmax", "the RPN's and the classifier's softmax"),
        FloatPart("mask_sigmoid", "the mask head's last convolution and its sigmoid"),
        FloatPart("roi_align", "ROI Align's crops of the feature maps"),
    )
}
DEFAULT_FLOAT_PARTS = ("box_arithmetic", "box_deltas")


@dataclasses.dataclass(frozen=True)
class QuantizationSettings:
    """How to quantize.

    Attributes:
        calibration_images: how many calibration images NNCF reads (its ``subset_size``);
            fewer are used when fewer are given.
        float_parts: names of `FLOAT_PARTS` kept in float32.
        preset: ``"performance"`` (symmetric activations) or ``"mixed"`` (asymmetric
            activations, for inputs that are not ReLU outputs).
        fast_bias_correction: NNCF's fast bias correction (else its slower, exact one).
    """

    calibration_images: int = 100
    float_parts: tuple[str, ...] = DEFAULT_FLOAT_PARTS
    preset: str = "performance"
    fast_bias_correction: bool = True

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise InvalidSetting(f"calibration_images must be >= 1, got {self.calibration_images}")
        unknown = sorted(set(self.float_parts) - set(FLOAT_PARTS))
        if unknown:
            raise InvalidSetting(
                f"unknown float part {unknown[0]!r} (one of {sorted(FLOAT_PARTS)})"
            )
        if self.preset not in PRESETS:
            raise InvalidSetting(f"preset must be one of {PRESETS}, got {self.preset!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "float_parts": list(self.float_parts)}


@dataclasses.dataclass(frozen=True)
class QuantizedModel:
    """What `quantize_openvino` wrote: the folder and what NNCF did.

    Attributes:
        folder: the INT8 export folder (IR and ``mrcnn_config.json``).
        settings: the settings it was quantized with.
        calibration_images: how many images NNCF actually read.
        quantizers: FakeQuantize nodes in the IR (NNCF's 8-bit quantize/dequantize points).
        float_nodes: nodes the float parts kept out of quantization.
    """

    folder: Path
    settings: QuantizationSettings
    calibration_images: int
    quantizers: int
    float_nodes: int


def nncf_module() -> Any:
    try:
        import nncf
    except ImportError:
        raise ImportError(
            "INT8 quantization needs nncf: pip install 'mrcnn-pipeline[openvino]'"
        ) from None
    return nncf


def calibration_inputs(config: Config, images: Sequence[np.ndarray]) -> Iterator[dict[str, Any]]:
    """The IR's inputs for each image, one image per batch, molded as `detect` molds them."""
    from mrcnn.model import mold_inputs  # TensorFlow loads only when calibrating

    for image in images:
        molded, metas, _ = mold_inputs(config, [image])
        yield {"images": molded, "metas": metas}


def quantize_openvino(
    source: str | Path,
    target: str | Path,
    images: Sequence[np.ndarray],
    settings: QuantizationSettings = QuantizationSettings(),
) -> QuantizedModel:
    """Quantize the float32 OpenVINO export in ``source`` into the folder ``target``.

    Args:
        source: a local folder written by ``MaskRCNN.export(..., format="openvino")``.
        target: a local folder for the INT8 IR and a copy of ``mrcnn_config.json``.
        images: RGB ``[H, W, 3]`` calibration images, read more than once (a list, or a
            sequence that loads each image when indexed).

    Raises:
        ValueError: no calibration images.
    """
    if len(images) == 0:
        raise InvalidInput("quantization needs at least one calibration image")
    ov, nncf = openvino_module(), nncf_module()
    logging.getLogger("nncf").setLevel(logging.WARNING)  # no per-step progress in our logs
    source, target = Path(source), Path(target)
    config = Config.from_dict(json.loads((source / EXPORT_CONFIG).read_text()), exported=True)
    model = ov.Core().read_model(str(source / OPENVINO_FILE))
    kept = float_node_names(model, settings.float_parts)
    used = min(settings.calibration_images, len(images))
    calibration = _Reiterable(config, images[:used] if used < len(images) else images)
    with _progress_to_terminal():
        quantized = nncf.quantize(
            model,
            nncf.Dataset(calibration),
            preset=nncf.QuantizationPreset(settings.preset),
            subset_size=used,
            fast_bias_correction=settings.fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(names=sorted(kept), validate=False),
        )
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target / OPENVINO_FILE), compress_to_fp16=False)
    shutil.copyfile(source / EXPORT_CONFIG, target / EXPORT_CONFIG)
    counts = collections.Counter(node.get_type_name() for node in graph_nodes(quantized))
    return QuantizedModel(target, settings, used, counts["FakeQuantize"], len(kept))


@contextlib.contextmanager
def _progress_to_terminal() -> Iterator[None]:
    """NNCF draws its progress bars on standard output, where they would corrupt a JSON result:
    send them to a terminal's standard error, and nowhere in logs and pipes."""
    if sys.stderr.isatty():
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
        yield


class _Reiterable:
    """Calibration inputs NNCF can iterate more than once (statistics, then bias correction)."""

    def __init__(self, config: Config, images: Sequence[np.ndarray]) -> None:
        self.config, self.images = config, images

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return calibration_inputs(self.config, self.images)

    def __len__(self) -> int:
        return len(self.images)


def float_node_names(model: Any, parts: Sequence[str]) -> set[str]:
    """Names of the OpenVINO ``model``'s nodes that the float ``parts`` keep unquantized.

    The converter renames most convolutions (``Convolution_1424``), so layers are found
    by the Keras layer names of the nodes around them.
    """
    names: set[str] = set()
    for node in model.get_ordered_ops():
        kind, name = node.get_type_name(), node.get_friendly_name()
        consumers = (
            [target.get_node() for target in node.output(0).get_target_inputs()]
            if node.get_output_size()
            else []
        )
        if "box_arithmetic" in parts and _BOX_ARITHMETIC.match(name):
            names.add(name)
        if (
            "box_deltas" in parts
            and kind in ("Convolution", "MatMul")
            and (
                _BOX_DELTA_LAYERS.match(name)
                or any(_BOX_DELTA_LAYERS.match(c.get_friendly_name()) for c in consumers)
            )
        ):
            names.add(name)
        if "classifier" in parts and kind == "MatMul" and _CLASSIFIER_LAYER.match(name):
            names.add(name)
        if "softmax" in parts and kind == "Softmax":
            names.add(name)
        if "mask_sigmoid" in parts and (
            kind == "Sigmoid"
            or kind == "Convolution"
            and any(c.get_type_name() == "Sigmoid" for c in consumers)
        ):
            names.add(name)
        if "roi_align" in parts and (
            kind == "ROIPooling"
            or kind == "Concat"
            and any(
                i.get_source_output().get_node().get_type_name() == "ROIPooling"
                for i in node.inputs()
            )
        ):
            names.add(name)
    return names


def runtime_precisions(compiled: Any) -> dict[str, collections.Counter[str]]:
    """For each compute-heavy layer type of a compiled model, how many run in which precision
    on this CPU (``{"Convolution": {"u8": 49}, ...}``), from OpenVINO's runtime model."""
    counts: dict[str, collections.Counter[str]] = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind in ("Convolution", "FullyConnected", "MatMul", "Deconvolution"):
            precision = info["runtimePrecision"].astype(str)
            counts.setdefault(kind, collections.Counter())[precision] += 1
    return counts
