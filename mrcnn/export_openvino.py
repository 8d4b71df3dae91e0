"""OpenVINO IR exports: convert the predict graph, and run it with an explicit precision.

One change to the converted graph: a TopK whose indices nothing reads runs unstable.
OpenVINO's TensorFlow front end keeps TF's tie order (`stable=True`) on every TopK, and the
stable kernel over the 65k anchors of a 512² image cost ≈ 1.4 s of a 1.9 s detect (ResNet-50,
float32, 2-core AMD EPYC); the proposal layer finds the k-th best RPN score with such a
values-only top-k (`mrcnn.layers.proposals.top_k_indices`), so the anchors and their order
stay TensorFlow's. (The detection layer's NMS is a plain `NonMaxSuppressionV3`, which OpenVINO
converts; it has no rule for TensorFlow's `CombinedNonMaxSuppression`.)

The precision is always given explicitly: OpenVINO's own default on CPUs with AMX is bf16.
Under bf16 its CPU plugin keeps the proposal, NMS, detection, softmax and mask-probability
arithmetic in float32 by itself (read from the compiled model's runtime precisions); unlike
our TensorFlow bf16 path it gathers ROI Align's crops and computes their pyramid level in
bf16. Both bf16 paths are held to the same tolerance against float32 (tests/mrcnn).

Needs the `openvino` extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn.export_formats import ExportFormat, Predict, optional_module
from mrcnn.precision import inference_precision

OPENVINO_FILE = "model.xml"  # + model.bin beside it
PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}  # Config.INFERENCE_PRECISION → OpenVINO


def openvino_module() -> Any:
    """The ``openvino`` package (the ``openvino`` extra), or an ImportError saying so."""
    return optional_module("openvino", "openvino", "OpenVINO export and runtime")


def convert_predict(predict: Any) -> Any:
    """The traced predict function as an ``openvino.Model``, its values-only TopKs unstable."""
    ov = openvino_module()
    model = ov.convert_model(predict)
    for node in graph_nodes(model):
        if node.get_type_name() == "TopK" and not node.output(1).get_target_inputs():
            node.set_attribute("stable", False)  # only its values are used: ties do not matter
    model.validate_nodes_and_infer_types()
    return model


def write_openvino(predict: Any, folder: Path) -> None:
    """Convert the traced predict function and save it as IR (`model.xml`, `model.bin`)."""
    ov = openvino_module()
    ov.save_model(convert_predict(predict), str(folder / OPENVINO_FILE), compress_to_fp16=False)


def graph_nodes(model: Any) -> Iterator[Any]:
    """Every node of an OpenVINO model, those inside loop bodies (`tf.map_fn`) included."""
    for node in model.get_ordered_ops():
        yield node
        if node.get_type_name() in ("Loop", "TensorIterator"):
            yield from graph_nodes(node.get_function())


def openvino_predict(
    path: str | os.PathLike,
    precision: str = "float32",
    threads: int | None = None,
    graph_file: str = OPENVINO_FILE,
) -> Predict:
    """The IR's predict function on the CPU plugin.

    Args:
        precision: an INFERENCE_PRECISION value, resolved for this CPU by
            `mrcnn.precision.inference_precision` (bfloat16 only where the CPU has it natively).
        threads: OpenVINO's inference threads (default: its own choice).
        graph_file: the IR's ``.xml`` in the folder.
    """
    chosen = inference_precision(precision).precision
    ov = openvino_module()
    settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[chosen]}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    model = core.read_model(str(Path(path, graph_file)))
    compiled = core.compile_model(model, "CPU", settings)
    names = [output.get_any_name() for output in compiled.outputs]

    def predict(images: Any, metas: Any) -> dict[str, np.ndarray]:
        # One request per call: shards of one process may call the model from several threads.
        request = compiled.create_infer_request()
        result = request.infer(
            {"images": np.asarray(images, np.float32), "metas": np.asarray(metas, np.float32)}
        )
        return {name: result[output] for name, output in zip(names, compiled.outputs)}

    return predict


FORMAT = ExportFormat(
    name="openvino",
    title="OpenVINO IR",
    help="OpenVINO IR (model.xml + model.bin, run by OpenVINO's CPU plugin in float32 or bfloat16)",
    graph_file=OPENVINO_FILE,
    runtime="openvino",
    write=write_openvino,
    load=openvino_predict,
    chooses_precision=True,
    extra="openvino",
)
