"""Which crop margin makes a detector's face crop look like FER2013's own framing?

The emotion models learn from FER2013's 48x48 crops, so at run time the face crop should frame
the face the same way. Each detector draws its box differently (BlazeFace: square, brow to chin;
YuNet and MTCNN: tall, hairline to chin), so one margin cannot suit all. This script upsamples
FERPlus test faces 4x, pads them with grey so the detector has context, detects, and reports:

- the margin that would reproduce the original crop exactly (``side / box's larger side - 1``),
  and the original centre's offset from the box centre, as fractions of the box's larger side;
- the shipped classifier's accuracy on the detected faces when cropped with ``crop_face`` at
  several margins, beside its accuracy on the original 48x48 crops of the same faces.

Margins beyond the original crop reach into the grey padding, which a real photo would fill
with hair and background; the framing statistics are the cleaner evidence.

Usage (from the repository root):
    python experiments/framing/measure_framing.py --detector yunet --detector-model ../shared/models/yunet/yunet_s_640_640.onnx
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from fer_keras.config import load_config
from fer_keras.data import load_for_experiment
from fer_keras.faces import crop_face, make_detector
from fer_keras.runtime import EmotionClassifier

UPSAMPLE, PAD = 4, 96


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--detector-model", help="the detector's model file (YuNet's .onnx)")
    parser.add_argument("--data-dir", default="../shared/datasets/fer2013")
    parser.add_argument("--count", type=int, default=1000, help="test faces drawn at random (seed 0)")
    parser.add_argument("--margins", default="0,0.1,0.2,0.3")
    args = parser.parse_args()

    config = load_config(None, ["data.label_set=ferplus", f"data.data_dir={args.data_dir}"])
    test = load_for_experiment(config, with_test=True).splits["test"]
    chosen = np.random.default_rng(0).permutation(len(test.images))[: args.count]
    detector = make_detector(args.detector, args.detector_model)
    classifier = EmotionClassifier()
    side = 48 * UPSAMPLE
    framing, frames, faces, kept = [], [], [], []
    for index in chosen:
        face_image = cv2.resize(test.images[index, :, :, 0], (side, side), interpolation=cv2.INTER_CUBIC)
        frame = cv2.cvtColor(cv2.copyMakeBorder(face_image, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=128), cv2.COLOR_GRAY2BGR)
        centre = PAD + side / 2
        # The face the image was cut around is the one whose box centre lies inside the original crop.
        inside = [f for f in detector(frame) if PAD <= f.box[0] + f.box[2] / 2 <= PAD + side and PAD <= f.box[1] + f.box[3] / 2 <= PAD + side]
        if not inside:
            continue
        face = max(inside, key=lambda f: f.score)
        x, y, w, h = face.box
        larger = max(w, h)
        framing.append((side / larger - 1, (centre - x - w / 2) / larger, (centre - y - h / 2) / larger, w / h))
        frames.append(frame)
        faces.append(face)
        kept.append(index)
    stats = np.array(framing)
    truth = test.targets[kept].argmax(1)
    print(f"{args.detector}: found a face in {len(kept)} of {len(chosen)} test images")
    for name, column in zip(("exact margin", "centre dx", "centre dy", "box w/h"), stats.T):
        print(f"  {name:12s} median {np.median(column):+.3f}  (quartiles {np.percentile(column, 25):+.3f} .. {np.percentile(column, 75):+.3f})")
    original = classifier.predict_many(test.images[kept]).argmax(1)
    print(f"  accuracy on the original 48x48 crops: {(original == truth).mean():.4f}")
    for margin in map(float, args.margins.split(",")):
        predicted = classifier.predict([crop_face(frame, face, margin) for frame, face in zip(frames, faces)]).argmax(1)
        print(f"  accuracy with crop_face margin {margin:.2f}: {(predicted == truth).mean():.4f}")


if __name__ == "__main__":
    main()
