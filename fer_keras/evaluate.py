"""Evaluate a model on any labelled face folder: ``python -m fer_keras.evaluate --data-dir DIR --out DIR``.

One metrics path for ``.keras``, ``.tflite`` and ``.onnx`` models. Writes ``metrics.json``, ``predictions.csv``
(one row per image), PNG plots and a self-contained ``report.html``. Dataset classes map onto the
model's labels through aliases; classes the model lacks are excluded and listed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from fer_keras import labels as taxonomy  # noqa: E402
from fer_keras.config import load_run_config  # noqa: E402
from fer_keras.data import (  # noqa: E402
    FER2013_USAGES, Dataset, Split, fer2013_usage, folder_labels, is_ferplus_layout, label_list_groups, load_config_dataset, load_ferplus_dataset, load_folder_dataset, locate_data_dir,
    pixel_digests, run_data_config, run_data_settings, trained_on_val_of, training_files,
)
from fer_keras.errors import ArgumentParser, UserError, cli_entry, in_range  # noqa: E402
from fer_keras.files import write_atomic, write_json  # noqa: E402
from fer_keras.metrics import classification_metrics  # noqa: E402
from fer_keras.runtime import parse_value_range  # noqa: E402

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    """A model behind one interface: labels, input shape, and raw-pixel batch → probabilities."""

    path: Path
    labels: tuple[str, ...]
    input_shape: tuple[int, int, int]
    predict: Callable[[np.ndarray], np.ndarray]
    keras_model: object | None = None


def load_keras_model(path: Path, labels_arg: str | None = None):
    """Loads a ``.keras`` model and its labels (``labels_arg``, else its run folder's metrics.json).

    Raises:
        UserError: When the file cannot be loaded or no labels can be found.
    """
    if not path.is_file():  # checked before importing Keras, so a typo fails fast
        raise UserError(f"{path}: model file not found")
    # Both import Keras, so only when a .keras model is loaded; fer_keras.models also registers the custom layers.
    from fer_keras.models import load_saved_model
    from fer_keras.records import recorded_labels

    model = load_saved_model(path)
    labels = tuple(labels_arg.split(",")) if labels_arg else recorded_labels(path)
    if labels is None:
        raise UserError(f"{path}: no labels found: no metrics.json beside it (a run folder has one) and no --labels (evaluate, explain, export)")
    if len(labels) != model.output_shape[-1]:
        raise UserError(f"{path}: {len(labels)} labels for a model with {model.output_shape[-1]} outputs")
    return model, labels


def load_predictor(model: str | Path | None, labels_arg: str | None = None, value_range: tuple[float, float] | None = None, balance: float = 0.0) -> Predictor:
    """A Predictor for a ``.keras``, ``.tflite`` or ``.onnx`` file, or a packaged model name (None = packaged default).

    ``labels_arg`` and ``value_range`` describe third-party ``.tflite`` or ``.onnx`` files without metadata;
    ``balance`` is ``EmotionClassifier``'s class-prior correction (exported files that embed a prior).
    """
    if model is not None and Path(model).suffix == ".keras":
        if balance:
            raise UserError(f"{model}: balance needs the class prior a .tflite export embeds; export the model first")
        keras_model, labels = load_keras_model(Path(model), labels_arg)
        _, h, w, c = keras_model.input_shape

        def predict(images):
            return keras_model.predict(images.astype(np.float32), batch_size=256, verbose=0)

        return Predictor(Path(model), labels, (int(h), int(w), int(c)), predict, keras_model)
    labels = labels_arg.split(",") if labels_arg else None
    if model is not None and Path(model).suffix == ".onnx":
        from fer_keras.onnx_model import OnnxClassifier

        onnx_model = OnnxClassifier(model, labels, value_range, balance)
        return Predictor(onnx_model.path, onnx_model.labels, (*onnx_model.input_size, onnx_model.channels), onnx_model.predict_many)
    from fer_keras.runtime import EmotionClassifier

    classifier = EmotionClassifier(model, labels=labels, value_range=value_range, balance=balance)
    return Predictor(classifier.path, classifier.labels, (*classifier.input_size, classifier.channels), classifier.predict_many)


def load_evaluation_data(label_set: str, root: Path, split: str, shape: tuple[int, int, int], holdout: dict | None = None) -> tuple[Dataset, Split]:
    """The dataset under ``root`` and the split to evaluate.

    A plain folder of class folders is evaluated whole, unless ``holdout`` (the keyword arguments of
    ``load_folder_dataset`` that cut a run's hold-outs) says it was trained on: then its held-out split.
    """
    height, _, channels = shape
    if label_set == "ferplus":
        dataset = load_ferplus_dataset(root, height, channels)
    else:
        dataset = load_folder_dataset(root, folder_labels(root), height, channels, **(holdout or {}))
    name = {"test": "test", "val": "val"}[split]
    if name not in dataset.splits:
        name = "test" if "test" in dataset.splits else next(iter(dataset.splits))
    return dataset, dataset.splits[name]


def with_face_crops(split: Split, detector_name: str, detector_model: str | None, shape: tuple[int, int, int]) -> tuple[Split, list[str]]:
    """The split with each image replaced by the largest detected face, cut out as ``fer_keras.detect`` does.

    For datasets of whole photos or loosely framed faces: the models expect FER2013's tight,
    square framing, which ``crop_face`` reproduces for each detector (experiments/framing/).

    Args:
        split: Images with their source files (the originals are read again at full size).
        detector_name: A detector of ``fer_keras.faces.DETECTORS``.
        detector_model: The detector's model file, where it needs one (YuNet).
        shape: The model's (height, width, channels).

    Returns:
        The split of the images where a face was found, and the files where none was.
    """
    from fer_keras.faces import box_area, crop_face, crop_margin, crop_side, make_detector
    from fer_keras.runtime import to_model_input
    from fer_keras.sources import decode_image

    detector = make_detector(detector_name, detector_model)
    margin, max_side = crop_margin(detector), crop_side(shape)
    crops, found, missed = [], np.zeros(len(split), dtype=bool), []
    for i, path in enumerate(split.paths):
        frame = decode_image(path)
        faces = detector(frame) if frame is not None else []
        if not faces:
            missed.append(path)
            continue
        largest = max(faces, key=box_area)
        crops.append(crop_face(frame, largest, margin, max_side))
        found[i] = True
    height, width, channels = shape
    images = to_model_input(crops, (height, width), channels).astype(np.uint8)
    return Split(images, split.targets[found], [p for p, ok in zip(split.paths, found) if ok]), missed


def map_to_model_labels(
    split: Split, data_labels: tuple[str, ...], model_labels: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Images and model-label indices for the samples whose class the model knows; the rest's class names.

    Returns:
        images (M, H, W, C), y (M,) indices into ``model_labels``, the M source files, and excluded class names.
    """
    mapping, excluded = taxonomy.match_classes(list(data_labels), model_labels)
    lookup = np.array([mapping.get(label, -1) for label in data_labels])
    y = lookup[split.labels]
    keep = y >= 0
    present = {data_labels[i] for i in np.unique(split.labels)}
    paths = [path for path, kept in zip(split.paths, keep) if kept]
    return split.images[keep], y[keep], paths, [name for name in excluded if name in present]


def accuracy_by_group(groups: list[str], correct: np.ndarray, order: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Accuracy per group of images.

    Args:
        groups: Each image's group.
        correct: Whether each image was classified right.
        order: The groups in the order to report them (default: sorted).

    Returns:
        ``{group: {"accuracy": …, "n": …}}`` for each group that has images.
    """
    groups = np.array(groups, dtype=object)
    return {
        group: {"accuracy": float(correct[groups == group].mean()), "n": int((groups == group).sum())}
        for group in (order or sorted(set(groups)))
        if (groups == group).any()
    }


def accuracy_by_usage(paths: list[str], correct: np.ndarray) -> dict[str, dict]:
    """Accuracy per original FER2013 split when every file name starts with one (``PrivateTest_…``).

    Returns:
        ``{usage: {"accuracy": …, "n": …}}`` in ``FER2013_USAGES`` order, or ``{}`` for other file names.
    """
    usages = [fer2013_usage(path) for path in paths]
    if not usages or not set(usages) <= set(FER2013_USAGES):
        return {}
    return accuracy_by_group(usages, correct, FER2013_USAGES)


def predictions_csv(paths: list[str], y: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...]) -> str:
    """One row per image: its file, true and predicted label, the predicted label's probability, every probability."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file", "label", "predicted", "score", *labels])
    for path, true, row in zip(paths, y, probabilities):
        best = int(row.argmax())
        writer.writerow([path, labels[true], labels[best], f"{row[best]:.4f}", *(f"{p:.4f}" for p in row)])
    return rows.getvalue()


TTA_DESCRIPTIONS = {"flip": "horizontal flip", "ten-crop": "ten crops: four corners and centre, 11/12 of each side, each with its mirror"}
TTA_MODES = tuple(TTA_DESCRIPTIONS)
# Ten-crop keeps 11/12 of each side (44 of 48 px), the usual choice on FER2013, and so stays within
# the trainers' random translation and zoom (10%): every crop looks like a training view.
TEN_CROP_SIDE = 11 / 12


def ten_crop_views(images: np.ndarray) -> list[np.ndarray]:
    """The four corner crops and the centre crop of a batch (N, H, W, C), each resized back to H×W."""
    import cv2

    height, width = images.shape[1:3]
    crop_height, crop_width = round(height * TEN_CROP_SIDE), round(width * TEN_CROP_SIDE)
    corners = [(0, 0), (0, width - crop_width), (height - crop_height, 0), (height - crop_height, width - crop_width)]
    views = []
    for top, left in corners + [((height - crop_height) // 2, (width - crop_width) // 2)]:
        crops = images[:, top : top + crop_height, left : left + crop_width]
        resized = [cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR) for crop in crops]
        views.append(np.stack(resized).reshape(images.shape))  # cv2.resize keeps the dtype
    return views


def predict_probabilities(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, tta: str | None) -> np.ndarray:
    """Probabilities from ``predict`` (raw-pixel batch → probabilities), averaged over test-time views.

    ``tta`` names a mode of ``TTA_MODES`` or is None: "flip" adds each face's mirror image;
    "ten-crop" averages the four corner crops and the centre crop (see ``TEN_CROP_SIDE``) and
    their mirrors, ten views in all.
    """
    views = ten_crop_views(images) if tta == "ten-crop" else [images]
    if tta:
        views += [view[:, :, ::-1] for view in views]
    return np.mean([predict(view) for view in views], axis=0)


def run_validation_views(model_path: Path, data_dir: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A run folder's model on its own run's validation split, on the face and on the face with its mirror.

    The split is read as the run's config.yaml describes it, input size included (the loader upsamples
    48-pixel faces for a network trained at 64), so networks of different input sizes are scored on the
    same faces, each as it was trained. Probe scripts cache what this returns and combine it.

    Args:
        model_path: A ``.keras`` model inside a run folder (beside its config.yaml and metrics.json).
        data_dir: Replaces the run's ``data.data_dir`` when given (the data may have moved).

    Returns:
        The validation labels, and the probabilities by view: "original" (the face) and "both" (the face
        and its mirror averaged).
    """
    val = load_config_dataset(load_run_config(model_path.parent, data_dir), with_test=False).splits["val"]
    model = load_keras_model(model_path)[0]
    run = lambda batch: model.predict(batch, batch_size=256, verbose=0)  # noqa: E731
    return val.labels, {"original": predict_probabilities(run, val.images, None), "both": predict_probabilities(run, val.images, "flip")}


def restrict_to_present(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Zeroes the classes absent from the data and renormalises, so the argmax is taken over present classes."""
    present = np.zeros(probabilities.shape[1], dtype=bool)
    present[np.unique(y)] = True
    restricted = np.where(present, probabilities, 0.0)
    return restricted / np.maximum(restricted.sum(axis=1, keepdims=True), 1e-12)


def _png(fig) -> bytes:
    from fer_keras.plots import figure_png

    return figure_png(fig)


def make_plots(metrics: dict, probabilities: np.ndarray, y: np.ndarray, images: np.ndarray, predictor: Predictor, history_csv: Path | None) -> dict[str, bytes]:
    """All report figures as PNG bytes, by file name."""
    from sklearn.metrics import roc_curve

    from fer_keras.plots import confusion_matrix_figure, plt, training_curves_figure

    labels = list(predictor.labels)
    present = [i for i in range(len(labels)) if metrics["per_class"][labels[i]]["support"] > 0]
    plots = {
        "confusion_matrix.png": _png(confusion_matrix_figure(metrics["confusion_matrix"], labels)),
        "confusion_matrix_normalized.png": _png(confusion_matrix_figure(metrics["confusion_matrix"], labels, normalize=True)),
    }
    fig, ax = plt.subplots(figsize=(6, 5))
    for i in present:
        if metrics["per_class"][labels[i]]["auc"] is not None:
            fpr, tpr, _ = roc_curve(y == i, probabilities[:, i])
            ax.plot(fpr, tpr, label=f"{labels[i]} (AUC {metrics['per_class'][labels[i]]['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if ax.get_legend_handles_labels()[0]:
        ax.set_title("One-vs-rest ROC")
        ax.legend(fontsize=8)
    else:  # each curve needs faces of its class and of others
        ax.set_title("One-vs-rest ROC: none, the data has fewer than two classes")
    plots["roc_curves.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 4))
    positions = np.arange(len(labels))
    for offset, key in zip((-0.27, 0, 0.27), ("precision", "recall", "f1")):
        ax.bar(positions + offset, [metrics["per_class"][k][key] for k in labels], width=0.27, label=key)
    ax.set_xticks(positions, labels, rotation=30)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Per-class precision, recall, F1")
    plots["per_class_scores.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 3.5))
    ax.bar(labels, [metrics["per_class"][k]["support"] for k in labels], color="grey")
    ax.set_title(f"Class distribution (n={metrics['n']})")
    ax.tick_params(axis="x", rotation=30)
    plots["class_distribution.png"] = _png(fig)

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:16]
    if len(worst):
        cols = 8
        rows = int(np.ceil(len(worst) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, i in zip(axes.ravel(), worst):
            ax.imshow(images[i].squeeze(), cmap="gray" if images.shape[-1] == 1 else None, vmin=0, vmax=255)
            ax.set_title(f"true {labels[y[i]]}\npred {labels[predicted[i]]} {probabilities[i, predicted[i]]:.0%}", fontsize=7)
        fig.suptitle("Most confident mistakes")
        plots["confident_mistakes.png"] = _png(fig)

    from fer_keras.explain import gradcam, gradcam_layer, occlusion_sensitivity

    layer = gradcam_layer(predictor.keras_model)
    if layer is not None:
        def explain(faces, classes):
            return gradcam(predictor.keras_model, faces, classes, layer)[0]

        plots["gradcam_grid.png"] = _png(heatmap_grid(labels, images, y, predicted, present, explain, "Grad-CAM", per_kind=2))
    else:
        # A .tflite, or an ensemble, whose conv layers are its members': occlusion needs predictions
        # only. One face of each kind, as each costs 101 predictions (1.3 s with the accurate tier).
        def explain(faces, classes):
            return occlusion_sensitivity(predictor.predict, faces, classes)[0]

        plots["occlusion_grid.png"] = _png(heatmap_grid(labels, images, y, predicted, present, explain, "Occlusion sensitivity", per_kind=1))
    if history_csv is not None and history_csv.is_file():
        import pandas as pd

        plots["training_curves.png"] = _png(training_curves_figure(pd.read_csv(history_csv).to_dict(orient="list")))
    return plots


def heatmap_grid(labels, images: np.ndarray, y: np.ndarray, predicted: np.ndarray, present: list[int], explain, method: str, per_kind: int):
    """Heatmap overlays of the predicted class: for each present class, ``per_kind`` correct and ``per_kind`` wrong examples.

    Args:
        labels: The model's labels.
        images: The evaluated faces, raw 0-255 pixels at the model's input size.
        y: True class indices.
        predicted: Predicted class indices.
        present: Indices of the classes the data holds, one grid row each.
        explain: (faces, classes) -> heatmaps (N, H, W) in [0, 1].
        method: The method's name, for the title.
        per_kind: Examples of each kind (right, wrong) per class.
    """
    from fer_keras.explain import overlay
    from fer_keras.plots import plt

    rng = np.random.default_rng(0)
    height = len(present) * 1.8
    fig, axes = plt.subplots(len(present), 2 * per_kind, figsize=(max(2 * per_kind, 3) * 1.6, height), squeeze=False)
    for row, k in zip(axes, present):
        for col_offset, mask, kind in ((0, (y == k) & (predicted == k), "right"), (per_kind, (y == k) & (predicted != k), "wrong")):
            chosen = rng.permutation(np.flatnonzero(mask))[:per_kind]
            if len(chosen):
                heatmaps = explain(images[chosen].astype(np.float32), predicted[chosen])
            for j in range(per_kind):
                ax = row[col_offset + j]
                ax.axis("off")
                if j < len(chosen):
                    ax.imshow(overlay(images[chosen[j]], heatmaps[j]))
                    ax.set_title(f"{labels[k]} → {labels[predicted[chosen[j]]]} ({kind})", fontsize=7)
    fig.suptitle(f"{method} of the predicted class (true → predicted)", fontsize=10 if per_kind > 1 else 8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # the title's 0.4 inch, whatever the rows
    return fig


def write_report(out: Path, metrics: dict, plots: dict[str, bytes]) -> Path:
    """A self-contained HTML page (images embedded as base64) with the metrics and every plot."""
    labels = metrics["labels"]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>" + "".join(
            f"<td>{metrics['per_class'][k][m]:.3f}</td>" if metrics["per_class"][k][m] is not None else "<td>–</td>" for m in ("precision", "recall", "f1", "auc")
        ) + f"<td>{metrics['per_class'][k]['support']}</td></tr>"
        for k in labels
    )
    summary = "".join(
        f"<tr><th>{name}</th><td>{value}</td></tr>"
        for name, value in (
            ("model", html.escape(str(metrics["model"]))),
            ("data", html.escape(f"{metrics['data_dir']} ({metrics['label_set']}, {metrics['split']} split)")),
            ("images", metrics["n"]),
            ("accuracy", f"{metrics['accuracy']:.4f}"),
            *((f"accuracy on {usage}", f"{scores['accuracy']:.4f} ({scores['n']} images)") for usage, scores in metrics.get("accuracy_by_usage", {}).items()),
            *((html.escape(f"accuracy where {metrics['group_by']} is {group}"), f"{scores['accuracy']:.4f} ({scores['n']} images)")
              for group, scores in metrics.get("accuracy_by_group", {}).items()),
            *((html.escape(f"accuracy on faces {'' if kind == 'seen' else 'not '}pixel-identical to one in {metrics['seen_in']}"), f"{scores['accuracy']:.4f} ({scores['n']} images)")
              for kind, scores in metrics.get("accuracy_by_seen", {}).items()),
            ("balanced accuracy", f"{metrics['balanced_accuracy']:.4f}"),
            ("macro F1", f"{metrics['macro_f1']:.4f}"),
            ("macro AUC", f"{metrics['macro_auc']:.4f}" if metrics["macro_auc"] is not None else "–"),
            ("test-time augmentation", TTA_DESCRIPTIONS.get(metrics["tta"], "none")),
            ("class-prior correction (balance)", metrics["balance"]),
            ("faces cut out by", html.escape(f"{metrics['crop_faces']} ({len(metrics['no_face_files'])} images without a face left out)") if metrics["crop_faces"] else "none: images used as they are"),
            ("argmax over present classes only", metrics["restrict_to_present"]),
            ("excluded classes", html.escape(", ".join(metrics["excluded_classes"]) or "none")),
            ("skipped files", len(metrics["skipped_files"])),
        )
    )
    figures = "".join(
        f"<figure><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'><figcaption>{name}</figcaption></figure>"
        for name, png in plots.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>fer_keras evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
img{{max-width:100%}}figure{{margin:1.5em 0}}</style></head><body>
<h1>Evaluation report</h1><table>{summary}</table>
<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>AUC</th><th>support</th></tr>{rows}</table>
<h2>Figures</h2>{figures}</body></html>"""
    return write_atomic(out / "report.html", page)


def evaluate(
    model: str | Path | None,
    data_dir: str | None,
    out: Path,
    label_set: str | None = None,
    split: str = "test",
    tta: str | None = None,
    restrict: bool = False,
    labels_arg: str | None = None,
    run_dir: Path | None = None,
    plots: bool = True,
    value_range: tuple[float, float] | None = None,
    balance: float = 0.0,
    crop_faces: str | None = None,
    detector_model: str | None = None,
    group_by: str | None = None,
    seen_in: str | None = None,
) -> dict:
    """Evaluates a model on a labelled folder and writes metrics.json, predictions.csv, the plots and report.html.

    With ``crop_faces`` (a detector name) every image is replaced by its largest detected face,
    framed as ``fer_keras.detect`` frames it; images without a face are left out and listed.
    ``label_set`` None scores a model on the data its run trained on by that run's label set
    (``ferplus``: FERPlus's majority labels and splits), and any other folder by its own class folders.
    A run whose recorded data folder is missing on this machine (trained on a lent GPU, or before the
    data moved) counts as trained on ``data_dir``: its hold-out and label set apply.
    With ``group_by`` (a column of the data's label list) the accuracy is also reported per value of
    that column, under ``accuracy_by_group``; rows that leave it empty form the group ``(blank)``.
    With ``seen_in`` (a dataset folder or label list; its ``train`` part where it has one) the
    accuracy is also reported apart for the faces pixel-identical to one of its images and for the
    rest (``accuracy_by_seen``), and the former are listed (``seen_files``).
    A refit's run (``data.val_split=public_test_refit``), an ensemble or soup with a member that
    trained on its val split, or a run started from (``train.init_from``) or taught by (``data.teacher``)
    a model that did (``data.trained_on_val_of``), trained on its val split too: scored there, a
    warning says so and the metrics carry ``val_trained_on``.

    Returns:
        The metrics dict.
    """
    predictor = load_predictor(model, labels_arg, value_range, balance)
    root = locate_data_dir(data_dir)
    # The run that trained on this folder split it so: score the faces it held out (a plain folder's
    # test or val split, or train/'s validation hold-out as that run cut it).
    run_dir = run_dir or predictor.path.parent
    run = run_data_settings(run_dir)
    recorded = Path(run["data_dir"]) if run.get("data_dir") else None
    # A run trained elsewhere (on a lent GPU, or before the data moved) names a folder missing here: it
    # is taken to have trained on this one, else --split val would score a fresh cut of faces it trained on.
    trained_here = recorded is not None and (recorded.resolve() == root.resolve() or not recorded.exists())
    # On the data its run trained on, a model is scored by that run's labels unless told otherwise: a
    # FERPlus run read as a plain folder would be scored, silently, on FER2013's original labels.
    label_set = label_set or (run.get("label_set") if trained_here else None) or ("ferplus" if is_ferplus_layout(root) else "folder")
    dataset, chosen = load_evaluation_data(label_set, root, split, predictor.input_shape, run["holdout"] if trained_here else None)
    # A refit trained on its val split too (PublicTest, for a recipe chosen there before), and so did an
    # ensemble or soup with a member that trained on its val faces (its metrics.json lists them), and a
    # fine-tune or student of a model that did: scored there, it is fit, not validation.
    val_trained_on = split == "val" and trained_here and trained_on_val_of(run_dir, run_data_config(run, root))
    if val_trained_on:
        log.warning("%s: its run trained on the val split too (data.val_split=public_test_refit, a member that trained on it, "
                    "or a start or teacher that did): these figures are fit, not validation", predictor.path)
    groups = label_list_groups(root, group_by) if group_by else {}  # read before any face is classified, so a wrong column fails at once
    seen_digests = set(pixel_digests(training_files(locate_data_dir(seen_in, "--seen-in")))) - {None} if seen_in else set()
    no_face: list[str] = []
    if crop_faces:
        chosen, no_face = with_face_crops(chosen, crop_faces, detector_model, predictor.input_shape)
        if len(chosen) == 0:
            raise UserError(f"{root}: the {crop_faces} detector found no face in any image")
    images, y, paths, excluded = map_to_model_labels(chosen, dataset.labels, predictor.labels)
    excluded = sorted(set(excluded) | set(dataset.excluded_classes))
    if len(y) == 0:
        raise UserError(f"{root}: no images of any class the model knows ({', '.join(predictor.labels)}); the data's classes: {', '.join(excluded)}")
    probabilities = predict_probabilities(predictor.predict, images, tta)
    if restrict:
        probabilities = restrict_to_present(probabilities, y)
    metrics = classification_metrics(y, probabilities, predictor.labels)
    correct = probabilities.argmax(1) == y
    # As metrics.json's data_dir sees them; a label list's paths start from its folder.
    files = [os.path.relpath(path, root if root.is_dir() else root.parent) for path in paths]
    by_usage = accuracy_by_usage(paths, correct)
    if by_usage:
        metrics["accuracy_by_usage"] = by_usage
    if group_by:
        metrics["group_by"] = group_by
        metrics["accuracy_by_group"] = accuracy_by_group([groups.get(path) or "(blank)" for path in paths], correct)
    if val_trained_on:
        metrics["val_trained_on"] = True
    if seen_in:
        seen = [digest in seen_digests for digest in pixel_digests(paths)]
        metrics["seen_in"] = str(seen_in)
        metrics["accuracy_by_seen"] = accuracy_by_group(["seen" if hit else "unseen" for hit in seen], correct, order=("unseen", "seen"))
        metrics["seen_files"] = [file for file, hit in zip(files, seen) if hit]
    metrics.update(
        model=str(predictor.path),
        data_dir=str(root),
        label_set=label_set,
        split=split,
        tta=tta,
        balance=balance,
        crop_faces=crop_faces,
        no_face_files=no_face,
        restrict_to_present=restrict,
        excluded_classes=excluded,
        skipped_files=[{"path": p, "reason": why} for p, why in dataset.skipped],
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    write_atomic(out / "predictions.csv", predictions_csv(files, y, probabilities, predictor.labels))
    if plots:
        history = run_dir / "history.csv"
        figures = make_plots(metrics, probabilities, y, images, predictor, history)
        for name, png in figures.items():
            write_atomic(out / name, png)
        write_report(out, metrics, figures)
    return metrics


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.evaluate", description="Metrics, plots and an HTML report for an emotion model on labelled faces.")
    parser.add_argument("--model", help=".keras, .tflite or .onnx file, or a packaged model name (default: the packaged default model)")
    parser.add_argument("--data-dir", help="labelled folder of class folders, or a .csv label list with path and label columns (else $FER_KERAS_DATA, else kagglehub)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--label-set", choices=("folder", "fer2013", "ferplus"), help="default: the label set of the model's run when scored on the data that run trained on, else ferplus on FERPlus's own layout (FER2013Train/ …), else folder (the class folders' own labels)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="a plain folder of class folders is scored whole, unless the model's run trained on it: then its hold-out")
    parser.add_argument("--tta", nargs="?", const="flip", choices=TTA_MODES, help="average over test-time views: flip (the default with a bare --tta) or ten-crop")
    parser.add_argument("--restrict-to-present", action="store_true", help="argmax over the classes present in the data only")
    parser.add_argument("--crop-faces", nargs="?", const="blazeface", metavar="DETECTOR", help="detect the largest face in each image and cut it out as detect does (whole photos; default detector blazeface)")
    parser.add_argument("--detector-model", help="model file for a detector that needs one (yunet: its .onnx)")
    parser.add_argument("--balance", type=in_range(0, 1), default=0.0, metavar="B", help="class-prior correction of a .tflite or .onnx export, 0 (training frequencies) to 1 (all emotions equally likely)")
    parser.add_argument("--labels", help="comma-separated labels, in output order, of a .keras model without a run folder or a third-party .tflite or .onnx without our metadata")
    parser.add_argument("--value-range", metavar="LOW,HIGH", help="input range of a third-party .tflite or .onnx without our metadata, e.g. --value-range -1,1 (ours take raw 0-255 pixels)")
    parser.add_argument("--run-dir", type=Path, help="training run folder for the training-curves plot and the hold-outs of the data it trained on (default: the model's folder)")
    parser.add_argument("--seen-in", metavar="DATA", help="also report the accuracy apart on faces pixel-identical to an image of DATA (a training set: its train/ part where it has one) and on the rest, and list the former")
    parser.add_argument("--group-by", metavar="COLUMN", help="also report accuracy per value of this column of a .csv label list (a dataset, subject, gender or age group)")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    value_range = parse_value_range(args.value_range, "--value-range") if args.value_range else None
    metrics = evaluate(
        args.model, args.data_dir, args.out, args.label_set, args.split, args.tta, args.restrict_to_present, args.labels, args.run_dir,
        value_range=value_range, balance=args.balance, crop_faces=args.crop_faces, detector_model=args.detector_model, group_by=args.group_by,
        seen_in=args.seen_in,
    )
    print(f"accuracy {metrics['accuracy']:.4f}  balanced {metrics['balanced_accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}  n={metrics['n']}")
    for usage, scores in metrics.get("accuracy_by_usage", {}).items():
        print(f"  {usage}: accuracy {scores['accuracy']:.4f}  n={scores['n']}")
    for group, scores in metrics.get("accuracy_by_group", {}).items():
        print(f"  {metrics['group_by']} {group}: accuracy {scores['accuracy']:.4f}  n={scores['n']}")
    for kind, scores in metrics.get("accuracy_by_seen", {}).items():
        print(f"  {kind} in {metrics['seen_in']}: accuracy {scores['accuracy']:.4f}  n={scores['n']}")
    if metrics["no_face_files"]:
        print(f"no face found in {len(metrics['no_face_files'])} images (left out; listed in metrics.json)")
    if metrics["excluded_classes"]:
        print(f"excluded classes (not in the model): {', '.join(metrics['excluded_classes'])}")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'predictions.csv'} and {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
