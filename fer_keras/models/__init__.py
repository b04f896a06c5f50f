"""Model registry: ``build_model(name, num_classes, input_shape, **kw)`` and ``list_models()``.

Every model takes raw 0-255 pixels: rescaling, resizing and gray-to-RGB happen inside it.
Models use keras.layers / keras.ops only, so they build under any Keras backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import keras

from fer_keras.config import ModelConfig
from fer_keras.errors import UserError

log = logging.getLogger(__name__)
_REGISTRY: dict[str, Callable[..., keras.Model]] = {}


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Registers a builder ``fn(num_classes, input_shape, **kw) -> keras.Model`` under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def check_model_name(name: str) -> None:
    """Raises a UserError naming the registered models unless ``name`` is one."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def check_model_config(model: ModelConfig, fine_tune_epochs: int = 0) -> None:
    """The model errors that need no data: an unknown name, a ``model.weights`` the network cannot take,
    or a second stage (``train.fine_tune_epochs``) for a network without a pretrained backbone, which
    would be ignored.

    Trainers call it first, so minutes of data loading do not come before these errors.
    """
    check_model_name(model.name)
    check_weights = getattr(_REGISTRY[model.name], "check_weights", None)  # a builder's own model.weights rule
    if check_weights is not None:
        check_weights(model.weights)
    if fine_tune_epochs and not getattr(_REGISTRY[model.name], "has_backbone", False):
        backbones = ", ".join(name for name in list_models() if getattr(_REGISTRY[name], "has_backbone", False))
        raise UserError(f"train.fine_tune_epochs={fine_tune_epochs}: only the transfer backbones ({backbones}) train in two stages; "
                        f"{model.name} trains in one (give all its epochs as train.epochs)")


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
    check_model_name(name)
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


def weighted_layers(model: keras.Model) -> list[tuple[keras.layers.Layer, keras.layers.BatchNormalization | None]]:
    """Conv2D and Dense layers in graph order, each with the batch norm that follows it, if any."""
    batch_norm_after = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            batch_norm_after[layer.input._keras_history.operation.name] = layer
    return [(layer, batch_norm_after.get(layer.name)) for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def load_saved_model(path: str | Path, role: str = "model file") -> keras.Model:
    """Loads a ``.keras`` file, turning a missing or unreadable file into a one-line UserError.

    Args:
        path: A ``.keras`` file.
        role: What the file is to the caller, for the not-found message (e.g. "train.init_from model").

    Raises:
        UserError: When the file is missing or Keras cannot load it.
    """
    if not Path(path).is_file():
        raise UserError(f"{path}: {role} not found")
    if Path(path).suffix == ".tflite":
        raise UserError(f"{path}: an exported .tflite; this needs the .keras model it was exported from (a run folder's best.keras)")
    try:
        return keras.saving.load_model(path)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors for bad files
        raise UserError(f"{path}: cannot load Keras model ({str(err).splitlines()[0][:150]})") from None


def initialize_from(model: keras.Model, path: str, freeze_batch_norm: bool = False, labels: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Copies the weights of the saved model at ``path`` into ``model`` (same architecture).

    When ``labels`` differ from the source's (read from the metrics.json beside ``path``), the
    backbone is copied whole and the ``logits`` layer row by row: each label the source also has,
    matched through the aliases, keeps its learned weights; the others keep their fresh
    initialisation. That fine-tunes a FERPlus model on FER2013's seven labels or on a custom set.

    With ``freeze_batch_norm``, every batch-norm layer is made untrainable, which in Keras 3 also
    keeps it in inference mode during training: its statistics stay as loaded. Members rebuilt by
    ``fer_keras.recover`` need that, since their batch norm holds folded biases, not statistics.

    Args:
        model: The freshly built model to initialise.
        path: A ``.keras`` file.
        freeze_batch_norm: Keep batch norm in inference mode (see above).
        labels: ``model``'s labels in output order; None means the same as the source's.

    Returns:
        The labels whose classifier weights came from the source (all of them without relabelling).

    Raises:
        UserError: When the file is missing, cannot be loaded, or its weights do not fit ``model``.
    """
    from fer_keras.labels import canonical
    from fer_keras.records import recorded_labels

    source = load_saved_model(path, "train.init_from model")
    source_labels = recorded_labels(path)
    relabel = labels is not None and source_labels is not None and tuple(labels) != source_labels
    # Same architecture means the same weighted layers in the same order (names may carry counters).
    targets, sources = [layer for layer in model.layers if layer.weights], [layer for layer in source.layers if layer.weights]

    def fits(layer: keras.layers.Layer, other: keras.layers.Layer) -> bool:
        shapes, wanted = [w.shape for w in other.get_weights()], [w.shape for w in layer.get_weights()]
        if relabel and layer.name == "logits":  # the same inputs; the outputs are mapped by label
            return shapes[0][0] == wanted[0][0]
        return shapes == wanted

    if len(targets) != len(sources) or not all(fits(layer, other) for layer, other in zip(targets, sources)):
        raise UserError(f"{path}: its weights do not fit model {model.name!r} (different architecture, width or classes)")
    carried = tuple(labels if labels is not None else source_labels or ())
    if relabel:
        source_row = {canonical(name) or name: i for i, name in enumerate(source_labels)}
        rows = {i: source_row.get(canonical(name) or name) for i, name in enumerate(labels)}
        carried = tuple(name for i, name in enumerate(labels) if rows[i] is not None)
        log.info("init_from: the classifier keeps its learned weights for %d of %d labels (%s)", len(carried), len(labels), ", ".join(carried) or "none")
    for layer, other in zip(targets, sources):
        if relabel and layer.name == "logits":
            (kernel, bias), (source_kernel, source_bias) = layer.get_weights(), other.get_weights()
            for i, j in rows.items():
                if j is not None:
                    kernel[:, i], bias[i] = source_kernel[:, j], source_bias[j]
            layer.set_weights([kernel, bias])
        else:
            layer.set_weights(other.get_weights())
    if freeze_batch_norm:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return carried


# Importing the families registers their models.
from fer_keras.models import cnn, mobilenet  # noqa: E402,F401
