"""Classification metrics from labels and predicted probabilities (no TensorFlow)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, per-class precision/recall/F1/support/AUC and the confusion matrix.

    Args:
        y_true: Integer labels (N,), indices into ``labels``.
        probabilities: (N, C) predicted probabilities.
        labels: Class names, in column order.

    Returns:
        A JSON-ready dict. Classes with no true sample get support 0 and AUC None; they do not
        count towards balanced accuracy, macro F1 or macro AUC.
    """
    # Imported here, so that importing a command that scores models works without the train extra
    # and its main() can say what to install.
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_pred = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    present = sorted(set(y_true.tolist()))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=indices, zero_division=0)
    per_class = {}
    aucs = []
    for i, label in enumerate(labels):
        auc = None
        positives = y_true == i
        if 0 < positives.sum() < len(y_true):
            auc = float(skm.roc_auc_score(positives, probabilities[:, i]))
            aucs.append(auc)
        per_class[label] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "auc": auc,
        }
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "balanced_accuracy": float(np.mean([recall[i] for i in present])) if present else 0.0,
        "macro_f1": float(np.mean([f1[i] for i in present])) if present else 0.0,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "labels": list(labels),
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=indices).tolist(),
    }
