"""Drawing results on frames: box, emotion, confidence, track id, FPS. Imports no TensorFlow."""

from __future__ import annotations

import functools

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
        _label(canvas, f"{face.emotion} {face.score:.0%} #{face.track_id}", x, y, color, font_scale, thickness)
    if fps is not None:
        cv2.putText(canvas, f"{fps:.0f} FPS", (8, 24 * thickness), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * thickness, (0, 255, 0), thickness + 1, cv2.LINE_AA)
    return canvas


def _label(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], font_scale: float, thickness: int) -> None:
    """Draws ``text`` in black on a box of ``color`` just above (x, y).

    OpenCV's fonts draw ASCII alone (``überrascht`` came out as ``?berrascht``), so labels of one's
    own classes in other scripts are drawn with Pillow in DejaVu Sans, which ships with Matplotlib
    (Latin, Greek, Cyrillic; other scripts show as empty boxes).
    """
    import cv2

    if text.isascii():
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, y - height - baseline - 4)
        cv2.rectangle(canvas, (x, top), (x + width + 4, top + height + baseline + 4), color, -1)
        cv2.putText(canvas, text, (x + 2, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
        return
    from PIL import Image, ImageDraw

    font = _unicode_font(round(31 * font_scale))  # the size at which its text is as wide as OpenCV's
    left, upper, right, lower = font.getbbox(text)
    top = max(0, y - (lower - upper) - 8)
    cv2.rectangle(canvas, (x, top), (x + right - left + 4, top + lower - upper + 8), color, -1)
    region = canvas[top : top + lower - upper + 8, x : x + right - left + 4]
    if region.size:
        image = Image.fromarray(np.ascontiguousarray(region[..., ::-1]))
        ImageDraw.Draw(image).text((2 - left, 4 - upper), text, font=font, fill=(0, 0, 0))
        region[...] = np.asarray(image)[..., ::-1]


@functools.cache
def _unicode_font(size: int):
    """Matplotlib's DejaVu Sans at ``size`` pixels."""
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
