"""Optimizer, schedule and loss from the training config (TensorFlow-free: shared by every trainer)."""

from __future__ import annotations

import keras

from fer_keras.config import TrainConfig

COSINE_FLOOR = 0.01  # the cosine schedule ends at this fraction of the peak learning rate


def make_optimizer(train: TrainConfig, steps_per_epoch: int, learning_rate: float | None = None, epochs: int | None = None, scheduled: bool = True):
    """The optimizer named in the config, with a cosine schedule (and linear warm-up) when selected.

    ``adamw`` and ``sgd`` (Nesterov momentum) apply ``train.weight_decay`` as Keras does: decoupled
    from the gradient and scaled by the learning rate; ``adam`` has none.

    ``scheduled=False`` gives a plain learning rate for a callback to set (a time-budgeted cosine).
    With ``train.ema_momentum`` the optimizer also keeps a moving average of the weights, which
    ``callbacks.weight_averaging`` swaps in for validation and checkpoints.
    """
    learning_rate = learning_rate or train.learning_rate
    epochs = epochs or train.epochs
    rate = learning_rate
    if train.schedule == "cosine" and scheduled:
        warmup_steps = train.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
            decay_steps=max(1, (epochs - train.warmup_epochs) * steps_per_epoch),
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
            alpha=COSINE_FLOOR,
        )
    averaging = {"use_ema": True, "ema_momentum": train.ema_momentum} if train.ema_momentum > 0 else {}
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=train.weight_decay, **averaging)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=train.momentum, nesterov=True, weight_decay=train.weight_decay, **averaging)
    return keras.optimizers.Adam(rate, **averaging)


def compile_model(model: keras.Model, optimizer, train: TrainConfig) -> None:
    """Compiles for (soft) one-hot targets: categorical cross-entropy with the configured label smoothing, and accuracy."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
