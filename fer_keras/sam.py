"""Sharpness-aware minimization (SAM; Foret et al., ICLR 2021) for ``fer_keras.train``.

Each step takes the gradient ``g`` at the weights ``w``, moves to ``w + rho * g / ||g||`` (the
steepest ascent within radius ``rho``), takes the gradient there, moves back to ``w`` and lets the
configured optimizer apply that second gradient. The optimizer, its schedule, weight decay and
weight averaging are unchanged; each step costs two forward and backward passes. SAM seeks flat
minima and was shown to hold up under label noise, which FER2013's labels carry.

The step replaces the model's ``train_step`` on the instance, not through a ``keras.Model``
subclass, so the saved ``.keras`` files stay plain functional models that load without fer_keras.
Under a mirrored strategy each replica perturbs by its own gradient (the paper's m-sharpness).
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.losses import loss as loss_module
from keras.src.trainers.data_adapters import data_adapter_utils


def use_sharpness_aware_minimization(model: keras.Model, rho: float) -> None:
    """Makes ``model.fit`` train ``model`` with SAM at neighbourhood radius ``rho``.

    Call after ``compile``; it survives recompiling. The body follows Keras 3.15's TensorFlow
    ``train_step`` (the loss tracker and metrics are updated the same way), with the ascent step added.

    Args:
        model: A compiled Keras model on the TensorFlow backend.
        rho: Radius of the ascent step in weight space (the paper's default is 0.05); must be positive.
    """
    if not rho > 0:
        raise ValueError(f"rho={rho} must be positive")
    model.train_step = functools.partial(_sharpness_aware_step, model, rho)


def _loss(model: keras.Model, x, y, sample_weight):
    y_pred = model(x, training=True)
    return y_pred, model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def _sharpness_aware_step(model: keras.Model, rho: float, data):
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        y_pred, loss = _loss(model, x, y, sample_weight)
    batch_size = tf.shape(next(i for i in tree.flatten(x) if i is not None))[0]
    model._loss_tracker.update_state(loss_module.unscale_loss_for_distribution(loss), sample_weight=batch_size)
    gradients = tape.gradient(loss, weights)
    # A weight the loss does not reach (None gradient) is not perturbed; the epsilon keeps a zero gradient finite.
    reached = [(weight, gradient) for weight, gradient in zip(weights, gradients) if gradient is not None]
    scale = rho / (tf.linalg.global_norm([gradient for _, gradient in reached]) + 1e-12)
    ascent = [(weight, tf.cast(gradient * scale, weight.dtype)) for weight, gradient in reached]
    for weight, step in ascent:
        weight.assign_add(step)
    with tf.GradientTape() as tape:
        _, loss_at_ascent = _loss(model, x, y, sample_weight)
        loss_at_ascent = model.optimizer.scale_loss(loss_at_ascent)
    sharpness_gradients = tape.gradient(loss_at_ascent, weights)
    for weight, step in ascent:
        weight.assign_sub(step)
    model.optimizer.apply_gradients(zip(sharpness_gradients, weights))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
