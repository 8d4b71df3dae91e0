"""`MaskRCNN`: matterport's model API on TensorFlow 2 / Keras 3.

The class only wires parts together: graphs come from `mrcnn.network`, losses and the
optimizer from `mrcnn.training`, inputs from `mrcnn.data`, weight files from `mrcnn.weights`,
and image pre/post-processing from `mrcnn.transform` and `mrcnn.masks`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mrcnn import weights as weight_files
from mrcnn.anchors import get_anchors
from mrcnn.boxes import denorm_boxes, norm_boxes
from mrcnn.config import Config
from mrcnn.data import DataGenerator, load_image_gt  # noqa: F401 - matterport's modellib API
from mrcnn.dataset import Dataset
from mrcnn.distribute import training_strategy
from mrcnn.errors import InvalidSetting, MissingInput
from mrcnn.export import export_model
from mrcnn.initialization import prepare_for_training
from mrcnn.intensity import Normalization, to_rgb_uint8
from mrcnn.masks import paste_masks
from mrcnn.network import build_inference_graph, build_training_graph, dtype_policy
from mrcnn.precision import PrecisionChoice, inference_precision, training_precision
from mrcnn.progress import progress_settings
from mrcnn.training import (
    Deadline,
    EpochCheckpoint,
    TrainingModel,
    WarmupSchedule,
    layers_regex,
    make_optimizer,
    save_model_weights,
    set_trainable,
)
from mrcnn.transform import compose_image_meta, mold_image, resize_image  # mold_image: modellib API

MODES = ("training", "inference")
# `train(epochs=None, until=...)`: no epoch limit, the deadline ends training.
OPEN_ENDED_EPOCHS = 1_000_000
# <model_dir>/<name><YYYYMMDDTHHMM>/mask_rcnn_<name>_<epoch:04d>[.weights].h5
CHECKPOINT_PATTERN = re.compile(
    r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})"
    r"[/\\]mask_rcnn_[\w-]+_(\d{4})(\.weights)?\.h5$"
)


class MaskRCNN:
    """Mask R-CNN in `"training"` or `"inference"` mode.

    Attributes:
        keras_model: the Keras model; its layers carry matterport's names.
        epoch: the last completed epoch (training resumes after it).
        strategy: the `tf.distribute` strategy a training model is built and trained under
            (several replicas when GPU_COUNT > 1, see `mrcnn.distribute`).
        precision: the `PrecisionChoice` the graph was built with: INFERENCE_PRECISION or
            TRAINING_PRECISION resolved for this machine (`mrcnn.precision`).
        log_dir / checkpoint_path: where `train` writes checkpoints.
    """

    def __init__(self, mode: str, config: Config, model_dir: str | os.PathLike):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(config, Config):
            raise TypeError(f"config must be an mrcnn.config.Config, got {type(config).__name__}")
        self.mode = mode
        self.config = config
        self.model_dir = str(model_dir)
        # First: splitting the CPU into replica devices must precede any TensorFlow op.
        self.strategy = (
            training_strategy(config) if mode == "training" else tf.distribute.get_strategy()
        )
        if config.SEED is not None:
            keras.utils.set_random_seed(int(config.SEED))
        self.set_log_dir()
        self.precision: PrecisionChoice = (
            inference_precision(config.INFERENCE_PRECISION)
            if mode == "inference"
            else training_precision(config.TRAINING_PRECISION)
        )
        with self.strategy.scope():  # variables are mirrored on every replica
            self.keras_model = self.build(mode, config)
        self._predict = None
        self._compiled_for: tuple[str, ...] | None = (
            None  # the trainable layers of the last compile
        )
        self._rate: WarmupSchedule | None = None

    # ------------------------------------------------------------------ graph
    def build(self, mode: str, config: Config) -> keras.Model:
        if mode == "inference":
            return build_inference_graph(config, self.precision.keras_policy)
        decay = (
            config.WEIGHT_DECAY if config.OPTIMIZER == "sgd" else 0.0
        )  # AdamW decays in the optimizer
        with dtype_policy(self.precision.keras_policy):
            inputs, outputs = build_training_graph(config)
            # The model's own policy decides whether compile() adds float16 loss scaling.
            model = TrainingModel(
                inputs,
                outputs,
                loss_weights=config.LOSS_WEIGHTS,
                l2_weight_decay=decay,
                name="mask_rcnn",
            )
        prepare_for_training(model, config.WEIGHT_INIT, config.BATCH_NORM_MOMENTUM)
        return model

    def get_anchors(self, image_shape: Sequence[int]) -> np.ndarray:
        """Normalized anchors `[A, 4]` of a molded image shape (matterport API)."""
        c = self.config
        return get_anchors(
            tuple(image_shape),
            c.RPN_ANCHOR_SCALES,
            c.RPN_ANCHOR_RATIOS,
            c.BACKBONE_STRIDES,
            c.RPN_ANCHOR_STRIDE,
        )

    # ------------------------------------------------------------------ weights and log dirs
    def load_weights(
        self,
        filepath: str | os.PathLike,
        by_name: bool = False,
        exclude: Sequence[str] | None = None,
    ) -> list[str]:
        """Load a Keras 3 `.weights.h5` or a matterport/Keras 2 `.h5` file; returns layers loaded.

        Our own checkpoints are matched by layer name (the training and inference graphs
        differ in structure but share layer names). Loading a checkpoint of this project's
        naming scheme also sets `epoch` and `log_dir`, so training resumes after it.
        """
        filepath = str(filepath)
        if filepath.endswith(".weights.h5"):
            by_name = True
        loaded = weight_files.load_weights(
            self.keras_model, filepath, by_name=by_name, exclude=exclude
        )
        self.set_log_dir(filepath)
        return loaded

    def save_weights(self, filepath: str | os.PathLike) -> None:
        """Write the weights in Keras 3 format (the name must end with `.weights.h5`)."""
        filepath = str(filepath)
        if not filepath.endswith(".weights.h5"):
            raise InvalidSetting(
                f"Keras 3 weight files must end with '.weights.h5', got {filepath!r}"
            )
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        save_model_weights(self.keras_model, filepath)

    def find_last(self) -> str:
        """Path of the last checkpoint of the newest run of this config's NAME under `model_dir`."""
        prefix = self.config.NAME.lower()
        runs = (
            sorted(p for p in Path(self.model_dir).glob(f"{prefix}*") if p.is_dir())
            if os.path.isdir(self.model_dir)
            else []
        )
        for run in reversed(runs):
            checkpoints = sorted(run.glob("mask_rcnn*.h5"))
            if checkpoints:
                return str(checkpoints[-1])
        raise MissingInput(f"no checkpoint of {self.config.NAME!r} found under {self.model_dir!r}")

    def set_log_dir(self, model_path: str | None = None) -> None:
        """Start a new run folder, or continue the run (and epoch count) of `model_path`."""
        self.epoch = 0
        now = datetime.datetime.now()
        match = CHECKPOINT_PATTERN.match(str(model_path)) if model_path else None
        if match:
            now = datetime.datetime(*(int(match.group(i)) for i in range(1, 6)))
            self.epoch = int(match.group(6))
        name = self.config.NAME.lower()
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M}")
        self.checkpoint_path = os.path.join(
            self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.weights.h5"
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        train_dataset,
        val_dataset,
        learning_rate: float,
        epochs: int | None,
        layers: str,
        augmentation=None,
        custom_callbacks: Sequence[keras.callbacks.Callback] | None = None,
        no_augmentation_sources=None,
        verbose: int | str = "auto",
        until: float | None = None,
    ) -> keras.callbacks.History:
        """Train the layers matching `layers` until the cumulative epoch `epochs`.

        Args:
            layers: `heads`, `3+`, `4+`, `5+`, `all`, or a regex over layer names.
            epochs: the epoch to stop at, counted over all `train` calls (heads→100 then
                all→200 trains 100 more); None with `until`: as many as fit.
            augmentation: an `mrcnn.augment.Augmentation` or an albumentations-style callable.
            until: a `time.monotonic()` value: training stops after the step that ends past
                it (that epoch ends early, with its checkpoint).

        The `normalization` of both datasets (`mrcnn.dataset.Dataset`) is set to the config's
        INTENSITY_NORMALIZATION, so the images train as the saved model will read them.
        """
        if self.mode != "training":
            raise RuntimeError("create the model with mode='training' to train it")
        if epochs is None and until is None:
            raise InvalidSetting("give the epoch to stop at, a deadline (until), or both")
        if no_augmentation_sources:
            raise InvalidSetting(
                "no_augmentation_sources is not supported; "
                "pass augmentation=None for those datasets"
            )
        pattern = layers_regex(layers)
        config = self.config
        for dataset in (train_dataset, val_dataset):
            if isinstance(dataset, Dataset):  # a subclass's own load_image may ignore it
                dataset.normalization = Normalization.from_config(config)
        train_data = DataGenerator(
            train_dataset,
            config,
            shuffle=True,
            augmentation=augmentation,
            steps=config.STEPS_PER_EPOCH,
            seed=config.SEED,
        )
        val_data = None
        if val_dataset is not None and config.VALIDATION_STEPS:
            val_data = DataGenerator(
                val_dataset,
                config,
                shuffle=True,
                steps=config.VALIDATION_STEPS,
                seed=None if config.SEED is None else config.SEED + 1,
            )
        trainable = set_trainable(self.keras_model, pattern)
        if not trainable:
            raise InvalidSetting(f"layers={layers!r} matches no layer with weights")
        if self._compiled_for == tuple(trainable):
            # The same layers again (matterport's scripts call train() every few epochs): keep
            # the traced step and the optimizer's state, warmup progress included.
            self._rate.set_rate(learning_rate)
        else:
            with self.strategy.scope():
                self._rate = WarmupSchedule(learning_rate, config.WARMUP_STEPS)
                self.keras_model.compile(optimizer=make_optimizer(config, self._rate))
                # Built here, not by the first step: a traced function that creates variables
                # is traced twice (a first call of ResNet-50 at 128², batch 8, took 54 s
                # instead of 30 s on a 2-vCPU Intel Xeon).
                self.keras_model.optimizer.build(self.keras_model.trainable_variables)
            self._compiled_for = tuple(trainable)
        os.makedirs(self.log_dir, exist_ok=True)
        Path(self.log_dir, "config.json").write_text(config.to_json())
        Path(self.log_dir, "precision.json").write_text(json.dumps(self.precision.to_dict()))
        # Class names without the background, in class-id order (id = index + 1).
        Path(self.log_dir, "classes.json").write_text(
            json.dumps(list(train_dataset.class_names[1:]))
        )
        fit_verbose, progress = progress_settings(
            verbose, until=until
        )  # plain lines outside a terminal
        deadline = [Deadline(until)] if until is not None else []
        callbacks = [
            *deadline,
            EpochCheckpoint(self.checkpoint_path),
            keras.callbacks.CSVLogger(os.path.join(self.log_dir, "losses.csv"), append=True),
            *progress,
            *(custom_callbacks or []),
        ]
        last_epoch = epochs if epochs is not None else self.epoch + OPEN_ENDED_EPOCHS
        history = self.keras_model.fit(
            train_data,
            initial_epoch=self.epoch,
            epochs=last_epoch,
            validation_data=val_data,
            callbacks=callbacks,
            verbose=fit_verbose,
        )
        if history.epoch:  # epochs run, fewer than asked when a callback stopped training
            self.epoch = history.epoch[-1] + 1
        return history

    # ------------------------------------------------------------------ inference
    def mold_inputs(
        self, images: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resize, pad and normalize images.

        Returns:
            `(molded [N,H,W,3] float32, metas [N,M], windows [N,4])`.
        """
        return mold_inputs(self.config, images)

    def _predict_fn(self) -> tf.types.experimental.PolymorphicFunction:
        """One traced function for every call: batch and image size are dynamic.

        It maps molded images `[B, H, W, 3]` and metas `[B, M]` to a dict: `detections`
        `[B, D, (y1, x1, y2, x2, class_id, score)]` and `masks` `[B, D, h, w]`, each
        detection's own-class mask probabilities, both float32 whatever INFERENCE_PRECISION.
        """
        if self._predict is None:
            meta_size = self.config.IMAGE_META_SIZE
            model = self.keras_model

            @tf.function(
                input_signature=[
                    tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
                    tf.TensorSpec([None, meta_size], tf.float32, name="metas"),
                ],
                autograph=False,
            )
            def predict(images, metas):
                detections, _, _, masks, *_ = model([images, metas], training=False)
                class_ids = tf.cast(detections[..., 4], tf.int32)
                return {
                    "detections": detections,
                    "masks": tf.gather(masks, class_ids, axis=4, batch_dims=2),
                }

            self._predict = predict
        return self._predict

    def detect(self, images: Sequence[np.ndarray], verbose: int = 0) -> list[dict[str, np.ndarray]]:
        """Detect instances; one dict per image with `rois`, `class_ids`, `scores`, `masks`.

        `rois` int32 `[N, (y1, x1, y2, x2)]` and `masks` bool `[H, W, N]` are at each image's
        original size. Any number of images is accepted; they run in batches of BATCH_SIZE.

        Images are RGB `[H, W, 3]` or grey `[H, W]`. uint8 and float images are taken as the
        model's 0-255 input; uint16 images are mapped to it by the config's
        INTENSITY_NORMALIZATION, as `Dataset.load_image` maps 16-bit files.
        """
        if self.mode != "inference":
            raise RuntimeError("create the model with mode='inference' to detect")
        return detect_with(self._predict_fn(), self.config, images, verbose)

    def unmold_detections(
        self,
        detections: np.ndarray,
        mrcnn_mask: np.ndarray,
        original_image_shape,
        image_shape,
        window,
    ) -> dict[str, np.ndarray]:
        """Map one image's detections `[D, 6]` and class masks `[D, h, w]` to the original image."""
        return unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window)

    def export(self, path: str | os.PathLike, format: str = "saved_model", **options: Any) -> None:
        """Write the model for serving into the folder `path`, with `mrcnn_config.json`.

        `format`: one of `mrcnn.export_registry.NAMES`: `"saved_model"` (TensorFlow
        SavedModel; `saved_model_cli`, TF Serving), `"onnx"` (`model.onnx` for ONNX Runtime;
        needs the `onnx` extra) or `"openvino"` (OpenVINO IR `model.xml` + `model.bin`; needs
        the `openvino` extra); `options` are the format's own (`ExportFormat.options`); see
        `mrcnn.export`.
        `mrcnn.export.load_exported(path)` gives back a `detect`-like callable. Without `mrcnn`
        (TensorFlow and numpy only) call the `serving_default` signature on molded inputs::

            serve = tf.saved_model.load(path).signatures["serving_default"]
            out = serve(images=molded, metas=metas)

        - `images`: float32 `[B, H, W, 3]`: each RGB image (0-255; a 16-bit image mapped as
          the saved INTENSITY_NORMALIZATION says, `mrcnn.intensity.to_rgb_uint8`) resized and
          padded as `mrcnn.transform.resize_image` does for the saved IMAGE_RESIZE_MODE ("square":
          scale the short side up to IMAGE_MIN_DIM, the long side at most IMAGE_MAX_DIM,
          then zero-pad, centred, to IMAGE_MAX_DIM²), minus MEAN_PIXEL.
        - `metas`: float32 `[B, 12 + NUM_CLASSES]`: image id, original (h, w, 3), molded
          (H, W, 3), window (y1, x1, y2, x2) of the picture in the molded image, scale, then
          NUM_CLASSES zeros. Only the molded shape and the window are read.
        - `out["detections"]`: `[B, D, (y1, x1, y2, x2, class_id, score)]`, boxes normalized
          to the molded image as (box - [0, 0, 1, 1]) / [H-1, W-1, H-1, W-1]; rows with
          class_id 0 are padding. `out["masks"]`: `[B, D, 28, 28]` each detection's mask
          probabilities inside its box (threshold 0.5 and resize to the box to paste).
        """
        export_model(self, path, format, **options)


