"""bfloat16 inference (`INFERENCE_PRECISION="bfloat16"`) against float32 on the same weights.

A random-weight model's detections hang on near-ties that bfloat16's 8-bit mantissa breaks
differently, so the test pins the box path: the RPN predicts no deltas and one score for all
anchors, the classifier always says class 1 and the box head predicts no deltas. Proposals
and detections are then the anchors in both precisions and must match exactly (they are
float32 arithmetic); only the backbone, FPN and mask head run in bfloat16, so the masks of
the *same boxes* are compared.

The weights are drawn from a numpy generator (`_seeded_weights`), not left to Keras's
initializers: in the full suite, threads of earlier tests share Python's `random`, from which
Keras seeds unseeded initializers, so the "same" random model differed between CI runs.

Tolerances: bfloat16 rounds every activation to ~3 significant digits (relative 2^-9); over
~60 layers (oneDNN accumulates in float32) mask probabilities moved by at most 0.024 and
per-detection mask areas at the 0.5 threshold by at most 1.5% over the weights of seeds 1–5
(0.023 and 0.6% for the seed used). On a CPU with AVX2 only (AMD EPYC family 23 model 1, no
AVX-512: TensorFlow converts to and from bfloat16 in software there) the seed used moved
probabilities by 0.059, areas by 0.8% and 0.34% of pixels changed side. The test allows 0.08
on probabilities, 3% on areas and 1% of pixels changing side: still tight enough that a wrong
cast (e.g. a float16 overflow, or a zeroed channel) fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from mrcnn import hardware, precision
from mrcnn.model import MaskRCNN
from tests.mrcnn.conftest import TinyConfig, fix_class_head

# On a CPU without AVX512_BF16 or AMX an asked-for bfloat16 runs float32 (mrcnn.precision);
# the tests below then check that it does, and that its outputs are float32's.
NATIVE_BF16 = hardware.detect(include_gpus=False).native_bf16

MAX_PROBABILITY_DIFFERENCE = 0.08
MAX_AREA_RATIO_DIFFERENCE = 0.03
MAX_PIXELS_FLIPPED = 0.01


def _seeded_weights(model: MaskRCNN, seed: int) -> None:
    """Redraw every non-constant weight from N(its mean, its std) with numpy's generator."""
    rng = np.random.default_rng(seed)
    for weight in model.keras_model.weights:
        value = weight.numpy()
        if value.size > 1 and value.std() > 0:
            weight.assign(rng.normal(value.mean(), value.std(), value.shape).astype(value.dtype))


