"""Heatmaps of what a model looks at: ``python -m fer_keras.explain --image IMG --out DIR [--model M]``.

Grad-CAM for ``.keras`` models, written with ``tf.GradientTape`` on the Keras 3 model directly
(Selvaraju et al. 2017): the class score's gradients, averaged over space, weight the chosen conv
layer's channels. Occlusion sensitivity for any model (Zeiler & Fergus 2014): how far the class's
log-odds fall when a square of the face is hidden. It needs only predictions, so it explains
the shipped int8 ``.tflite`` tiers and third-party files too, without TensorFlow.
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
        raise UserError(f"{model.name}: no conv layer found in the outer graph for Grad-CAM; name one with --layer, or use --method occlusion")
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


def _log_odds(probability):
    # On the log-odds scale a confident face's small falls still count (0.99 -> 0.97 is as big as
    # 0.5 -> 0.25), where on the probability scale they are within an int8 output's 1/256 steps.
    # Clipped to half a step from 0 and 1, where int8 probabilities stop.
    p = np.clip(probability, 1 / 512, 1 - 1 / 512)
    return np.log(p) - np.log1p(-p)


def occlusion_sensitivity(predict, images: np.ndarray, class_index: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion-sensitivity heatmaps for a batch of raw-pixel images, from predictions alone.

    A square a quarter of the side, filled with the face's mean grey, slides over each face in
    steps of a third of its size (100 positions at 48 x 48). A pixel's heat is how far the class's
    log-odds fall when the square centred there is hidden (interpolated between the squares'
    centres; the border takes its nearest centre's), rises clipped to 0, scaled so that each
    face's peak is 1. A face the model is certain of may show little: no one square changes its mind.

    Args:
        predict: Raw-pixel batch (N, H, W, C) 0-255 -> (N, classes) probabilities.
        images: (N, H, W, C) raw 0-255 pixels at the model's input size.
        class_index: Class to explain (one for all, or one per image); None = each image's prediction.

    Returns:
        Heatmaps (N, H, W) float32 in [0, 1] and the explained class indices (N,).
    """
    from scipy.interpolate import RegularGridInterpolator

    images = np.asarray(images, dtype=np.float32)
    n, height, width = images.shape[:3]
    probabilities = predict(images)
    classes = probabilities.argmax(axis=1) if class_index is None else np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,))
    patch = max(1, round(min(height, width) / 4))
    stride = max(1, patch // 3)
    # The last square sits flush with the far edge, so the border is covered as often as its neighbours.
    tops = np.unique(np.r_[np.arange(0, height - patch + 1, stride), height - patch])
    lefts = np.unique(np.r_[np.arange(0, width - patch + 1, stride), width - patch])
    squares = [(top, left) for top in tops for left in lefts]
    # Each square's fall belongs to its centre: a pixel's heat is the fall when the square centred
    # on it is hidden, so the map peaks on the evidence itself rather than beside it.
    centre_rows, centre_cols = tops + (patch - 1) / 2, lefts + (patch - 1) / 2
    pixels = np.stack(np.meshgrid(np.clip(np.arange(height), centre_rows[0], centre_rows[-1]),
                                  np.clip(np.arange(width), centre_cols[0], centre_cols[-1]), indexing="ij"), axis=-1)

    def interpolate(grid: np.ndarray) -> np.ndarray:
        return RegularGridInterpolator((centre_rows, centre_cols), grid)(pixels)

    heatmaps = np.zeros((n, height, width), dtype=np.float32)
    for i in range(n):
        hidden = np.repeat(images[i : i + 1], len(squares), axis=0)
        fill = images[i].mean(axis=(0, 1))
        for j, (top, left) in enumerate(squares):
            hidden[j, top : top + patch, left : left + patch] = fill
        falls = _log_odds(probabilities[i, classes[i]]) - _log_odds(predict(hidden)[:, classes[i]])
        heat = np.clip(interpolate(falls.reshape(len(tops), len(lefts))), 0, None)
        heatmaps[i] = heat / heat.max() if heat.max() > 0 else heat
    return heatmaps, np.asarray(classes)


def overlay(image: np.ndarray, heatmap: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """An RGB uint8 picture of ``image`` with the heatmap (jet colours) blended over it."""
    import matplotlib

    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    colours = (matplotlib.colormaps["jet"](heatmap)[..., :3] * 255).astype(np.float32)
    return np.clip((1 - strength) * rgb.astype(np.float32) + strength * colours, 0, 255).astype(np.uint8)


METHODS = ("gradcam", "occlusion")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.explain", description="Heatmaps of what an emotion model looks at in each face: Grad-CAM or occlusion sensitivity.")
    parser.add_argument("--model", help=".keras, .tflite or .onnx file, or a packaged model name (default: the packaged default model)")
    parser.add_argument("--image", required=True, type=Path, help="a face crop, or a photo: each detected face is explained")
    parser.add_argument("--method", choices=METHODS, help="gradcam (.keras models only; the default for them) or occlusion (any model; the default for .tflite and .onnx)")
    parser.add_argument("--class", dest="class_name", help="label to explain (default: the predicted one)")
    parser.add_argument("--layer", help="conv layer for gradcam (default: the last one)")
    parser.add_argument("--labels", help="comma-separated labels of a .keras model without a run folder, or of a third-party .tflite or .onnx")
    parser.add_argument("--value-range", metavar="LOW,HIGH", help="input range of a third-party .tflite or .onnx, e.g. --value-range -1,1 (ours take raw 0-255 pixels)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS), help="face detector for photos")
    parser.add_argument("--detector-model", help="model file for detectors that need one (yunet: its .onnx)")
    parser.add_argument("--out", required=True, type=Path)
    return parser


def check_method(model: str | None, method: str | None, layer: str | None) -> None:
    """Refuses, before any model loads, what ``model`` cannot do: Grad-CAM without gradients (a ``.tflite``), ``--layer`` without Grad-CAM.

    Raises:
        UserError: For Grad-CAM or ``--layer`` on a model that is not ``.keras``, or ``--layer`` with occlusion.
    """
    keras_model = model is not None and Path(model).suffix == ".keras"
    if method == "gradcam" and not keras_model:
        raise UserError(f"{model or 'the packaged model'}: Grad-CAM needs a .keras model's gradients; use --method occlusion, "
                        "or rebuild a shipped tier's members as .keras with fer_keras.recover")
    if layer and (method == "occlusion" or not keras_model):
        raise UserError("--layer names the conv layer Grad-CAM explains; occlusion uses none")


def gradcam_layer(model, layer: str | None = None) -> str | None:
    """The conv layer Grad-CAM would explain in a Keras ``model``: ``layer`` if named, else the last one reachable.

    None for a model without gradients (``model`` None: a ``.tflite``) and for one whose conv layers are
    all nested (an ensemble's are its members'): those are explained by occlusion.
    """
    if model is None:
        return None
    return layer or find_last_conv_layer(model)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.evaluate import load_predictor
    from fer_keras.faces import crop_face, crop_margin, crop_side, make_detector
    from fer_keras.plots import plt, save_figure
    from fer_keras.runtime import parse_value_range, to_model_input
    from fer_keras.sources import read_image

    # The arguments, the image and the detector first: their mistakes are found before a model loads.
    check_method(args.model, args.method, args.layer)
    value_range = parse_value_range(args.value_range, "--value-range") if args.value_range else None
    frame = read_image(args.image)
    detector = make_detector(args.detector, args.detector_model)
    predictor = load_predictor(args.model, args.labels, value_range)
    labels = predictor.labels
    faces = detector(frame)
    height, width, channels = predictor.input_shape
    crops = [crop_face(frame, face, crop_margin(detector), crop_side((height, width))) for face in faces] if faces else [frame]
    batch = to_model_input(crops, (height, width), channels)  # as the runtime feeds the exported model
    class_index = None
    if args.class_name:
        if args.class_name not in labels:
            raise UserError(f"--class {args.class_name!r} is not one of {', '.join(labels)}")
        class_index = labels.index(args.class_name)
    method = args.method or ("gradcam" if gradcam_layer(predictor.keras_model, args.layer) else "occlusion")
    if method == "gradcam":
        heatmaps, classes = gradcam(predictor.keras_model, batch, class_index, args.layer)
    else:
        heatmaps, classes = occlusion_sensitivity(predictor.predict, batch, class_index)
    probabilities = predictor.predict(batch)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (image, heatmap, k) in enumerate(zip(batch, heatmaps, classes)):
        fig, ax = plt.subplots(figsize=(3, 3.3))
        ax.imshow(overlay(image, heatmap))
        ax.set_title(f"face {i + 1}: {labels[k]} ({probabilities[i, k]:.0%})")
        ax.axis("off")
        path = save_figure(fig, args.out / f"{args.image.stem}_face{i + 1}_{method}.png")
        print(f"{path}: {labels[k]} {probabilities[i, k]:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
