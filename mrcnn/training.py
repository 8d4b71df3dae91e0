"""Training machinery: the loss-computing Keras model, optimizers, and layer freezing.

Losses are computed in `train_step`/`test_step` from the training graph's outputs (not as
Lambda layers), weighted by `LOSS_WEIGHTS`, and each is reported as a metric.
"""

from __future__ import annotations

import re
import time

import keras
import tensorflow as tf

from mrcnn import losses
from mrcnn.config import LOSS_NAMES, Config
from mrcnn.errors import InvalidSetting

LAYER_PRESETS = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


def layers_regex(layers: str) -> str:
    """Resolve a preset name (`heads`, `3+`, `4+`, `5+`, `all`) or validate a custom regex."""
    pattern = LAYER_PRESETS.get(layers, layers)
    try:
        re.compile(pattern)
    except re.error as error:
        raise InvalidSetting(
            f"layers must be one of {sorted(LAYER_PRESETS)} or a valid regex; {layers!r}: {error}"
        ) from None
    return pattern


def set_trainable(model: keras.Model, pattern: str) -> list[str]:
    """Make trainable exactly the weighted layers whose name fully matches `pattern`.

    Nested models (the shared `rpn_model`) are entered, as matterport does. Returns the
    names of the trainable layers.
    """
    trainable = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layer.trainable = True
            trainable += set_trainable(layer, pattern)
            continue
        if not layer.weights:
            continue
        layer.trainable = re.fullmatch(pattern, layer.name) is not None
        if layer.trainable:
            trainable.append(layer.name)
    return trainable


@keras.saving.register_keras_serializable(package="mrcnn")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `rate / warmup_steps` to `rate` over `warmup_steps`, then constant.

    The rate lives in a variable, so `set_rate` changes it under a compiled training step
    without tracing it again (`MaskRCNN.train` called again with the same layers).
    """

    def __init__(self, rate: float, warmup_steps: int):
        self.rate = tf.Variable(float(rate), dtype=tf.float64, trainable=False, name="base_rate")
        self.warmup_steps = int(warmup_steps)

    def set_rate(self, rate: float) -> None:
        """The rate from now on (the warmup's progress is the optimizer's step count)."""
        self.rate.assign(float(rate))

    def __call__(self, step):
        progress = (tf.cast(step, tf.float32) + 1.0) / float(max(self.warmup_steps, 1))
        return tf.cast(self.rate, tf.float32) * tf.minimum(1.0, progress)

    def get_config(self) -> dict:
        return {"rate": float(self.rate.numpy()), "warmup_steps": self.warmup_steps}


def make_optimizer(
    config: Config, learning_rate: float | WarmupSchedule
) -> keras.optimizers.Optimizer:
    """matterport's SGD with momentum, or AdamW; a global-norm clip of GRADIENT_CLIP_NORM.

    Keras 2's `clipnorm` (which matterport used) scaled all gradients by their global norm;
    in Keras 3 that is `global_clipnorm`. A float rate gets `WARMUP_STEPS` of warmup.
    """
    rate = learning_rate
    if not isinstance(rate, WarmupSchedule):
        rate = WarmupSchedule(rate, config.WARMUP_STEPS) if config.WARMUP_STEPS else float(rate)
    clip = float(config.GRADIENT_CLIP_NORM) if config.GRADIENT_CLIP_NORM else None
    if config.OPTIMIZER == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.LEARNING_MOMENTUM, global_clipnorm=clip)
    optimizer = keras.optimizers.AdamW(rate, weight_decay=config.WEIGHT_DECAY, global_clipnorm=clip)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def save_model_weights(model: keras.Model, filepath: str) -> None:
    """Write the model's own weights as Keras 3 `.weights.h5`.

    A compiled model's `save_weights` also writes the optimizer state (with AdamW, twice the
    model's size); checkpoints and registered models hold only what inference loads.
    """
    from keras.src.saving import saving_lib  # save_weights_only is where objects_to_skip lives

    optimizer = getattr(model, "optimizer", None)
    saving_lib.save_weights_only(
        model, filepath, objects_to_skip=[optimizer] if optimizer is not None else None
    )


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the weights after every epoch to `template.format(epoch=<1-based epoch>)`."""

    def __init__(self, template: str):
        super().__init__()
        self.template = template

    def on_epoch_end(self, epoch, logs=None):
        save_model_weights(self.model, self.template.format(epoch=epoch + 1))


