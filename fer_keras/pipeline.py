"""tf.data input pipelines: in-memory arrays → cache → shuffle → batch → augment and mix (map) → prefetch.

Augmentation lives here, on the batched tf.data stream, and never in a model, so exported
models contain no random layers. It is ``HostAugmenter`` then ``BatchMixer`` (MixUp, CutMix),
what the accelerator trainer uses, so both trainers see the same faces. It once was Keras's
RandomRotation, RandomTranslation and RandomZoom layers in a row: three bilinear resamplings
that blurred every training face. The fast tier's VGG classified 69.5% of training faces after
those three layers, 74.2% after HostAugmenter's single warp (75.9% unaugmented), and
fine-tuning it on the blurred faces cost a point of validation accuracy even at learning rate
2e-5 (experiments/benchmarks/augment_resampling.md).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fer_keras.augment import BatchMixer, HostAugmenter
from fer_keras.config import AugmentConfig
from fer_keras.data import Split


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
    if training and augment is not None:
        augmenter, mixer = HostAugmenter(augment, seed), BatchMixer(augment, seed + 7)

        def augment_and_mix(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return mixer(augmenter(images), targets.astype(np.float32))

        def apply(x, y, *rest):
            x_shape, y_shape = x.shape, y.shape
            x, y = tf.numpy_function(augment_and_mix, [x, y], (tf.float32, tf.float32), stateful=True)
            x.set_shape(x_shape)
            y.set_shape(y_shape)
            return (x, y, *rest)

        # One call at a time: the augmenter's generator then yields the same run for the same seed.
        ds = ds.map(apply)
    else:
        ds = ds.map(lambda x, *rest: (tf.cast(x, tf.float32), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
