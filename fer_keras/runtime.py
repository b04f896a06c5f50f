"""LiteRT inference: ``EmotionClassifier`` over a self-describing ``.tflite``. Imports no TensorFlow.

The model's labels and input format are read from a JSON entry named ``fer_keras`` in the
flatbuffer's metadata table (written by ``fer_keras.export``), so no sidecar file is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fer_keras.errors import UserError, check_at_least

METADATA_NAME = "fer_keras"
PACKAGED_MODELS = ("default", "fast", "accurate")
PACKAGED_ALIASES = {"default": "accurate"}  # the accurate tier is the package default


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences C++ writes to stderr (LiteRT's unconditional 'Created XNNPACK delegate' INFO line).

    No LiteRT setting turns that line off, and it would break the CLIs' one-line errors. Python
    exceptions are unaffected: their messages still reach the caller.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_interpreter(path: Path, **options):
    """A LiteRT interpreter for the ``.tflite`` at ``path``, tensors allocated, native INFO lines silenced.

    Args:
        path: The model file.
        **options: Passed to ``ai_edge_litert.interpreter.Interpreter`` (``num_threads``, an op resolver).

    Raises:
        UserError: When LiteRT cannot read the file as a model.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        with quiet_native_stderr():
            interpreter = Interpreter(model_path=str(path), **options)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{path}: cannot load TFLite model ({str(err).splitlines()[0]})") from None
    return interpreter


def check_value_range(value_range: tuple[float, float] | None, what: str) -> None:
    """Raises a UserError naming ``what`` unless ``value_range`` is None or (LOW, HIGH) with LOW below HIGH.

    An inverted range would feed the model a negative of each face, and an empty one a blank, silently.
    """
    if value_range is not None and not value_range[0] < value_range[1]:
        raise UserError(f"{what} {value_range[0]:g},{value_range[1]:g}: LOW must be below HIGH (e.g. -1,1 or 0,1)")


def rescale_pixels(batch: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """0-255 pixels mapped linearly onto a model's input ``value_range`` (unchanged for (0, 255))."""
    low, high = value_range
    if (low, high) == (0, 255):
        return batch
    return batch * ((high - low) / 255.0) + low


def resolve_value_range(value_range: tuple[float, float] | None, metadata: dict, path: Path) -> tuple[float, float]:
    """The input range a model is fed: ``value_range`` or the one its metadata states (they must agree), else raw pixels (0, 255).

    Raises:
        UserError: When ``value_range`` contradicts the metadata's range.
    """
    stated_range = metadata.get("input", {}).get("value_range")
    if value_range is not None and stated_range is not None and tuple(value_range) != tuple(stated_range):
        # A range that contradicts the model's own would feed it wrongly scaled pixels, silently.
        raise UserError(f"{path}: its metadata says it takes inputs in {tuple(stated_range)}; value_range {tuple(value_range)} is for models without metadata")
    return tuple(value_range or stated_range or (0, 255))


def predict_in_chunks(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, num_classes: int, chunk: int = 256) -> np.ndarray:
    """``predict`` over a large model-shaped batch of 0-255 pixels, ``chunk`` float32 images per call; (0, num_classes) for none."""
    if len(images) == 0:
        return np.zeros((0, num_classes), dtype=np.float32)
    return np.concatenate([predict(images[i : i + chunk].astype(np.float32)) for i in range(0, len(images), chunk)])


def parse_value_range(text: str, flag: str) -> tuple[float, float]:
    """A ``LOW,HIGH`` input range from the command line.

    Raises:
        UserError: When ``text`` is not two comma-separated numbers with LOW below HIGH.
    """
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r} must look like LOW,HIGH (e.g. {flag}=-1,1: with '=', as argparse reads -1,1 alone as a flag)") from None
    check_value_range((low, high), flag)
    return low, high


def packaged_resource(*parts: str) -> Path:
    """A file or folder under ``fer_keras/resources`` (models, detectors) as a filesystem path."""
    return Path(str(resources.files("fer_keras.resources").joinpath(*parts)))


