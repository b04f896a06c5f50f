"""tf.data input pipelines: in-memory arrays → cache → shuffle → batch → augment (map) → prefetch.

Augmentation lives here, on the batched tf.data stream, and never in a model, so exported
models contain no random layers.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_keras.config import AugmentConfig
from fer_keras.data import Split


def augmentation_layers(augment: AugmentConfig, seed: int) -> list[keras.layers.Layer]:
    """Keras preprocessing layers for the enabled augmentations, in application order.

    Args:
        augment: Which augmentations to apply and how strongly (0 disables one).
        seed: Base seed; each layer gets its own offset.

    Returns:
        Layers that take a float batch of 0-255 images.
    """
    chosen: list[keras.layers.Layer] = []
    if augment.flip:
        chosen.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augment.rotation > 0:
        chosen.append(keras.layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed + 1))
    if augment.translation > 0:
        chosen.append(keras.layers.RandomTranslation(augment.translation, augment.translation, fill_mode="reflect", seed=seed + 2))
    if augment.zoom > 0:
        chosen.append(keras.layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 3))
    if augment.brightness > 0:
        chosen.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 4))
    if augment.contrast > 0:
        chosen.append(keras.layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 5))
    if augment.erasing > 0:
        chosen.append(keras.layers.RandomErasing(factor=augment.erasing, value_range=(0, 255), seed=seed + 6))
    return chosen


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced class weights n / (k * count_c), as scikit-learn's 'balanced'; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def make_dataset(
    split: Split,
    batch_size: int,
    training: bool = False,
    augment: AugmentConfig | None = None,
    class_weights: np.ndarray | None = None,
    seed: int = 1337,
) -> tf.data.Dataset:
    """Builds the input pipeline for one split.

    Args:
        split: Images (uint8) and targets in memory.
        batch_size: Batch size.
        training: Shuffle and augment (evaluation pipelines do neither).
        augment: Augmentation settings, used when ``training``.
        class_weights: Per-class loss weights, emitted as per-sample weights.
        seed: Shuffle and augmentation seed.

    Returns:
        A dataset of (images float32 0-255, targets[, sample_weights]) batches.
    """
    images = tf.data.Dataset.from_tensor_slices(split.images)
    columns = [images, tf.data.Dataset.from_tensor_slices(split.targets)]
    if class_weights is not None:
        columns.append(tf.data.Dataset.from_tensor_slices(class_weights[split.labels]))
    ds = tf.data.Dataset.zip(tuple(columns)).cache()
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, *rest: (tf.cast(x, tf.float32), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        layers = augmentation_layers(augment, seed)
        mixup = keras.layers.MixUp(alpha=augment.mixup, seed=seed + 7) if augment.mixup > 0 else None

        def apply(x, y, *rest):
            for layer in layers:
                x = layer(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0)
            if mixup is not None:
                mixed = mixup({"images": x, "labels": y}, training=True)
                x, y = mixed["images"], mixed["labels"]
            return (x, y, *rest)

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
