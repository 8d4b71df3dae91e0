"""Config: matterport's defaults, derived values, both override styles, validation,
(de)serialisation, and a stored config that names code (refused, nothing imported)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mrcnn.config import Config, NamedBackbone
from tests.mrcnn.conftest import TinyConfig
from tests.support.code_modules import WrittenModule, side_effect_module


def custom_backbone(input_image, stage5: bool, train_bn: bool) -> list:
    """Stand-in callable backbone (never built here) for the serialisation round trip."""
    raise NotImplementedError


def test_matterport_defaults():
    config = Config(NAME="coco", NUM_CLASSES=81)
    assert config.GPU_COUNT == 1 and config.IMAGES_PER_GPU == 2
    assert config.STEPS_PER_EPOCH == 1000 and config.VALIDATION_STEPS == 50
    assert config.BACKBONE == "resnet101"
    assert config.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert tuple(config.RPN_ANCHOR_SCALES) == (32, 64, 128, 256, 512)
    assert list(config.RPN_ANCHOR_RATIOS) == [0.5, 1, 2]
    assert config.RPN_NMS_THRESHOLD == 0.7 and config.RPN_TRAIN_ANCHORS_PER_IMAGE == 256
    assert config.PRE_NMS_LIMIT == 6000
    assert (config.POST_NMS_ROIS_TRAINING, config.POST_NMS_ROIS_INFERENCE) == (2000, 1000)
    assert config.IMAGE_RESIZE_MODE == "square"
    assert (config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == (800, 1024)
    np.testing.assert_allclose(config.MEAN_PIXEL, [123.7, 116.8, 103.9])
    assert config.USE_MINI_MASK and tuple(config.MINI_MASK_SHAPE) == (56, 56)
    assert (config.POOL_SIZE, config.MASK_POOL_SIZE, list(config.MASK_SHAPE)) == (7, 14, [28, 28])
    assert config.TRAIN_ROIS_PER_IMAGE == 200 and config.ROI_POSITIVE_RATIO == 0.33
    assert config.MAX_GT_INSTANCES == 100 and config.DETECTION_MAX_INSTANCES == 100
    assert config.DETECTION_MIN_CONFIDENCE == 0.7 and config.DETECTION_NMS_THRESHOLD == 0.3
    np.testing.assert_allclose(config.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    np.testing.assert_allclose(config.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    assert (config.LEARNING_RATE, config.LEARNING_MOMENTUM, config.WEIGHT_DECAY) == (
        0.001,
        0.9,
        0.0001,
    )
    assert (
        config.GRADIENT_CLIP_NORM == 5.0
        and config.TRAIN_BN is False
        and config.USE_RPN_ROIS is True
    )
    assert config.LOSS_WEIGHTS == {
        name: 1.0
        for name in (
            "rpn_class_loss",
            "rpn_bbox_loss",
            "mrcnn_class_loss",
            "mrcnn_bbox_loss",
            "mrcnn_mask_loss",
        )
    }
    assert (config.TOP_DOWN_PYRAMID_SIZE, config.FPN_CLASSIF_FC_LAYERS_SIZE) == (256, 1024)
    # Additions: matterport's optimizer and no warmup unless asked.
    assert config.OPTIMIZER == "sgd" and config.WARMUP_STEPS == 0


def test_derived_values():
    config = Config(NAME="coco", NUM_CLASSES=81, GPU_COUNT=2, IMAGES_PER_GPU=3)
    assert config.BATCH_SIZE == 6
    assert config.IMAGE_SHAPE.tolist() == [1024, 1024, 3]
    # id + original shape (3) + molded shape (3) + window (4) + scale + one flag per class
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 81 == 93


def test_crop_mode_uses_min_dim_for_the_image_shape():
    config = Config(
        NAME="crop", NUM_CLASSES=2, IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=256, IMAGE_MAX_DIM=512
    )
    assert config.IMAGE_SHAPE.tolist() == [256, 256, 3]


def test_subclass_style_and_keyword_override():
    subclassed = TinyConfig()
    assert (subclassed.NAME, subclassed.NUM_CLASSES, subclassed.BATCH_SIZE) == ("tiny", 4, 2)
    assert subclassed.IMAGE_SHAPE.tolist() == [64, 64, 3]
    # A keyword wins over the subclass value, and the derived values follow it.
    overridden = TinyConfig(IMAGES_PER_GPU=1, NUM_CLASSES=6)
    assert (overridden.BATCH_SIZE, overridden.IMAGE_META_SIZE) == (1, 18)
    assert TinyConfig.IMAGES_PER_GPU == 2, "an override must not leak into the class"
    keyword = Config(NAME="kw", NUM_CLASSES=3, BACKBONE="resnet50")
    assert (keyword.NAME, keyword.NUM_CLASSES, keyword.BACKBONE) == ("kw", 3, "resnet50")


def test_partial_loss_weights_keep_the_other_defaults():
    config = TinyConfig(LOSS_WEIGHTS={"mrcnn_mask_loss": 2.0})
    assert config.LOSS_WEIGHTS["mrcnn_mask_loss"] == 2.0
    assert config.LOSS_WEIGHTS["rpn_class_loss"] == 1.0 and len(config.LOSS_WEIGHTS) == 5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"IMAGE_MAX_DIM": 1000}, "divisible by 64"),
        ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 100}, "divisible by 64"),
        ({"NUM_CLASSES": 1}, "NUM_CLASSES"),
        ({"OPTIMIZER": "adam"}, "OPTIMIZER"),
        ({"WARMUP_STEPS": -1}, "WARMUP_STEPS"),
        ({"IMAGE_RESIZE_MODE": "stretch"}, "IMAGE_RESIZE_MODE"),
        ({"NAME": None}, "NAME"),
        ({"NAME": "a/b"}, "NAME"),
        ({"BACKBONE": "vgg16"}, "BACKBONE"),
        ({"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 64}, "IMAGE_MIN_DIM"),
        ({"RPN_ANCHOR_SCALES": (8, 16)}, "RPN_ANCHOR_SCALES"),
        ({"IMAGES_PER_GPU": 0}, "IMAGES_PER_GPU"),
        ({"IMAGES_PER_GPU": 1.5}, "IMAGES_PER_GPU"),
        ({"STEPS_PER_EPOCH": True}, "STEPS_PER_EPOCH"),
        ({"VALIDATION_STEPS": -1}, "VALIDATION_STEPS"),
        ({"LEARNING_RATE": 0}, "LEARNING_RATE"),
        ({"DETECTION_MIN_CONFIDENCE": 1.5}, "DETECTION_MIN_CONFIDENCE"),
        ({"DETECTION_NMS_THRESHOLD": 0}, "DETECTION_NMS_THRESHOLD"),
        ({"LOSS_WEIGHTS": {"mask_loss": 1.0}}, "mask_loss"),
        ({"MEAN_PIXEL": [1.0, 2.0]}, "MEAN_PIXEL"),
        ({"USE_RPN_ROIS": False}, "USE_RPN_ROIS"),
        ({"BATCH_SIZE": 4}, "BATCH_SIZE"),
        ({"IMAGE_SHAPE": [64, 64, 3]}, "IMAGE_SHAPE"),
    ],
)
def test_invalid_values_raise_a_specific_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        TinyConfig(**overrides)


@pytest.mark.parametrize("key", ["NUM_CLASES", "name", "_SECRET"])
def test_unknown_attribute_is_named(key):
    with pytest.raises(ValueError, match=f"unknown Config attribute.*{key}"):
        TinyConfig(**{key: 1})


def test_missing_name_in_a_subclass():
    class Unnamed(Config):
        NUM_CLASSES = 3

    with pytest.raises(ValueError, match="NAME"):
        Unnamed()


def test_pad64_does_not_require_square_dims():
    config = TinyConfig(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=0, IMAGE_MAX_DIM=1000)
    assert config.IMAGE_RESIZE_MODE == "pad64"


def test_to_dict_is_json_safe_and_round_trips():
    config = TinyConfig(OPTIMIZER="adamw", WARMUP_STEPS=10, LEARNING_RATE=3e-4)
    values = config.to_dict()
    text = json.dumps(values)  # raises on numpy arrays or other non-JSON values
    assert values["MEAN_PIXEL"] == [123.7, 116.8, 103.9]
    assert values["BATCH_SIZE"] == 2 and values["IMAGE_SHAPE"] == [64, 64, 3]
    assert (
        values["NAME"] == "tiny" and values["OPTIMIZER"] == "adamw" and values["WARMUP_STEPS"] == 10
    )
    restored = Config.from_dict(json.loads(text))
    assert type(restored) is Config
    assert restored.to_dict() == values
    assert isinstance(restored.MEAN_PIXEL, np.ndarray) and isinstance(
        restored.BBOX_STD_DEV, np.ndarray
    )
    assert restored.IMAGE_META_SIZE == config.IMAGE_META_SIZE


def test_from_dict_recomputes_derived_values():
    values = TinyConfig().to_dict()
    values.update(IMAGES_PER_GPU=3, BATCH_SIZE=99)  # a stale derived value is ignored
    assert Config.from_dict(values).BATCH_SIZE == 3


def test_callable_backbone_round_trips_when_the_caller_allows_it():
    config = TinyConfig(BACKBONE=custom_backbone)
    values = config.to_dict()
    assert values["BACKBONE"] == f"{__name__}:custom_backbone"  # which callable it was
    stored = json.loads(json.dumps(values))
    assert Config.from_dict(stored, [custom_backbone]).BACKBONE is custom_backbone
    # A callable that moved since the config was written: the stored name maps to it.
    moved = {**stored, "BACKBONE": "old.place:custom_backbone"}
    assert (
        Config.from_dict(moved, {"old.place:custom_backbone": custom_backbone}).BACKBONE
        is custom_backbone
    )
    with pytest.raises(ValueError, match=f"BACKBONE '{__name__}:custom_backbone' is neither"):
        Config.from_dict(stored)


@pytest.fixture
def side_effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WrittenModule]:
    """An importable module whose import leaves a marker; forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = side_effect_module(tmp_path)
    yield module
    sys.modules.pop(module.name, None)


