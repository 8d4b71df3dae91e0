"""Data-parallel training: the `tf.distribute` strategy a config asks for.

matterport's GPU_COUNT meant "split every batch over this many GPUs". Here GPU_COUNT > 1
builds and trains the model under a `tf.distribute.MirroredStrategy`: one replica per device,
each taking IMAGES_PER_GPU images of the global batch (BATCH_SIZE), gradients summed by an
all-reduce. TRAINING_DEVICES names the replica devices instead of the first GPU_COUNT GPUs.
CPU devices (`"/cpu:0", "/cpu:1"`) are split from the host CPU, so the same code runs, slowly,
on a machine without GPUs (the tests do).
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn.config import Config
from mrcnn.errors import InvalidSetting


def training_strategy(config: Config) -> tf.distribute.Strategy:
    """The strategy to build, compile and fit the training model under.

    Returns the default (single-device) strategy for GPU_COUNT 1 without TRAINING_DEVICES.

    Raises:
        ValueError: fewer GPUs are visible than GPU_COUNT.
        RuntimeError: TRAINING_DEVICES needs more CPU devices than TensorFlow, already
            started, has.
    """
    devices = replica_devices(config)
    if devices is None:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices)


def replica_devices(config: Config) -> list[str] | None:
    """The replicas' device names, or None for plain single-device training."""
    if config.TRAINING_DEVICES:
        devices = [str(name) for name in config.TRAINING_DEVICES]
        cpus = [_index(name) for name in devices if _device_type(name) == "CPU"]
        if cpus:
            ensure_cpu_devices(max(cpus) + 1)
        return devices
    if config.GPU_COUNT == 1:
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < config.GPU_COUNT:
        raise InvalidSetting(
            f"GPU_COUNT={config.GPU_COUNT} asks for {config.GPU_COUNT} GPUs, but "
            f"TensorFlow sees {len(gpus)}; set GPU_COUNT=1 (and raise "
            "IMAGES_PER_GPU for the same batch) or name the devices in "
            "TRAINING_DEVICES"
        )
    return [gpu.name for gpu in gpus[: config.GPU_COUNT]]


def ensure_cpu_devices(count: int) -> None:
    """Make TensorFlow see at least `count` logical CPU devices (split from the first CPU).

    Splitting works only before TensorFlow starts its runtime (its first op in the process).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured is not None and len(configured) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:  # the runtime has started; fine if it already has enough
        present = len(tf.config.list_logical_devices("CPU"))
        if present < count:
            raise RuntimeError(
                f"TRAINING_DEVICES needs {count} CPU devices but TensorFlow already started with "
                f"{present}; build the training model before running other TensorFlow code in "
                f"this process, or call mrcnn.distribute.ensure_cpu_devices({count}) first"
            ) from None


def _device_type(name: str) -> str:
    return (tf.DeviceSpec.from_string(name).device_type or "").upper()


def _index(name: str) -> int:
    return tf.DeviceSpec.from_string(name).device_index or 0
