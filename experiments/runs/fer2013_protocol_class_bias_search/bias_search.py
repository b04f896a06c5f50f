"""Chooses per-class offsets for an ensemble's decision on PublicTest and estimates them by 2-fold cross-validation.

Usage: python bias_search.py [--apply OFFSETS] NAME=predictions.csv [NAME=predictions.csv ...]

Each predictions.csv is `python -m fer_keras.evaluate`'s output for one member (same faces, same order of
classes). The ensemble is the mean of the members' probabilities; its decision is the argmax of the log of that
mean plus one offset per class. Prints the offsets chosen on all faces with their accuracy and the cross-validated
estimate (offsets chosen on one half, faces in file-name order alternately, scored on the other half). With
``--apply`` (comma-separated offsets in the files' class order) it only scores those offsets and no offsets.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fer2013_protocol_share_search"))
from search import fail, read_members  # noqa: E402  (the sibling experiment's reader, not a copy of it)

OFFSETS = np.round(np.arange(-1.0, 1.0001, 0.05), 2)  # candidate offsets per class, in log-probability
MAX_SWEEPS = 20


def correct(log_mean: np.ndarray, targets: np.ndarray, offsets: np.ndarray) -> int:
    """Faces whose offset argmax is their label."""
    return int(((log_mean + offsets).argmax(axis=1) == targets).sum())


def choose_offsets(log_mean: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Coordinate ascent from zero: each class's offset moves only on a strict gain, until a sweep changes nothing."""
    offsets = np.zeros(log_mean.shape[1])
    best = correct(log_mean, targets, offsets)
    for _ in range(MAX_SWEEPS):
        moved = False
        for k in range(len(offsets)):
            for value in OFFSETS:
                trial = offsets.copy()
                trial[k] = value
                right = correct(log_mean, targets, trial)
                if right > best:
                    best, offsets, moved = right, trial, True
        if not moved:
            break
    return offsets


def offsets_text(classes: list[str], offsets: np.ndarray) -> str:
    """The offsets as `class +0.10, ...`."""
    return ", ".join(f"{name} {value:+.2f}" for name, value in zip(classes, offsets))


def main(argv: list[str]) -> None:
    applied = None
    if argv[:1] == ["--apply"]:
        applied, argv = np.array([float(value) for value in argv[1].split(",")]), argv[2:]
    if not argv or not all("=" in pair for pair in argv):
        fail("usage: python bias_search.py [--apply OFFSETS] NAME=predictions.csv [...]")
    names, probabilities, targets, classes = read_members(argv)
    log_mean = np.log(np.maximum(probabilities.mean(axis=0), 1e-12))
    total = len(targets)
    plain = correct(log_mean, targets, np.zeros(len(classes)))
    print(f"{' + '.join(names)}, equal shares, no offsets: {plain / total:.2%} ({plain} of {total})")
    if applied is not None:
        right = correct(log_mean, targets, applied)
        print(f"offsets {offsets_text(classes, applied)}: {right / total:.2%} ({right} of {total})")
        return
    chosen = choose_offsets(log_mean, targets)
    right = correct(log_mean, targets, chosen)
    print(f"chosen on all faces: {offsets_text(classes, chosen)} -> {right / total:.2%} ({right})")
    halves = [np.arange(total) % 2 == parity for parity in (0, 1)]
    held_out = 0
    for choose, score in (halves, halves[::-1]):
        half_offsets = choose_offsets(log_mean[choose], targets[choose])
        right = correct(log_mean[score], targets[score], half_offsets)
        held_out += right
        print(f"chosen on one half: {offsets_text(classes, half_offsets)} -> {right / score.sum():.2%} on the other "
              f"(no offsets there: {correct(log_mean[score], targets[score], np.zeros(len(classes))) / score.sum():.2%})")
    print(f"cross-validated estimate: {held_out / total:.2%} ({held_out} of {total})")


if __name__ == "__main__":
    main(sys.argv[1:])
