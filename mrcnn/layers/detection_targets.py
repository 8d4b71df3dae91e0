"""Detection targets (training only): sample ROIs and give each its class, box and mask target.

Shapes: B images, P proposals, G ground-truth instances (zero-padded), T = `rois_per_image`,
h×w the mini-mask (or image) size, mh×mw the mask head's output size.
Outputs, zero-padded to T and ordered positives first:
`rois [B, T, 4]`, `target_class_ids [B, T]`, `target_bbox [B, T, 4]` (deltas / std),
`target_mask [B, T, mh, mw]`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers.box_ops import box_deltas, non_zero_rows, pairwise_iou


def _pad_rows(x: tf.Tensor, rows: int) -> tf.Tensor:
    padding = [[0, rows - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
    return tf.pad(x, padding)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Sampled ROIs and their class, box and mask targets.

    Inputs: `[proposals [B,P,4], gt_class_ids [B,G], gt_boxes [B,G,4] normalized,
    gt_masks [B,h,w,G]]`.
    """

    def __init__(
        self,
        rois_per_image: int,
        positive_ratio: float,
        bbox_std_dev,
        mask_shape,
        use_mini_mask: bool,
        include_gt_boxes: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32 under a mixed policy
        super().__init__(**kwargs)
        self.supports_jit = False  # XLA has no kernel for CropAndResize
        self.rois_per_image = int(rois_per_image)
        self.positive_ratio = float(positive_ratio)
        self.bbox_std_dev = [float(v) for v in bbox_std_dev]
        self.mask_shape = tuple(int(v) for v in mask_shape)
        self.use_mini_mask = bool(use_mini_mask)
        self.include_gt_boxes = bool(include_gt_boxes)

    @property
    def max_positives(self) -> int:
        return int(self.rois_per_image * self.positive_ratio)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        gt_class_ids = tf.cast(gt_class_ids, tf.int32)
        gt_masks = tf.cast(gt_masks, tf.float32)
        specs = (
            tf.TensorSpec([self.rois_per_image, 4], tf.float32),
            tf.TensorSpec([self.rois_per_image], tf.int32),
            tf.TensorSpec([self.rois_per_image, 4], tf.float32),
            tf.TensorSpec([self.rois_per_image, *self.mask_shape], tf.float32),
        )
        outputs = tf.map_fn(
            self._one_image,
            (proposals, gt_class_ids, gt_boxes, gt_masks),
            fn_output_signature=specs,
        )
        return [tf.stop_gradient(t) for t in outputs]

    def _one_image(self, args):
        proposals, gt_class_ids, gt_boxes, gt_masks = args
        proposals = tf.boolean_mask(proposals, non_zero_rows(proposals))
        real = non_zero_rows(gt_boxes)
        gt_boxes = tf.boolean_mask(gt_boxes, real)
        gt_class_ids = tf.boolean_mask(gt_class_ids, real)
        gt_masks = tf.boolean_mask(gt_masks, real, axis=2)

        # Crowd boxes (negative ids) are never targets; ROIs overlapping them are not negatives.
        is_crowd = gt_class_ids < 0
        crowd_boxes = tf.boolean_mask(gt_boxes, is_crowd)
        gt_boxes = tf.boolean_mask(gt_boxes, ~is_crowd)
        gt_class_ids = tf.boolean_mask(gt_class_ids, ~is_crowd)
        gt_masks = tf.boolean_mask(gt_masks, ~is_crowd, axis=2)
        if self.include_gt_boxes:
            # torchvision's recipe: every GT box is also a proposal, so from the first step each
            # image gives the heads positives (and with them, negatives) to learn from.
            proposals = tf.concat([proposals, gt_boxes], axis=0)

        # A zero column keeps the reductions defined when an image has no (non-crowd) GT.
        no_match = tf.zeros([tf.shape(proposals)[0], 1])
        overlaps = tf.concat([pairwise_iou(proposals, gt_boxes), no_match], axis=1)  # [P, G + 1]
        best_iou = tf.reduce_max(overlaps, axis=1)
        crowd_iou = tf.reduce_max(
            tf.concat([pairwise_iou(proposals, crowd_boxes), no_match], axis=1), axis=1
        )
        positive = tf.where(best_iou >= 0.5)[:, 0]
        negative = tf.where((best_iou < 0.5) & (crowd_iou < 0.001))[:, 0]

        positive = tf.random.shuffle(positive)[: self.max_positives]
        num_positive = tf.shape(positive)[0]
        num_negative = (
            tf.cast(tf.cast(num_positive, tf.float32) / self.positive_ratio, tf.int32)
            - num_positive
        )
        negative = tf.random.shuffle(negative)[:num_negative]

        positive_rois = tf.gather(proposals, positive)
        assignment = tf.argmax(
            tf.gather(overlaps, positive), axis=1, output_type=tf.int32
        )  # never the pad column
        assigned_boxes = tf.gather(gt_boxes, assignment)
        class_ids = tf.gather(gt_class_ids, assignment)
        deltas = box_deltas(positive_rois, assigned_boxes) / tf.constant(
            self.bbox_std_dev, tf.float32
        )
        masks = self._mask_targets(
            positive_rois, assigned_boxes, tf.gather(tf.transpose(gt_masks, [2, 0, 1]), assignment)
        )

        rois = tf.concat([positive_rois, tf.gather(proposals, negative)], axis=0)
        t = self.rois_per_image
        return (
            _pad_rows(rois, t),
            _pad_rows(class_ids, t),
            _pad_rows(deltas, t),
            _pad_rows(masks, t),
        )

    def _mask_targets(self, rois: tf.Tensor, gt_boxes: tf.Tensor, gt_masks: tf.Tensor) -> tf.Tensor:
        """Crop each ROI's region from its assigned mask `[n, h, w]` → `[n, mh, mw]` in {0, 1}."""
        if self.use_mini_mask:
            # Mini masks span their gt box: express the ROI in that box's coordinates.
            y1, x1, y2, x2 = tf.split(rois, 4, axis=1)
            gy1, gx1, gy2, gx2 = tf.split(gt_boxes, 4, axis=1)
            h, w = gy2 - gy1, gx2 - gx1
            rois = tf.concat(
                [(y1 - gy1) / h, (x1 - gx1) / w, (y2 - gy1) / h, (x2 - gx1) / w], axis=1
            )
        indices = tf.range(tf.shape(rois)[0])
        crops = tf.image.crop_and_resize(gt_masks[..., None], rois, indices, self.mask_shape)
        return tf.round(crops[..., 0])

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        t = self.rois_per_image
        return [(batch, t, 4), (batch, t), (batch, t, 4), (batch, t, *self.mask_shape)]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rois_per_image": self.rois_per_image,
            "positive_ratio": self.positive_ratio,
            "bbox_std_dev": self.bbox_std_dev,
            "mask_shape": list(self.mask_shape),
            "use_mini_mask": self.use_mini_mask,
            "include_gt_boxes": self.include_gt_boxes,
        }


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRois(keras.layers.Layer):
    """`[rois [B,T,4], target_class_ids [B,T]]` → `rois [B,T',4]`: the slots of the positives.

    Positives come first in every image's ROIs, so the first T' = the largest count of positives
    in one image (at least 1, at most `max_positives`) hold them all. The mask head runs on
    these only, as its loss reads no other ROI: before a model has learnt to propose, or on
    images with few objects, that is a fraction of the `max_positives` slots, and the mask
    head's batch norms see positives rather than padding.
    """

    def __init__(self, max_positives: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_positives = int(max_positives)

    def call(self, inputs):
        rois, target_class_ids = inputs
        positives = tf.reduce_sum(
            tf.cast(target_class_ids[:, : self.max_positives] > 0, tf.int32), axis=1
        )
        slots = tf.maximum(tf.reduce_max(positives), 1)  # never empty: batch norm of nothing is NaN
        return rois[:, :slots]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, 4)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_positives": self.max_positives}
