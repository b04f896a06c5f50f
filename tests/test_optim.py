"""The optimizer factory: which optimizers decay their weights, and by how much."""

import keras
import numpy as np
import pytest

from fer_keras.config import TrainConfig
from fer_keras.optim import make_optimizer


@pytest.mark.parametrize(("name", "expected"), [("sgd", 0.95), ("adamw", 0.95), ("adam", 1.0)])
def test_weight_decay_shrinks_weights_by_rate_times_decay_for_sgd_and_adamw_only(name, expected):
    # A zero gradient isolates the decay: Adam's and SGD's own steps are then zero, and
    # decoupled decay takes learning_rate * weight_decay = 0.1 * 0.5 of the weight.
    train = TrainConfig(optimizer=name, learning_rate=0.1, weight_decay=0.5, schedule="plateau")
    optimizer = make_optimizer(train, steps_per_epoch=1)
    weight = keras.Variable(np.ones(3, dtype="float32"))
    optimizer.apply_gradients([(keras.ops.zeros(3), weight)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), np.full(3, expected), rtol=1e-6)


def test_sgd_uses_nesterov_momentum_from_the_config():
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.8), steps_per_epoch=1)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov and optimizer.momentum == pytest.approx(0.8)
