"""Training configuration as data: a YAML or JSON file, validated before anything is built.

A file holds the model name, the class list (without the background), the `mrcnn.Config`
overrides, the initial weights and the stages. Unknown keys are rejected at every level.

```yaml
preset: shapes            # optional: start from a preset, then override its keys
name: shapes              # model name: Config.NAME and the registry name
classes: [square, circle, triangle]
init_with: scratch        # scratch | imagenet:<uri> | coco:<uri> | last | model:<NAME@ALIAS>
auto_config: true         # choose image size, anchors, instance limits, ROIs and the mean
                          # pixel from the dataset (mrcnn.auto_config); `config` values win
config: {IMAGES_PER_GPU: 8, IMAGE_MAX_DIM: 128}   # mrcnn Config overrides
                          # (GPU_COUNT > 1: data-parallel over that many GPUs, mrcnn.distribute)
epochs: 10                # default stages: heads to 10 at learning_rate, all to 20 at lr/10
learning_rate: 0.001      # default: config LEARNING_RATE
augmentation: {hflip: 0.5}  # default of every stage that does not set its own
stages:                   # instead of `epochs`: any list, epochs cumulative
  - {layers: heads, epochs: 10, learning_rate: 0.001}
  - {layers: all, epochs: 20, learning_rate: 0.0001, augmentation: null}
```

A time budget instead of epochs: training (model building included) stops on the clock, so a
run takes the same time on a fast and a slow machine and does as many steps as it can; each
stage ends at a fraction `until` of the budget (the default stages: heads until 0.5, all until
1.0 at lr / 10):
```yaml
minutes: 7
stages:
  - {layers: all, until: 0.75, learning_rate: 0.001}
  - {layers: all, until: 1.0, learning_rate: 0.0001}
```
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mrcnn.augment import Augmentation
from mrcnn.config import Config
from tasks import storage
from tasks.failures import InvalidInput, InvalidSetting, MissingInput
from tasks.registry.versions import NAME_PATTERN  # a trained model's name is its registry name

INIT_KINDS = ("scratch", "imagenet", "coco", "last", "model")
COCO_CLASS_COUNT = 81  # matterport's COCO weights: 80 classes + background
# Layers whose shapes depend on the class count: left out when loading weights of other classes.
CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


class StageSpec(BaseModel):
    """One `MaskRCNN.train` call: train `layers` until the cumulative epoch `epochs`, or,
    under a time budget, until the fraction `until` of it has passed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: str = Field(description="heads, 3+, 4+, 5+, all, or a regex over layer names")
    epochs: int | None = Field(
        default=None, gt=0, description="cumulative epoch at which the stage ends"
    )
    until: float | None = Field(
        default=None, gt=0, le=1, description="share of the `minutes` budget at which it ends"
    )
    learning_rate: float = Field(gt=0)
    augmentation: dict[str, Any] | None = None

    @field_validator("layers")
    @classmethod
    def _valid_layers(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a preset or a valid regex: {error}") from None
        return value

    @field_validator("augmentation")
    @classmethod
    def _valid_augmentation(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            return None if value is None else Augmentation.from_dict(value).to_dict()
        except TypeError as error:  # a wrong type is a bad value here: pydantic reports it
            raise ValueError(str(error)) from None


@dataclass(frozen=True)
class Stage:
    """A resolved stage (augmentation inherited from the file's default where unset); it
    ends at the cumulative epoch `epochs`, or at the share `until` of the time budget."""

    layers: str
    epochs: int | None
    learning_rate: float
    augmentation: dict[str, Any] | None
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingConfig(BaseModel):
    """A validated training configuration (see the module docstring for the format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    classes: list[str] = Field(min_length=1)
    init_with: str = "scratch"
    auto_config: bool = False
    config: dict[str, Any] = Field(default_factory=dict)
    epochs: int | None = Field(default=None, gt=0)
    minutes: float | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    augmentation: dict[str, Any] | None = None
    stages: list[StageSpec] | None = None

    @field_validator("classes")
    @classmethod
    def _valid_classes(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("class names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"class names must be unique, got {value}")
        if "BG" in value:
            raise ValueError("list the classes without the background 'BG'")
        return value

    @field_validator("init_with")
    @classmethod
    def _valid_init(cls, value: str) -> str:
        parse_init(value)
        return value

    @field_validator("augmentation")
    @classmethod
    def _valid_augmentation(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else Augmentation.from_dict(value).to_dict()

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.stages is not None and self.epochs is not None:
            raise ValueError(
                "give either `epochs` (the default stages heads -> N, all -> 2N) "
                "or a list of `stages`, not both"
            )
        if self.minutes is None and self.stages is None and self.epochs is None:
            raise ValueError(
                "give `epochs` (the default stages heads -> N, all -> 2N), a list "
                "of `stages`, or a time budget in `minutes`"
            )
        if self.minutes is not None and self.epochs is not None:
            raise ValueError("give either `epochs` or a time budget in `minutes`, not both")
        if self.stages is not None:
            if not self.stages:
                raise ValueError("`stages` must not be empty")
            if self.learning_rate is not None:
                raise ValueError(
                    "`learning_rate` sets the default stages; with `stages` give "
                    "each stage its own learning_rate"
                )
            self._check_stage_ends()
        for key in ("NAME", "NUM_CLASSES"):
            if key in self.config:
                raise ValueError(f"config.{key} is set from `name` / `classes`; remove it")
        try:
            self.mrcnn_config()  # raises ValueError naming the first bad override
        except TypeError as error:  # e.g. a string where Config compares numbers
            raise ValueError(f"config overrides: {error}") from None
        return self

    def _check_stage_ends(self) -> None:
        """Epochs (no budget) or shares of the budget (`minutes`), increasing, one kind only."""
        key, other = ("until", "epochs") if self.minutes is not None else ("epochs", "until")
        if any(getattr(stage, other) is not None for stage in self.stages):
            raise ValueError(
                f"stages end by `{key}` "
                + (
                    "under a time budget (`minutes`)"
                    if key == "until"
                    else "without a time budget; `until` needs `minutes`"
                )
                + f", not by `{other}`"
            )
        ends = [getattr(stage, key) for stage in self.stages]
        if any(end is None for end in ends):
            raise ValueError(f"every stage needs `{key}`")
        if any(later <= earlier for earlier, later in zip(ends, ends[1:])):
            raise ValueError(f"stage `{key}` values are cumulative and must increase, got {ends}")
        if key == "until" and ends[-1] != 1:
            raise ValueError(
                f"the last stage must run `until: 1.0` (the whole budget), got {ends[-1]}"
            )

    def mrcnn_config(self) -> Config:
        """The model configuration: the overrides plus NAME and NUM_CLASSES."""
        return Config(NAME=self.name, NUM_CLASSES=len(self.classes) + 1, **self.config)

    def resolved_stages(self) -> list[Stage]:
        """The stages to run; the default is heads to N at lr, then all to 2N at lr / 10
        (under a time budget: heads for its first half, all for the second at lr / 10)."""
        if self.stages is None:
            rate = self.learning_rate or float(self.mrcnn_config().LEARNING_RATE)
            if self.minutes is not None:
                return [
                    Stage("heads", None, rate, self.augmentation, until=0.5),
                    Stage("all", None, rate / 10, self.augmentation, until=1.0),
                ]
            return [
                Stage("heads", self.epochs, rate, self.augmentation),
                Stage("all", 2 * self.epochs, rate / 10, self.augmentation),
            ]
        return [
            Stage(
                s.layers,
                s.epochs,
                s.learning_rate,
                s.augmentation if "augmentation" in s.model_fields_set else self.augmentation,
                until=s.until,
            )
            for s in self.stages
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe content, as given (stages unresolved); `from_dict` reads it back."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "training config") -> TrainingConfig:
        """Validate a parsed file (a `preset` key is applied first).

        Raises:
            ValueError: naming `source` and every invalid or unknown key.
        """
        if not isinstance(data, dict):
            raise InvalidSetting(
                f"{source}: expected a mapping of settings, got {type(data).__name__}"
            )
        data = _apply_preset(data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InvalidSetting(f"{source} is invalid:\n{_describe(error)}") from None


def parse_init(init_with: str) -> tuple[str, str | None]:
    """Split `init_with` into `(kind, target)`, e.g. `("coco", "s3://b/mask_rcnn_coco.h5")`.

    Raises:
        ValueError: for an unknown kind or a missing / superfluous target.
    """
    kind, sep, target = str(init_with).partition(":")
    if kind not in INIT_KINDS:
        raise InvalidSetting(f"init_with must start with one of {INIT_KINDS}, got {init_with!r}")
    needs_target = kind in ("imagenet", "coco", "model")
    if needs_target and not target.strip():
        raise InvalidSetting(
            f"init_with {kind!r} needs a target: '{kind}:<path, URI or reference>'"
        )
    if not needs_target and sep:
        raise InvalidSetting(f"init_with {kind!r} takes no target, got {init_with!r}")
    return kind, target.strip() or None


def load_training_config(source: str | dict[str, Any]) -> TrainingConfig:
    """Read a training config from a YAML/JSON file URI, `preset:<name>`, or a parsed dict.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not parse or does not validate.
    """
    if isinstance(source, dict):
        return TrainingConfig.from_dict(source)
    if source.startswith("preset:"):
        return TrainingConfig.from_dict({"preset": source.removeprefix("preset:")}, source)
    try:
        text = storage.read_bytes(source).decode("utf-8")
    except FileNotFoundError:
        raise MissingInput(f"training config {source!r} not found") from None
    try:
        data = json.loads(text) if source.lower().endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InvalidInput(f"training config {source!r} does not parse: {error}") from None
    return TrainingConfig.from_dict(data, f"training config {source!r}")


def _apply_preset(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The preset's settings overridden by the file's; `config` dicts merge key by key."""
    if "preset" not in data:
        return data
    data = dict(data)
    name = data.pop("preset")
    if name not in PRESETS:
        raise InvalidSetting(f"{source}: unknown preset {name!r}; known: {sorted(PRESETS)}")
    merged = {**PRESETS[name], **data}
    merged["config"] = {**PRESETS[name].get("config", {}), **data.get("config", {})}
    # The file's `stages` replace the preset's default-stage settings and the other way round;
    # a time budget replaces the preset's epochs.
    if "stages" in data:
        merged.pop("epochs", None)
        merged.pop("learning_rate", None)
    elif "epochs" in data or "learning_rate" in data:
        merged.pop("stages", None)
    if "minutes" in data and "epochs" not in data:
        merged.pop("epochs", None)
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


PRESETS: dict[str, dict[str, Any]] = {
    # The synthetic shapes demo: small images, trained from scratch on a CPU in minutes. A
    # light model for small objects: ResNet-18, 128-channel FPN, a 256-wide box head, 7×7 mask
    # crops giving 14×14 masks, 16 sampled ROIs per image with the ground-truth boxes among
    # the proposals (a 128² batch-8 step: 0.44 s on a 2-core AMD EPYC, 1.18 s with
    # matterport's heads).
    "shapes": {
        "name": "shapes",
        "classes": ["square", "circle", "triangle"],
        "init_with": "scratch",
        "config": {
            "BACKBONE": "resnet18",
            "IMAGES_PER_GPU": 8,
            "IMAGE_MIN_DIM": 128,
            "IMAGE_MAX_DIM": 128,
            "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128],
            "TOP_DOWN_PYRAMID_SIZE": 128,
            "FPN_CLASSIF_FC_LAYERS_SIZE": 256,
            "MASK_POOL_SIZE": 7,
            "MASK_SHAPE": [14, 14],
            "TRAIN_ROIS_PER_IMAGE": 16,
            "ROI_INCLUDE_GT_BOXES": True,
            "POST_NMS_ROIS_TRAINING": 256,
            "POST_NMS_ROIS_INFERENCE": 128,
            "MAX_GT_INSTANCES": 8,
            "STEPS_PER_EPOCH": 100,
            "VALIDATION_STEPS": 5,
            "OPTIMIZER": "adamw",
            "LEARNING_RATE": 1e-3,
            "WARMUP_STEPS": 50,
            "TRAIN_BN": True,
            "DETECTION_MIN_CONFIDENCE": 0.7,
            "SEED": 0,
        },
        "epochs": 5,
        "augmentation": {"hflip": 0.5, "vflip": 0.5},
    },
    # The road-defect setup of the legacy TF 1.15 / Keras 2.3 matterport-based repository
    # (384², 5 classes, anchors 48-768) and its four stages, on matterport's default backbone
    # (ResNet-101), whose COCO weights (`coco:<file>`) a run starts from. From scratch on a
    # CPU, `BACKBONE: resnet18` with the shapes preset's light heads trains ≈ 3× more steps per
    # minute (docs/tutorials/from-matterport.md, "Choosing a backbone").
    "seed-like": {
        "name": "road",
        "classes": ["RoadLane", "ShoulderLine", "YellowLane", "car", "pothole"],
        "init_with": "scratch",
        "config": {
            "IMAGES_PER_GPU": 4,
            "IMAGE_MIN_DIM": 320,
            "IMAGE_MAX_DIM": 384,
            "RPN_ANCHOR_SCALES": [48, 96, 192, 384, 768],
            "TRAIN_ROIS_PER_IMAGE": 100,
            "STEPS_PER_EPOCH": 64,
            "VALIDATION_STEPS": 10,
        },
        "augmentation": {"hflip": 0.5},
        "stages": [
            {"layers": "heads", "epochs": 30, "learning_rate": 1e-3},
            {"layers": "4+", "epochs": 60, "learning_rate": 1e-3},
            {"layers": "all", "epochs": 100, "learning_rate": 1e-4},
            {"layers": "all", "epochs": 150, "learning_rate": 1e-4, "augmentation": None},
        ],
    },
}
