"""Training from in-memory arrays under any Keras backend: the trainer behind `fer_keras.train_accel`.

GPU machines that have JAX or PyTorch but no TensorFlow can still train our models, since
everything except the tf.data pipeline is backend-agnostic. This trainer shares the config, data
loading, models, augmentation settings, optimizer and run records with `fer_keras.train`; batches
come from in-memory NumPy arrays, augmented and mixed on the host by `HostAugmenter` and `BatchMixer` while the
device trains, because Keras's random affine layers are a hundred times slower than that under
JAX on a GPU. ``train.time_budget_s`` guards a lease: training stops before an epoch that would
end past it, so the run is still recorded, and a cosine schedule anneals within the budget
(``TimeBudget``); ``train.epochs`` is then an upper bound.

The run folder holds config.yaml, history.csv, metrics.json (val), training curves and best.keras,
saved without optimizer state so it is small enough to copy back. The test split is not loaded:
it is evaluated once per shipped candidate, with `fer_keras.evaluate`, where TensorFlow is. Runs
do not resume, because an accelerator run is meant to finish within one lease; `fer_keras.train`
is the resumable trainer for long CPU runs.

Importing this module loads Keras and its backend (its classes subclass Keras's), so the command
line in `fer_keras.train_accel` checks its arguments and config before it imports this.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np

from fer_keras.augment import BatchMixer, HostAugmenter
from fer_keras.callbacks import LearningRateLogger, SaveBest, schedule_callbacks, weight_averaging
from fer_keras.config import AugmentConfig, ExperimentConfig
from fer_keras.data import Split, balanced_class_weights, load_for_experiment
from fer_keras.errors import UserError
from fer_keras.models import build_from_config, check_model_config, initialize_from
from fer_keras.optim import COSINE_FLOOR, compile_model, make_optimizer
from fer_keras.records import (
    begin_run,
    record_run,
    report_counts,
    resolve_run_dir,
    run_metrics,
)

log = logging.getLogger(__name__)


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled, augmented training batches from in-memory arrays, with optional MixUp or CutMix and per-sample weights.

    Args:
        split: The training split (uint8 images, float targets).
        batch_size: Images per batch; the last partial batch is dropped so shapes stay static
            (one compiled step, and mixing always has a partner).
        augment: Augmentation settings, applied by ``HostAugmenter`` and then ``BatchMixer``.
        sample_weights: Per-image loss weights, or None.
        seed: Seed of the shuffles, augmentations and mixing coefficients.
        workers: Host threads preparing batches ahead of the device.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        augment: AugmentConfig,
        sample_weights: np.ndarray | None = None,
        seed: int = 0,
        workers: int = 4,
    ):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=16)
        self.images, self.targets, self.sample_weights = split.images, split.targets, sample_weights
        self.batch_size, self.augment, self.seed, self.epoch = batch_size, augment, seed, 0
        self.order = np.random.default_rng(seed).permutation(len(split))

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __getitem__(self, index: int):
        # Each batch draws from its own seeded generator, so worker threads never share one.
        rng_seed = (self.seed, self.epoch, index)
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        images = HostAugmenter(self.augment, rng_seed)(self.images[rows])
        images, targets = BatchMixer(self.augment, rng_seed + (1,))(images, self.targets[rows])
        if self.sample_weights is None:
            return images, targets
        return images, targets, self.sample_weights[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.order))


class TimeBudget(keras.callbacks.Callback):
    """Fits training into a time budget: stops before an epoch that would overrun it and, for cosine, anneals by then.

    A run cut by its budget half-way down a cosine over ``train.epochs`` keeps a high learning rate
    and loses accuracy: on the H100 a ResNet-SE stopped unannealed at epoch 42 of 90 scored 84.84% on
    validation, against 86.81% for the same model annealed over 48. So with ``cosine`` the learning
    rate follows the progress expected at the end of each epoch, the larger of the epoch fraction
    and the time fraction, and the last epoch that fits the budget runs at the floor of the cosine.
    The schedule is set per epoch from the host, which every Keras backend honours (the learning rate
    is an optimizer variable, not a compiled schedule).

    Args:
        deadline: ``time.monotonic()`` value by which training must have stopped.
        epochs: The configured number of epochs (an upper bound).
        base_rate: Peak learning rate; None leaves the learning rate alone (other schedules).
        warmup_epochs: Linear warm-up from a tenth of ``base_rate``.
        floor: Final learning rate as a fraction of ``base_rate`` (as ``make_optimizer``'s cosine).
        clock: Time source (tests pass a fake one).
    """

    def __init__(self, deadline: float, epochs: int, base_rate: float | None = None, warmup_epochs: int = 0, floor: float = COSINE_FLOOR, clock=time.monotonic):
        super().__init__()
        self.deadline, self.epochs, self.base_rate = deadline, epochs, base_rate
        self.warmup_epochs, self.floor, self.clock = warmup_epochs, floor, clock
        self.started = self.epoch_started = self.last_duration = None

    def rate(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (0-based), from the progress expected when it ends."""
        if epoch < self.warmup_epochs:
            return self.base_rate * (0.1 + 0.9 * epoch / self.warmup_epochs)
        now = self.clock()
        span = max(self.deadline - self.started, 1e-9)
        time_progress = (now + (self.last_duration or 0.0) - self.started) / span
        epoch_progress = (epoch + 1 - self.warmup_epochs) / max(self.epochs - self.warmup_epochs, 1)
        progress = min(max(time_progress, epoch_progress), 1.0)
        return self.base_rate * (self.floor + (1 - self.floor) * 0.5 * (1 + np.cos(np.pi * progress)))

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = self.clock()
        if self.base_rate is not None:
            self.model.optimizer.learning_rate = self.rate(epoch)

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.last_duration = now - self.epoch_started
        if now + self.last_duration > self.deadline and epoch + 1 < self.epochs:
            log.info("time budget: stopping after epoch %d, another would end past it", epoch + 1)
            self.model.stop_training = True


def accelerator_precision(requested: str) -> str:
    """Resolves train.precision: ``auto`` is mixed_bfloat16 when the backend sees a GPU, else float32."""
    if requested != "auto":
        return requested
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        has_gpu = any(device.platform == "gpu" for device in jax.devices())
    elif backend == "torch":
        import torch

        has_gpu = torch.cuda.is_available()
    else:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    return "mixed_bfloat16" if has_gpu else "float32"


def run_accelerated(config: ExperimentConfig) -> Path:
    """Trains one experiment on in-memory arrays under the current Keras backend and records the run.

    Args:
        config: The resolved experiment config.

    Returns:
        The run folder.
    """
    started = time.monotonic()
    precision = accelerator_precision(config.train.precision)
    keras.utils.set_random_seed(config.train.seed)
    check_model_config(config.model)
    if config.train.fine_tune_epochs:
        raise UserError(f"train.fine_tune_epochs={config.train.fine_tune_epochs}: train_accel trains in one stage; "
                        "two-stage transfer learning runs in fer_keras.train")
    dataset = load_for_experiment(config, with_test=False)
    counts = report_counts(dataset)

    labels = dataset.labels
    train_split, val_split = dataset.splits["train"], dataset.splits["val"]
    weights = balanced_class_weights(train_split.labels, len(labels))[train_split.labels] if config.data.class_weights else None
    batches = ArrayBatches(train_split, config.data.batch_size, config.data.augment, weights, config.train.seed)
    validation = (val_split.images.astype(np.float32), val_split.targets)

    previous_policy = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(precision)
    try:
        model = build_from_config(config.model, len(labels))
        if config.train.init_from:
            initialize_from(model, config.train.init_from, config.train.freeze_batch_norm, labels)
        # The run folder is made only now, so a bad train.init_from leaves no half-begun run behind.
        run_dir, _ = resolve_run_dir(config, new=True)
        log.info("starting run %s (backend %s, precision %s, %d epochs)", run_dir, keras.backend.backend(), precision, config.train.epochs)
        begin_run(run_dir, config, dataset)
        budget = config.train.time_budget_s > 0
        timed_cosine = budget and config.train.schedule == "cosine"
        # With a budget, TimeBudget drives the cosine, so the optimizer starts from a plain rate.
        compile_model(model, make_optimizer(config.train, len(batches), scheduled=not timed_cosine), config.train)
        weights_path = run_dir / "best.weights.h5"
        base_rate = config.train.learning_rate if timed_cosine else None
        callbacks = [TimeBudget(started + config.train.time_budget_s, config.train.epochs, base_rate, config.train.warmup_epochs)] if budget else []
        callbacks += [LearningRateLogger(), *weight_averaging(config.train), *schedule_callbacks(config.train), SaveBest(weights_path, weights_only=True)]
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv")))
        history = model.fit(batches, validation_data=validation, validation_batch_size=512, epochs=config.train.epochs, callbacks=callbacks, verbose=2)
        best = build_from_config(config.model, len(labels))  # uncompiled, so best.keras carries no optimizer state
        best.load_weights(weights_path)
        best.save(run_dir / "best.keras")
        weights_path.unlink()
        metrics = run_metrics(config, best, dataset, counts, precision=precision, backend=keras.backend.backend(),
                              epochs=len(history.epoch), epochs_planned=config.train.epochs)  # a time budget may stop it early
    finally:
        keras.config.set_dtype_policy(previous_policy)
    record_run(run_dir, metrics, labels)
    return run_dir