def mold_inputs(
    config: Config, images: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize, pad and normalize images: `(molded [N,H,W,3] float32, metas [N,M], windows [N,4])`.

    Images are resized by `inference_resize_mode` (a model trained on random crops sees whole
    images, padded to multiples of 64). Where that leaves images of one batch at different
    sizes (pad64 and none), each is zero-padded at the bottom and right to the largest; its
    window, and so its detections, stay where they were.
    """
    c = config
    mode = inference_resize_mode(c.IMAGE_RESIZE_MODE)
    normalization = Normalization.from_config(c)
    resized, metas, windows = [], [], []
    for image in images:
        image = _as_rgb(image, normalization)
        picture, window, scale, _, _ = resize_image(
            image,
            min_dim=c.IMAGE_MIN_DIM,
            min_scale=c.IMAGE_MIN_SCALE,
            max_dim=c.IMAGE_MAX_DIM,
            mode=mode,
        )
        resized.append(picture)
        metas.append((image.shape, window, scale))
        windows.append(window)
    height = max(picture.shape[0] for picture in resized)
    width = max(picture.shape[1] for picture in resized)
    molded = np.stack(
        [
            mold_image(_pad_bottom_right(picture, height, width).astype(np.float32), c.MEAN_PIXEL)
            for picture in resized
        ]
    )
    metas = [
        compose_image_meta(
            0, shape, molded.shape[1:], window, scale, np.zeros(c.NUM_CLASSES, np.int32)
        )
        for shape, window, scale in metas
    ]
    return molded, np.stack(metas).astype(np.float32), np.asarray(windows)


def inference_resize_mode(mode: str) -> str:
    """The IMAGE_RESIZE_MODE inference uses: "crop" is a training augmentation (matterport's
    nucleus sample trains on crops and detects on whole images padded to multiples of 64)."""
    return "pad64" if mode == "crop" else mode


def _pad_bottom_right(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    return np.pad(
        image, [(0, height - h), (0, width - w), (0, 0)], mode="constant", constant_values=0
    )


def detect_with(
    predict: Callable[..., dict], config: Config, images: Sequence[np.ndarray], verbose: int = 0
) -> list[dict[str, np.ndarray]]:
    """`detect` on any predict function of `_predict_fn`'s contract (in-process or exported)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError(
            f"detect() takes a list of [H, W, 3] images, got one array of shape {images.shape}"
        )
    if len(images) == 0:
        return []
    results: list[dict[str, np.ndarray] | None] = [None] * len(images)
    step = config.BATCH_SIZE
    # Batches of like-sized images: each batch is padded to its largest image.
    order = sorted(range(len(images)), key=lambda i: np.shape(images[i])[:2])
    for start in range(0, len(order), step):
        indices = order[start : start + step]
        batch = [images[i] for i in indices]
        molded, metas, windows = mold_inputs(config, batch)
        if verbose:
            print(f"Processing {len(batch)} images; molded shape {molded.shape[1:]}")
        outputs = predict(images=tf.constant(molded), metas=tf.constant(metas))
        for index, window, dets, masks in zip(
            indices, windows, np.asarray(outputs["detections"]), np.asarray(outputs["masks"])
        ):
            results[index] = unmold_detections(
                dets, masks, np.shape(images[index]), molded.shape[1:], window
            )
    return results


