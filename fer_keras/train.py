"""Train a model: ``python -m fer_keras.train --config experiments/configs/NAME.yaml [key=value ...]``.

Each run writes ``<output_dir>/<time>-<name>/`` with the resolved config.yaml, history.csv,
best.keras, metrics.json, tensorboard/, training_curves.png and skipped_files.txt. Running the
same command again after the process was killed resumes the newest unfinished run of that
name and config from its last finished epoch.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_keras.config import ExperimentConfig, TrainConfig, load_config
from fer_keras.data import locate_data_dir
from fer_keras.errors import ArgumentParser, cli_entry

if TYPE_CHECKING:  # Keras (and with it TensorFlow) loads when training starts, not when the CLI reads its arguments
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished training run produced."""

    run_dir: Path
    best_val_accuracy: float
    metrics: dict


def _unfreeze_top(backbone: keras.Model, n_layers: int) -> None:
    """Unfreezes the top ``n_layers`` of a backbone, keeping BatchNorm frozen (its statistics stay ImageNet's)."""
    import keras

    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= len(backbone.layers) - n_layers and not isinstance(layer, keras.layers.BatchNormalization)


def _compile(model, optimizer, train: TrainConfig) -> None:
    """Compiles ``model``, with sharpness-aware minimization when ``train.sam_rho`` asks for it."""
    from fer_keras.optim import compile_model

    compile_model(model, optimizer, train)
    if train.sam_rho:
        from fer_keras.sam import use_sharpness_aware_minimization

        use_sharpness_aware_minimization(model, train.sam_rho)


def run_training(config: ExperimentConfig, new: bool = False) -> RunResult:
    """Trains one experiment end to end and records it in a run folder.

    Args:
        config: The resolved experiment config.
        new: Start a new run even if an unfinished one with this config exists.

    Returns:
        The run folder, best validation accuracy and the final metrics.
    """
    if config.train.time_budget_s:
        # The budget sets the learning rate epoch by epoch from the host (array_trainer's TimeBudget, under train_accel);
        # this trainer compiles its schedule into the optimizer and resumes across sessions instead.
        log.warning("train.time_budget_s=%g is honoured by fer_keras.train_accel only: fer_keras.train runs all %d epochs",
                    config.train.time_budget_s, config.train.epochs)
    # TensorFlow loads here rather than at import, and only once the data folder is found, so a bad
    # config, override or --data-dir is one error line at once, not after seconds of loading and
    # TensorFlow's start-up log lines.
    locate_data_dir(config.data.data_dir)
    import keras
    import numpy as np

    from fer_keras import hardware
    from fer_keras.callbacks import make_callbacks
    from fer_keras.data import balanced_class_weights, load_for_experiment
    from fer_keras.models import build_from_config, check_model_config, initialize_from
    from fer_keras.optim import make_optimizer
    from fer_keras.pipeline import make_dataset
    from fer_keras.records import begin_run, record_run, report_counts, resolve_run_dir, run_metrics

    precision = hardware.resolve_precision(config.train.precision)
    strategy = hardware.make_strategy(config.train)
    keras.utils.set_random_seed(config.train.seed)
    check_model_config(config.model, config.train.fine_tune_epochs)
    dataset = load_for_experiment(config, with_test=config.train.score_test)
    counts = report_counts(dataset)

    labels = dataset.labels
    train_split, val_split = dataset.splits["train"], dataset.splits["val"]
    weights = balanced_class_weights(train_split.labels, len(labels)) if config.data.class_weights else None
    train_ds = make_dataset(train_split, config.data.batch_size, True, config.data.augment, weights, config.train.seed)
    val_ds = make_dataset(val_split, config.data.batch_size)
    steps = int(np.ceil(len(train_split) / config.data.batch_size))

    previous_policy = hardware.set_precision(precision)
    try:
        with strategy.scope():
            model = build_from_config(config.model, len(labels))
            if config.train.init_from:
                initialize_from(model, config.train.init_from, config.train.freeze_batch_norm, labels)
            backbone = next((layer for layer in model.layers if layer.name == "backbone"), None)
            two_stage = backbone is not None and config.train.fine_tune_epochs > 0
            if two_stage:
                backbone.trainable = False
            _compile(model, make_optimizer(config.train, steps), config.train)
        # The run folder is made only now, so a bad train.init_from leaves no half-begun run behind.
        run_dir, resumed = resolve_run_dir(config, new)
        print(f"{'resuming' if resumed else 'starting'} run {run_dir} (precision {precision}, strategy {config.train.strategy})")
        begin_run(run_dir, config, dataset)
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
        metrics = run_metrics(config, best, dataset, counts, precision=precision, strategy=config.train.strategy)
    finally:
        hardware.set_precision(previous_policy)

    if (run_dir / "backup").exists():
        shutil.rmtree(run_dir / "backup")  # the stages' backups are empty folders once both finished
    best_val = record_run(run_dir, metrics, labels)
    return RunResult(run_dir, best_val, metrics)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.train", description="Train a facial-emotion model and record the run.")
    parser.add_argument("--config", help="experiment YAML (experiments/configs/NAME.yaml); defaults apply without it")
    parser.add_argument("--data-dir", help="dataset root, or a .csv label list with path and label columns (else $FER_KERAS_DATA, else kagglehub download)")
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
