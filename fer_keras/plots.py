"""Matplotlib/seaborn figures shared by training callbacks and the evaluation report."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files, never to a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure_png(fig) -> bytes:
    """Renders a figure to PNG bytes and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def save_figure(fig, path: Path) -> Path:
    """Writes a figure as PNG through a temporary file (never half-written) and closes it."""
    from fer_keras.files import write_atomic

    return write_atomic(path, figure_png(fig))


def confusion_matrix_figure(matrix, labels, normalize: bool = False, title: str = "Confusion matrix"):
    """A heatmap of a confusion matrix (rows: true class, columns: predicted), counts or row-normalised."""
    import seaborn as sns

    matrix = np.asarray(matrix, dtype=np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    sns.heatmap(matrix, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", xticklabels=labels, yticklabels=labels, cbar=False, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    return fig


def training_curves_figure(history: dict[str, list[float]]):
    """Loss and accuracy per epoch for train and validation, plus the learning rate when logged."""
    panels = [("loss", "loss"), ("accuracy", "accuracy")] + ([("learning_rate", "learning rate")] if "learning_rate" in history else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(range(1, len(history[prefix + key]) + 1), history[prefix + key], style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    return fig
