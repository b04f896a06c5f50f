"""Shared fixtures: tiny synthetic labelled face folders, made fresh per session."""

from __future__ import annotations

import json
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
    """A 'face' whose class is the orientation of a bright band on noise: horizontal, vertical, or both (a cross).

    Orientation survives global pooling, so even the tiny test model learns it in a few epochs.
    """
    image = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
    at = int(rng.integers(8, size - 16))
    if class_index in (0, 2):
        image[at : at + 8, 4:-4] = 220
    if class_index in (1, 2):
        image[4:-4, at : at + 8] = 220
    return image


def flat_faces(n: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Faces (n, 48, 48, 1) where face i is grey level ``i * step`` everywhere and has class i, so every pixel of a mixed face says whose it is."""
    levels = np.arange(n) * step
    return np.broadcast_to(levels[:, None, None, None], (n, 48, 48, 1)).astype(np.float32), np.eye(n, dtype=np.float32)


def pixel_shares(faces: np.ndarray, n: int, step: int = 1) -> np.ndarray:
    """(N, n): the share of each face's pixels at each of ``flat_faces``' grey levels."""
    return np.stack([(faces == level).mean(axis=(1, 2, 3)) for level in np.arange(n) * step], axis=1)


def write_class_folders(root: Path, per_class: int, seed: int, classes=SYNTHETIC_CLASSES) -> None:
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_face(k, rng)).save(folder / f"{name}_{i:03d}.png")


def write_kaggle_fer2013(root: Path) -> Path:
    """FER2013 as Kaggle lays it out at ``root``: train/ (10 synthetic faces a class) and test/ (2 PublicTest and 4 PrivateTest a class)."""
    write_class_folders(root / "train", per_class=10, seed=0)
    write_class_folders(root / "test", per_class=6, seed=1)
    for image in sorted((root / "test").glob("*/*.png")):
        number = int(image.stem.rsplit("_", 1)[1])
        image.rename(image.with_name(f"{'PublicTest' if number < 2 else 'PrivateTest'}_{image.parent.name}{number}.png"))
    return root


def write_ferplus_layout(root: Path, rows: dict[str, list[tuple[str, tuple[int, ...], np.ndarray | None]]]) -> None:
    """FERPlus's own layout as Microsoft's generate_training_data.py writes it: per usage folder, the PNGs and a header-less label.csv.

    Args:
        root: The base folder.
        rows: Per folder (``FER2013Train``, …), each face's file name, its ten vote counts, and its
            image (None: listed in label.csv without a file).
    """
    for folder, faces in rows.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        lines = [f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}' for name, votes, _ in faces]
        (root / folder / "label.csv").write_text("\n".join(lines) + "\n")
        for name, _, image in faces:
            if image is not None:
                Image.fromarray(image).save(root / folder / name)


def synthetic_ferplus_rows(test_per_class: int, seed: int) -> dict[str, list]:
    """``write_ferplus_layout`` rows of synthetic faces, ten votes each for its class (angry, happy or sad): one per class in train and validation."""
    rng = np.random.default_rng(seed)
    votes = {"angry": (0, 0, 0, 0, 10, 0, 0, 0, 0, 0), "happy": (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "sad": (0, 0, 0, 10, 0, 0, 0, 0, 0, 0)}
    return {folder: [(f"fer{folder[7:]}{k}{i}.png", votes[name], synthetic_face(k, rng)) for k, name in enumerate(SYNTHETIC_CLASSES) for i in range(n)]
            for folder, n in (("FER2013Train", 1), ("FER2013Valid", 1), ("FER2013Test", test_per_class))}


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


def tiny_run_config(face_folder: Path, tmp_path: Path, *extra: str):
    """A quick experiment config for the tiny model on the synthetic folder; ``extra`` overrides come last and win."""
    from fer_keras.config import ExperimentConfig, apply_overrides

    return apply_overrides(
        ExperimentConfig(),
        [
            f"output_dir={tmp_path / 'runs'}",
            f"data.data_dir={face_folder}",
            "data.label_set=folder",
            "data.batch_size=16",
            "data.val_fraction=0.25",
            "model.name=tiny",
            "train.epochs=3",
            "train.learning_rate=0.01",
            *extra,
        ],
    )


def copy_run(run_dir: Path, dest: Path, settings: dict[str, object]) -> Path:
    """A copy of the run folder ``run_dir`` at ``dest``, its config.yaml with ``settings`` ("section.key": value) changed."""
    import shutil

    import yaml

    shutil.copytree(run_dir, dest)
    config = yaml.safe_load((dest / "config.yaml").read_text())
    for name, value in settings.items():
        section, key = name.split(".")
        config[section][key] = value
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    return dest


def tiny_run_at_64(run_dir: Path, dest: Path) -> Path:
    """best.keras of a copy of ``run_dir`` as a run at model.image_size=64 leaves it: a fresh 64-pixel tiny model (seed 3)."""
    import keras

    from fer_keras.models import build_model

    copy_run(run_dir, dest, {"model.image_size": 64})
    keras.utils.set_random_seed(3)
    build_model("tiny", len(SYNTHETIC_CLASSES), (64, 64, 1), width=4).save(dest / "best.keras")
    return dest / "best.keras"


BROKEN_FILES = {"zero_bytes.jpg", "notes.txt", "truncated.png", "garbage.jpg"}


@pytest.fixture(scope="session")
def trained_tiny(face_folder):
    """The tiny model trained on the synthetic folder: (model, labels, test images, test labels)."""
    import keras

    from fer_keras.data import load_dataset
    from fer_keras.models import build_model

    keras.utils.set_random_seed(0)
    dataset = load_dataset("folder", face_folder, val_fraction=0)
    train, test = dataset.splits["train"], dataset.splits["test"]
    model = build_model("tiny", len(dataset.labels), width=16)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.images.astype("float32"), train.targets, epochs=40, batch_size=32, verbose=0)
    accuracy = (model.predict(test.images, verbose=0).argmax(1) == test.labels).mean()
    assert accuracy >= 0.9, f"the synthetic task should be learnable, got {accuracy:.2f}"
    return model, dataset.labels, test.images, test.labels


@pytest.fixture(scope="session")
def tiny_keras_run(trained_tiny, tmp_path_factory) -> Path:
    """The tiny model saved as a training run leaves it: `best.keras` with its labels in `metrics.json` beside it."""
    model, labels, _, _ = trained_tiny
    run = tmp_path_factory.mktemp("tiny_run")
    model.save(run / "best.keras")
    (run / "metrics.json").write_text(json.dumps({"labels": list(labels)}))
    return run / "best.keras"


@pytest.fixture(scope="session")
def two_tiny_runs(face_folder, tmp_path_factory) -> list[Path]:
    """best.keras of two one-epoch runs of the tiny model in their run folders: one architecture, seeds 1 and 2."""
    from fer_keras.array_trainer import run_accelerated

    root = tmp_path_factory.mktemp("two_runs")
    return [run_accelerated(tiny_run_config(face_folder, root, f"name=run{seed}", "train.epochs=1", f"train.seed={seed}")) / "best.keras" for seed in (1, 2)]
