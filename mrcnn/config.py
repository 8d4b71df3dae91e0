"""Model configuration with matterport's attribute names and defaults.

Subclass `Config` and override attributes, as with matterport, or pass overrides as keyword
arguments (`Config(NAME="shapes", NUM_CLASSES=4)`). Values are validated when the object is
created, so a bad value fails before any graph is built. `to_dict()`/`from_dict()` give a
JSON-safe copy that travels with the weights.

A config read back from storage never runs code: `from_dict` takes BACKBONE as a built-in name,
or as the `module:qualname` of a callable the caller passes in `backbones`; it imports nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from mrcnn.errors import InvalidSetting
from mrcnn.intensity import DEFAULT_PERCENTILES, Normalization
from mrcnn.precision import INFERENCE_PRECISIONS, TRAINING_PRECISIONS

OPTIMIZERS = ("sgd", "adamw")
WEIGHT_INITS = ("keras", "torchvision")
RESIZE_MODES = ("none", "square", "pad64", "crop")
BUILTIN_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
LOSS_NAMES = (
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)

DEVICE_NAME = re.compile(r"(/job:\w+/replica:\d+/task:\d+)?/(device:)?(cpu|gpu|CPU|GPU):\d+")

# Attributes derived from the others in `__init__`; never read back from a dict.
DERIVED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")

# A callable backbone: (input_image, stage5, train_bn) -> [C1..C5].
Backbone = Callable[..., Sequence[Any]]
# The callables a caller allows `from_dict` to use for a stored BACKBONE reference: the
# callables themselves (known by their own `module:qualname`), or a mapping from the stored
# reference to the callable (for one that moved since the config was written).
AllowedBackbones = Iterable[Backbone] | Mapping[str, Backbone]


@dataclasses.dataclass(frozen=True)
class NamedBackbone:
    """A callable backbone known by its `module:qualname` only, never imported.

    The config of an exported graph holds one: the graph contains the backbone already, so
    the name is kept (and written back by `to_dict`) but no code is loaded. Building a graph
    from such a config fails.
    """

    reference: str

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidSetting(
            f"BACKBONE {self.reference!r} is only a name read from an export's "
            "config; pass that callable to Config.from_dict(..., backbones=[...]) "
            "to build a graph with it"
        )


class Config:
    """Base configuration. Attribute names and defaults follow matterport/Mask_RCNN.

    Each setting carries a one-line description (the string below it), which the
    configuration reference of the documentation lists with its default.
    """

    NAME: str | None = None
    """Model name: names checkpoint folders and files, and the model in the registry."""
    GPU_COUNT = 1
    """Training replicas: above 1, each batch is split over that many GPUs (`tf.distribute`)."""
    IMAGES_PER_GPU = 2
    """Images per replica in a training step; inference batches `BATCH_SIZE` images."""
    STEPS_PER_EPOCH = 1000
    """Training steps per epoch; a checkpoint is written after every epoch."""
    VALIDATION_STEPS = 50
    """Validation batches scored after each epoch (0: no validation)."""

    BACKBONE: str | Callable = "resnet101"
    """`resnet18`, `resnet34`, `resnet50`, `resnet101`, or a callable
    `(input_image, stage5, train_bn) -> [C1..C5]` whose C2..C5 have strides 4, 8, 16, 32."""
    COMPUTE_BACKBONE_SHAPE = None
    """matterport's hook for a backbone's feature-map shapes; kept for compatibility, not read."""
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    """Stride in pixels of each pyramid level P2..P6, where the anchors are placed."""
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    """Width of the two fully connected layers of the classifier and box head."""
    TOP_DOWN_PYRAMID_SIZE = 256
    """Channels of the feature pyramid (FPN) levels."""
    NUM_CLASSES = 1
    """Classes including the background: 1 + the number of object classes."""

    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    """Anchor side in pixels on each pyramid level, one per entry of `BACKBONE_STRIDES`."""
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    """Width/height ratios of the anchors at every position."""
    RPN_ANCHOR_STRIDE = 1
    """Anchors at every feature-map cell (1) or every n-th cell."""
    RPN_CONV_CHANNELS = 512
    """Width of the RPN's shared 3×3 convolution: matterport's 512 (its weight files), or as
    wide as the pyramid (`TOP_DOWN_PYRAMID_SIZE`) for a light model trained from scratch."""
    RPN_NMS_THRESHOLD = 0.7
    """IoU above which non-maximum suppression drops the weaker of two proposals."""
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    """Anchors per image that the region proposal loss is computed on in training."""
    PRE_NMS_LIMIT = 6000
    """Best-scoring anchors kept per image before the proposals' non-maximum suppression."""
    POST_NMS_ROIS_TRAINING = 2000
    """Proposals kept per image after non-maximum suppression in training."""
    POST_NMS_ROIS_INFERENCE = 1000
    """Proposals kept per image in inference: fewer is faster and may miss objects."""

    USE_MINI_MASK = True
    """Store training masks cropped to their box and resized to `MINI_MASK_SHAPE` (less memory)."""
    MINI_MASK_SHAPE = (56, 56)
    """Height and width of a mini-mask."""

    IMAGE_RESIZE_MODE = "square"
    """How images are resized: `square` (scaled and zero-padded to `IMAGE_MAX_DIM`²), `pad64`,
    `crop` (random `IMAGE_MIN_DIM`² crops in training) or `none`."""
    IMAGE_MIN_DIM = 800
    """The shorter side is scaled up to at least this many pixels (the crop size in `crop`)."""
    IMAGE_MAX_DIM = 1024
    """The longer side is scaled to at most this many pixels; a multiple of 64 in `square`."""
    IMAGE_MIN_SCALE = 0
    """Smallest scale factor applied to an image (0: none enforced)."""
    IMAGE_CHANNEL_COUNT = 3
    """Channels of the input images (3: RGB)."""
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])
    """Per-channel value subtracted from every pixel before the network."""
    INTENSITY_NORMALIZATION = "scale"
    """How image intensities become the model's RGB 0-255 (`mrcnn.intensity`): `scale` (8-bit
    as stored, 16-bit / 257) or `percentile` (per image, `NORMALIZATION_PERCENTILES` of all
    channels stretched to 0 and 255, for 10- to 14-bit cameras); stored with the model."""
    NORMALIZATION_PERCENTILES = DEFAULT_PERCENTILES
    """Low and high percentiles that `percentile` normalisation maps to 0 and 255."""

    TRAIN_ROIS_PER_IMAGE = 200
    """Regions of interest sampled per image to train the classifier, box and mask heads."""
    ROI_POSITIVE_RATIO = 0.33
    """Largest share of the sampled regions that overlap an object (positives)."""
    # torchvision adds them; matterport does not. Early in training from scratch the RPN
    # proposes nothing that overlaps an object, and without positives no ROI is sampled at all.
    ROI_INCLUDE_GT_BOXES = False
    """Add the ground-truth boxes to the proposals the training regions are sampled from."""
    POOL_SIZE = 7
    """Side of the ROI Align grid that feeds the classifier and box head."""
    MASK_POOL_SIZE = 14
    """Side of the ROI Align grid that feeds the mask head."""
    MASK_SHAPE = [28, 28]
    """Height and width of the masks the mask head predicts (twice `MASK_POOL_SIZE`)."""
    MAX_GT_INSTANCES = 100
    """Most ground-truth instances used per training image (a random subset beyond it)."""

    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    """Scale of the proposal box refinements (dy, dx, log dh, log dw)."""
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    """Scale of the final box refinements (dy, dx, log dh, log dw)."""

    DETECTION_MAX_INSTANCES = 100
    """Most detections returned per image."""
    DETECTION_MIN_CONFIDENCE = 0.7
    """Detections scoring below this are dropped."""
    DETECTION_NMS_THRESHOLD = 0.3
    """IoU above which per-class non-maximum suppression drops the weaker of two detections."""

    LEARNING_RATE = 0.001
    """Learning rate of `train()` when none is passed."""
    LEARNING_MOMENTUM = 0.9
    """Momentum of the SGD optimizer."""
    WEIGHT_DECAY = 0.0001
    """L2 weight regularisation (SGD: added to the loss; AdamW: decoupled, in the optimizer)."""
    LOSS_WEIGHTS = {name: 1.0 for name in LOSS_NAMES}
    """Factor of each of the five losses in the training loss."""
    USE_RPN_ROIS = True
    """Train the heads on the network's own proposals (the only supported value)."""
    TRAIN_BN = False
    """Train the batch normalisation layers; otherwise they stay fixed (small batches)."""
    GRADIENT_CLIP_NORM = 5.0
    """Global norm the gradients are clipped to (falsy: no clipping)."""

    # Additions to matterport's set.
    OPTIMIZER = "sgd"
    """`sgd` (momentum, L2 in the loss, as matterport) or `adamw` (decoupled weight decay)."""
    WARMUP_STEPS = 0
    """Steps of linear learning-rate warmup when `train()` starts training new layers."""
    WEIGHT_INIT = "keras"
    """Initial kernels of layers no weight file fills: `keras` (glorot-uniform) or
    `torchvision` (kaiming-normal fan-out convolutions, std-0.01 RPN, PyTorch's Linear)."""
    # torchvision's 0.1 is 0.9 here; Keras's own 0.99 lags about 100 steps behind weights that
    # move fast, and inference reads the moving statistics.
    BATCH_NORM_MOMENTUM = 0.9
    """Momentum of the batch norms' moving statistics; read only with `TRAIN_BN`."""
    SEED: int | None = None
    """Seeds Python, numpy and TensorFlow when the model is built (None: not seeded)."""
    # bfloat16 leaves weights float32, so the same checkpoints load; boxes, NMS, ROI Align
    # and the outputs stay float32 (mrcnn.precision).
    INFERENCE_PRECISION = "float32"
    """Precision of detection: `float32`, `bfloat16` (on CPUs that compute it natively) or
    `auto` (bfloat16 exactly there)."""
    TRAINING_PRECISION = "float32"
    """Keras dtype policy of training: `float32`, `mixed_bfloat16`, `mixed_float16` (GPUs,
    with loss scaling) or `auto`; weights and checkpoints stay float32."""
    TRAINING_DEVICES: list[str] | None = None
    """Replica devices of data-parallel training, one per `GPU_COUNT`, e.g. `["/gpu:0",
    "/gpu:2"]` (None: the first `GPU_COUNT` GPUs)."""

    # Derived from the others in __init__ (DERIVED); declared here for their descriptions.
    BATCH_SIZE: int
    """Images per step: `IMAGES_PER_GPU` × `GPU_COUNT` (derived)."""
    IMAGE_SHAPE: np.ndarray
    """Shape of the network's input images, `[side, side, IMAGE_CHANNEL_COUNT]` (derived)."""
    IMAGE_META_SIZE: int
    """Length of an image's meta vector: 12 + `NUM_CLASSES` (derived)."""

    def __init__(self, **overrides: Any) -> None:
        unknown = sorted(k for k in overrides if not _is_setting(k) or not hasattr(self, k))
        if unknown:
            raise InvalidSetting(f"unknown Config attribute(s): {', '.join(unknown)}")
        for key, value in overrides.items():
            if key in DERIVED:
                raise InvalidSetting(f"{key} is derived from other settings and cannot be set")
            setattr(self, key, value)
        # Copies, so that changing one config's arrays never changes the class defaults.
        self.MEAN_PIXEL = np.array(self.MEAN_PIXEL, dtype=np.float64)
        self.RPN_BBOX_STD_DEV = np.array(self.RPN_BBOX_STD_DEV, dtype=np.float64)
        self.BBOX_STD_DEV = np.array(self.BBOX_STD_DEV, dtype=np.float64)
        self.LOSS_WEIGHTS = {**Config.LOSS_WEIGHTS, **dict(self.LOSS_WEIGHTS)}
        self.validate()
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        else:
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        # image_id, original shape (3), molded shape (3), window (4), scale, active class ids
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError with a specific message for the first inconsistent setting."""
        if not isinstance(self.NAME, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", self.NAME):
            raise InvalidSetting(
                f"NAME must be a non-empty name of letters, digits, '_' or '-', got {self.NAME!r}"
            )
        for key in (
            "GPU_COUNT",
            "IMAGES_PER_GPU",
            "STEPS_PER_EPOCH",
            "NUM_CLASSES",
            "TRAIN_ROIS_PER_IMAGE",
            "RPN_CONV_CHANNELS",
            "MAX_GT_INSTANCES",
            "DETECTION_MAX_INSTANCES",
            "POST_NMS_ROIS_TRAINING",
            "POST_NMS_ROIS_INFERENCE",
            "PRE_NMS_LIMIT",
            "RPN_TRAIN_ANCHORS_PER_IMAGE",
        ):
            _require_int(self, key, minimum=1)
        _require_int(self, "VALIDATION_STEPS", minimum=0)
        _require_int(self, "WARMUP_STEPS", minimum=0)
        if self.NUM_CLASSES < 2:
            raise InvalidSetting(
                "NUM_CLASSES must count the background plus at least one class (>= 2), "
                f"got {self.NUM_CLASSES}"
            )
        if self.IMAGE_RESIZE_MODE not in RESIZE_MODES:
            raise InvalidSetting(
                f"IMAGE_RESIZE_MODE must be one of {RESIZE_MODES}, got {self.IMAGE_RESIZE_MODE!r}"
            )
        if self.IMAGE_RESIZE_MODE in ("square", "crop"):
            dim = self.IMAGE_MAX_DIM if self.IMAGE_RESIZE_MODE == "square" else self.IMAGE_MIN_DIM
            if int(dim) % 64:
                raise InvalidSetting(
                    f"image dimensions must be divisible by 64 (6 downsamplings), got {dim}"
                )
        if self.IMAGE_MIN_DIM and self.IMAGE_MAX_DIM and self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM:
            raise InvalidSetting(
                f"IMAGE_MIN_DIM ({self.IMAGE_MIN_DIM}) must not exceed "
                f"IMAGE_MAX_DIM ({self.IMAGE_MAX_DIM})"
            )
        if not (
            isinstance(self.BACKBONE, str)
            and self.BACKBONE in BUILTIN_BACKBONES
            or callable(self.BACKBONE)
        ):
            raise InvalidSetting(
                f"BACKBONE must be one of {BUILTIN_BACKBONES} or a callable, got {self.BACKBONE!r}"
            )
        if len(self.BACKBONE_STRIDES) != len(self.RPN_ANCHOR_SCALES):
            raise InvalidSetting("RPN_ANCHOR_SCALES needs one scale per entry of BACKBONE_STRIDES")
        if self.INFERENCE_PRECISION not in INFERENCE_PRECISIONS:
            raise InvalidSetting(
                f"INFERENCE_PRECISION must be one of {INFERENCE_PRECISIONS}, "
                f"got {self.INFERENCE_PRECISION!r}"
            )
        if self.TRAINING_PRECISION not in TRAINING_PRECISIONS:
            raise InvalidSetting(
                f"TRAINING_PRECISION must be one of {TRAINING_PRECISIONS}, "
                f"got {self.TRAINING_PRECISION!r}"
            )
        if self.WEIGHT_INIT not in WEIGHT_INITS:
            raise InvalidSetting(
                f"WEIGHT_INIT must be one of {WEIGHT_INITS}, got {self.WEIGHT_INIT!r}"
            )
        if not 0 <= float(self.BATCH_NORM_MOMENTUM) < 1:
            raise InvalidSetting(
                f"BATCH_NORM_MOMENTUM must be in [0, 1), got {self.BATCH_NORM_MOMENTUM}"
            )
        if self.OPTIMIZER not in OPTIMIZERS:
            raise InvalidSetting(f"OPTIMIZER must be one of {OPTIMIZERS}, got {self.OPTIMIZER!r}")
        for key in ("LEARNING_RATE",):
            if not float(getattr(self, key)) > 0:
                raise InvalidSetting(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("ROI_POSITIVE_RATIO", "RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD"):
            if not 0 < float(getattr(self, key)) <= 1:
                raise InvalidSetting(f"{key} must be in (0, 1], got {getattr(self, key)}")
        if not 0 <= float(self.DETECTION_MIN_CONFIDENCE) <= 1:
            raise InvalidSetting(
                f"DETECTION_MIN_CONFIDENCE must be in [0, 1], got {self.DETECTION_MIN_CONFIDENCE}"
            )
        unknown_losses = sorted(set(self.LOSS_WEIGHTS) - set(LOSS_NAMES))
        if unknown_losses:
            raise InvalidSetting(
                f"LOSS_WEIGHTS has unknown loss names {unknown_losses}; known: {list(LOSS_NAMES)}"
            )
        Normalization.from_config(self)  # its errors name the two settings
        if len(self.MEAN_PIXEL) != self.IMAGE_CHANNEL_COUNT:
            raise InvalidSetting(
                f"MEAN_PIXEL needs {self.IMAGE_CHANNEL_COUNT} values, got {len(self.MEAN_PIXEL)}"
            )
        if self.TRAINING_DEVICES is not None:
            devices = self.TRAINING_DEVICES
            if (
                not isinstance(devices, (list, tuple))
                or len(devices) != self.GPU_COUNT
                or not all(isinstance(d, str) and DEVICE_NAME.fullmatch(d) for d in devices)
            ):
                raise InvalidSetting(
                    f"TRAINING_DEVICES must list GPU_COUNT ({self.GPU_COUNT}) device names such as "
                    f"'/gpu:0' or '/cpu:1', got {devices!r}"
                )
        if not self.USE_RPN_ROIS:
            raise InvalidSetting(
                "USE_RPN_ROIS=False (training the heads on external ROIs) is not supported"
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All settings as JSON-safe values (numpy arrays become lists)."""
        out: dict[str, Any] = {}
        for key in sorted(dir(self)):
            if not _is_setting(key):
                continue
            value = getattr(self, key)
            if callable(value) and key == "BACKBONE":
                value = backbone_reference(value)  # which callable, so it can be supplied again
            out[key] = _json_safe(value)
        return out

    @classmethod
    def from_dict(
        cls,
        values: Mapping[str, Any],
        backbones: AllowedBackbones = (),
        *,
        source: str = "config",
        exported: bool = False,
    ) -> Config:
        """Rebuild a config from `to_dict()` output (derived keys are recomputed).

        This is how a config read from storage becomes a `Config`, and it runs no code: a
        BACKBONE string is a built-in name or the `module:qualname` of one of ``backbones``;
        nothing is imported.

        Args:
            values: the settings, e.g. a parsed ``config.json``.
            backbones: the callable backbones the caller allows, as callables (matched by
                their own `module:qualname`, see `backbone_reference`) or as a mapping from
                the reference a config stores to the callable.
            source: what ``values`` were read from (a file's URI), named in every error.
            exported: the config of an exported graph, which holds its backbone already: a
                BACKBONE reference that is not allowed stays a `NamedBackbone`.

        Raises:
            ValueError: one line naming ``source``: a BACKBONE that is neither built in nor
                allowed, or any other invalid or unknown setting.
        """
        if not isinstance(values, Mapping):
            raise InvalidSetting(
                f"{source}: expected a mapping of Config settings, got {type(values).__name__}"
            )
        settings = {k: v for k, v in values.items() if k not in DERIVED}
        backbone = settings.get("BACKBONE")
        if isinstance(backbone, str) and backbone not in BUILTIN_BACKBONES:
            allowed = _allowed_backbones(backbones)
            if backbone in allowed:
                settings["BACKBONE"] = allowed[backbone]
            elif exported:
                settings["BACKBONE"] = NamedBackbone(backbone)
            else:
                allowing = f" ({', '.join(sorted(allowed))})" if allowed else ""
                raise InvalidSetting(
                    f"{source}: BACKBONE {backbone!r} is neither a built-in "
                    f"backbone ({', '.join(BUILTIN_BACKBONES)}) nor a callable "
                    f"the caller allowed{allowing}; a stored config does not "
                    "load code (docs/concepts/security.md)"
                )
        try:
            return cls(**settings)
        except ValueError as error:
            raise InvalidSetting(f"{source}: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def display(self) -> None:
        """Print every setting, one per line (matterport's `display`)."""
        print("\nConfigurations:")
        for key, value in self.to_dict().items():
            print(f"{key:30} {value}")
        print("\n")


def backbone_reference(backbone: Backbone) -> str:
    """``module:qualname`` of a callable backbone: how `to_dict` records it.

    Raises:
        ValueError: a callable without a module-level name (a lambda, a nested function, an
            instance), which could not be supplied again by name.
    """
    if isinstance(backbone, NamedBackbone):
        return backbone.reference
    module = getattr(backbone, "__module__", None)
    qualname = getattr(backbone, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise InvalidSetting(
            "a BACKBONE callable must be a module-level function to be saved with "
            f"the config, got {qualname or backbone!r}"
        )
    return f"{module}:{qualname}"


def _allowed_backbones(backbones: AllowedBackbones) -> dict[str, Backbone]:
    """The allow-list as ``{reference: callable}``; anything but a callable is refused."""
    if isinstance(backbones, str):  # a reference to import is exactly what is not accepted
        raise TypeError(f"backbones must be callables or a mapping to callables, got {backbones!r}")
    pairs = (
        list(backbones.items())
        if isinstance(backbones, Mapping)
        else [(None, backbone) for backbone in backbones]
    )
    allowed = {}
    for reference, backbone in pairs:
        if not callable(backbone):
            raise TypeError(f"backbones must be callables, got {backbone!r}")
        allowed[reference or backbone_reference(backbone)] = backbone
    return allowed


def _is_setting(name: str) -> bool:
    return name.isupper() and not name.startswith("_")


def _require_int(config: Config, key: str, minimum: int) -> None:
    value = getattr(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidSetting(f"{key} must be an integer >= {minimum}, got {value!r}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value
