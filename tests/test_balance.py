"""Class-prior correction: the prior embedded at export, EmotionClassifier(balance=...), restamping old exports."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fer_keras import export as exporter
from fer_keras.errors import UserError
from fer_keras.runtime import EmotionClassifier, class_prior_weights, read_metadata, rebalance

PRIOR = [0.5, 0.3, 0.2]


def test_rebalance_to_equal_frequencies_divides_out_the_prior():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.0, 0.0, 0.0]], np.float32)
    weights = class_prior_weights({"class_prior": PRIOR}, 3, 1.0, "m")
    balanced = rebalance(probabilities, weights)
    # A posterior equal to the prior carries no evidence: with the prior divided out it is uniform.
    np.testing.assert_allclose(balanced[0], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    # 0.2/0.5 : 0.3/0.3 : 0.5/0.2 = 0.4 : 1 : 2.5
    np.testing.assert_allclose(balanced[1], np.array([0.4, 1.0, 2.5]) / 3.9, rtol=1e-6)
    assert balanced[2].tolist() == [0.0, 0.0, 0.0]
    half = rebalance(probabilities[:1], class_prior_weights({"class_prior": PRIOR}, 3, 0.5, "m"))
    np.testing.assert_allclose(half[0], np.sqrt(PRIOR) / np.sqrt(PRIOR).sum(), rtol=1e-6)


def test_balance_is_checked():
    assert class_prior_weights({}, 3, 0.0, "m") is None
    with pytest.raises(UserError, match=r"balance 1.5 must be in \[0, 1\]"):
        class_prior_weights({"class_prior": PRIOR}, 3, 1.5, "m")
    with pytest.raises(UserError, match="m.tflite: no class_prior for its 3 classes"):
        class_prior_weights({"labels": ["a", "b", "c"]}, 3, 0.5, "m.tflite")
    with pytest.raises(UserError, match="no class_prior"):
        class_prior_weights({"class_prior": [0.5, 0.5]}, 3, 0.5, "m.tflite")


@pytest.fixture(scope="module")
def exported_with_prior(trained_tiny, tmp_path_factory):
    model, labels, images, y = trained_tiny
    out = tmp_path_factory.mktemp("prior")
    exporter.export(model, labels, out, "float32", "float32", None, None, None, "tiny", "synthetic", class_prior=PRIOR)
    return out / "tiny_float32.tflite"


def test_exported_prior_is_embedded_and_applied(exported_with_prior, trained_tiny):
    _, _, images, _ = trained_tiny
    assert read_metadata(exported_with_prior)["class_prior"] == PRIOR
    assert json.loads((exported_with_prior.parent / "model.json").read_text())["class_prior"] == PRIOR
    plain = EmotionClassifier(exported_with_prior).predict(images[:8])
    balanced = EmotionClassifier(exported_with_prior, balance=1.0).predict(images[:8])
    expected = plain / np.array(PRIOR)
    np.testing.assert_allclose(balanced, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_balance_on_a_model_without_prior_is_a_clean_error(trained_tiny, tmp_path):
    model, labels, _, _ = trained_tiny
    exporter.export(model, labels, tmp_path, "float32", "float32", None, None, None, "old", "synthetic")
    with pytest.raises(UserError, match="old_float32.tflite: no class_prior"):
        EmotionClassifier(tmp_path / "old_float32.tflite", balance=0.5)


def test_restamp_adds_the_training_prior_in_place(trained_tiny, face_folder, tmp_path):
    model, labels, images, _ = trained_tiny
    exporter.export(model, labels, tmp_path, "dynamic", "float32", None, None, None, "old", "synthetic")
    path = tmp_path / "old_dynamic.tflite"
    before = EmotionClassifier(path).predict(images[:4])
    code = exporter.main(["--restamp", "--model", str(path), "--data-dir", str(face_folder), "--label-set", "folder"])
    assert code == 0
    # Each synthetic class keeps 40 readable images, so the training split's prior is uniform.
    prior = read_metadata(path)["class_prior"]
    np.testing.assert_allclose(prior, [1 / 3] * 3, atol=1e-6)
    assert json.loads((tmp_path / "model.json").read_text())["class_prior"] == prior
    np.testing.assert_array_equal(EmotionClassifier(path).predict(images[:4]), before)
    size = path.stat().st_size
    assert exporter.main(["--restamp", "--model", str(path), "--data-dir", str(face_folder), "--label-set", "folder"]) == 0
    assert path.stat().st_size == size, "restamping again replaces the metadata instead of adding to it"


def test_restamp_refuses_other_labels_and_keras_files(face_folder, tmp_path, exported_with_prior):
    theirs = tmp_path / "m.tflite"
    theirs.write_bytes(exported_with_prior.read_bytes())
    assert exporter.main(["--restamp", "--model", str(theirs), "--data-dir", str(face_folder), "--label-set", "fer2013"]) == 2
    assert read_metadata(theirs)["class_prior"] == PRIOR
    assert exporter.main(["--restamp", "--model", str(tmp_path / "m.keras"), "--data-dir", str(face_folder)]) == 2


def test_packaged_tiers_carry_the_ferplus_prior():
    for tier in ("accurate", "fast"):
        prior = EmotionClassifier(tier).metadata["class_prior"]
        assert len(prior) == 8 and sum(prior) == pytest.approx(1, abs=1e-5)
        # FERPlus training votes: a third neutral, about 1.4% disgust.
        assert prior[0] == pytest.approx(0.3311, abs=1e-4) and prior[5] == pytest.approx(0.0137, abs=1e-4)


def test_detect_cli_rejects_an_out_of_range_balance(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fer_keras.detect", "--source", str(tmp_path), "--balance", "2"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stderr == "error: python -m fer_keras.detect: argument --balance: 2.0 must be in [0, 1] (see --help)\n"

