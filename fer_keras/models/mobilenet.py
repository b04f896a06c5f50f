"""MobileNetV3 Small and Large transfer-learning backbones (keras.applications) with a new head.

The backbone is the nested model named ``backbone``; training fine-tunes it in two stages
(see ``fer_keras.train``). ImageNet weights help only when they can be had: Keras downloads
them when online; offline, ``weights=imagenet`` fails with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from fer_keras.errors import UserError
from fer_keras.models import register_model
from fer_keras.models.common import classifier_head, raw_pixel_input

BACKBONE_SIZE = 96  # 48x48 faces are upsampled: MobileNetV3's strides leave too little at 48


def check_backbone_weights(weights: str | None) -> None:
    """Raises a UserError unless ``weights`` is imagenet, none, or a file that exists."""
    if weights not in (None, "", "imagenet", "none") and not Path(weights).is_file():
        raise UserError(f"{weights}: backbone weights file not found (use model.weights=imagenet|none|PATH)")


def _mobilenet_v3(application, num_classes, input_shape, dropout, weights, name) -> keras.Model:
    weights = weights or "none"
    source = "imagenet" if weights == "imagenet" else None
    check_backbone_weights(weights)
    try:
        backbone = application(
            input_shape=(BACKBONE_SIZE, BACKBONE_SIZE, 3),
            include_top=False,
            weights=source,
            pooling="avg",
            include_preprocessing=True,  # the backbone rescales 0-255 itself
        )
    except Exception as err:  # urllib/HTTP/OS errors when the download is impossible
        raise UserError(
            f"could not get ImageNet weights for {name} ({type(err).__name__}: {str(err)[:100]}); "
            "offline, use model.weights=none or a local weights file"
        ) from None
    if source is None and weights != "none":
        backbone.load_weights(weights)
    backbone.name = "backbone"
    inputs = raw_pixel_input(input_shape)
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if input_shape[:2] != (BACKBONE_SIZE, BACKBONE_SIZE):
        x = layers.Resizing(BACKBONE_SIZE, BACKBONE_SIZE, name="resize")(x)
    x = backbone(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name=name)


@register_model
def mobilenet_v3_small(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.2, width: int = 0, weights: str = "none") -> keras.Model:
    """MobileNetV3-Small backbone, 96x96 RGB inside, new softmax head."""
    return _mobilenet_v3(keras.applications.MobileNetV3Small, num_classes, input_shape, dropout, weights, "mobilenet_v3_small")


@register_model
def mobilenet_v3_large(num_classes: int, input_shape=(48, 48, 1), dropout: float = 0.2, width: int = 0, weights: str = "none") -> keras.Model:
    """MobileNetV3-Large backbone, 96x96 RGB inside, new softmax head."""
    return _mobilenet_v3(keras.applications.MobileNetV3Large, num_classes, input_shape, dropout, weights, "mobilenet_v3_large")


mobilenet_v3_small.check_weights = mobilenet_v3_large.check_weights = check_backbone_weights
mobilenet_v3_small.has_backbone = mobilenet_v3_large.has_backbone = True  # train.fine_tune_epochs unfreezes it
