"""One-line Python API: ``fer_keras.analyze(image)`` and ``fer_keras.analyze_video(path)``. Imports no TensorFlow.

Example:
    >>> import fer_keras
    >>> for face in fer_keras.analyze("group.jpg"):
    ...     print(face.box, face.emotion, round(face.score, 2))
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fer_keras.errors import UserError, check_at_least
from fer_keras.faces import DEFAULT_DETECTOR, MAX_CROP_MARGIN, FaceDetector, box_area, crop_face, crop_margin, crop_side, make_detector
from fer_keras.runtime import EmotionClassifier, as_uint8, check_pixels
from fer_keras.sources import decode_image_bytes, open_video, pillow_to_bgr, read_image
from fer_keras.tracking import IoUTracker


@dataclass
class FaceResult:
    """The emotion of one face in one frame.

    Attributes:
        box: (x, y, w, h) in frame pixels.
        index: Position among this frame's faces (largest first).
        track_id: Stable id of the face across a video's frames (per image: 1..N).
        emotion: The most probable label.
        score: Its probability.
        probabilities: Every label's probability.
        detector_score: The face detector's confidence.
    """

    box: tuple[int, int, int, int]
    index: int
    track_id: int
    emotion: str
    score: float
    probabilities: dict[str, float]
    detector_score: float

    def __post_init__(self):
        if self.emotion not in self.probabilities:
            raise ValueError(f"emotion {self.emotion!r} is not one of the labels {list(self.probabilities)}")

    def to_json(self) -> dict:
        """The face as JSON values, rounded to what a reader needs: track_id, box, emotion, score, probabilities."""
        return {"track_id": self.track_id, "box": list(self.box), "emotion": self.emotion, "score": round(self.score, 4),
                "probabilities": {label: round(p, 4) for label, p in self.probabilities.items()}}


@dataclass
class FrameResult:
    """All faces of one video frame.

    Attributes:
        frame: The frame's number in the video, from 0.
        time_s: Seconds since the first frame: the container's timestamp for a file, wall-clock
            time for a camera or live stream.
        faces: Its faces, largest first.
    """

    frame: int
    time_s: float
    faces: list[FaceResult]


class FrameAnalyzer:
    """detect → crop (eye-aligned where possible) → one batched classify → track → smooth, for one stream of frames.

    Args:
        detector: A detector name (see ``fer_keras.faces.DETECTORS``) or instance.
        model: A ``.tflite`` path, packaged model name, EmotionClassifier, or None for the default.
        smooth: Weight of the newest frame in per-track exponential smoothing (1 = off).
        margin: Crop border around the face box, as a fraction of its larger side (0 to 1); None = the
            detector's measured margin (``fer_keras.faces.crop_margin``).
        min_face: Ignore faces whose box is smaller than this many pixels on a side.
        max_faces: Keep at most this many faces per frame, largest first (0 = all).
        detector_model: Model file for detectors that need one (YuNet's ``.onnx``).
        num_threads: LiteRT threads for the detector and the classifier.
        detect_size: Long side frames are shrunk to before detection (0 = full size; None = the detector's default).
        balance: Class-prior correction strength, 0 to 1 (``EmotionClassifier``); ignored when ``model`` is a classifier.
    """

    def __init__(
        self,
        detector: str | FaceDetector = DEFAULT_DETECTOR,
        model: str | Path | EmotionClassifier | None = None,
        smooth: float = 1.0,
        margin: float | None = None,
        min_face: int = 0,
        max_faces: int = 0,
        detector_model: str | Path | None = None,
        num_threads: int | None = None,
        detect_size: int | None = None,
        balance: float = 0.0,
    ):
        if not 0.0 < smooth <= 1.0:
            raise UserError(f"smooth={smooth} must be in (0, 1] (1 = no smoothing)")
        # Checked here, as the caller wrote them, before any model loads: zero threads fail inside the detector.
        for what, value, least in (("num_threads", num_threads, 1), ("detect_size", detect_size, 0)):
            check_at_least(what, value, least)
        self.select_faces(margin, min_face, max_faces)
        self.detector = make_detector(detector, detector_model, num_threads, detect_size) if isinstance(detector, str) else detector
        self.classifier = model if isinstance(model, EmotionClassifier) else EmotionClassifier(model, num_threads, balance=balance)
        self.tracker = IoUTracker(alpha=smooth)
        self.timings: dict[str, float] = defaultdict(float)  # seconds per stage, summed over frames

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    @property
    def margin(self) -> float:
        """The crop border, as a fraction of the face box: the one given, else the detector's measured margin."""
        return crop_margin(self.detector) if self._margin is None else self._margin

    def select_faces(self, margin: float | None = None, min_face: int = 0, max_faces: int = 0) -> None:
        """Sets which faces are classified and how they are cropped (the constructor's arguments of the same names)."""
        # Downstream a negative max_faces slices faces off the end, a negative margin shrinks the crop to a pixel.
        for what, value in (("min_face", min_face), ("max_faces", max_faces)):
            check_at_least(what, value, 0)
        if margin is not None and not 0 <= margin <= MAX_CROP_MARGIN:
            raise UserError(f"margin={margin} must be in [0, {MAX_CROP_MARGIN}] (a fraction of the face box's side)")
        self._margin, self.min_face, self.max_faces = margin, min_face, max_faces

    def reset(self) -> None:
        """Starts a new stream: track ids begin again at 1."""
        self.tracker = IoUTracker(alpha=self.tracker.alpha)

    def __call__(self, frame, frame_index: int = 0) -> list[FaceResult]:
        """Analyzes one frame: a BGR array as OpenCV gives, or anything ``load_image`` takes (gray, BGRA, floats 0-1, ...)."""
        frame = load_image(frame)
        start = time.perf_counter()
        faces = [f for f in self.detector(frame) if min(f.box[2], f.box[3]) >= self.min_face]
        faces.sort(key=box_area, reverse=True)
        if self.max_faces:
            faces = faces[: self.max_faces]
        detected = time.perf_counter()
        margin = self.margin
        max_side = crop_side(self.classifier.input_size)
        probabilities = self.classifier.predict([crop_face(frame, f, margin, max_side) for f in faces])
        classified = time.perf_counter()
        ids = self.tracker.assign([f.box for f in faces])
        results = []
        for i, (face, track_id, p) in enumerate(zip(faces, ids, probabilities)):
            p = self.tracker.update_probabilities(track_id, p)
            best = int(np.argmax(p))
            emotion = self.labels[best]
            self.tracker.tracks[track_id].history.append((frame_index, emotion))
            results.append(FaceResult(face.box, i, track_id, emotion, float(p[best]), dict(zip(self.labels, map(float, p))), face.score))
        self.timings["detect"] += detected - start
        self.timings["classify"] += classified - detected
        self.timings["track"] += time.perf_counter() - classified
        return results


_per_thread = threading.local()


def _cached_analyzer(detector: str, model: str | EmotionClassifier | None, balance: float, detector_model: str | None) -> FrameAnalyzer:
    # One cache per thread: LiteRT interpreters and the tracker hold the state of the call in progress,
    # so threads sharing an analyzer (a web server's workers) would corrupt each other's results.
    if not hasattr(_per_thread, "analyzers"):
        _per_thread.analyzers = functools.lru_cache(maxsize=4)(FrameAnalyzer)
    return _per_thread.analyzers(detector, model, balance=balance, detector_model=detector_model)


def load_image(image) -> np.ndarray:
    """A BGR uint8 (H, W, 3) array from a path, an image URL, encoded bytes, a binary file, a Pillow image (any mode) or an array.

    A URL (``https://host/photo.jpg``) is read as ``detect --source`` reads one. Bytes, or a file
    opened in binary mode (``io.BytesIO``, a web framework's upload), hold an encoded image, in any
    format a path may name (JPEG, PNG, HEIC, ...). An array is taken in OpenCV's order: BGR, BGRA
    or gray (H, W) or (H, W, 1); uint8 0-255, uint16 0-65535 (16-bit files read unchanged), or
    floats, read as 0-1 when none exceeds 1 (as scikit-image and most ML code hold images). A
    Pillow image of 16 or 32 bits is scaled as ``sources.eight_bit_upright`` says.
    """
    import cv2

    if isinstance(image, (str, Path)):
        return read_image(image)
    if hasattr(image, "read"):  # an open file, or an upload's file object
        image = image.read()
        if isinstance(image, str):
            raise UserError("image: a file opened in text mode; open it in binary mode ('rb')")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image))
    if hasattr(image, "convert"):  # a Pillow image
        return pillow_to_bgr(image)
    frame = np.asarray(image)
    check_pixels(frame, "image")
    frame = as_uint8(frame)
    # The detectors take three channels; gray and BGRA frames become BGR here, once.
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def analyze(
    image,
    detector: str = DEFAULT_DETECTOR,
    model: str | Path | EmotionClassifier | None = None,
    balance: float = 0.0,
    detector_model: str | Path | None = None,
    *,
    min_face: int = 0,
    max_faces: int = 0,
    margin: float | None = None,
) -> list[FaceResult]:
    """Emotions of every face in one image.

    Args:
        image: A file path, an image URL, encoded image bytes or a binary file object (an upload), a Pillow
            image, or an array: BGR, BGRA or gray, uint8 0-255, uint16 0-65535 or floats 0-1.
        detector: Face detector name.
        model: ``.tflite`` path or packaged model name (None: the packaged default), or an
            EmotionClassifier (a third-party model with its labels and value range) of the calling thread.
        balance: Class-prior correction, 0 (training frequencies) to 1 (all emotions equally likely);
            ignored when ``model`` is a classifier, which has its own.
        detector_model: Model file for detectors that need one (YuNet's ``.onnx``).
        min_face: Ignore faces whose box is smaller than this many pixels on a side.
        max_faces: Keep at most this many faces, largest first (0 = all).
        margin: Crop border around the face box, as a fraction of its larger side (0 to 1); None = the
            detector's measured margin.

    Returns:
        One FaceResult per face, largest face first (track ids 1..N).

    Safe to call from several threads at once: each thread loads its own models on its first call.
    """
    # The cache's keys: paths as text; a classifier as itself.
    as_key = lambda value: value if value is None or isinstance(value, EmotionClassifier) else str(value)  # noqa: E731
    analyzer = _cached_analyzer(detector, as_key(model), float(balance), as_key(detector_model))
    analyzer.reset()
    # Set on every call: the cached analyzer keeps the previous call's choice otherwise.
    analyzer.select_faces(margin, min_face, max_faces)
    return analyzer(image)


