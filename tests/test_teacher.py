"""Distillation targets from a teacher model, and warm starts from a saved model."""

import json

import keras
import numpy as np
import pytest

from fer_keras.data import Split
from fer_keras.errors import UserError
from fer_keras.models import build_model, initialize_from
from fer_keras.teacher import teacher_probabilities, with_teacher


def test_with_teacher_mixes_targets_by_weight():
    split = Split(np.zeros((2, 48, 48, 1), np.uint8), np.array([[1, 0], [0, 1]], np.float32), ["a", "b"])
    mixed = with_teacher(split, np.array([[0.5, 0.5], [1.0, 0.0]], np.float32), 0.25)
    assert np.allclose(mixed.targets, [[0.875, 0.125], [0.25, 0.75]])
    assert mixed.paths == ["a", "b"] and mixed.images is split.images


def test_keras_teacher_predicts_and_checks_labels(trained_tiny, tiny_keras_run, tmp_path):
    model, labels, images, _ = trained_tiny
    probabilities = teacher_probabilities(tiny_keras_run, images[:4], labels)
    assert np.allclose(probabilities, model.predict(images[:4], verbose=0), atol=1e-6)
    with pytest.raises(UserError, match="teacher labels"):
        teacher_probabilities(tiny_keras_run, images[:4], ("x", "y", "z"))
    with pytest.raises(UserError, match="teacher model not found"):
        teacher_probabilities(tmp_path / "none.keras", images[:4], labels)


def test_initialize_from_copies_weights_and_rejects_other_architectures(tmp_path):
    keras.utils.set_random_seed(0)
    source = build_model("tiny", 3, width=4)
    source.save(tmp_path / "source.keras")
    target = build_model("tiny", 3, width=4)
    initialize_from(target, str(tmp_path / "source.keras"))
    assert all(np.array_equal(a, b) for a, b in zip(target.get_weights(), source.get_weights()))
    with pytest.raises(UserError, match="do not fit"):
        initialize_from(build_model("tiny", 3, width=6), str(tmp_path / "source.keras"))


def test_missing_teacher_or_init_file_fails_before_data_is_read(tmp_path):
    from fer_keras.config import ExperimentConfig, apply_overrides
    from fer_keras.data import load_for_experiment

    # The data directory does not exist either: the named file is what must be reported first.
    base = [f"data.data_dir={tmp_path / 'no_data'}"]
    with pytest.raises(UserError, match="data.teacher file not found"):
        load_for_experiment(apply_overrides(ExperimentConfig(), base + [f"data.teacher={tmp_path / 'none.tflite'}"]))
    with pytest.raises(UserError, match="train.init_from file not found"):
        load_for_experiment(apply_overrides(ExperimentConfig(), base + [f"train.init_from={tmp_path / 'none.keras'}"]))


def test_initialize_from_maps_the_classifier_onto_other_labels(tmp_path):
    # A FERPlus-ordered source fine-tuned on FER2013-ordered labels plus a custom class it lacks.
    keras.utils.set_random_seed(0)
    source = build_model("tiny", 3, width=4)
    source.save(tmp_path / "source.keras")
    (tmp_path / "metrics.json").write_text(json.dumps({"labels": ["neutral", "happy", "contempt"]}))
    target = build_model("tiny", 3, width=4)
    fresh_kernel = target.get_layer("logits").get_weights()[0].copy()
    carried = initialize_from(target, str(tmp_path / "source.keras"), labels=("happiness", "pain", "neutral"))
    assert carried == ("happiness", "neutral")
    kernel, bias = target.get_layer("logits").get_weights()
    source_kernel, source_bias = source.get_layer("logits").get_weights()
    np.testing.assert_array_equal(kernel[:, [0, 2]], source_kernel[:, [1, 0]])
    np.testing.assert_array_equal(bias[[0, 2]], source_bias[[1, 0]])
    np.testing.assert_array_equal(kernel[:, 1], fresh_kernel[:, 1])  # "pain" keeps its fresh initialisation
    np.testing.assert_array_equal(target.get_layer("conv").get_weights()[0], source.get_layer("conv").get_weights()[0])
    # A different number of classes maps too; a different backbone still does not fit.
    assert initialize_from(build_model("tiny", 2, width=4), str(tmp_path / "source.keras"), labels=("contempt", "sad")) == ("contempt",)
    with pytest.raises(UserError, match="do not fit"):
        initialize_from(build_model("tiny", 2, width=6), str(tmp_path / "source.keras"), labels=("contempt", "sad"))
