"""What the old CPU augmentation did to faces: Keras's affine layers in a row against one warp.

    python -m fer_keras.recover --tflite tflite/fast/fer_keras_fast_int8.tflite --run experiments/runs/20261125-124644-ferplus_vgg_accel_s2 \\
        --out experiments/runs/recovered --data-dir ../shared/datasets/fer2013
    python experiments/benchmarks/augment_resampling.py    # writes experiments/benchmarks/augment_resampling.{md,json}

Until 2026-11-28 the tf.data pipeline augmented with keras.layers.RandomRotation, RandomTranslation
and RandomZoom applied one after another, each resampling the face bilinearly. ``HostAugmenter``
(the accelerator trainer's augmentation, and now the CPU pipeline's) composes them into one warp.
The fast tier's VGG, rebuilt from its .tflite and trained on the host-augmented faces, classifies
FERPlus training faces (300 a class at most) after each augmentation; the lower its accuracy on
a kind of batch, the further those faces are from the ones it learnt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from fer_keras.augment import HostAugmenter
from fer_keras.benchmark import write_results
from fer_keras.config import load_config
from fer_keras.data import load_dataset
from fer_keras.evaluate import load_keras_model

MODEL = Path("experiments/runs/recovered/20261125-124644-ferplus_vgg_accel_s2/best.keras")


def keras_chain(augment, seed: int) -> list[keras.layers.Layer]:
    """The old pipeline's layers, in its order and with its settings."""
    chain = [keras.layers.RandomFlip("horizontal", seed=seed)] if augment.flip else []
    if augment.rotation:
        chain.append(keras.layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed + 1))
    if augment.translation:
        chain.append(keras.layers.RandomTranslation(augment.translation, augment.translation, fill_mode="reflect", seed=seed + 2))
    if augment.zoom:
        chain.append(keras.layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 3))
    if augment.brightness:
        chain.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 4))
    if augment.contrast:
        chain.append(keras.layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 5))
    if augment.erasing:
        chain.append(keras.layers.RandomErasing(factor=augment.erasing, value_range=(0, 255), seed=seed + 6))
    return chain


def main() -> None:
    model, _ = load_keras_model(MODEL)
    faces = load_dataset("ferplus", "../shared/datasets/fer2013", max_per_class=300, with_test=False).splits["train"]
    full = load_config("experiments/configs/ferplus_vgg.yaml").data.augment
    off = dataclasses.replace(full, flip=False, rotation=0, translation=0, zoom=0, brightness=0, contrast=0, erasing=0, mixup=0)
    variants = {
        "none": off,
        "rotation": dataclasses.replace(off, rotation=full.rotation),
        "translation": dataclasses.replace(off, translation=full.translation),
        "zoom": dataclasses.replace(off, zoom=full.zoom),
        "rotation + translation + zoom": dataclasses.replace(off, rotation=full.rotation, translation=full.translation, zoom=full.zoom),
        "brightness + contrast": dataclasses.replace(off, brightness=full.brightness, contrast=full.contrast),
        "all (ferplus_vgg.yaml)": full,
    }

    def accuracy(images: np.ndarray) -> float:
        return round(float((model.predict(images, batch_size=256, verbose=0).argmax(1) == faces.labels).mean()), 4)

    rows = []
    for name, augment in variants.items():
        batches = []
        for start in range(0, len(faces), 64):
            batch = keras.ops.convert_to_tensor(faces.images[start : start + 64].astype(np.float32))
            for layer in keras_chain(augment, 0):
                batch = layer(batch, training=True)
            batches.append(np.clip(keras.ops.convert_to_numpy(batch), 0, 255))
        rows.append({"augmentation": name, "accuracy, one warp (HostAugmenter)": accuracy(HostAugmenter(augment, 0)(faces.images)),
                     "accuracy, Keras layers in a row (old pipeline)": accuracy(np.concatenate(batches))})
    header = (f"The fast tier's VGG (rebuilt by fer_keras.recover) on {len(faces)} FERPlus training faces, each augmented once per row. "
              "Command: python experiments/benchmarks/augment_resampling.py")
    write_results(Path(__file__).parent, "augment_resampling", rows, header)


if __name__ == "__main__":
    main()