@pytest.mark.parametrize("reference", ["os:system", "subprocess:getoutput", "side effects"])
def test_a_stored_reference_to_code_is_refused_in_one_line_and_nothing_is_imported(
    reference: str, side_effects: WrittenModule
):
    reference = side_effects.reference() if reference == "side effects" else reference
    stored = {**TinyConfig().to_dict(), "BACKBONE": reference}
    with pytest.raises(ValueError) as refused:
        Config.from_dict(stored, source="model config '/models/road/config.json'")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "model config '/models/road/config.json': BACKBONE "
        f"{reference!r} is neither a built-in backbone"
    )
    assert not side_effects.imported()
    # Allowing another callable changes nothing; the refusal names what is allowed.
    with pytest.raises(ValueError, match=f"allowed \\({__name__}:custom_backbone\\)"):
        Config.from_dict(stored, [custom_backbone])
    assert not side_effects.imported()
    importlib.import_module(side_effects.name)  # the module was importable all along
    assert side_effects.imported()


def test_the_allow_list_holds_callables_not_names_to_import(side_effects: WrittenModule):
    stored = {**TinyConfig().to_dict(), "BACKBONE": side_effects.reference()}
    for names in (
        side_effects.reference(),
        [side_effects.reference()],
        {side_effects.reference(): side_effects.reference()},
    ):
        with pytest.raises(TypeError, match="backbones must be callables"):
            Config.from_dict(stored, names)
    assert not side_effects.imported()


