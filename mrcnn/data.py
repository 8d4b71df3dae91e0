"""Training input: molded images and their targets, batched by a `keras.utils.PyDataset`.

Per image (`load_image_gt`): load → augment (image and masks together) → resize/pad →
boxes from masks → mini masks → image meta. Per batch: RPN targets against the anchors of
the molded size, and ground truth zero-padded to `MAX_GT_INSTANCES`.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np

from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.augment import apply_augmentation
from mrcnn.boxes import extract_bboxes
from mrcnn.config import Config
from mrcnn.masks import minimize_mask
from mrcnn.targets import build_rpn_targets
from mrcnn.transform import compose_image_meta, mold_image, resize_image, resize_mask


def load_image_gt(
    dataset,
    config: Config,
    image_id: int,
    augmentation=None,
    rng: np.random.Generator | None = None,
    use_mini_mask: bool | None = None,
) -> tuple:
    """One training sample: `(image, image_meta, class_ids [N], bbox [N, 4], mask)`.

    `image` is the resized uint8 image; `mask` is `[h, w, N]` bool (mini masks when
    `use_mini_mask`, which defaults to `USE_MINI_MASK`). Instances that augmentation or
    cropping leave empty are dropped.
    """
    rng = rng if rng is not None else np.random.default_rng()
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    original_shape = image.shape
    if augmentation is not None:
        image, mask = apply_augmentation(augmentation, image, mask, rng)
    image, window, scale, padding, crop = resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE,
        rng=rng,
    )
    mask = resize_mask(mask, scale, padding, crop)
    present = mask.any(axis=(0, 1))
    mask, class_ids = mask[:, :, present], np.asarray(class_ids, np.int32)[present]
    bbox = extract_bboxes(mask)
    active_class_ids = np.zeros(config.NUM_CLASSES, np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1
    if config.USE_MINI_MASK if use_mini_mask is None else use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    meta = compose_image_meta(
        image_id, original_shape, image.shape, window, scale, active_class_ids
    )
    return image, meta, class_ids, bbox, mask


@functools.lru_cache(maxsize=8)
def pixel_anchors(
    image_shape: tuple[int, int], scales: tuple, ratios: tuple, strides: tuple, anchor_stride: int
) -> np.ndarray:
    """Pixel anchors `[A, 4]` of a molded image size (the graph builds the same ones)."""
    shapes = compute_backbone_shapes(image_shape, strides)
    return generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)


def anchors_for(config: Config, image_shape) -> np.ndarray:
    return pixel_anchors(
        tuple(int(v) for v in image_shape[:2]),
        tuple(config.RPN_ANCHOR_SCALES),
        tuple(config.RPN_ANCHOR_RATIOS),
        tuple(config.BACKBONE_STRIDES),
        config.RPN_ANCHOR_STRIDE,
    )


class DataGenerator(keras.utils.PyDataset):
    """Batches of training inputs keyed as the training graph's inputs.

    `steps` batches make an epoch (`STEPS_PER_EPOCH`); images are drawn from a new
    permutation every pass over the dataset, deterministically from `seed` when given.
    """

    def __init__(
        self,
        dataset,
        config: Config,
        shuffle: bool = True,
        augmentation=None,
        steps: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not len(dataset.image_ids):
            raise ValueError("the dataset has no images; call add_image() and prepare() first")
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.steps = steps or math.ceil(len(dataset.image_ids) / config.BATCH_SIZE)
        self.seed = (
            seed
            if seed is not None
            else (
                config.SEED if config.SEED is not None else np.random.SeedSequence().entropy % 2**32
            )
        )
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _image_id(self, position: int) -> int:
        """The image at a global sample position: pass `k` uses permutation `k`."""
        ids = self.dataset.image_ids
        rounds, offset = divmod(position, len(ids))
        if not self.shuffle:
            return int(ids[offset])
        return int(np.random.default_rng((self.seed, rounds)).permutation(ids)[offset])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        batch = self.config.BATCH_SIZE
        first = (self.epoch * self.steps + index) * batch
        samples = []
        for position in range(first, first + batch):
            rng = np.random.default_rng((self.seed, position, 1))
            samples.append(self._sample(self._image_id(position), rng))
        return collate(samples, self.config)

    def _sample(self, image_id: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        config = self.config
        image, meta, class_ids, boxes, masks = load_image_gt(
            self.dataset, config, image_id, self.augmentation, rng
        )
        if len(class_ids) > config.MAX_GT_INSTANCES:
            keep = rng.choice(len(class_ids), config.MAX_GT_INSTANCES, replace=False)
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
        rpn_match, rpn_bbox = build_rpn_targets(
            anchors_for(config, image.shape),
            class_ids,
            boxes,
            config.RPN_TRAIN_ANCHORS_PER_IMAGE,
            config.RPN_BBOX_STD_DEV,
            rng,
        )
        return {
            "input_image": mold_image(image.astype(np.float32), config.MEAN_PIXEL),
            "input_image_meta": meta,
            "input_rpn_match": rpn_match,
            "input_rpn_bbox": rpn_bbox,
            "input_gt_class_ids": class_ids,
            "input_gt_boxes": boxes,
            "input_gt_masks": masks,
        }


def collate(samples: list[dict[str, np.ndarray]], config: Config) -> dict[str, np.ndarray]:
    """Stack samples into a batch, zero-padding ground truth to `MAX_GT_INSTANCES`."""
    limit = config.MAX_GT_INSTANCES
    out = {
        key: np.stack([s[key] for s in samples])
        for key in ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox")
    }
    out["input_rpn_match"] = out["input_rpn_match"].astype(np.int32)
    out["input_gt_class_ids"] = np.stack(
        [_pad(s["input_gt_class_ids"], limit, 0) for s in samples]
    ).astype(np.int32)
    out["input_gt_boxes"] = np.stack([_pad(s["input_gt_boxes"], limit, 0) for s in samples]).astype(
        np.float32
    )
    # uint8, not bool: tf.distribute averages a batch to build the model, and bool cannot be summed.
    out["input_gt_masks"] = np.stack([_pad(s["input_gt_masks"], limit, 2) for s in samples]).astype(
        np.uint8
    )
    return out


def _pad(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths)