def analyze_video(
    path: str | Path,
    detector: str = DEFAULT_DETECTOR,
    model: str | Path | EmotionClassifier | None = None,
    every: int = 1,
    smooth: float = 0.5,
    balance: float = 0.0,
    detector_model: str | Path | None = None,
    *,
    min_face: int = 0,
    max_faces: int = 0,
    margin: float | None = None,
) -> Iterator[FrameResult]:
    """Per-frame emotions of a video's faces, with stable track ids and smoothed probabilities.

    Args:
        path: A video file or stream URL.
        detector: Face detector name.
        model: ``.tflite`` path or packaged model name, or an EmotionClassifier.
        every: Analyze every Nth frame.
        smooth: Weight of the newest frame in per-track smoothing (1 = off).
        balance: Class-prior correction, 0 (training frequencies) to 1 (all emotions equally likely).
        detector_model: Model file for detectors that need one (YuNet's ``.onnx``).
        min_face, max_faces, margin: As in ``analyze``.

    Yields:
        One FrameResult per analyzed frame.
    """
    check_at_least("every", every, 1)
    analyzer = FrameAnalyzer(detector, model, smooth=smooth, margin=margin, min_face=min_face, max_faces=max_faces,
                             balance=balance, detector_model=detector_model)
    with open_video(str(path), every=every) as video:
        for frame in video:
            yield FrameResult(frame.index, frame.time_s, analyzer(frame.image, frame.index))
