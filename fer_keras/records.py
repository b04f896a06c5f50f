"""Run folders: choosing one for a training run, and the records written when it ends.

TensorFlow-free, so the tf.data trainer and the accelerator trainer record runs alike:
config.yaml, history.csv, metrics.json, training_curves.png and confusion matrices.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer_keras import plots
from fer_keras.config import ExperimentConfig, load_config, save_config, to_dict
from fer_keras.data import Dataset
from fer_keras.errors import UserError
from fer_keras.files import write_atomic, write_json
from fer_keras.metrics import classification_metrics

if TYPE_CHECKING:  # Keras (and with it TensorFlow) loads only where a model is used, not when a CLI reads its arguments
    import keras

log = logging.getLogger(__name__)


def resolve_run_dir(config: ExperimentConfig, new: bool) -> tuple[Path, bool]:
    """The run folder: the newest unfinished run with the same name and config (resume), else a new one.

    Returns:
        The folder and whether it is a resumed run.
    """
    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    wanted = to_dict(config)
    if not new:
        for candidate in sorted(root.glob(f"*-{config.name}"), reverse=True):
            if (candidate / "metrics.json").exists() or not (candidate / "config.yaml").exists():
                continue
            if _saved_config(candidate / "config.yaml") != wanted:
                continue
            if (candidate / "backup").exists():
                return candidate, True
            # Resume state is git-ignored: a clone or a new machine gets a run's records without it.
            finished = _finished_epochs(candidate / "history.csv")
            if finished:
                log.warning("%s: %d finished epoch(s) recorded but no resume state (backup/ is missing), so it cannot be resumed",
                            candidate, finished)
    # Runs of one config launched together (seeds in parallel) can start in the same second: a
    # number after the stamp keeps them apart, and the name still ends in -<name> for resuming.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count(1):
        run_dir = root / (f"{stamp}-{config.name}" if attempt == 1 else f"{stamp}-{attempt}-{config.name}")
        try:
            run_dir.mkdir()
            return run_dir, False
        except FileExistsError:
            continue


def _finished_epochs(history: Path) -> int:
    """The epochs a run's history.csv records (0 when it is missing or empty)."""
    if not history.exists():
        return 0
    return max(len(history.read_text().splitlines()) - 1, 0)


def _saved_config(path: Path) -> dict | None:
    """A run's config.yaml resolved as today's defaults fill it, so a key added since (at its default) does not stop a resume; None if it no longer loads."""
    try:
        return to_dict(load_config(path))
    except UserError:  # a key since removed, or a value since refused: not this config
        return None


def report_counts(dataset: Dataset) -> dict:
    """Logs the images per class of every split and returns the counts."""
    counts = dataset.class_counts()
    for split, per_class in counts.items():
        log.info("%5s: %6d images  %s", split, sum(per_class.values()), "  ".join(f"{k}={v}" for k, v in per_class.items()))
    return counts


def begin_run(run_dir: Path, config: ExperimentConfig, dataset: Dataset) -> None:
    """Writes the records a run has from its start: the resolved config.yaml and skipped_files.txt."""
    save_config(config, run_dir / "config.yaml")
    write_atomic(run_dir / "skipped_files.txt", "".join(f"{path}\t{why}\n" for path, why in dataset.skipped))


def run_metrics(config: ExperimentConfig, model: keras.Model, dataset: Dataset, counts: dict, **facts) -> dict:
    """A finished run's metrics.json content: run facts (``facts`` adds the trainer's own) and per-split metrics."""
    return {
        "model": config.model.name,
        "parameters": int(model.count_params()),
        **facts,
        "seed": config.train.seed,
        "label_set": config.data.label_set,
        "labels": list(dataset.labels),
        "class_counts": counts,
        "skipped_files": len(dataset.skipped),
        **evaluate_splits(model, dataset),
    }


def evaluate_splits(model: keras.Model, dataset: Dataset) -> dict:
    """Classification metrics of ``model`` on every split except train, keyed by split name."""
    return {
        name: classification_metrics(split.labels, model.predict(split.images, batch_size=256, verbose=0), dataset.labels)
        for name, split in dataset.splits.items()
        if name != "train"
    }


