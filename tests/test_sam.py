"""Sharpness-aware minimization: one step against its closed form, and where it is refused."""

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import tiny_run_config
from fer_keras import train, train_accel
from fer_keras.sam import use_sharpness_aware_minimization

X = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype="float32")
Y = np.array([[1.0], [0.0], [2.0], [-1.0]], dtype="float32")
W0 = np.array([[0.5], [-0.25], [0.1]], dtype="float32")
RATE, RHO = 0.1, 0.05


def _linear_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(W0))(inputs))
    model.compile(optimizer=keras.optimizers.SGD(RATE), loss="mse")
    return model


def _mse_gradient(w):
    return 2 / len(X) * X.T @ (X @ w - Y)


def _sam_step(w):
    """One SAM step by hand: SGD with the gradient taken at ``w`` moved ``RHO`` along its own gradient."""
    gradient = _mse_gradient(w)
    return w - RATE * _mse_gradient(w + RHO * gradient / np.linalg.norm(gradient))


def test_one_step_descends_with_the_gradient_taken_at_the_ascent_point():
    model = _linear_model()
    use_sharpness_aware_minimization(model, RHO)
    history = model.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], _sam_step(W0), rtol=1e-5)
    # The plain step lands elsewhere, so the test tells the two apart.
    assert np.abs(_sam_step(W0) - (W0 - RATE * _mse_gradient(W0))).max() > 1e-3
    # The logged loss is the one at the weights themselves, not at the ascent point.
    assert history.history["loss"] == pytest.approx([float(np.mean((X @ W0 - Y) ** 2))], rel=1e-5)


def test_the_step_survives_recompiling_and_refuses_a_radius_that_is_not_positive():
    model = _linear_model()
    use_sharpness_aware_minimization(model, RHO)
    model.compile(optimizer=keras.optimizers.SGD(RATE), loss="mse")
    model.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], _sam_step(W0), rtol=1e-5)
    with pytest.raises(ValueError, match="rho=0 must be positive"):
        use_sharpness_aware_minimization(model, 0)


def test_train_runs_with_sam_and_saves_a_plain_model(face_folder, tmp_path):
    config = tiny_run_config(face_folder, tmp_path, "name=tiny_sam", "train.precision=float32", "train.epochs=1", "train.sam_rho=0.05", "train.score_test=false")
    run = train.run_training(config).run_dir
    assert len(pd.read_csv(run / "history.csv")) == 1
    saved = keras.saving.load_model(run / "best.keras")
    assert type(saved).__name__ == "Functional" and "train_step" not in vars(saved)  # the step is not saved with it


def test_train_accel_refuses_sam_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_accel.main(["train.sam_rho=0.05"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "train.sam_rho=0.05: sharpness-aware minimization is implemented by fer_keras.train only" in stderr
    assert list(tmp_path.iterdir()) == []
