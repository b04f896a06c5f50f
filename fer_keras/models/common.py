"""Pieces every model family shares: the raw-pixel input, the float32 softmax head, and the mirror layer."""

from __future__ import annotations

import keras
from keras import layers


def raw_pixel_input(input_shape: tuple[int, int, int]) -> keras.KerasTensor:
    """The model input: raw 0-255 pixels (float or uint8 values), named ``image``."""
    return keras.Input(shape=input_shape, name="image")


def classifier_head(x, num_classes: int, dropout: float = 0.0):
    """Dropout, a dense layer and a softmax kept in float32 so mixed precision never rounds probabilities."""
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


@keras.saving.register_keras_serializable(package="fer_keras")
class HorizontalMirror(layers.Layer):
    """Mirrors images left to right: the flip view of test-time augmentation, built into a model.

    A registered layer rather than a Lambda, so models holding it load without unsafe deserialization.
    """

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)