def recorded_labels(model_path: Path | str) -> tuple[str, ...] | None:
    """The labels in the metrics.json beside a run's model file, in output order; None when it has none."""
    metrics = Path(model_path).parent / "metrics.json"
    if not metrics.is_file():
        return None
    return tuple(json.loads(metrics.read_text(encoding="utf-8")).get("labels", ())) or None


def shared_labels(model_paths: list[Path]) -> tuple[str, ...]:
    """The labels that every model in ``model_paths`` records, in output order.

    Raises:
        UserError: When a file is missing, has no metrics.json beside it, or its labels differ from the first's.
    """
    first = None
    for path in model_paths:
        if not path.is_file():
            raise UserError(f"{path}: model file not found")
        recorded = recorded_labels(path)
        if recorded is None:
            raise UserError(f"{path}: no metrics.json beside it, so its labels are unknown")
        if first is not None and recorded != first:
            raise UserError(f"{path}: labels {recorded} differ from {model_paths[0]}'s {first}")
        first = first or recorded
    return first


def write_model_folder(out_dir: Path, model: keras.Model, config_yaml: Path, metrics: dict) -> Path:
    """Writes the run folder of a model made from trained ones: best.keras, config.yaml and metrics.json.

    Args:
        out_dir: The folder (made if missing).
        model: The model, saved as ``best.keras``.
        config_yaml: A source run's config.yaml, copied: it describes the architecture and the data
            for ``evaluate``, ``ensemble``, ``export`` and ``recover``.
        metrics: The content of ``metrics.json``; its ``labels`` name the outputs.

    Returns:
        The path of ``best.keras``. Each file is written beside its destination and renamed into
        place, so an interrupted write leaves the folder's earlier files whole.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = out_dir / ".best.partial.keras"
    model.save(staged)
    staged.replace(out_dir / "best.keras")
    write_atomic(out_dir / "config.yaml", config_yaml.read_bytes())
    write_json(out_dir / "metrics.json", metrics)
    return out_dir / "best.keras"


def replace_model_folder(folder: Path, model: keras.Model, config_yaml: Path, metrics: dict) -> Path:
    """Writes ``write_model_folder``'s files into a sibling staging folder and renames it to ``folder``.

    An earlier folder of that name is replaced whole, and an interrupted write leaves it as it was.

    Returns:
        The path of the new ``best.keras``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        staged = Path(scratch) / folder.name
        write_model_folder(staged, model, config_yaml, metrics)
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return folder / "best.keras"


def best_val_accuracy(history_csv: Path) -> float:
    """The best validation accuracy recorded in a history.csv."""
    import pandas as pd

    history = pd.read_csv(history_csv)
    return float(np.nanmax(history["val_accuracy"])) if "val_accuracy" in history else float("nan")


def record_run(run_dir: Path, metrics: dict, labels: tuple[str, ...]) -> float:
    """Writes a finished run's records: cleaned history.csv, training curves, confusion matrices, metrics.json.

    Args:
        run_dir: The run folder, holding the history.csv the CSVLogger wrote.
        metrics: Run facts plus per-split metrics from ``evaluate_splits``.
        labels: Class names, for the confusion-matrix axes.

    Returns:
        The best validation accuracy in the history.
    """
    import pandas as pd

    # A SIGKILL between CSVLogger's row and the epoch's backup re-runs that epoch on resume: keep its last row.
    history_frame = pd.read_csv(run_dir / "history.csv").drop_duplicates(subset="epoch", keep="last")
    write_atomic(run_dir / "history.csv", history_frame.to_csv(index=False))
    history = history_frame.to_dict(orient="list")
    plots.save_figure(plots.training_curves_figure(history), run_dir / "training_curves.png")
    for name in ("val", "test"):
        if name in metrics:
            figure = plots.confusion_matrix_figure(metrics[name]["confusion_matrix"], labels, normalize=True, title=f"{name} confusion matrix")
            plots.save_figure(figure, run_dir / f"confusion_matrix_{name}.png")
    write_json(run_dir / "metrics.json", metrics)
    best_val = best_val_accuracy(run_dir / "history.csv")
    test_note = f", test accuracy {metrics['test']['accuracy']:.4f}" if "test" in metrics else ""
    print(f"run folder: {run_dir}  best val_accuracy {best_val:.4f}{test_note}")
    return best_val
