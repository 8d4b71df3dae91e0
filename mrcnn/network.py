"""Assemble the Keras graphs of Mask R-CNN for training and for inference.

Both graphs share the same layers and names (backbone, FPN, `rpn_model`, heads), so weights
saved from one load into the other by layer name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from mrcnn.config import Config
from mrcnn.layers.anchors import AnchorGenerator
from mrcnn.layers.backbone import build_backbone
from mrcnn.layers.detection import DetectionLayer, LeadingDetectionBoxes, PadToDetections
from mrcnn.layers.detection_targets import DetectionTargetLayer, PositiveRois
from mrcnn.layers.fpn import build_fpn
from mrcnn.layers.gt_boxes import NormalizeBoxes
from mrcnn.layers.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.layers.proposals import ProposalLayer
from mrcnn.layers.rpn import apply_rpn, build_rpn_model

TRAINING_INPUTS = (
    "input_image",
    "input_image_meta",
    "input_rpn_match",
    "input_rpn_bbox",
    "input_gt_class_ids",
    "input_gt_boxes",
    "input_gt_masks",
)


def _image_inputs(config: Config) -> tuple:
    image = keras.Input((None, None, config.IMAGE_CHANNEL_COUNT), name="input_image")
    meta = keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta")
    return image, meta


def _features_and_rpn(config: Config, image, train_bn: bool) -> tuple:
    """Backbone → FPN → RPN on every level, plus the anchors of this image size."""
    c2, c3, c4, c5 = build_backbone(image, config.BACKBONE, train_bn)
    pyramid = build_fpn(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)
    rpn = build_rpn_model(
        config.RPN_ANCHOR_STRIDE,
        len(config.RPN_ANCHOR_RATIOS),
        config.TOP_DOWN_PYRAMID_SIZE,
        config.RPN_CONV_CHANNELS,
    )
    rpn_class_logits, rpn_class, rpn_bbox = apply_rpn(rpn, pyramid)
    anchors = AnchorGenerator(
        config.RPN_ANCHOR_SCALES,
        config.RPN_ANCHOR_RATIOS,
        config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE,
        name="anchors",
    )(image)
    return pyramid[:4], (rpn_class_logits, rpn_class, rpn_bbox), anchors


def _proposals(config: Config, rpn_class, rpn_bbox, anchors, count: int):
    return ProposalLayer(
        count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV, name="ROI"
    )([rpn_class, rpn_bbox, anchors])


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under Keras dtype policy `name`, then restore the global policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_inference_graph(config: Config, policy: str = "float32") -> keras.Model:
    """Inputs `[input_image, input_image_meta]`; outputs matterport's inference list:
    `[mrcnn_detection, mrcnn_class, mrcnn_bbox, mrcnn_mask, ROI, rpn_class, rpn_bbox]`.

    The layers are built under the Keras dtype policy `policy` (`mrcnn.precision` resolves
    INFERENCE_PRECISION to it); under "mixed_bfloat16" the box, NMS and ROI Align layers and
    the heads' outputs keep float32 themselves.
    """
    with dtype_policy(policy):
        return _inference_graph(config)


def _inference_graph(config: Config) -> keras.Model:
    image, meta = _image_inputs(config)
    features, (_, rpn_class, rpn_bbox), anchors = _features_and_rpn(config, image, train_bn=False)
    rpn_rois = _proposals(config, rpn_class, rpn_bbox, anchors, config.POST_NMS_ROIS_INFERENCE)
    _, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
        rpn_rois,
        features,
        meta,
        config.POOL_SIZE,
        config.NUM_CLASSES,
        False,
        config.FPN_CLASSIF_FC_LAYERS_SIZE,
    )
    detections = DetectionLayer(
        config.DETECTION_MAX_INSTANCES,
        config.DETECTION_MIN_CONFIDENCE,
        config.DETECTION_NMS_THRESHOLD,
        config.BBOX_STD_DEV,
        name="mrcnn_detection",
    )([rpn_rois, mrcnn_class, mrcnn_bbox, meta])
    # The mask head runs only on the slots that hold a detection (in every image of the
    # batch); padding slots get all-zero masks.
    mask_rois = LeadingDetectionBoxes(name="mask_rois")(detections)
    mrcnn_mask = build_fpn_mask_graph(
        mask_rois, features, meta, config.MASK_POOL_SIZE, config.NUM_CLASSES, False
    )
    mrcnn_mask = PadToDetections(name="mrcnn_mask_padded")([mrcnn_mask, detections])
    outputs = [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
    return keras.Model([image, meta], outputs, name="mask_rcnn")


def build_training_graph(config: Config) -> tuple[dict, dict]:
    """Inputs (dict keyed by `TRAINING_INPUTS`) and outputs (dict) of the training graph,
    built under the current Keras dtype policy (see `dtype_policy`)."""
    image, meta = _image_inputs(config)
    inputs = {
        "input_image": image,
        "input_image_meta": meta,
        "input_rpn_match": keras.Input((None,), name="input_rpn_match", dtype="int32"),
        "input_rpn_bbox": keras.Input((None, 4), name="input_rpn_bbox"),
        "input_gt_class_ids": keras.Input((None,), name="input_gt_class_ids", dtype="int32"),
        "input_gt_boxes": keras.Input((None, 4), name="input_gt_boxes"),
        "input_gt_masks": keras.Input(
            (*_gt_mask_shape(config), None), name="input_gt_masks", dtype="uint8"
        ),
    }
    features, (rpn_class_logits, rpn_class, rpn_bbox), anchors = _features_and_rpn(
        config, image, config.TRAIN_BN
    )
    rpn_rois = _proposals(config, rpn_class, rpn_bbox, anchors, config.POST_NMS_ROIS_TRAINING)
    gt_boxes = NormalizeBoxes(name="normalize_gt_boxes")([inputs["input_gt_boxes"], image])
    targets = DetectionTargetLayer(
        config.TRAIN_ROIS_PER_IMAGE,
        config.ROI_POSITIVE_RATIO,
        config.BBOX_STD_DEV,
        config.MASK_SHAPE,
        config.USE_MINI_MASK,
        config.ROI_INCLUDE_GT_BOXES,
        name="proposal_targets",
    )([rpn_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])
    rois, target_class_ids, target_bbox, target_mask = targets
    mrcnn_class_logits, _, mrcnn_bbox = fpn_classifier_graph(
        rois,
        features,
        meta,
        config.POOL_SIZE,
        config.NUM_CLASSES,
        config.TRAIN_BN,
        config.FPN_CLASSIF_FC_LAYERS_SIZE,
    )
    mask_rois = PositiveRois(
        int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO), name="positive_rois"
    )([rois, target_class_ids])
    mrcnn_mask = build_fpn_mask_graph(
        mask_rois, features, meta, config.MASK_POOL_SIZE, config.NUM_CLASSES, config.TRAIN_BN
    )
    outputs = {
        "rpn_class_logits": rpn_class_logits,
        "rpn_bbox": rpn_bbox,
        "rois": rois,
        "target_class_ids": target_class_ids,
        "target_bbox": target_bbox,
        "target_mask": target_mask,
        "mrcnn_class_logits": mrcnn_class_logits,
        "mrcnn_bbox": mrcnn_bbox,
        "mrcnn_mask": mrcnn_mask,
    }
    return inputs, outputs


def _gt_mask_shape(config: Config) -> tuple:
    if config.USE_MINI_MASK:
        return tuple(int(v) for v in config.MINI_MASK_SHAPE)
    return None, None  # full-image masks: the molded image size
