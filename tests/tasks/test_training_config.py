"""Training config files: validation, default and explicit stages, presets, init_with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.training.config import (
    CLASS_SPECIFIC_LAYERS,
    PRESETS,
    TrainingConfig,
    load_training_config,
    parse_init,
)
from tests.support.code_modules import side_effect_module

MINIMAL = {"name": "demo", "classes": ["cat", "dog"], "epochs": 3}


def test_default_stages_are_heads_then_all_at_a_tenth_of_the_rate():
    training = TrainingConfig.from_dict(
        {**MINIMAL, "learning_rate": 0.02, "augmentation": {"hflip": 0.5}}
    )
    stages = [s.to_dict() for s in training.resolved_stages()]
    assert [(s["layers"], s["epochs"]) for s in stages] == [("heads", 3), ("all", 6)]
    assert stages[0]["learning_rate"] == 0.02
    assert stages[1]["learning_rate"] == pytest.approx(0.002)
    assert all(s["augmentation"]["hflip"] == 0.5 for s in stages)
    config = training.mrcnn_config()
    assert (config.NAME, config.NUM_CLASSES) == ("demo", 3)


def test_a_time_budget_ends_stages_at_shares_of_it():
    default = TrainingConfig.from_dict(
        {"name": "demo", "classes": ["a"], "minutes": 7, "learning_rate": 0.01}
    )
    assert [(s.layers, s.epochs, s.until, s.learning_rate) for s in default.resolved_stages()] == [
        ("heads", None, 0.5, 0.01),
        ("all", None, 1.0, pytest.approx(0.001)),
    ]
    explicit = TrainingConfig.from_dict(
        {
            "preset": "shapes",
            "minutes": 2,
            "stages": [
                {"layers": "all", "until": 0.75, "learning_rate": 1e-3},
                {"layers": "all", "until": 1.0, "learning_rate": 1e-4},
            ],
        }
    )
    assert [s.until for s in explicit.resolved_stages()] == [0.75, 1.0]
    # The preset's `epochs` gives way to the budget.
    assert TrainingConfig.from_dict({"preset": "shapes", "minutes": 3}).epochs is None


def test_default_learning_rate_comes_from_the_model_config():
    training = TrainingConfig.from_dict({**MINIMAL, "config": {"LEARNING_RATE": 0.004}})
    assert [s.learning_rate for s in training.resolved_stages()] == pytest.approx([0.004, 0.0004])


def test_explicit_stages_inherit_or_drop_the_default_augmentation():
    training = TrainingConfig.from_dict(
        {
            "name": "demo",
            "classes": ["a"],
            "augmentation": {"vflip": 1.0},
            "stages": [
                {"layers": "heads", "epochs": 2, "learning_rate": 1e-3},
                {"layers": "res5.*", "epochs": 4, "learning_rate": 1e-4, "augmentation": None},
                {
                    "layers": "all",
                    "epochs": 5,
                    "learning_rate": 1e-5,
                    "augmentation": {"hflip": 0.25},
                },
            ],
        }
    )
    stages = training.resolved_stages()
    assert [s.layers for s in stages] == ["heads", "res5.*", "all"]
    assert stages[0].augmentation["vflip"] == 1.0
    assert stages[1].augmentation is None
    assert stages[2].augmentation["hflip"] == 0.25 and stages[2].augmentation["vflip"] == 0.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "bogus: unknown key"),
        (
            {
                "stages": [{"layers": "heads", "epochs": 1, "learning_rate": 1, "lr": 2}],
                "epochs": None,
            },
            "stages.0.lr: unknown key",
        ),
        ({"config": {"NOT_A_SETTING": 1}}, "unknown Config attribute(s): NOT_A_SETTING"),
        ({"config": {"IMAGE_MAX_DIM": 100}}, "divisible by 64"),
        ({"config": {"NUM_CLASSES": 3}}, "config.NUM_CLASSES is set from"),
        ({"classes": ["a", "a"]}, "class names must be unique"),
        ({"classes": ["BG", "a"]}, "without the background"),
        ({"name": "bad name"}, "name: String should match pattern"),
        (
            {"stages": [{"layers": "heads", "epochs": 1, "learning_rate": 1e-3}]},
            "`stages`, not both",
        ),
        ({"epochs": None}, "or a time budget in `minutes`"),
        ({"minutes": 5}, "either `epochs` or a time budget in `minutes`, not both"),
        ({"epochs": None, "minutes": 0}, "minutes: Input should be greater than 0"),
        (
            {
                "epochs": None,
                "minutes": 5,
                "stages": [{"layers": "all", "epochs": 1, "learning_rate": 1}],
            },
            "stages end by `until` under a time budget (`minutes`), not by `epochs`",
        ),
        (
            {"epochs": None, "stages": [{"layers": "all", "until": 1.0, "learning_rate": 1}]},
            "`until` needs `minutes`",
        ),
        (
            {
                "epochs": None,
                "minutes": 5,
                "stages": [{"layers": "all", "until": 0.5, "learning_rate": 1}],
            },
            "the last stage must run `until: 1.0`",
        ),
        (
            {
                "epochs": None,
                "minutes": 5,
                "stages": [{"layers": "all", "until": 1.5, "learning_rate": 1}],
            },
            "stages.0.until: Input should be less than or equal to 1",
        ),
        (
            {
                "epochs": None,
                "stages": [
                    {"layers": "heads", "epochs": 4, "learning_rate": 1e-3},
                    {"layers": "all", "epochs": 4, "learning_rate": 1e-4},
                ],
            },
            "must increase, got [4, 4]",
        ),
        (
            {"epochs": None, "stages": [{"layers": "(", "epochs": 1, "learning_rate": 1e-3}]},
            "stages.0.layers: not a preset or a valid regex",
        ),
        ({"augmentation": {"hflip": 2}}, "hflip is a probability"),
        ({"init_with": "imagenet"}, "needs a target"),
        ({"init_with": "pretrained:x"}, "init_with must start with one of"),
    ],
)
def test_invalid_settings_are_named(change, message):
    data = {key: value for key, value in {**MINIMAL, **change}.items() if value is not None}
    with pytest.raises(ValueError) as error:
        TrainingConfig.from_dict(data, "my.yaml")
    assert "my.yaml" in str(error.value) and message in str(error.value)


def test_init_with_forms():
    assert parse_init("scratch") == ("scratch", None)
    assert parse_init("last") == ("last", None)
    assert parse_init("coco:s3://b/mask_rcnn_coco.h5") == ("coco", "s3://b/mask_rcnn_coco.h5")
    assert parse_init("model:road@production") == ("model", "road@production")
    with pytest.raises(ValueError, match="takes no target"):
        parse_init("last:x")
    assert len(CLASS_SPECIFIC_LAYERS) == 4  # matterport's exclude list


def test_yaml_and_json_files_and_presets(tmp_path: Path):
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("preset: shapes\nepochs: 2\nconfig:\n  IMAGES_PER_GPU: 2\n")
    training = load_training_config(str(yaml_file))
    config = training.mrcnn_config()
    assert training.classes == PRESETS["shapes"]["classes"]
    assert (config.IMAGES_PER_GPU, config.IMAGE_MAX_DIM) == (2, 128)  # merged with the preset
    assert [s.epochs for s in training.resolved_stages()] == [2, 4]

    json_file = tmp_path / "train.json"
    json_file.write_text(
        json.dumps(
            {
                "preset": "seed-like",
                "stages": [{"layers": "heads", "epochs": 1, "learning_rate": 0.01}],
            }
        )
    )
    assert [s.epochs for s in load_training_config(str(json_file)).resolved_stages()] == [1]

    legacy = load_training_config("preset:seed-like")
    config = legacy.mrcnn_config()
    assert (len(legacy.classes), tuple(config.IMAGE_SHAPE[:2])) == (5, (384, 384))
    assert list(config.RPN_ANCHOR_SCALES) == [48, 96, 192, 384, 768]
    assert [(s.layers, s.epochs) for s in legacy.resolved_stages()] == [
        ("heads", 30),
        ("4+", 60),
        ("all", 100),
        ("all", 150),
    ]
    assert legacy.resolved_stages()[-1].augmentation is None
    # A round trip through to_dict gives the same config (the pipeline passes it on).
    assert TrainingConfig.from_dict(legacy.to_dict()) == legacy


def test_a_training_config_naming_code_as_backbone_is_refused_and_imports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = side_effect_module(tmp_path)
    for reference in ("os:system", module.reference()):
        path = tmp_path / "train.yaml"
        path.write_text(yaml.safe_dump({**MINIMAL, "config": {"BACKBONE": reference}}))
        with pytest.raises(ValueError) as refused:
            load_training_config(str(path))
        assert str(refused.value).startswith(f"training config {str(path)!r} is invalid")
        assert "BACKBONE must be one of" in str(refused.value)
        assert f"got {reference!r}" in str(refused.value)
    assert not module.imported()


def test_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_training_config(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml.*does not parse"):
        load_training_config(str(broken))
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_training_config("preset:nope")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_training_config(str(listed))
