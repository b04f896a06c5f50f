"""Score the resolution round's networks, and release 0.11.0's accurate-tier layout filled with each, on FERPlus validation.

    python experiments/runs/ferplus_resolution_round/probe.py CACHE VGG_A.keras VGG_B.keras -- RESNET.keras...

Each network reads validation at its own input size (its run's config.yaml: the loader upsamples the
48-pixel faces for a 64 network, as it did in training). Its probabilities on the face, and on the face
and mirror averaged, are cached in CACHE as <run folder>.npz. Printed: each network's accuracy with
both views, then 0.11.0's layout (the ResNet-SE on the face at one half, the two VGGs on the face at
one quarter each) with each ResNet-SE in turn, the first being 0.11.0's own member, and the wins and
losses of each filling against that first one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fer_keras.evaluate import run_validation_views

DATA_DIR = "../shared/datasets/fer2013"


def cached_probabilities(cache: Path, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validation labels and one network's probabilities by view, predicted once at the network's input size."""
    file = cache / f"{path.parent.name}.npz"
    if not file.is_file():
        labels, views = run_validation_views(path, DATA_DIR)
        np.savez(file, labels=labels, **views)
    stored = dict(np.load(file))
    return stored.pop("labels"), stored


def main() -> None:
    cache, rest = Path(sys.argv[1]), sys.argv[2:]
    split = rest.index("--")
    vggs, resnets = [Path(p) for p in rest[:split]], [Path(p) for p in rest[split + 1 :]]
    cache.mkdir(parents=True, exist_ok=True)
    probabilities, labels = {}, None
    for path in vggs + resnets:
        labels, probabilities[path.parent.name] = cached_probabilities(cache, path)
        views = probabilities[path.parent.name]
        print(f"{path.parent.name}: face {np.mean(views['original'].argmax(1) == labels):.4f}, "
              f"face and mirror {np.mean(views['both'].argmax(1) == labels):.4f}")
    vgg_part = sum(0.25 * probabilities[v.parent.name]["original"] for v in vggs)
    correct = {r.parent.name: (0.5 * probabilities[r.parent.name]["original"] + vgg_part).argmax(1) == labels for r in resnets}
    first = correct[resnets[0].parent.name]
    for name, right in correct.items():
        print(f"layout with {name}: {right.mean():.4f}, against the first: wins {(right & ~first).sum()}, losses {(~right & first).sum()}")


if __name__ == "__main__":
    main()
