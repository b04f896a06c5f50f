"""Chooses ensemble shares on PublicTest and estimates them honestly by 2-fold cross-validation.

Usage: python search.py NAME=predictions.csv [NAME=predictions.csv ...]

Each predictions.csv is `python -m fer_keras.evaluate --split val`'s output for one member (same faces, same
order of classes). Prints the shares chosen on all of PublicTest with their accuracy, and the cross-validated
estimate: shares chosen on one half (faces in file-name order, alternately) scored on the other half.
"""
import csv
import itertools
import sys
from typing import NoReturn

import numpy as np

GRID_STEPS = 10  # shares in steps of 0.1


def fail(message: str) -> NoReturn:
    """Ends with a one-line message on stderr and exit code 2 (bad input)."""
    print(message, file=sys.stderr)
    sys.exit(2)


def read_member(path: str) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Returns (files, labels, probabilities, class names) of one member's predictions.csv, in file-name order."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        classes = header[4:]
        rows = sorted(reader)
    files = [row[0] for row in rows]
    labels = [row[1] for row in rows]
    return files, labels, np.array([[float(value) for value in row[4:]] for row in rows]), classes


def share_grid(count: int) -> np.ndarray:
    """All share vectors in steps of 1/GRID_STEPS that sum to 1, nearest equal shares first (the tie-break)."""
    points = [p for p in itertools.product(range(GRID_STEPS + 1), repeat=count) if sum(p) == GRID_STEPS]
    grid = np.array(points, dtype=float) / GRID_STEPS
    return grid[np.argsort(np.abs(grid - 1.0 / count).sum(axis=1), kind="stable")]


def correct_by_shares(probabilities: np.ndarray, targets: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Faces right for each grid point: probabilities (members, faces, classes), targets (faces,)."""
    mixed = np.einsum("gm,mfc->gfc", grid, probabilities)
    return (mixed.argmax(axis=2) == targets).sum(axis=1)


def shares_text(names: tuple[str, ...], shares: np.ndarray) -> str:
    """The shares as `NAME 0.3, NAME 0.2, ...`."""
    return ", ".join(f"{name} {share:.1f}" for name, share in zip(names, shares))


def read_members(pairs: list[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, list[str]]:
    """Returns (names, probabilities (members, faces, classes), targets (faces,), class names) of NAME=path pairs.

    Ends with a one-line error (exit code 2) when a file cannot be read or the files cover different faces or classes.
    """
    names, members = zip(*(pair.split("=", 1) for pair in pairs))
    try:
        loaded = [read_member(path) for path in members]
    except OSError as error:
        fail(f"error: {error.filename}: {error.strerror}")
    files, labels, _, classes = loaded[0]
    for other_files, _, _, other_classes in loaded[1:]:
        if other_files != files or other_classes != classes:
            fail("error: the members' predictions.csv files cover different faces or classes")
    return names, np.stack([member[2] for member in loaded]), np.array([classes.index(label) for label in labels]), classes


def main(pairs: list[str]) -> None:
    if len(pairs) < 2 or not all("=" in pair for pair in pairs):
        fail("usage: python search.py NAME=predictions.csv NAME=predictions.csv [...] (two members at least)")
    names, probabilities, targets, _ = read_members(pairs)
    grid = share_grid(len(names))
    for name, member_probabilities in zip(names, probabilities):
        print(f"{name}: {(member_probabilities.argmax(axis=1) == targets).mean():.2%} alone")
    equal = correct_by_shares(probabilities, targets, np.full((1, len(names)), 1.0 / len(names)))[0]
    print(f"equal shares: {equal / len(targets):.2%} ({equal} of {len(targets)})")
    correct = correct_by_shares(probabilities, targets, grid)
    best = int(np.argmax(correct))
    print(f"chosen on all faces: {shares_text(names, grid[best])} -> {correct[best] / len(targets):.2%} ({correct[best]})")
    halves = [np.arange(len(targets)) % 2 == parity for parity in (0, 1)]
    held_out_correct = 0
    for choose, score in (halves, halves[::-1]):
        chosen = grid[int(np.argmax(correct_by_shares(probabilities[:, choose], targets[choose], grid)))]
        right = int(correct_by_shares(probabilities[:, score], targets[score], chosen[None])[0])
        held_out_correct += right
        print(f"chosen on one half: {shares_text(names, chosen)} -> {right / score.sum():.2%} on the other")
    print(f"cross-validated estimate: {held_out_correct / len(targets):.2%} ({held_out_correct} of {len(targets)})")


if __name__ == "__main__":
    main(sys.argv[1:])
