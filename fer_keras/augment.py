"""Training-time augmentation as Keras preprocessing layers, built from the config.

TensorFlow-free, so both the tf.data pipeline (CPU training) and the array trainer on
Keras's JAX backend (accelerators) apply the same augmentations. Neither puts them in
the exported model.
"""

from __future__ import annotations

import keras
import numpy as np

from fer_keras.config import AugmentConfig


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


class HostAugmenter:
    """The same augmentations on the host in NumPy and OpenCV, for trainers fed from arrays.

    Keras's random affine layers are very slow under the JAX backend on a GPU: measured on an
    H100, a VGG step took 3.5 ms without them and over 350 ms with them. Augmenting the uint8
    batch on the host while the device trains is cheap: 128 images at 48x48 took 2.6 ms on the
    2-core dev machine (5.4 ms while a training run shared it), and worker threads overlap it
    with the device step.
    The ranges match ``augmentation_layers``: rotation is a fraction of a full turn, translation
    a fraction of the size, zoom a scale change, brightness a fraction of the 0-255 range, and
    contrast a factor around each image's mean. Erasing fills one rectangle with noise.

    Args:
        augment: Which augmentations to apply and how strongly.
        seed: Seed of the random draws.
    """

    def __init__(self, augment: AugmentConfig, seed: int):
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Augments a batch (N, H, W, C) of 0-255 pixels; returns float32 in 0-255."""
        import cv2

        a, rng = self.augment, self.rng
        n, height, width, channels = images.shape
        out = images.astype(np.float32)
        if a.flip:
            flipped = rng.random(n) < 0.5
            out[flipped] = out[flipped, :, ::-1]
        if a.rotation > 0 or a.translation > 0 or a.zoom > 0:
            angles = rng.uniform(-a.rotation, a.rotation, n) * 360.0
            scales = 1.0 + rng.uniform(-a.zoom, a.zoom, n)
            shifts = rng.uniform(-a.translation, a.translation, (n, 2)) * (width, height)
            for i in range(n):
                matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), angles[i], scales[i])
                matrix[:, 2] += shifts[i]
                warped = cv2.warpAffine(out[i], matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                out[i] = warped.reshape(height, width, channels)
        if a.brightness > 0:
            out += rng.uniform(-a.brightness, a.brightness, (n, 1, 1, 1)).astype(np.float32) * 255.0
        if a.contrast > 0:
            means = out.mean(axis=(1, 2, 3), keepdims=True)
            out = (out - means) * rng.uniform(1 - a.contrast, 1 + a.contrast, (n, 1, 1, 1)).astype(np.float32) + means
        if a.erasing > 0:
            for i in np.flatnonzero(rng.random(n) < a.erasing):
                h, w = (rng.uniform(0.1, 0.4, 2) * (height, width)).astype(int) + 1
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                out[i, top : top + h, left : left + w] = rng.uniform(0, 255, (h, w, channels))
        return np.clip(out, 0.0, 255.0)
