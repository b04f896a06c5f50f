"""Pieces every model family shares: the raw-pixel input, the float32 softmax head, the mirror layers and the ensemble mean."""

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
    Ensembles built before ``MirroredBatch`` hold it, so it stays registered for them.
    """

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)


@keras.saving.register_keras_serializable(package="fer_keras")
class MirroredBatch(layers.Layer):
    """The batch followed by its mirror images, ``[x; flip(x)]`` along the batch axis.

    Flip test-time augmentation in one pass over 2N images rather than two passes over N: the
    int8 ensemble of ResNet-SE and VGG ran 9% faster that way (2.24 against 2.47 ms per face at
    batch 1 on one thread; experiments/benchmarks/flip_layout.md). ``ViewMean`` undoes the stacking.
    """

    def call(self, inputs):
        return keras.ops.concatenate([inputs, keras.ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


@keras.saving.register_keras_serializable(package="fer_keras")
class ViewMean(layers.Layer):
    """Averages the outputs of views stacked along the batch axis: ``(views * N, C) -> (N, C)``."""

    def __init__(self, views: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.views = views

    def call(self, inputs):
        return keras.ops.mean(keras.ops.reshape(inputs, (self.views, -1, inputs.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "views": self.views}


@keras.saving.register_keras_serializable(package="fer_keras")
class WeightedMean(layers.Layer):
    """The weighted mean of same-shaped inputs, ``sum(share_i * x_i)`` with shares summing to 1.

    An ensemble whose members are not equally good: a strong member at half the weight beside two
    weaker ones. Equal shares use Keras's ``Average`` instead, so those graphs stay as they were.
    """

    def __init__(self, shares: list[float], **kwargs):
        super().__init__(**kwargs)
        self.shares = [float(share) for share in shares]

    def call(self, inputs):
        total = self.shares[0] * inputs[0]
        for share, tensor in zip(self.shares[1:], inputs[1:]):
            total = total + share * tensor
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "shares": self.shares}