def test_a_built_in_backbone_loads_from_a_stored_config():
    stored = json.loads(TinyConfig(BACKBONE="resnet18").to_json())
    assert Config.from_dict(stored).BACKBONE == "resnet18"


def test_an_exported_graphs_config_keeps_a_callable_backbone_as_a_name(side_effects: WrittenModule):
    stored = {**TinyConfig().to_dict(), "BACKBONE": side_effects.reference()}
    config = Config.from_dict(stored, exported=True)
    assert config.BACKBONE == NamedBackbone(side_effects.reference())
    assert config.to_dict()["BACKBONE"] == side_effects.reference()
    with pytest.raises(ValueError, match="only a name read from an export"):
        config.BACKBONE(None, stage5=True, train_bn=False)
    assert not side_effects.imported()


def test_other_bad_stored_settings_name_their_source():
    with pytest.raises(ValueError, match="^run.json: NUM_CLASSES must count"):
        Config.from_dict({**TinyConfig().to_dict(), "NUM_CLASSES": 1}, source="run.json")
    with pytest.raises(ValueError, match="^run.json: expected a mapping of Config settings"):
        Config.from_dict([1, 2], source="run.json")


def test_display_prints_every_setting(capsys):
    TinyConfig().display()
    out = capsys.readouterr().out
    lines = {
        line.split()[0]: line for line in out.splitlines() if line.strip() and " " in line.strip()
    }
    assert "Configurations:" in out
    assert lines["NAME"].split()[1] == "tiny"
    assert lines["BATCH_SIZE"].split()[1] == "2"
    assert "NUM_CLASSES" in lines and "IMAGE_META_SIZE" in lines and "WARMUP_STEPS" in lines


def test_instances_do_not_share_array_defaults():
    first = TinyConfig()
    first.MEAN_PIXEL[0] = 0.0
    assert TinyConfig().MEAN_PIXEL[0] == pytest.approx(123.7)


def test_local_backbone_callable_cannot_be_saved():
    def local_backbone(image, stage5=True, train_bn=False):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="module-level"):
        TinyConfig(BACKBONE=local_backbone).to_dict()