def _pin_box_path(model: MaskRCNN) -> None:
    """RPN and box head predict zero deltas, all anchors score alike, every ROI is class 1."""
    fix_class_head(model)
    rpn = model.keras_model.get_layer("rpn_model")
    for layer in (
        rpn.get_layer("rpn_class_raw"),
        rpn.get_layer("rpn_bbox_pred"),
        model.keras_model.get_layer("mrcnn_bbox_fc"),
    ):
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> tuple[MaskRCNN, str, np.ndarray, np.ndarray]:
    """The pinned float32 model, its weight file, and two molded images with their metas."""
    logs = tmp_path_factory.mktemp("logs")
    fp32 = MaskRCNN("inference", TinyConfig(), logs)
    _seeded_weights(fp32, seed=1)
    _pin_box_path(fp32)
    weights = str(logs / "pinned.weights.h5")
    fp32.save_weights(weights)
    rng = np.random.default_rng(0)
    molded, metas, _ = fp32.mold_inputs(
        [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    )
    return fp32, weights, molded, metas


@pytest.fixture(scope="module")
def outputs(pinned, tmp_path_factory) -> tuple[dict, dict, MaskRCNN]:
    """`_predict_fn` outputs of float32 and bfloat16 models sharing one weight file."""
    fp32, weights, molded, metas = pinned
    bf16 = MaskRCNN(
        "inference", TinyConfig(INFERENCE_PRECISION="bfloat16"), tmp_path_factory.mktemp("logs")
    )
    bf16.load_weights(weights)
    return fp32._predict_fn()(molded, metas), bf16._predict_fn()(molded, metas), bf16


@pytest.fixture(scope="module")
def openvino_outputs(pinned, tmp_path_factory) -> tuple[dict, dict]:
    """float32 TensorFlow outputs, and OpenVINO's bf16 outputs of the same model's IR export."""
    from mrcnn.export import load_predict

    fp32, _, molded, metas = pinned
    folder = tmp_path_factory.mktemp("export") / "openvino"
    fp32.export(folder, format="openvino")
    return fp32._predict_fn()(molded, metas), load_predict(folder, precision="bfloat16")(
        molded, metas
    )


def test_bf16_computes_convolutions_in_bfloat16_with_float32_weights(outputs):
    fp32, bf16, model = outputs
    conv = model.keras_model.get_layer("res2a_branch2a")
    assert conv.kernel.dtype == "float32"
    if not NATIVE_BF16:
        assert conv.compute_dtype == "float32" and model.precision.downgraded
        assert "emulate" in model.precision.reason
        np.testing.assert_array_equal(np.asarray(bf16["masks"]), np.asarray(fp32["masks"]))
        return
    assert conv.compute_dtype == "bfloat16" and model.precision.precision == "bfloat16"
    for name in ("ROI", "mrcnn_detection", "roi_align_mask", "anchors"):
        assert model.keras_model.get_layer(name).compute_dtype == "float32", name
    assert keras.config.dtype_policy().name == "float32", "building must restore the global policy"


def test_bf16_outputs_are_float32_and_detections_equal(outputs):
    fp32, bf16, _ = outputs
    assert bf16["detections"].dtype == "float32" and bf16["masks"].dtype == "float32"
    detections = fp32["detections"].numpy()
    assert (detections[..., 4] == 1).all(), "pinned head: every slot is a class-1 detection"
    np.testing.assert_array_equal(bf16["detections"].numpy(), detections)


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_bf16_masks_of_the_same_boxes_match_fp32(runtime, request):
    """The same tolerance for our TensorFlow bf16 path and OpenVINO's bf16 (AVX-512 BF16 / AMX);
    on other CPUs both run float32, which must hold it too."""
    fp32, bf16, *_ = request.getfixturevalue(
        "outputs" if runtime == "tensorflow" else "openvino_outputs"
    )
    detections = np.asarray(fp32["detections"])
    np.testing.assert_array_equal(np.asarray(bf16["detections"]), detections)
    masks32, masks16 = np.asarray(fp32["masks"]), np.asarray(bf16["masks"])
    assert masks32.std() > 0.1, "masks must vary for the comparison to mean anything"
    assert np.abs(masks32 - masks16).max() <= MAX_PROBABILITY_DIFFERENCE
    area32, area16 = (masks32 >= 0.5).sum(axis=(2, 3)), (masks16 >= 0.5).sum(axis=(2, 3))
    assert area32.min() > 0
    assert (np.abs(area16 - area32) / area32).max() <= MAX_AREA_RATIO_DIFFERENCE
    assert ((masks32 >= 0.5) != (masks16 >= 0.5)).mean() <= MAX_PIXELS_FLIPPED


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="INFERENCE_PRECISION"):
        TinyConfig(INFERENCE_PRECISION="float16")


