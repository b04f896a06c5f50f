"""Ensembles: averaging members (and their mirrored views) in one savable model."""

import numpy as np
import pytest
import keras

from fer_keras.ensemble import average_models, build_ensemble
from fer_keras.errors import UserError
from fer_keras.models import build_model


def _members():
    keras.utils.set_random_seed(0)
    return [build_model("tiny", 3, width=4), build_model("tiny", 3, width=6)]


def test_ensemble_averages_members_and_their_mirrors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.float32)
    members = _members()
    plain = [m.predict(images, verbose=0) for m in members]
    mirrored = [m.predict(images[:, :, ::-1], verbose=0) for m in members]
    assert np.allclose(average_models(members).predict(images, verbose=0), np.mean(plain, axis=0), atol=1e-6)
    with_flip = average_models(members, flip=True)
    assert np.allclose(with_flip.predict(images, verbose=0), np.mean(plain + mirrored, axis=0), atol=1e-6)
    with_flip.save(tmp_path / "ensemble.keras")
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    assert np.allclose(reloaded.predict(images, verbose=0), with_flip.predict(images, verbose=0), atol=1e-6)


def test_members_must_share_classes():
    with pytest.raises(UserError, match="share input shape and classes"):
        average_models([build_model("tiny", 3), build_model("tiny", 4)])


def test_build_ensemble_needs_two_members_or_flip(tmp_path):
    with pytest.raises(UserError, match="at least two"):
        build_ensemble([tmp_path / "a.keras"], tmp_path / "out")
    with pytest.raises(UserError, match="not found"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out")


def test_build_ensemble_writes_a_run_folder_that_evaluate_reads(face_folder, tmp_path):
    import json

    from conftest import tiny_run_config
    from fer_keras.evaluate import load_keras_model
    from fer_keras.train_accel import run_accelerated

    runs = []
    for seed in (1, 2):
        config = tiny_run_config(face_folder, tmp_path, f"name=member{seed}", "train.epochs=1", f"train.seed={seed}")
        runs.append(run_accelerated(config) / "best.keras")
    metrics = build_ensemble(runs, tmp_path / "ensemble", flip=True)
    written = json.loads((tmp_path / "ensemble" / "metrics.json").read_text())
    assert written["labels"] == ["angry", "happy", "sad"] and written["flip"] is True
    assert written["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert len(written["member_val_accuracy"]) == 2
    model, labels = load_keras_model(tmp_path / "ensemble" / "best.keras")
    assert labels == ("angry", "happy", "sad") and model.output_shape == (None, 3)
