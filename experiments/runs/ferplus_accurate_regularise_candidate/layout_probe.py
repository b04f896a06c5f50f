"""Fill release 0.6.0's accurate-tier layout with every available network, and ask how much of the best filling's lead is chance.

    python experiments/runs/ferplus_accurate_regularise_candidate/layout_probe.py CACHE RESNET.keras... -- VGG.keras...

The layout: one ResNet-SE on the face and its mirror at one half, two VGGs on the face at one quarter
each (the architectures and views fix its cost: 0.6.0's). Each network's FERPlus validation
probabilities (face only, and face and mirror averaged) are cached in CACHE as <run folder>.npz, so
a rerun scores without predicting again. Printed: each network's accuracy, every filling's, the
best filling's wins and losses against the first filling (pass 0.6.0's members first), and a
split-half check: choose the best filling on one random half of validation and score it on the
other half against the first filling (500 halves, seed 0).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from fer_keras.evaluate import run_validation_views

DATA_DIR = "../shared/datasets/fer2013"


def cached_probabilities(cache: Path, paths: list[Path]) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Validation labels, and each network's probabilities by view (predicted once, then read from ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    labels_file = cache / "labels.npy"
    probabilities = {}
    for path in paths:
        file = cache / f"{path.parent.name}.npz"
        if not file.is_file() or not labels_file.is_file():
            labels, views = run_validation_views(path, DATA_DIR)
            np.save(labels_file, labels)
            np.savez(file, **views)
        probabilities[path.parent.name] = dict(np.load(file))
    return np.load(labels_file), probabilities


def main() -> None:
    cache, rest = Path(sys.argv[1]), sys.argv[2:]
    split = rest.index("--")
    resnets, vggs = [Path(p) for p in rest[:split]], [Path(p) for p in rest[split + 1 :]]
    labels, probabilities = cached_probabilities(cache, resnets + vggs)
    for name, views in probabilities.items():
        print(f"{name}: face {np.mean(views['original'].argmax(1) == labels):.4f}, face and mirror {np.mean(views['both'].argmax(1) == labels):.4f}")
    fillings = [(r.parent.name, a.parent.name, b.parent.name) for r in resnets for a, b in itertools.combinations(vggs, 2)]
    correct = np.array([
        (0.5 * probabilities[r]["both"] + 0.25 * probabilities[a]["original"] + 0.25 * probabilities[b]["original"]).argmax(1) == labels
        for r, a, b in fillings
    ])
    for filling, right in sorted(zip(fillings, correct), key=lambda item: -item[1].mean()):
        print(f"{right.mean():.4f}  {' + '.join(filling)}")
    best, first = correct[correct.mean(1).argmax()], correct[0]
    print(f"best against the first filling: {best.mean():.4f} vs {first.mean():.4f}, wins {(best & ~first).sum()}, losses {(~best & first).sum()}")
    rng, gains = np.random.default_rng(0), []
    for _ in range(500):
        half = rng.permutation(len(labels)) < len(labels) // 2
        chosen = correct[:, half].mean(1).argmax()
        gains.append(correct[chosen, ~half].mean() - first[~half].mean())
    print(f"split-half: chosen on one half, scored on the other: {100 * np.mean(gains):+.2f} points against the first filling "
          f"(standard deviation {100 * np.std(gains):.2f}, 500 halves)")


if __name__ == "__main__":
    main()
