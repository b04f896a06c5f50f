"""Drawing results on frames: box, emotion, confidence, track id, FPS. Imports no TensorFlow."""

from __future__ import annotations

import numpy as np

from fer_keras.api import FaceResult

# BGR colours per canonical emotion; other labels get grey.
COLORS = {
    "angry": (40, 40, 230),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 250),
    "neutral": (200, 200, 200),
    "sad": (200, 120, 40),
    "surprise": (40, 220, 120),
    "contempt": (120, 80, 200),
}


def annotate(frame: np.ndarray, faces: list[FaceResult], fps: float | None = None) -> np.ndarray:
    """Returns a copy of ``frame`` with each face's box and ``emotion 87% #id``, and the FPS when given."""
    import cv2

    canvas = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(max(canvas.shape[:2]) / 640))
    font_scale = 0.45 * thickness
    for face in faces:
        x, y, w, h = face.box
        color = COLORS.get(face.emotion, (160, 160, 160))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thickness + 1)
        text = f"{face.emotion} {face.score:.0%} #{face.track_id}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, y - th - baseline - 4)
        cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + baseline + 4), color, -1)
        cv2.putText(canvas, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(canvas, f"{fps:.0f} FPS", (8, 24 * thickness), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * thickness, (0, 255, 0), thickness + 1, cv2.LINE_AA)
    return canvas
