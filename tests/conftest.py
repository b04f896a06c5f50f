"""Shared fixtures: tiny synthetic labelled face folders, made fresh per session."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

SYNTHETIC_CLASSES = ("angry", "happy", "sad")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def synthetic_face(class_index: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A 'face' whose class is a bright horizontal band at a class-specific height, on noise."""
    image = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
    top = 6 + class_index * 14
    image[top : top + 8, 4:-4] = 220
    return image


def write_class_folders(root: Path, per_class: int, seed: int, classes=SYNTHETIC_CLASSES) -> None:
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_face(k, rng)).save(folder / f"{name}_{i:03d}.png")


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory) -> Path:
    """A Kaggle-style root: train/ and test/ with three learnable classes, plus four broken files in train/."""
    root = tmp_path_factory.mktemp("faces")
    write_class_folders(root / "train", per_class=40, seed=0)
    write_class_folders(root / "test", per_class=12, seed=1)
    (root / "train" / "angry" / "zero_bytes.jpg").write_bytes(b"")
    (root / "train" / "happy" / "notes.txt").write_text("not an image")
    good = (root / "train" / "sad" / "sad_000.png").read_bytes()
    (root / "train" / "sad" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "happy" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(64))
    return root


BROKEN_FILES = {"zero_bytes.jpg", "notes.txt", "truncated.png", "garbage.jpg"}
