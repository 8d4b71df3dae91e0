"""INT8 quantization of the OpenVINO export and its self-check, on a tiny random-weight model.

Random weights say nothing about accuracy (that is measured on a trained model, see
docs/tutorials/int8.md); these tests check what the code does: integer convolutions, the
float parts left alone, and a check that measures and refuses.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from mrcnn.export import load_exported
from mrcnn.export_openvino import OPENVINO_FILE, graph_nodes
from mrcnn.int8_check import CheckImage, Tolerances, check_int8, coverage_pp
from mrcnn.quantize import (
    FLOAT_PARTS,
    QuantizationSettings,
    float_node_names,
    quantize_openvino,
    runtime_precisions,
)
from mrcnn.shapes import ShapesDataset

openvino = pytest.importorskip("openvino")
pytest.importorskip("nncf")

CLASSES = ["square", "circle", "triangle"]


@pytest.fixture(scope="module")
def shapes() -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(8, 64, 64, seed=3)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def float_export(openvino_export: Path) -> Path:
    """The session's float32 IR of the light export model (`ExportConfig`, 200 proposals)."""
    return openvino_export


@pytest.fixture(scope="module")
def int8_export(float_export, shapes, tmp_path_factory) -> Path:
    images = [shapes.load_image(i) for i in shapes.image_ids[:4]]
    folder = tmp_path_factory.mktemp("export") / "int8"
    quantized = quantize_openvino(float_export, folder, images, QuantizationSettings(4))
    assert quantized.calibration_images == 4 and quantized.quantizers > 0
    assert quantized.float_nodes > 0
    return folder


def test_quantized_convolutions_run_on_integers(int8_export, float_export):
    core = openvino.Core()
    precisions = {}
    for name, folder in (("float32", float_export), ("int8", int8_export)):
        model = core.read_model(str(folder / OPENVINO_FILE))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        precisions[name] = runtime_precisions(compiled)
    assert set(precisions["float32"]["Convolution"]) == {"f32"}
    convolutions = precisions["int8"]["Convolution"]
    # All but the RPN's box-delta layer on its 5 levels (a default float part) run on integers.
    assert convolutions["f32"] == 5 and convolutions["u8"] + convolutions["i8"] > 40
    # The export's settings travel with it: an INT8 folder is an export like the others.
    assert json.loads((int8_export / "mrcnn_config.json").read_text())["NUM_CLASSES"] == 4


def test_box_arithmetic_stays_in_float(int8_export):
    """No quantizer feeds the proposal or detection layers' box decoding (default float part)."""
    model = openvino.Core().read_model(str(int8_export / OPENVINO_FILE))
    fed = [
        target.get_node().get_friendly_name()
        for node in graph_nodes(model)
        if node.get_type_name() == "FakeQuantize"
        for target in node.output(0).get_target_inputs()
    ]
    assert fed and not [name for name in fed if "/mrcnn_detection" in name or "/ROI" in name]


def test_each_float_part_names_nodes_of_the_graph(float_export):
    model = openvino.Core().read_model(str(float_export / OPENVINO_FILE))
    found = {part: float_node_names(model, [part]) for part in FLOAT_PARTS}
    assert all(found.values()), [part for part, names in found.items() if not names]
    kinds = {
        part: collections.Counter(
            node.get_type_name()
            for node in model.get_ordered_ops()
            if node.get_friendly_name() in names
        )
        for part, names in found.items()
    }
    assert set(kinds["softmax"]) == {"Softmax"}
    assert kinds["roi_align"]["ROIPooling"] == 8  # 4 levels, classifier and mask pyramids
    assert kinds["box_deltas"]["Convolution"] == 5 and kinds["box_deltas"]["MatMul"] == 1
    assert kinds["mask_sigmoid"] == {"Convolution": 1, "Sigmoid": 1}
    assert kinds["classifier"] == {"MatMul": 1}


def test_settings_reject_unknown_parts_and_presets():
    with pytest.raises(ValueError, match="unknown float part 'nms'"):
        QuantizationSettings(float_parts=("nms",))
    with pytest.raises(ValueError, match="preset must be one of"):
        QuantizationSettings(preset="fast")
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_openvino("unused", "unused", [])


def test_the_check_of_a_model_against_itself_finds_no_difference(float_export, shapes):
    detect = load_exported(float_export, precision="float32")
    held_out = [CheckImage(shapes.load_image(i)) for i in shapes.image_ids[4:]]
    report = check_int8(detect, detect, held_out, CLASSES)
    assert report.passed, report.failures
    assert report.instances_float32 == report.instances_int8 > 0
    assert report.area_difference_pp == 0 and report.matched_share == 1.0
    assert report.ap50_drop == 0 and report.reference == "float32 detections"


def test_the_check_measures_int8_and_refuses_it_beyond_the_tolerances(
    float_export, int8_export, shapes
):
    held_out = [with_truth(shapes, i) for i in shapes.image_ids[4:]]
    float32 = load_exported(float_export, precision="float32")
    int8 = load_exported(int8_export, precision="float32")
    lenient = check_int8(
        float32,
        int8,
        held_out,
        CLASSES,
        Tolerances(area_difference_pp=100, ap50_drop=1, matched_share=0),
    )
    assert lenient.passed and lenient.reference == "ground truth" and lenient.images == 4
    assert lenient.area_difference_pp > 0, "random weights: quantization moves some mask"
    strict = check_int8(float32, int8, held_out, CLASSES, Tolerances(area_difference_pp=0))
    assert not strict.passed
    assert any(
        failure.startswith("class ") and "pp on average (limit 0" in failure
        for failure in strict.failures
    )
    assert "failed: class" in strict.summary()
    again = type(strict).from_dict(json.loads(json.dumps(strict.to_dict())))
    assert again == strict


def with_truth(dataset: ShapesDataset, image_id: int) -> CheckImage:
    masks, class_ids = dataset.load_mask(image_id)
    return CheckImage(dataset.load_image(image_id), class_ids, masks)


def test_coverage_counts_overlapping_instances_once():
    masks = np.zeros((10, 10, 3), bool)
    masks[:5, :, 0] = True  # class 1: half the image
    masks[:5, :5, 1] = True  # class 1 again, inside the first: no extra pixels
    masks[5:, :2, 2] = True  # class 2: a tenth
    np.testing.assert_allclose(coverage_pp(masks, np.array([1, 1, 2]), 3), [50.0, 10.0, 0.0])


def test_tolerances_are_checked():
    with pytest.raises(ValueError, match="matched share must be in"):
        Tolerances(matched_share=1.5)
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        Tolerances(ap50_drop=-0.1)
