"""Checks the shipped RGB files (tflite/*/rgb/) in MediaPipe Tasks' ImageClassifier, and against the grayscale files.

MediaPipe is not a dependency of fer_keras (it pins its own OpenCV and protobuf), so this runs in a
scratch virtual environment with MediaPipe, the runtime's dependencies and this checkout on the path:

    python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe ai-edge-litert scipy pillow pillow-heif pyyaml tqdm matplotlib
    PYTHONPATH=. /tmp/mpvenv/bin/python experiments/benchmarks/rgb_tasks_check.py ../shared/datasets/fer2013 experiments/benchmarks/rgb_tasks_check.json

Three checks per tier, printed and written as JSON:
1. The same crops: every 7th FER2013 test face (1,026 of 7,178, sorted paths), given to MediaPipe's
   ImageClassifier as a 48x48 RGB image, against our runtime's probabilities from the same file
   (largest absolute difference).
2. RGB against grayscale: our runtime on the RGB file and on the grayscale file, same faces (top-1
   agreement and largest difference).
3. Whole photo with a region of interest, as tflite/README.md tells app developers to call it: the
   faces our pipeline finds in tests/data/multiface.jpg, each given to MediaPipe as the square of 1.2x
   the box's larger side around the box's centre (no eye levelling, which a region cannot do),
   against our pipeline's labels and scores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision
from mediapipe.tasks.python.components.containers.rect import RectF

import fer_keras
from fer_keras.runtime import EmotionClassifier

REPO = Path(__file__).resolve().parents[2]
TIERS = {
    "accurate": ("tflite/accurate/fer_keras_accurate_int8.tflite", "tflite/accurate/rgb/fer_keras_accurate_rgb_int8.tflite"),
    "fast": ("tflite/fast/fer_keras_fast_int8.tflite", "tflite/fast/rgb/fer_keras_fast_rgb_int8.tflite"),
}
PHOTO = REPO / "tests" / "data" / "multiface.jpg"
EVERY = 7
ROI_SIDE = 1.2  # the square tflite/README.md's recipe gives MediaPipe: 1.2x the box's larger side


def mediapipe_probabilities(classifier, rgb: np.ndarray, labels: list[str], roi: RectF | None = None) -> np.ndarray:
    """MediaPipe's scores for every label, in ``labels`` order."""
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    options = vision.ImageProcessingOptions(region_of_interest=roi) if roi else None
    categories = classifier.classify(image, image_processing_options=options).classifications[0].categories
    scores = {category.category_name: category.score for category in categories}
    return np.array([scores[label] for label in labels], np.float32)


def predict_in_batches(model: EmotionClassifier, faces: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Our runtime's probabilities for ``faces`` (BGR crops), through the public ``predict``, ``batch`` faces per invoke."""
    return np.concatenate([model.predict(faces[i : i + batch]) for i in range(0, len(faces), batch)])


def check_tier(gray_file: Path, rgb_file: Path, faces: list[np.ndarray]) -> dict:
    """The three checks of the module docstring for one tier's grayscale and RGB files, on ``faces`` (BGR crops)."""
    gray_model, rgb_model = EmotionClassifier(gray_file), EmotionClassifier(rgb_file)
    labels = list(rgb_model.labels)
    classifier = vision.ImageClassifier.create_from_options(
        vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(rgb_file)), max_results=-1)
    )
    ours_rgb, ours_gray = predict_in_batches(rgb_model, faces), predict_in_batches(gray_model, faces)
    theirs = np.stack([mediapipe_probabilities(classifier, cv2.cvtColor(face, cv2.COLOR_BGR2RGB), labels) for face in faces])

    photo = cv2.imread(str(PHOTO))
    photo_rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    height, width = photo.shape[:2]
    roi_faces = []
    for face in fer_keras.analyze(photo, model=str(gray_file)):
        x, y, w, h = face.box
        half = ROI_SIDE * max(w, h) / 2
        centre_x, centre_y = x + w / 2, y + h / 2
        roi = RectF(left=(centre_x - half) / width, top=(centre_y - half) / height, right=(centre_x + half) / width, bottom=(centre_y + half) / height)
        scores = mediapipe_probabilities(classifier, photo_rgb, labels, roi)
        roi_faces.append({
            "box": list(face.box),
            "ours": face.emotion,
            "ours_score": round(face.score, 4),
            "mediapipe": labels[int(scores.argmax())],
            "mediapipe_score": round(float(scores.max()), 4),
        })
    return {
        "faces": len(faces),
        "mediapipe_vs_ours_rgb_max_abs_diff": float(np.abs(theirs - ours_rgb).max()),
        "mediapipe_vs_ours_rgb_top1_agreement": float((theirs.argmax(1) == ours_rgb.argmax(1)).mean()),
        "rgb_vs_gray_top1_agreement": float((ours_rgb.argmax(1) == ours_gray.argmax(1)).mean()),
        "rgb_vs_gray_max_abs_diff": float(np.abs(ours_rgb - ours_gray).max()),
        "photo": PHOTO.name,
        "photo_labels_agree": sum(f["ours"] == f["mediapipe"] for f in roi_faces),
        "photo_max_score_diff": max((abs(f["ours_score"] - f["mediapipe_score"]) for f in roi_faces), default=0.0),
        "photo_faces": roi_faces,
    }


def main(data_dir: str, out: str) -> None:
    paths = sorted((Path(data_dir) / "test").glob("*/*.jpg"))[::EVERY]
    faces = [cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR) for path in paths]
    report = {"mediapipe": mp.__version__, "command": " ".join(["rgb_tasks_check.py", *sys.argv[1:]])}
    for tier, (gray_file, rgb_file) in TIERS.items():
        report[tier] = {"gray_file": gray_file, "rgb_file": rgb_file, **check_tier(REPO / gray_file, REPO / rgb_file, faces)}
        summary = {key: value for key, value in report[tier].items() if key != "photo_faces"}
        print(tier, json.dumps(summary, indent=1))
    Path(out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
