"""The accelerator trainer (backend-agnostic; run here under the TensorFlow backend) and host augmentation."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import flat_faces, pixel_shares, tiny_run_config

from fer_keras.augment import HostAugmenter
from fer_keras.config import AugmentConfig, ExperimentConfig
from fer_keras.data import Split
from fer_keras.array_trainer import ArrayBatches, TimeBudget, run_accelerated

NO_AUGMENT = AugmentConfig(flip=False, rotation=0, translation=0, zoom=0, brightness=0, contrast=0, erasing=0, mixup=0, cutmix=0)


def _images(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)


def test_host_augmenter_disabled_is_identity_and_flip_mirrors():
    images = _images()
    assert np.array_equal(HostAugmenter(NO_AUGMENT, 0)(images), images.astype(np.float32))
    flipped = HostAugmenter(AugmentConfig(flip=True, rotation=0, translation=0, zoom=0, brightness=0, contrast=0), 3)(images)
    for out, original in zip(flipped, images.astype(np.float32)):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    assert not np.array_equal(flipped, images.astype(np.float32))  # seed 3 flips at least one of 8


def test_host_augmenter_is_seeded_and_stays_in_range():
    images = _images(32)
    config = AugmentConfig(erasing=0.5)
    first, again = HostAugmenter(config, 7)(images), HostAugmenter(config, 7)(images)
    assert np.array_equal(first, again)
    assert first.dtype == np.float32 and first.shape == images.shape
    assert first.min() >= 0 and first.max() <= 255
    assert not np.array_equal(first, HostAugmenter(config, 8)(images))


def test_camera_degradations_hit_faces_with_their_probability_and_strength():
    noise_faces = _images(16).astype(np.float32)
    flat = np.full((64, 48, 48, 1), 128, dtype=np.uint8)

    def degraded(images, seed=0, **probabilities):
        return HostAugmenter(dataclass_replace(NO_AUGMENT, **probabilities), seed)(images)

    # Low resolution (at most 75% of the size) smooths pixel noise in every face; blur (sigma 0.24-2.4 px)
    # never sharpens and smooths most faces clearly (a sigma near 0.24 px barely changes a face).
    before = noise_faces.std(axis=(1, 2, 3))
    assert (degraded(noise_faces, low_resolution=1.0).std(axis=(1, 2, 3)) < 0.9 * before).all()
    blurred = degraded(noise_faces, blur=1.0).std(axis=(1, 2, 3))
    assert (blurred <= before).all() and (blurred < 0.9 * before).sum() >= 12
    # Noise: each face gets its own sigma in 2-20 grey levels around an unchanged mean.
    sigmas = degraded(flat, noise=1.0).std(axis=(1, 2, 3))
    assert 1.8 < sigmas.min() and sigmas.max() < 21 and sigmas.std() > 3
    # JPEG at quality 10-60 changes noise faces but keeps their mean grey level.
    out = degraded(noise_faces, jpeg=1.0)
    assert not np.array_equal(out, noise_faces) and np.abs(out.mean(axis=(1, 2, 3)) - noise_faces.mean(axis=(1, 2, 3))).max() < 8
    # Probability 0.5: some faces of 64 untouched, some noisy.
    touched = (degraded(flat, seed=2, noise=0.5) != 128).any(axis=(1, 2, 3))
    assert 16 < touched.sum() < 48


def test_face_wear_covers_each_hit_face_with_one_mask_or_sunglasses_band():
    faces = np.random.default_rng(0).integers(1, 255, (64, 48, 48, 1), dtype=np.uint8)  # no row is one shade by chance
    out = HostAugmenter(dataclass_replace(NO_AUGMENT, occlusion=1.0), 5)(faces)
    kinds = []
    for before, after in zip(faces.astype(np.float32), out):
        covered = np.flatnonzero((after != before).any(axis=(1, 2)))
        top, bottom = covered[0], covered[-1] + 1
        assert np.array_equal(covered, np.arange(top, bottom))  # one band of whole rows, the rest untouched
        assert np.unique(after[top:bottom]).size == 1  # in one shade
        if bottom == 48:  # a mask: from 42-62% of the height down, any shade
            assert 20 <= top <= 30
            kinds.append("mask")
        else:  # sunglasses: from 18-34% of the height, 14-28% of it tall, dark
            assert 9 <= top <= 16 and 6 <= bottom - top <= 14 and after[top, 0, 0] <= 80
            kinds.append("sunglasses")
    assert 20 < kinds.count("mask") < 44
    # At probability 0.5 about half the faces are covered.
    covered = (HostAugmenter(dataclass_replace(NO_AUGMENT, occlusion=0.5), 1)(faces) != faces).any(axis=(1, 2, 3))
    assert 16 < covered.sum() < 48


@pytest.mark.parametrize("mixing", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_array_batches_drop_the_partial_batch_and_mix_targets(mixing):
    targets = np.eye(3, dtype=np.float32)[np.arange(10) % 3]
    split = Split(_images(10), targets, [str(i) for i in range(10)])
    batches = ArrayBatches(split, 4, dataclass_replace(NO_AUGMENT, **mixing), sample_weights=np.arange(10, dtype=np.float32), seed=1)
    assert len(batches) == 2
    images, mixed, weights = batches[0]
    assert images.shape == (4, 48, 48, 1) and weights.shape == (4,)
    assert np.allclose(mixed.sum(axis=1), 1.0)
    assert (mixed.max(axis=1) < 1.0).any()  # mixed, not one-hot
    seen = np.concatenate([batches[0][2], batches[1][2]])
    assert len(set(seen.tolist())) == 8  # 8 distinct rows per epoch, each once


def test_array_batches_cutmix_targets_match_the_share_of_each_face_in_the_pixels():
    n = 16
    faces, targets = flat_faces(n, step=16)
    split = Split(faces.astype(np.uint8), targets, [str(i) for i in range(n)])
    mixed_faces, mixed_targets = ArrayBatches(split, n, dataclass_replace(NO_AUGMENT, cutmix=1.0), seed=4)[0]
    np.testing.assert_allclose(mixed_targets, pixel_shares(mixed_faces, n, step=16), atol=1e-6)
    assert (mixed_targets.max(axis=1) < 1.0).sum() >= n // 2  # most faces mixed


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def _config(face_folder, tmp_path, *extra) -> ExperimentConfig:
    return tiny_run_config(face_folder, tmp_path, "name=accel_test", "train.schedule=cosine", *extra)


def test_accelerator_run_records_a_run_without_test_or_optimizer_state(face_folder, tmp_path):
    run = run_accelerated(_config(face_folder, tmp_path, "data.augment.mixup=0.2"))
    for name in ("config.yaml", "history.csv", "best.keras", "metrics.json", "training_curves.png", "confusion_matrix_val.png"):
        assert (run / name).is_file(), name
    assert not (run / "best.weights.h5").exists()
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [0, 1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test" not in metrics and metrics["val"]["n"] == 30 and metrics["epochs"] == 3
    assert metrics["precision"] == "float32"  # auto on a machine without a GPU
    best = keras.saving.load_model(run / "best.keras")
    assert best.name == "tiny" and getattr(best, "optimizer", None) is None


def test_weight_averaging_validates_the_averaged_weights(face_folder, tmp_path):
    # An average that barely moves after the first step (momentum 1 - 1e-7): every validation sees
    # the same weights. (Under KERAS_BACKEND=jax too: checked by hand with JAX on the CPU, 2026-11-28.)
    run = run_accelerated(_config(face_folder, tmp_path, "train.ema_momentum=0.9999999", "train.early_stopping_patience=0"))
    val_loss = pd.read_csv(run / "history.csv")["val_loss"]
    assert val_loss.tolist() == pytest.approx([val_loss[0]] * 3, abs=1e-6)


def test_time_budget_stops_after_the_epoch_that_passes_it(face_folder, tmp_path):
    run = run_accelerated(_config(face_folder, tmp_path, "train.time_budget_s=0.001"))
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [0]
    assert (run / "best.keras").is_file()


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_budget_anneals_the_cosine_by_the_deadline_and_stops_before_overrunning():
    from types import SimpleNamespace

    clock = _FakeClock()
    budget = TimeBudget(deadline=100.0, epochs=50, base_rate=1.0, warmup_epochs=1, floor=0.01, clock=clock)
    model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=None), stop_training=False)
    budget.set_model(model)
    budget.on_train_begin()
    rates = []
    for epoch in range(50):
        budget.on_epoch_begin(epoch)
        rates.append(model.optimizer.learning_rate)
        clock.now += 10.0  # every epoch takes 10 s
        budget.on_epoch_end(epoch)
        if model.stop_training:
            break
    # Ten 10-second epochs fit in 100 s; an eleventh would end at 110 s.
    assert len(rates) == 10
    assert rates[0] == pytest.approx(0.1)  # warm-up starts at a tenth of the peak
    # Epoch 2 starts at 10 s and is expected to end at 20 s: the cosine at 20% progress.
    assert rates[1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 0.2)))
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] == pytest.approx(0.01)  # the last epoch that fits runs at the floor


def test_time_budget_follows_the_epochs_when_they_run_out_first(face_folder, tmp_path):
    run = run_accelerated(_config(face_folder, tmp_path, "train.time_budget_s=600", "train.learning_rate=0.01"))
    rates = list(pd.read_csv(run / "history.csv")["learning_rate"])
    assert len(rates) == 3
    assert rates[0] > rates[1] > rates[2] and rates[2] == pytest.approx(0.01 * 0.01, rel=1e-3)


def test_a_run_cut_by_its_time_budget_records_the_epochs_it_ran(face_folder, tmp_path):
    # A budget shorter than one epoch stops the run after its first epoch.
    run = run_accelerated(_config(face_folder, tmp_path, "train.time_budget_s=0.001"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(pd.read_csv(run / "history.csv")) == 1
    assert (metrics["epochs"], metrics["epochs_planned"]) == (1, 3)


def test_distillation_run_starts_from_a_model_and_learns_from_its_teacher(face_folder, tmp_path):
    first = run_accelerated(_config(face_folder, tmp_path, "train.epochs=1"))
    student = run_accelerated(
        _config(face_folder, tmp_path, "name=student", "train.epochs=1", f"train.init_from={first / 'best.keras'}",
                f"data.teacher={first / 'best.keras'}", "data.teacher_weight=0.5")
    )
    assert json.loads((student / "metrics.json").read_text())["val"]["n"] == 30
    assert (student / "config.yaml").read_text().count("teacher_weight: 0.5") == 1


def test_a_backend_that_cannot_load_is_one_error_line(tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fer_keras.train_accel", f"--data-dir={tmp_path}", "model.name=tiny"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "KERAS_BACKEND": "bogus"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: KERAS_BACKEND=bogus: Unable to import backend") and result.stderr.count("\n") == 1


def test_a_bad_config_is_one_error_line_before_the_backend_loads(tmp_path):
    """The config is checked before Keras loads: TensorFlow's start-up log lines used to come first."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fer_keras.train_accel", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert (result.returncode, result.stderr) == (2, f"error: {tmp_path / 'missing.yaml'}: config file not found\n")