def packaged_model_path(name: str) -> Path:
    """The file of a model shipped inside the package (``default``, ``fast``, ``accurate``).

    Raises:
        UserError: When no model of that name is packaged.
    """
    path = packaged_resource("models", f"{PACKAGED_ALIASES.get(name, name)}.tflite")
    if not path.is_file():
        raise UserError(f"no packaged model named {name!r} (packaged: {', '.join(available_packaged_models()) or 'none'})")
    return path


def available_packaged_models() -> list[str]:
    """Names of the models shipped inside the package."""
    folder = packaged_resource("models")
    shipped = sorted(p.stem for p in folder.glob("*.tflite")) if folder.is_dir() else []
    return sorted(shipped + [alias for alias, target in PACKAGED_ALIASES.items() if target in shipped])


def resolve_model(model: str | Path | None) -> Path:
    """A model argument as a file: None means ``default``; a packaged name; or a path."""
    if model is None:
        return packaged_model_path("default")
    if str(model) in PACKAGED_MODELS or (isinstance(model, str) and model in available_packaged_models()):
        return packaged_model_path(str(model))
    path = Path(model)
    if not path.is_file():
        if not path.suffix and len(path.parts) == 1:  # a bare word was meant as a packaged name
            raise UserError(f"no packaged model or file named {str(model)!r} (packaged: {', '.join(available_packaged_models())})")
        raise UserError(f"{path}: model file not found")
    return path


