"""Region proposal network: one shared sub-model (`rpn_model`) applied to every pyramid level.

Shapes: B images, A anchors over all levels, a anchors per location (one per ratio).
Outputs per image: `rpn_class_logits [B, A, 2]`, `rpn_class [B, A, 2]` (softmax; index 1 is
"object") and `rpn_bbox [B, A, 4]` deltas, in the anchors' order (level, y, x, ratio).
"""

from __future__ import annotations

import keras
from keras import layers


def build_rpn_model(
    anchor_stride: int, anchors_per_location: int, depth: int, channels: int = 512
) -> keras.Model:
    """The RPN head as a Keras model named `rpn_model` (as in matterport's weight files).

    `channels` is the width of its shared 3×3 convolution: matterport's 512 (its weight
    files), or as wide as the pyramid (`depth`), as torchvision's head is.
    """
    feature_map = keras.Input((None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(
        channels,
        3,
        padding="same",
        activation="relu",
        strides=anchor_stride,
        name="rpn_conv_shared",
    )(feature_map)
    logits = layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
    logits = layers.Reshape((-1, 2))(logits)
    # float32 scores: bfloat16's 3 digits would tie many anchors in the proposals' top-k.
    probs = layers.Activation("softmax", name="rpn_class_softmax", dtype="float32")(logits)
    deltas = layers.Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred")(shared)
    deltas = layers.Reshape((-1, 4))(deltas)
    return keras.Model(feature_map, [logits, probs, deltas], name="rpn_model")


def apply_rpn(rpn_model: keras.Model, feature_maps: list) -> tuple:
    """Run `rpn_model` on each level and concatenate: (rpn_class_logits, rpn_class, rpn_bbox)."""
    per_level = [rpn_model(p) for p in feature_maps]
    logits, probs, deltas = zip(*per_level)
    # float32 outputs whatever the policy: losses and the proposal layer compute in float32.
    return (
        layers.Concatenate(axis=1, name="rpn_class_logits", dtype="float32")(list(logits)),
        layers.Concatenate(axis=1, name="rpn_class", dtype="float32")(list(probs)),
        layers.Concatenate(axis=1, name="rpn_bbox", dtype="float32")(list(deltas)),
    )
