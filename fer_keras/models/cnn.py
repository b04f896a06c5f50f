"""Convolutional networks trained from scratch: tiny (tests), mini-Xception, VGG (fast tier) and its slim variant, ResNet-SE (accurate tier)."""

from __future__ import annotations

import functools

import keras
from keras import layers

from fer_keras.errors import UserError
from fer_keras.models import register_model
from fer_keras.models.common import classifier_head, raw_pixel_input


def refuse_pretrained_weights(name: str, weights: str | None) -> None:
    """Raises a UserError unless ``weights`` asks for none: these networks have no pretrained weights."""
    if weights not in (None, "", "none"):
        raise UserError(
            f"model.weights={weights}: {name} trains from scratch; pretrained backbones are mobilenet_v3_small and "
            "mobilenet_v3_large, and train.init_from=PATH starts from a saved .keras model"
        )


def from_scratch(builder):
    """Gives a builder the registry's ``weights`` option, refusing any but ``none``, and that rule as ``check_weights``."""
    check_weights = functools.partial(refuse_pretrained_weights, builder.__name__)

    @functools.wraps(builder)
    def build(*args, weights: str = "none", **kwargs) -> keras.Model:
        check_weights(weights)
        return builder(*args, **kwargs)

    build.check_weights = check_weights
    return build


def _conv_bn_relu(x, filters: int, name: str, stride: int = 1):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@register_model
@from_scratch
def tiny(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.0, width: int = 0) -> keras.Model:
    """A few-hundred-parameter CNN for tests: one strided conv, pooling, softmax."""
    inputs = raw_pixel_input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(width or 8, 3, strides=2, activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name="tiny")


@register_model
@from_scratch
def mini_xception(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.0, width: int = 0) -> keras.Model:
    """Mini-Xception (Arriaga et al. 2017) with depthwise-separable residual blocks, about 110k parameters.

    The stem is 16 channels wide rather than the paper's 8: TF 2.21's oneDNN conv backprop
    crashes on an 8-channel map feeding a 1x1 stride-2 conv, which the residual shortcut is.
    """
    base = width or 16
    inputs = raw_pixel_input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = _conv_bn_relu(x, base, "stem1")
    x = _conv_bn_relu(x, base, "stem2")
    for i, filters in enumerate((2 * base, 4 * base, 8 * base, 8 * base)):
        shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"block{i}_short")(x)
        shortcut = layers.BatchNormalization(name=f"block{i}_short_bn")(shortcut)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_sep1")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn1")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_sep2")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{i}_pool")(x)
        x = layers.Add(name=f"block{i}_add")([x, shortcut])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name="mini_xception")


def _vgg(name: str, num_classes: int, input_shape, dropout: float, block_widths: tuple[int, int, int, int]) -> keras.Model:
    """The VGG family's graph: one block per width, its dense layer as wide as the last block."""
    inputs = raw_pixel_input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, filters in enumerate(block_widths):
        x = _conv_bn_relu(x, filters, f"block{i}a")
        x = _conv_bn_relu(x, filters, f"block{i}b")
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Dropout(min(0.1 + 0.05 * i, dropout), name=f"block{i}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(block_widths[-1], use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name=name)


@register_model
@from_scratch
def vgg(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.4, width: int = 0) -> keras.Model:
    """VGG-style CNN: four blocks of two 3x3 conv + batch norm + ReLU, max pooling and dropout; about 1.24M parameters at width 32."""
    base = width or 32
    return _vgg("vgg", num_classes, input_shape, dropout, (base, 2 * base, 4 * base, 8 * base))


@register_model
@from_scratch
def vgg_slim(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.4, width: int = 0) -> keras.Model:
    """The VGG with its first three blocks at half width (16, 32, 64, 256 filters at width 32; 0.88M parameters).

    It keeps 41% of the VGG's multiply-adds, and its int8 file took 0.394 against 0.647 ms a face
    at batch 1 on one thread (0.297 against 0.640 at batch 16) on a 2.6 GHz AVX-512 EPYC
    (experiments/benchmarks/latency_vgg_slim_avx512.md). ``fer_keras.prune`` makes one from a
    trained ``vgg``, keeping the strongest filters, for a fine-tune.
    """
    base = width or 32
    return _vgg("vgg_slim", num_classes, input_shape, dropout, (base // 2, base, 2 * base, 8 * base))


def _squeeze_excite(x, channels: int, name: str, ratio: int = 16):
    """Channel attention (Hu et al. 2018): global pooling, a bottleneck, and a sigmoid gate per channel."""
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    gate = layers.Dense(max(8, channels // ratio), activation="relu", name=f"{name}_se_reduce")(gate)
    gate = layers.Dense(channels, activation="sigmoid", name=f"{name}_se_expand")(gate)
    return layers.Multiply(name=f"{name}_se_scale")([x, gate])


def _residual_se_block(x, filters: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_short")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_short_bn")(shortcut)
    x = _conv_bn_relu(x, filters, f"{name}_a", stride)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_b_bn")(x)
    x = _squeeze_excite(x, filters, name)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


@register_model
@from_scratch
def resnet_se(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.3, width: int = 0) -> keras.Model:
    """ResNet-18-style network with squeeze-excitation: four stages of two residual blocks; about 2.8M parameters at width 32."""
    base = width or 32
    inputs = raw_pixel_input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = _conv_bn_relu(x, base, "stem")
    for stage, filters in enumerate((base, 2 * base, 4 * base, 8 * base)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_se_block(x, filters, stride, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name="resnet_se")