def unmold_detections(
    detections: np.ndarray, mrcnn_mask: np.ndarray, original_image_shape, image_shape, window
) -> dict[str, np.ndarray]:
    """Map one image's detections `[D, 6]` and class masks `[D, h, w]` to the original image."""
    keep = detections[:, 4] > 0
    boxes, class_ids = detections[keep, :4], detections[keep, 4].astype(np.int32)
    scores, masks = detections[keep, 5].astype(np.float32), mrcnn_mask[keep]
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray([window]), image_shape[:2])[0]
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = denorm_boxes((boxes - np.array([wy1, wx1, wy1, wx1])) / scale, original_image_shape[:2])
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, class_ids, scores, masks = (
        boxes[visible],
        class_ids[visible],
        scores[visible],
        masks[visible],
    )
    return {
        "rois": boxes.astype(np.int32),
        "class_ids": class_ids,
        "scores": scores,
        "masks": paste_masks(masks, boxes, original_image_shape[:2]),
    }


def _as_rgb(image: Any, normalization: Normalization) -> np.ndarray:
    """Validate one input image: `[H, W, 3]` (grayscale `[H, W]` is expanded); uint16 images
    become RGB uint8 by `normalization` (`mrcnn.intensity.to_rgb_uint8`)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"images must be non-empty [H, W, 3] RGB arrays, got shape {image.shape}")
    if image.dtype.kind == "u" and image.dtype.itemsize == 2:
        return to_rgb_uint8(image, normalization)
    return image