def read_metadata(model: bytes | Path) -> dict:
    """The ``fer_keras`` JSON metadata embedded in a ``.tflite`` flatbuffer.

    Args:
        model: The file or its bytes.

    Returns:
        The metadata dict, or {} when the model carries none.

    Raises:
        UserError: When the bytes are not a TFLite flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    buffer = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    name = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
    if len(buffer) < 8 or buffer[4:8] != b"TFL3":
        # A trained model is the likeliest mistake: the runtime runs only its exported .tflite.
        keras_model = Path(name).suffix.lower() in (".keras", ".h5")
        hint = f"; export it first: python -m fer_keras.export --model {name} --quantize int8 --out DIR" if keras_model else ""
        raise UserError(f"{name}: not a TFLite model (no TFL3 identifier){hint}")
    try:
        root = schema.Model.GetRootAs(buffer, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() == METADATA_NAME.encode():
                return json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as err:
        raise UserError(f"{name}: corrupt or truncated TFLite file ({err})") from None
    return {}


class EmotionClassifier:
    """Classifies face crops with a ``.tflite`` emotion model; not thread-safe (one per thread).

    Args:
        model: A ``.tflite`` path or a packaged model name (``default``, ``fast``, ``accurate``);
            None is ``default``.
        num_threads: CPU threads for LiteRT; None uses two where the CPU has them (the accurate tier's
            ensemble classifies a face in 1.2 ms on two threads against 2.3 ms on one, measured here).
        labels: Class names for a model without embedded metadata (e.g. a third-party model).
        value_range: Input value range for such a model, e.g. (-1, 1); models exported by
            fer_keras take raw pixels (0, 255) and say so in their metadata.
        balance: Strength of the class-prior correction, 0 to 1 (see ``rebalance``). 0 keeps
            the training data's class frequencies (FERPlus is a third neutral, 1.4% disgust);
            1 assumes every emotion is equally likely, as in posed datasets. Needs the
            ``class_prior`` that ``fer_keras.export`` embeds.

    Attributes:
        labels: Class names in output order.
        input_size: (height, width) the faces are resized to.
        channels: 1 (grayscale) or 3 (RGB) model input.
        metadata: Everything embedded in the model file.

    Raises:
        UserError: When the file is missing or not a loadable TFLite model.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        num_threads: int | None = None,
        labels: Sequence[str] | None = None,
        value_range: tuple[float, float] | None = None,
        balance: float = 0.0,
    ):
        check_at_least("num_threads", num_threads, 1)
        check_value_range(value_range, "value_range")
        self.path = resolve_model(model)
        self.metadata = read_metadata(self.path)
        threads = num_threads if num_threads is not None else min(2, os.cpu_count() or 1)
        self._interpreter = open_interpreter(self.path, num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        _, height, width, self.channels = (int(d) for d in self._input["shape"])
        self.input_size = (height, width)
        num_classes = int(self._output["shape"][-1])
        self.labels = tuple(labels or self.metadata.get("labels") or (f"class_{i}" for i in range(num_classes)))
        self.value_range = resolve_value_range(value_range, self.metadata, self.path)
        if len(self.labels) != num_classes:
            source = "labels were given" if labels else "labels are in its metadata"
            raise UserError(f"{self.path}: {len(self.labels)} {source} but the model outputs {num_classes} classes")
        self.balance = float(balance)
        prior_weights = class_prior_weights(self.metadata, num_classes, self.balance, self.path)
        # Every row is renormalised to sum to 1, with or without the prior correction: a uint8 output
        # holds each probability in steps of 1/256, and an ensemble's averaging inside the graph rounds
        # again, so a row can sum to 1 ± 0.02.
        self._row_weights = np.ones(num_classes) if prior_weights is None else prior_weights
        self._batch = 1

    def preprocess(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Converts face crops (as ``to_model_input`` takes them) to the model's input batch (N, H, W, C) float32 0-255."""
        return to_model_input(faces, self.input_size, self.channels)

    def predict(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Emotion probabilities for a batch of faces, all in one invoke.

        Args:
            faces: A list of crops of any size (gray, BGR or BGRA; uint8 0-255, uint16 or floats 0-1), an
                array (N, H, W[, C]), or one crop as an array (H, W[, 1|3|4]).

        Returns:
            (N, num_classes) float32 probabilities, rows in input order.
        """
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.predict_preprocessed(self.preprocess(faces))

    def predict_many(self, images: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Probabilities for a large model-shaped batch (N, H, W, C) of 0-255 pixels, ``chunk`` images per invoke."""
        return predict_in_chunks(self.predict_preprocessed, images, len(self.labels), chunk)

    def predict_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for an already model-shaped float batch (N, H, W, C) of 0-255 pixels (rescaled to ``value_range``)."""
        n = len(batch)
        batch = rescale_pixels(batch, self.value_range)
        # Batches are padded to a power of two, so a face count that changes every frame
        # re-allocates the interpreter's tensors rarely instead of on every change.
        capacity = 1 << (n - 1).bit_length()
        if capacity != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [capacity, *self.input_size, self.channels])
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = capacity
        if capacity != n:
            batch = np.concatenate([batch, np.zeros((capacity - n, *batch.shape[1:]), dtype=batch.dtype)])
        self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self._interpreter.invoke()
        probabilities = _dequantize(self._interpreter.get_tensor(self._output["index"])[:n], self._output)
        return rebalance(probabilities, self._row_weights)


def check_pixels(pixels: np.ndarray, what: str) -> None:
    """Raises a UserError naming ``what`` unless ``pixels`` is a non-empty, finite, numeric image (H, W) or (H, W, 1|3|4).

    Args:
        pixels: The array given as an image or face crop.
        what: How the error names it (``image``, ``face crop 2``).
    """
    if pixels.ndim == 0:  # not an array at all: None (what cv2.imread gives for a file it cannot read), a number
        given = pixels.item()
        hint = " (cv2.imread returns None for a file it cannot read)" if given is None else ""
        raise UserError(f"{what}: expected an image array, got {type(given).__name__}{hint}")
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
        raise UserError(f"{what}: expected an image array (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {pixels.shape}")
    if pixels.size == 0:
        raise UserError(f"{what} is empty (shape {pixels.shape})")
    if not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating) or pixels.dtype == np.bool_):
        raise UserError(f"{what}: expected numeric pixels, got dtype {pixels.dtype}")
    if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():  # no brightness to clip to
        raise UserError(f"{what} has {np.isnan(pixels).sum()} NaN and {np.isinf(pixels).sum()} infinite pixel values")


def as_uint8(pixels: np.ndarray) -> np.ndarray:
    """Pixels as uint8 0-255; floats none of which exceeds 1 are read as 0-1 (scikit-image's and most ML code's scale).

    uint16 pixels (16-bit files read unchanged, machine-vision cameras) are scaled from 0-65535, as
    OpenCV and scikit-image convert them; booleans (masks) become 0 and 255. Other values are
    rounded and clipped to 0-255 (``check_pixels`` refuses NaN and infinities first).
    """
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:  # a mask: True is white, as scikit-image's img_as_ubyte reads it
        return pixels.astype(np.uint8) * np.uint8(255)
    if pixels.dtype == np.uint16:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 if np.issubdtype(pixels.dtype, np.floating) and pixels.max() <= 1.0 else 1.0
    return np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8)


def to_model_input(faces: np.ndarray | Sequence[np.ndarray], size: tuple[int, int], channels: int) -> np.ndarray:
    """Face crops (any size; gray, BGR or BGRA; uint8 0-255, uint16 or floats 0-1) as a model input batch (N, height, width, channels) float32 0-255.

    ``faces`` is a list of crops, an array (N, H, W[, C]), or one crop as an array (H, W) or
    (H, W, 1|3|4). Colour crops are taken as OpenCV's BGR order; shrinking uses area averaging,
    enlarging bilinear.

    Raises:
        UserError: For an empty crop, or one that is not an image array.
    """
    import cv2

    if isinstance(faces, np.ndarray) and (faces.ndim == 2 or (faces.ndim == 3 and faces.shape[2] in (1, 3, 4))):
        faces = faces[None]  # one crop, not a batch of gray crops one to four pixels wide
    height, width = size
    batch = np.empty((len(faces), height, width, channels), dtype=np.float32)
    for i, face in enumerate(faces):
        face = np.asarray(face)
        check_pixels(face, f"face crop {i}")
        if face.ndim == 3 and face.shape[2] == 1:
            face = face[..., 0]
        face = as_uint8(face)
        if channels == 1 and face.ndim == 3:
            face = cv2.cvtColor(face, cv2.COLOR_BGRA2GRAY if face.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        elif channels == 3:
            code = cv2.COLOR_GRAY2RGB if face.ndim == 2 else (cv2.COLOR_BGRA2RGB if face.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            face = cv2.cvtColor(face, code)
        if face.shape[:2] != (height, width):
            shrinking = face.shape[0] > height
            face = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        batch[i] = face.reshape(height, width, channels)
    return batch


def class_prior_weights(metadata: dict, num_classes: int, balance: float, name: str | Path) -> np.ndarray | None:
    """Per-class weights ``prior ** -balance`` from a model's embedded ``class_prior``; None when ``balance`` is 0.

    Raises:
        UserError: When ``balance`` is outside [0, 1], or is set for a model without a usable class prior.
    """
    if not 0.0 <= balance <= 1.0:
        raise UserError(f"balance {balance} must be in [0, 1] (0 = training frequencies, 1 = all emotions equally likely)")
    if balance == 0.0:
        return None
    prior = np.asarray(metadata.get("class_prior") or [], dtype=np.float64)
    if prior.shape != (num_classes,) or (prior <= 0).any():
        raise UserError(f"{name}: no class_prior for its {num_classes} classes in the model's metadata, so balance cannot be applied (re-export it, or add one with python -m fer_keras.export --restamp)")
    return (prior / prior.sum()) ** -balance


def rebalance(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Moves probabilities to another class prior: ``p * weights``, renormalised per row.

    A classifier trained on data with class prior ``q`` estimates ``p(y|x)`` under ``q``. Under a
    prior ``r`` the posterior is proportional to ``p(y|x) * r / q`` (Saerens et al., 2002), so
    ``weights = q ** -balance`` moves it part of the way (``balance`` < 1) or all the way
    (``balance`` = 1) to equal class frequencies. Rows that are all zero stay zero.

    Args:
        probabilities: (N, C) probabilities.
        weights: (C,) non-negative weights per class.

    Returns:
        (N, C) float32 probabilities.
    """
    adjusted = probabilities.astype(np.float64) * weights
    totals = adjusted.sum(axis=1, keepdims=True)
    return np.divide(adjusted, totals, out=np.zeros_like(adjusted), where=totals > 0).astype(np.float32)


def _quantize(values: np.ndarray, details: dict) -> np.ndarray:
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