class Deadline(keras.callbacks.Callback):
    """Stop `fit` after the batch that ends at or past `at` (a `time.monotonic()` value).

    The epoch in progress then ends as any epoch does (validation, callbacks, checkpoint),
    with fewer steps; `reached` tells whether the deadline stopped it.
    """

    def __init__(self, at: float):
        super().__init__()
        self.at = float(at)
        self.reached = False

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() >= self.at:
            self.reached = True
            self.model.stop_training = True


def _unpack(data):
    return data[0] if isinstance(data, (tuple, list)) else data


class TrainingModel(keras.Model):
    """The training graph plus loss computation. Built by `MaskRCNN(mode="training")`."""

    def __init__(
        self,
        inputs,
        outputs,
        loss_weights: dict[str, float],
        l2_weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.loss_weights = {name: float(loss_weights.get(name, 1.0)) for name in LOSS_NAMES}
        self.l2_weight_decay = float(l2_weight_decay)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSS_NAMES)}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compute_losses(self, x: dict, y: dict) -> dict[str, tf.Tensor]:
        """The five named losses (unweighted) of one batch."""
        active_class_ids = x["input_image_meta"][:, 12:]
        return {
            "rpn_class_loss": losses.rpn_class_loss(x["input_rpn_match"], y["rpn_class_logits"]),
            "rpn_bbox_loss": losses.rpn_bbox_loss(
                x["input_rpn_bbox"], x["input_rpn_match"], y["rpn_bbox"]
            ),
            "mrcnn_class_loss": losses.mrcnn_class_loss(
                y["target_class_ids"], y["mrcnn_class_logits"], active_class_ids
            ),
            "mrcnn_bbox_loss": losses.mrcnn_bbox_loss(
                y["target_bbox"], y["target_class_ids"], y["mrcnn_bbox"]
            ),
            "mrcnn_mask_loss": losses.mrcnn_mask_loss(
                y["target_mask"], y["target_class_ids"], y["mrcnn_mask"]
            ),
        }

    def _l2_penalty(self) -> tf.Tensor:
        """matterport's L2: decay · Σ‖w‖² / size(w) over trainable weights except BN gamma/beta."""
        terms = [
            tf.reduce_sum(tf.square(w.value)) / tf.cast(tf.size(w.value), tf.float32)
            for w in self.trainable_weights
            if not w.path.endswith(("gamma", "beta"))
        ]
        return self.l2_weight_decay * tf.add_n(terms) if terms else tf.constant(0.0)

    def _total(self, named: dict[str, tf.Tensor]) -> tf.Tensor:
        total = tf.add_n([self.loss_weights[name] * value for name, value in named.items()])
        if self.l2_weight_decay:
            total += self._l2_penalty()
        return total

    def _record(self, total: tf.Tensor, named: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        self.trackers["loss"].update_state(total)
        for name, value in named.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        x = _unpack(data)
        with tf.GradientTape() as tape:
            named = self.compute_losses(x, self(x, training=True))
            total = self._total(named)
            # Replicas' gradients are summed; each replica's share makes the sum a mean.
            share = total / tf.distribute.get_replica_context().num_replicas_in_sync
            # Under "mixed_float16" the optimizer is a LossScaleOptimizer: the scaled loss keeps
            # small float16 gradients from underflowing (apply_gradients unscales them).
            share = self.optimizer.scale_loss(share)
        variables = self.trainable_variables
        gradients = tape.gradient(share, variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables) if g is not None]
        )
        return self._record(total, named)

    def test_step(self, data):
        x = _unpack(data)
        named = self.compute_losses(x, self(x, training=False))
        return self._record(self._total(named), named)
