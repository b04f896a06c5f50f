"""How to lay out flip test-time augmentation in an int8 ensemble: two passes, or one over a stacked batch.

    python experiments/benchmarks/flip_layout.py      # writes experiments/benchmarks/flip_layout.{md,json}

Two pairs, with seeded untrained weights (latency does not depend on them), 8 classes, 48x48 grayscale:
the accurate tier's (ResNet-SE width 32 + VGG) and the stronger pair it was chosen over for taking
3.02 ms (ResNet-SE + VGG width 48). Each pair is averaged with flip in both layouts:
``two passes`` (every member called on the input and on its mirror: the shipped accurate tier's graph)
and ``stacked`` (``fer_keras.ensemble.average_models``: one call on [x; mirror(x)]). Each is exported
to int8 and timed through EmotionClassifier at batch 1 on one thread, in interleaved rounds so that
both see the same machine load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np

from fer_keras.benchmark import cpu_name, time_classifier, write_results
from fer_keras.ensemble import average_models
from fer_keras.export import convert
from fer_keras.models import build_model
from fer_keras.models.common import HorizontalMirror

ROUNDS, REPEATS = 5, 200


PAIRS = {"ResNet-SE + VGG": 0, "ResNet-SE + VGG-48": 48}  # the VGG's width (0: its default, 32)


def members(vgg_width: int) -> list[keras.Model]:
    keras.utils.set_random_seed(0)
    return [build_model("resnet_se", 8, width=32, dropout=0.3), build_model("vgg", 8, dropout=0.4, width=vgg_width)]


def two_passes(models: list[keras.Model]) -> keras.Model:
    inputs = keras.Input((48, 48, 1))
    views = [inputs, HorizontalMirror()(inputs)]
    return keras.Model(inputs, keras.layers.Average()([model(view) for model in models for view in views]))


def main() -> None:
    calibration = np.random.default_rng(0).integers(0, 256, (50, 48, 48, 1)).astype(np.float32)
    layouts = {}
    for pair, width in PAIRS.items():
        layouts[f"{pair}, two passes"] = two_passes(members(width))
        layouts[f"{pair}, stacked"] = average_models(members(width), flip=True)
    times: dict[str, list[float]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {}
        for name, model in layouts.items():
            paths[name] = Path(scratch) / f"layout{len(paths)}.tflite"
            paths[name].write_bytes(convert(model, "int8", "uint8", calibration))
        for _ in range(ROUNDS):
            for name, path in paths.items():
                times[name].append(time_classifier(path, batch=1, threads=1, repeats=REPEATS))
        sizes = {name: round(path.stat().st_size / 1024, 1) for name, path in paths.items()}
    rows = [{"layout": name, "size_kb": sizes[name], "ms/face b1 t1 (median of rounds)": round(float(np.median(t)), 4),
             "rounds": ", ".join(f"{x:.3f}" for x in t)} for name, t in times.items()]
    header = (f"Pairs with flip, int8, batch 1, one thread; {ROUNDS} interleaved rounds of {REPEATS} timed invokes. "
              f"CPU: {cpu_name()}. Command: python experiments/benchmarks/flip_layout.py")
    write_results(Path(__file__).parent, "flip_layout", rows, header)


if __name__ == "__main__":
    main()
