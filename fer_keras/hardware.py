"""Hardware choices made once per process: numeric precision and the tf.distribute strategy."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import tensorflow as tf

from fer_keras.config import TrainConfig

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises native bfloat16 arithmetic (AVX-512 BF16 or AMX)."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8")
    except OSError:
        return False
    return any(flag in flags.split() for flag in BF16_CPU_FLAGS)


def resolve_precision(requested: str) -> str:
    """The Keras dtype policy to train with: ``auto`` picks mixed_bfloat16 on a GPU or a BF16 CPU, else float32."""
    if requested != "auto":
        return requested
    if tf.config.list_physical_devices("GPU") or cpu_supports_bf16():
        return "mixed_bfloat16"
    return "float32"


def make_strategy(train: TrainConfig) -> tf.distribute.Strategy:
    """The distribution strategy named by ``train.strategy``.

    ``mirrored`` without a GPU splits the CPU into ``train.cpu_replicas`` logical devices, which
    only works before TensorFlow's runtime starts; if it already has, the existing logical CPUs
    are used.
    """
    if train.strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if train.strategy == "default":
        return tf.distribute.get_strategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * train.cpu_replicas)
    except RuntimeError:
        log.warning("TensorFlow already started: mirroring over the logical CPUs that exist")
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][: train.cpu_replicas]
    return tf.distribute.MirroredStrategy(devices=devices)


def set_precision(policy: str) -> str:
    """Sets the global Keras dtype policy and returns the previous one's name."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    return previous
