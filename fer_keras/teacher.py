"""Knowledge distillation targets: a teacher model's probabilities mixed into the training targets.

A strong but slow model (the accurate tier's ensemble, say) teaches a fast one by soft targets.
With ``data.teacher=PATH`` and ``data.teacher_weight=W``, each training target becomes
``(1 - W) * label + W * teacher(image)``. Validation and test keep their true labels. The teacher
is a ``.tflite`` (run through LiteRT, fast on a CPU) or a ``.keras`` model with the same labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras.data import Split
from fer_keras.errors import UserError


def teacher_probabilities(path: Path, images: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """The teacher's probabilities for ``images`` (N, H, W, C uint8), checked against the dataset's labels.

    Raises:
        UserError: When the file is missing or its labels differ from ``labels``.
    """
    if not path.is_file():
        raise UserError(f"{path}: teacher model not found")
    if path.suffix == ".tflite":
        from fer_keras.runtime import EmotionClassifier

        teacher = EmotionClassifier(path)
        teacher_labels = tuple(teacher.labels)
        predict = teacher.predict_many
    else:
        from fer_keras.evaluate import load_keras_model

        model, teacher_labels = load_keras_model(path)
        predict = lambda batch: model.predict(batch, batch_size=256, verbose=0)  # noqa: E731
    if teacher_labels != tuple(labels):
        raise UserError(f"{path}: teacher labels {list(teacher_labels)} differ from the dataset's {list(labels)}")
    return predict(images).astype(np.float32)


def with_teacher(split: Split, probabilities: np.ndarray, weight: float) -> Split:
    """The split with its targets mixed with the teacher's: ``(1 - weight) * targets + weight * probabilities``."""
    return Split(split.images, (1.0 - weight) * split.targets + weight * probabilities, split.paths)
