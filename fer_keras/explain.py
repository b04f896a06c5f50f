"""Grad-CAM: ``python -m fer_keras.explain --model M.keras --image IMG --out DIR``.

Written with ``tf.GradientTape`` on the Keras 3 model directly (Selvaraju et al. 2017): the class
score's gradients, averaged over space, weight the chosen conv layer's channels.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from fer_keras.errors import ArgumentParser, UserError, cli_entry  # noqa: E402
from fer_keras.faces import DEFAULT_DETECTOR, DETECTORS  # noqa: E402


def spatial_layer_names(model) -> list[str]:
    """Names of the outer graph's layers with a spatial (4-D) output, preprocessing layers left out, in order."""
    import keras

    skip = (keras.layers.InputLayer, keras.layers.Rescaling, keras.layers.Resizing, keras.layers.Concatenate, keras.Model)
    return [layer.name for layer in model.layers if len(getattr(layer.output, "shape", ())) == 4 and not isinstance(layer, skip)]


def find_last_conv_layer(model) -> str | None:
    """Name of the last layer with a spatial (4-D) output after the preprocessing layers, or None.

    None when no such layer is reachable from the outer graph: a nested backbone, or an ensemble,
    whose members are nested models.
    """
    import keras

    spatial = set(spatial_layer_names(model))
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            return None  # a nested backbone hides its conv layers from the outer graph
        if layer.name in spatial:
            return layer.name
    return None


def last_conv_layer(model) -> str:
    """``find_last_conv_layer``, required.

    Raises:
        UserError: When the model has none reachable (e.g. a nested backbone: pass ``layer``).
    """
    name = find_last_conv_layer(model)
    if name is None:
        raise UserError(f"{model.name}: no conv layer found in the outer graph for Grad-CAM; name one with --layer")
    return name


def gradcam(model, images: np.ndarray, class_index: int | np.ndarray | None = None, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps for a batch of raw-pixel images.

    Args:
        model: A Keras model.
        images: (N, H, W, C) raw 0-255 pixels.
        class_index: Class to explain (one for all, or one per image); None = each image's prediction.
        layer: Conv layer name; None = ``last_conv_layer(model)``.

    Returns:
        Heatmaps (N, H, W) float32 in [0, 1] at the input's resolution, and the explained class indices (N,).
    """
    import keras
    import tensorflow as tf

    layer = layer or last_conv_layer(model)
    try:
        feature_layer = model.get_layer(layer)
    except ValueError:
        raise UserError(f"{model.name}: no layer named {layer!r}; its spatial layers are {', '.join(spatial_layer_names(model)) or 'none'}") from None
    probe = keras.Model(model.inputs, [feature_layer.output, model.output])
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    with tf.GradientTape() as tape:
        features, probabilities = probe(x, training=False)
        if class_index is None:
            classes = tf.argmax(probabilities, axis=1)
        else:
            classes = tf.broadcast_to(tf.constant(class_index, dtype=tf.int64), [len(images)])
        score = tf.gather(tf.cast(probabilities, tf.float32), classes, batch_dims=1)
    # Differentiate w.r.t. the layer's own output (bfloat16 under mixed precision), then widen.
    gradients = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    cam = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0.0)
    height, width = images.shape[1:3]
    resized = tf.image.resize(cam[..., None], (height, width), method="bilinear").numpy()[..., 0]
    return np.clip(resized, 0, 1).astype(np.float32), classes.numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """An RGB uint8 picture of ``image`` with the heatmap (jet colours) blended over it."""
    import matplotlib

    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    colours = (matplotlib.colormaps["jet"](heatmap)[..., :3] * 255).astype(np.float32)
    return np.clip((1 - strength) * rgb.astype(np.float32) + strength * colours, 0, 255).astype(np.uint8)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.explain", description="Grad-CAM heatmaps of a .keras emotion model.")
    parser.add_argument("--model", required=True, type=Path, help=".keras model")
    parser.add_argument("--image", required=True, type=Path, help="a face crop, or a photo: each detected face is explained")
    parser.add_argument("--class", dest="class_name", help="label to explain (default: the predicted one)")
    parser.add_argument("--layer", help="conv layer (default: the last one)")
    parser.add_argument("--labels", help="comma-separated labels when the model has no run folder")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS), help="face detector for photos")
    parser.add_argument("--detector-model", help="model file for detectors that need one (yunet: its .onnx)")
    parser.add_argument("--out", required=True, type=Path)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.evaluate import load_keras_model
    from fer_keras.faces import crop_face, crop_margin, make_detector
    from fer_keras.plots import plt, save_figure
    from fer_keras.runtime import to_model_input
    from fer_keras.sources import read_image

    # The image and the detector first: their mistakes are found before TensorFlow loads.
    frame = read_image(args.image)
    detector = make_detector(args.detector, args.detector_model)
    model, labels = load_keras_model(args.model, args.labels)
    faces = detector(frame)
    crops = [crop_face(frame, face, crop_margin(detector)) for face in faces] if faces else [frame]
    _, height, width, channels = model.input_shape
    batch = to_model_input(crops, (height, width), channels)  # as the runtime feeds the exported model
    class_index = None
    if args.class_name:
        if args.class_name not in labels:
            raise UserError(f"--class {args.class_name!r} is not one of {', '.join(labels)}")
        class_index = labels.index(args.class_name)
    heatmaps, classes = gradcam(model, batch, class_index, args.layer)
    probabilities = model.predict(batch, verbose=0)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (image, heatmap, k) in enumerate(zip(batch, heatmaps, classes)):
        fig, ax = plt.subplots(figsize=(3, 3.3))
        ax.imshow(overlay(image, heatmap))
        ax.set_title(f"face {i + 1}: {labels[k]} ({probabilities[i, k]:.0%})")
        ax.axis("off")
        path = save_figure(fig, args.out / f"{args.image.stem}_face{i + 1}_gradcam.png")
        print(f"{path}: {labels[k]} {probabilities[i, k]:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