# ---------------------------------------------------------------- the choice, per CPU class
ZEN3_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes
"""
GENOA_FLAGS = "avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16"
SAPPHIRE_RAPIDS_FLAGS = (
    "avx avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8"
)


def _cpu(flags: str, gpus: tuple[str, ...] = ()) -> hardware.Hardware:
    return hardware.Hardware("test CPU", frozenset(flags.split()), 2, gpus)


def test_cpuinfo_gives_the_first_processors_model_and_flags():
    model, flags = hardware.parse_cpuinfo(ZEN3_CPUINFO)
    assert model == "AMD EPYC 7B13"
    assert "avx2" in flags and "avx512f" not in flags
    machine = hardware.Hardware(model, flags, 2)
    assert not machine.native_bf16 and not machine.amx
    assert machine.describe() == "AMD EPYC 7B13 (2 cores; avx2 fma)"


@pytest.mark.parametrize(
    "flags, native",
    [
        (ZEN3_CPUINFO.split("flags\t\t: ")[1].splitlines()[0], False),
        ("avx avx2 fma avx512f avx512bw avx512_vnni", False),  # AVX-512 without BF16 (Skylake)
        (GENOA_FLAGS, True),
        (SAPPHIRE_RAPIDS_FLAGS, True),
    ],
)
def test_auto_picks_bfloat16_only_where_the_cpu_computes_it(flags, native):
    machine = _cpu(flags)
    assert precision.inference_precision("auto", machine).precision == (
        "bfloat16" if native else "float32"
    )
    assert precision.training_precision("auto", machine).precision == (
        "mixed_bfloat16" if native else "float32"
    )
    asked = precision.inference_precision("bfloat16", machine)
    assert asked.precision == ("bfloat16" if native else "float32")
    assert asked.downgraded is (not native)
    if not native:
        assert "test CPU" in asked.reason and "emulate" in asked.reason
    assert precision.inference_precision("float32", machine).precision == "float32"


def test_float16_is_for_gpus_and_auto_stays_float32_on_a_gpu():
    cpu, gpu = _cpu(SAPPHIRE_RAPIDS_FLAGS), _cpu(GENOA_FLAGS, gpus=("/physical_device:GPU:0",))
    on_cpu = precision.training_precision("mixed_float16", cpu)
    assert on_cpu.precision == "float32" and on_cpu.downgraded and "GPU" in on_cpu.reason
    assert precision.training_precision("mixed_float16", gpu).precision == "mixed_float16"
    assert precision.training_precision("auto", gpu).precision == "float32"
    assert precision.inference_precision("bfloat16", gpu).precision == "bfloat16"


def test_unknown_precisions_are_refused_with_the_accepted_values():
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        precision.training_precision("bf16", _cpu(GENOA_FLAGS))
    with pytest.raises(ValueError, match="TRAINING_PRECISION"):
        TinyConfig(TRAINING_PRECISION="float16")


# ---------------------------------------------------------------- training in reduced precision
@pytest.mark.skipif(
    not NATIVE_BF16,
    reason="this CPU has no native bfloat16: training runs "
    "float32 (test_auto_picks_bfloat16_only_where_the_cpu_computes_it)",
)
def test_mixed_bfloat16_training_learns_and_saves_float32_weights(tmp_path, shapes_dataset):
    model = MaskRCNN("training", TinyConfig(TRAINING_PRECISION="auto", OPTIMIZER="adamw"), tmp_path)
    assert model.precision.precision == "mixed_bfloat16"
    assert model.keras_model.get_layer("res2a_branch2a").compute_dtype == "bfloat16"
    before = model.keras_model.get_layer("res2a_branch2a").kernel.numpy().copy()
    history = model.train(shapes_dataset, None, 1e-3, 1, "all", verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert not np.array_equal(model.keras_model.get_layer("res2a_branch2a").kernel.numpy(), before)
    recorded = json.loads((Path(model.log_dir) / "precision.json").read_text())
    assert recorded["precision"] == "mixed_bfloat16" and recorded["requested"] == "auto"
    checkpoint = model.find_last()
    with h5py.File(checkpoint) as weights:
        dtypes = set()
        weights.visititems(
            lambda _, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None
        )
    assert dtypes == {np.dtype("float32")}


def test_float16_training_scales_its_loss(tmp_path, shapes_dataset):
    """The mixed_float16 path (GPUs) built directly: compile wraps the optimizer in a
    LossScaleOptimizer, steps whose scaled gradients overflow float16 are skipped while the
    scale falls, and then steps apply unscaled, finite updates."""
    from mrcnn.data import DataGenerator
    from mrcnn.network import build_training_graph, dtype_policy
    from mrcnn.training import TrainingModel, make_optimizer

    config = TinyConfig(OPTIMIZER="adamw")
    with dtype_policy("mixed_float16"):
        inputs, outputs = build_training_graph(config)
        model = TrainingModel(inputs, outputs, loss_weights=config.LOSS_WEIGHTS, name="mask_rcnn")
    model.compile(optimizer=make_optimizer(config, 1e-4))
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    initial_scale = float(model.optimizer.initial_scale)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(
        DataGenerator(shapes_dataset, config, shuffle=False, steps=12), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][-1])
    assert float(model.optimizer.dynamic_scale.numpy()) < initial_scale
    changes = [np.abs(w.numpy() - b).max() for w, b in zip(model.trainable_weights, before)]
    assert all(np.isfinite(changes)) and max(changes) > 0
    # Adam moves a weight by about the learning rate per applied step, never by the scale.
    assert max(changes) < 12 * 1e-3
