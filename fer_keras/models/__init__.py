"""Model registry: ``build_model(name, num_classes, input_shape, **kw)`` and ``list_models()``.

Every model takes raw 0-255 pixels: rescaling, resizing and gray-to-RGB happen inside it.
Models use keras.layers / keras.ops only, so they build under any Keras backend.
"""

from __future__ import annotations

from typing import Callable

import keras

from fer_keras.config import ModelConfig
from fer_keras.errors import UserError

_REGISTRY: dict[str, Callable[..., keras.Model]] = {}


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Registers a builder ``fn(num_classes, input_shape, **kw) -> keras.Model`` under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int] = (48, 48, 1), **kwargs) -> keras.Model:
    """Builds a registered model.

    Args:
        name: A name from ``list_models()``.
        num_classes: Size of the softmax output.
        input_shape: (height, width, channels) of the raw-pixel input.
        **kwargs: Model-specific options (dropout, width, weights).

    Returns:
        An uncompiled functional keras.Model named ``name``.

    Raises:
        UserError: For an unknown name.
    """
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name](num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)


def build_from_config(model: ModelConfig, num_classes: int) -> keras.Model:
    """Builds the model an experiment's ``model`` section describes, with ``num_classes`` outputs."""
    return build_model(
        model.name,
        num_classes,
        (model.image_size, model.image_size, model.channels),
        dropout=model.dropout,
        width=model.width,
        weights=model.weights,
    )


def initialize_from(model: keras.Model, path: str, freeze_batch_norm: bool = False) -> None:
    """Copies the weights of the saved model at ``path`` into ``model`` (same architecture).

    With ``freeze_batch_norm``, every batch-norm layer is made untrainable, which in Keras 3 also
    keeps it in inference mode during training: its statistics stay as loaded. Members rebuilt by
    ``fer_keras.recover`` need that, since their batch norm holds folded biases, not statistics.

    Raises:
        UserError: When the file is missing, cannot be loaded, or its weights do not fit ``model``.
    """
    from pathlib import Path

    if not Path(path).is_file():
        raise UserError(f"{path}: train.init_from model not found")
    try:
        source = keras.saving.load_model(path)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors for bad files
        raise UserError(f"{path}: cannot load Keras model ({str(err).splitlines()[0][:150]})") from None
    shapes, wanted = [w.shape for w in source.get_weights()], [w.shape for w in model.get_weights()]
    if shapes != wanted:
        raise UserError(f"{path}: its weights do not fit model {model.name!r} (different architecture or width)")
    model.set_weights(source.get_weights())
    if freeze_batch_norm:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


# Importing the families registers their models.
from fer_keras.models import cnn, mobilenet  # noqa: E402,F401
