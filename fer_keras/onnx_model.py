"""A float32 ``.onnx`` emotion model under ONNX Runtime, with the calls evaluate, benchmark and export make of a classifier.

``fer_keras.export --format onnx`` writes such files (``tflite/fast/onnx/``), with the ``.tflite``'s
metadata JSON in the model property ``fer_keras``. ONNX Runtime comes with the ``train`` extra; the
runtime path (LiteRT) does not need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_keras.errors import UserError
from fer_keras.runtime import METADATA_NAME, check_value_range, class_prior_weights, predict_in_chunks, rebalance, rescale_pixels, resolve_value_range


class OnnxClassifier:
    """An ``.onnx`` model taking NHWC face batches, on ``num_threads`` CPU threads.

    Args:
        path: The ``.onnx`` file.
        labels: Class names for a model without fer_keras metadata.
        value_range: Input value range for such a model, e.g. (-1, 1); fer_keras exports take raw pixels.
        balance: The class-prior correction, 0 to 1, as ``EmotionClassifier``'s (needs the embedded ``class_prior``).
        num_threads: ONNX Runtime's intra-op threads (1, as latency is reported per thread).

    Attributes:
        labels, input_size, channels, metadata, value_range, balance: As ``EmotionClassifier``'s.

    Raises:
        UserError: When the file is missing, is not a loadable ONNX model, does not take (N, H, W, 1|3)
            images, or its labels do not match its outputs.
    """

    def __init__(
        self,
        path: str | Path,
        labels: Sequence[str] | None = None,
        value_range: tuple[float, float] | None = None,
        balance: float = 0.0,
        num_threads: int = 1,
    ):
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        check_value_range(value_range, "value_range")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: model file not found")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail, ort_errors.NotImplemented) as error:
            raise UserError(f"{self.path}: not a loadable ONNX model ({str(error).splitlines()[0]})") from None
        model_input, model_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = model_input.name
        shape = model_input.shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or shape[3] not in (1, 3):
            raise UserError(f"{self.path}: expected an image input (batch, height, width, 1 or 3), got {shape}")
        self.input_size, self.channels = (shape[1], shape[2]), shape[3]
        properties = self.session.get_modelmeta().custom_metadata_map
        self.metadata = json.loads(properties.get(METADATA_NAME, "{}"))
        num_classes = model_output.shape[-1]
        self.labels = tuple(labels or self.metadata.get("labels") or ())
        if not self.labels:
            raise UserError(f"{self.path}: no labels in its metadata; give them (--labels a,b,c in output order)")
        if isinstance(num_classes, int) and len(self.labels) != num_classes:
            raise UserError(f"{self.path}: {len(self.labels)} labels for a model with {num_classes} outputs")
        self.value_range = resolve_value_range(value_range, self.metadata, self.path)
        self.balance = float(balance)
        self._class_weights = class_prior_weights(self.metadata, len(self.labels), self.balance, self.path)

    def predict_preprocessed(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities of (N, H, W, C) raw-pixel faces already at the model's size (rescaled to ``value_range``)."""
        probabilities = self.session.run(None, {self.input_name: rescale_pixels(faces.astype(np.float32, copy=False), self.value_range)})[0]
        return probabilities if self._class_weights is None else rebalance(probabilities, self._class_weights)

    def predict_many(self, faces: np.ndarray, chunk: int = 256) -> np.ndarray:
        """As ``predict_preprocessed``, ``chunk`` faces per run."""
        return predict_in_chunks(self.predict_preprocessed, faces, len(self.labels), chunk)
