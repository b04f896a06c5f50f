"""Train a model: ``python -m fer_keras.train --config experiments/configs/NAME.yaml [key=value ...]``.

Each run writes ``<output_dir>/<time>-<name>/`` with the resolved config.yaml, history.csv,
best.keras, metrics.json, tensorboard/, training_curves.png and skipped_files.txt. Running the
same command again after the process was killed resumes the newest unfinished run of that
name and config from its last finished epoch.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fer_keras import hardware, plots  # noqa: E402
from fer_keras.callbacks import best_val_accuracy, make_callbacks  # noqa: E402
from fer_keras.config import ExperimentConfig, TrainConfig, load_config, save_config, to_dict  # noqa: E402
from fer_keras.data import Dataset, load_dataset  # noqa: E402
from fer_keras.errors import UserError, cli_entry  # noqa: E402
from fer_keras.files import write_atomic, write_json  # noqa: E402
from fer_keras.metrics import classification_metrics  # noqa: E402
from fer_keras.models import build_model  # noqa: E402
from fer_keras.pipeline import balanced_class_weights, make_dataset  # noqa: E402

log = logging.getLogger("fer_keras.train")


@dataclass
class RunResult:
    """What a finished training run produced."""

    run_dir: Path
    best_val_accuracy: float
    metrics: dict


def make_optimizer(train: TrainConfig, steps_per_epoch: int, learning_rate: float | None = None, epochs: int | None = None):
    """The optimizer named in the config, with a cosine schedule (and linear warm-up) when selected."""
    learning_rate = learning_rate or train.learning_rate
    epochs = epochs or train.epochs
    rate = learning_rate
    if train.schedule == "cosine":
        warmup_steps = train.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
            decay_steps=max(1, (epochs - train.warmup_epochs) * steps_per_epoch),
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
            alpha=0.01,
        )
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=train.momentum, nesterov=True)
    return keras.optimizers.Adam(rate)


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
            unfinished = (candidate / "backup").exists() and not (candidate / "metrics.json").exists()
            if unfinished and (candidate / "config.yaml").exists():
                import yaml

                if yaml.safe_load((candidate / "config.yaml").read_text()) == wanted:
                    return candidate, True
    run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.name}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir, False


def _compile(model: keras.Model, optimizer, train: TrainConfig) -> None:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def _unfreeze_top(backbone: keras.Model, n_layers: int) -> None:
    """Unfreezes the top ``n_layers`` of a backbone, keeping BatchNorm frozen (its statistics stay ImageNet's)."""
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= len(backbone.layers) - n_layers and not isinstance(layer, keras.layers.BatchNormalization)


def _report_counts(dataset: Dataset) -> dict:
    counts = dataset.class_counts()
    for split, per_class in counts.items():
        print(f"{split:>5}: {sum(per_class.values()):6d} images  " + "  ".join(f"{k}={v}" for k, v in per_class.items()))
    return counts


def run_training(config: ExperimentConfig, new: bool = False) -> RunResult:
    """Trains one experiment end to end and records it in a run folder.

    Args:
        config: The resolved experiment config.
        new: Start a new run even if an unfinished one with this config exists.

    Returns:
        The run folder, best validation accuracy and the final metrics.
    """
    precision = hardware.resolve_precision(config.train.precision)
    strategy = hardware.make_strategy(config.train)
    keras.utils.set_random_seed(config.train.seed)
    dataset = load_dataset(
        config.data.label_set,
        config.data.data_dir,
        config.model.image_size,
        config.model.channels,
        config.data.val_fraction,
        config.data.soft_labels,
        config.train.seed,
        config.data.max_per_class,
    )
    if "train" not in dataset.splits or "val" not in dataset.splits:
        raise UserError(f"{config.data.data_dir}: training needs train/ with a validation hold-out (data.val_fraction > 0)")
    counts = _report_counts(dataset)
    run_dir, resumed = resolve_run_dir(config, new)
    print(f"{'resuming' if resumed else 'starting'} run {run_dir} (precision {precision}, strategy {config.train.strategy})")
    save_config(config, run_dir / "config.yaml")
    (run_dir / "skipped_files.txt").write_text("".join(f"{p}\t{why}\n" for p, why in dataset.skipped))

    labels = dataset.labels
    train_split, val_split = dataset.splits["train"], dataset.splits["val"]
    weights = balanced_class_weights(train_split.labels, len(labels)) if config.data.class_weights else None
    train_ds = make_dataset(train_split, config.data.batch_size, True, config.data.augment, weights, config.train.seed)
    val_ds = make_dataset(val_split, config.data.batch_size)
    steps = int(np.ceil(len(train_split) / config.data.batch_size))

    previous_policy = hardware.set_precision(precision)
    try:
        with strategy.scope():
            model = build_model(
                config.model.name,
                len(labels),
                (config.model.image_size, config.model.image_size, config.model.channels),
                dropout=config.model.dropout,
                width=config.model.width,
                weights=config.model.weights,
            )
            backbone = next((layer for layer in model.layers if layer.name == "backbone"), None)
            two_stage = backbone is not None and config.train.fine_tune_epochs > 0
            if two_stage:
                backbone.trainable = False
            _compile(model, make_optimizer(config.train, steps), config.train)
        verbose = 2 if os.environ.get("CI") else 1
        stage1_weights = run_dir / "stage1.weights.h5"
        if two_stage and stage1_weights.exists():
            model.load_weights(stage1_weights)  # stage 1 finished before an interruption: go on with stage 2
        else:
            callbacks = make_callbacks(run_dir, config.train, val_split, labels)
            model.fit(train_ds, validation_data=val_ds, epochs=config.train.epochs, callbacks=callbacks, shuffle=False, verbose=verbose)
        if two_stage:
            model.save_weights(stage1_weights)
            with strategy.scope():
                _unfreeze_top(backbone, config.train.fine_tune_layers)
                fine_tune = make_optimizer(config.train, steps, config.train.fine_tune_learning_rate, config.train.fine_tune_epochs)
                _compile(model, fine_tune, config.train)
            model.fit(
                train_ds,
                validation_data=val_ds,
                initial_epoch=config.train.epochs,
                epochs=config.train.epochs + config.train.fine_tune_epochs,
                callbacks=make_callbacks(run_dir, config.train, val_split, labels, stage="stage2"),
                shuffle=False,
                verbose=verbose,
            )
        best = keras.saving.load_model(run_dir / "best.keras") if (run_dir / "best.keras").exists() else model
        metrics = {
            "model": config.model.name,
            "parameters": int(best.count_params()),
            "precision": precision,
            "strategy": config.train.strategy,
            "seed": config.train.seed,
            "label_set": config.data.label_set,
            "labels": list(labels),
            "class_counts": counts,
            "skipped_files": len(dataset.skipped),
        }
        for name, split in dataset.splits.items():
            if name != "train":
                probabilities = best.predict(split.images, batch_size=256, verbose=0)
                metrics[name] = classification_metrics(split.labels, probabilities, labels)
    finally:
        hardware.set_precision(previous_policy)

    import pandas as pd

    if (run_dir / "backup").exists():
        shutil.rmtree(run_dir / "backup")  # the stages' backups are empty folders once both finished
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
    return RunResult(run_dir, best_val, metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_keras.train", description="Train a facial-emotion model and record the run.")
    parser.add_argument("--config", help="experiment YAML (experiments/configs/NAME.yaml); defaults apply without it")
    parser.add_argument("--data-dir", help="dataset root (else $FER_KERAS_DATA, else kagglehub download)")
    parser.add_argument("--new", action="store_true", help="start a new run even if an unfinished one of this config exists")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5 model.name=vgg")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    config = load_config(args.config, overrides)
    run_training(config, new=args.new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
