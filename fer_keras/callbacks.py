"""Training callbacks: the standard Keras set wired to a run folder, plus learning-rate and confusion-matrix logging."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fer_keras import plots
from fer_keras.config import TrainConfig
from fer_keras.data import Split


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (so CSVLogger and TensorBoard record it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class ConfusionMatrixImage(keras.callbacks.Callback):
    """Writes the validation confusion matrix as a TensorBoard image every ``every`` epochs."""

    def __init__(self, split: Split, labels: tuple[str, ...], log_dir: Path, every: int = 1, batch_size: int = 256):
        super().__init__()
        import tensorflow as tf  # tf.summary writes the image; imported here so the other callbacks stay TensorFlow-free

        self.split, self.labels, self.every, self.batch_size = split, labels, every, batch_size
        self.writer = tf.summary.create_file_writer(str(log_dir / "confusion_matrix"))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        from sklearn.metrics import confusion_matrix

        predicted = self.model.predict(self.split.images, batch_size=self.batch_size, verbose=0).argmax(axis=1)
        matrix = confusion_matrix(self.split.labels, predicted, labels=list(range(len(self.labels))))
        png = plots.figure_png(plots.confusion_matrix_figure(matrix, self.labels, normalize=True, title=f"epoch {epoch + 1}"))
        import tensorflow as tf

        with self.writer.as_default():
            tf.summary.image("validation confusion matrix", tf.expand_dims(tf.image.decode_png(png, channels=4), 0), step=epoch)
        self.writer.flush()


@dataclass(frozen=True)
class StageRecord:
    """What a resumed stage already holds (epoch indices are 0-based, as Keras counts them)."""

    best_val_accuracy: float
    best_epoch: int
    last_epoch: int
    best_model: Path  # the checkpoint of best_epoch


def recorded_stage(run_dir: Path, first_epoch: int) -> StageRecord | None:
    """The best epoch a stage logged and saved before an interruption, or None if there is none to keep.

    Args:
        run_dir: The run folder: its CSVLogger history.csv and best.keras (both absent before a run's first epoch).
        first_epoch: The stage's first epoch index: rows before it belong to an earlier stage.
    """
    history_csv, best_model = run_dir / "history.csv", run_dir / "best.keras"
    if not (history_csv.exists() and best_model.exists()):
        return None
    with history_csv.open(newline="") as file:
        rows = [(int(row["epoch"]), float(row["val_accuracy"])) for row in csv.DictReader(file) if row.get("val_accuracy")]
    stage = [(epoch, value) for epoch, value in rows if epoch >= first_epoch]
    if not stage:
        return None
    best_epoch, best = max(stage, key=lambda row: (row[1], -row[0]))  # the earliest of equal bests, as Keras keeps it
    return StageRecord(best, best_epoch, max(epoch for epoch, _ in stage), best_model)


class SaveBest(keras.callbacks.Callback):
    """Saves the model, or only its weights, whenever val_accuracy beats the best so far.

    It writes a temp file and renames it, so a kill during the save leaves the previous best whole
    (Keras's ModelCheckpoint writes in place).

    Args:
        path: The checkpoint: ``.keras`` for the model, ``.weights.h5`` with ``weights_only``.
        weights_only: Save the weights alone (no architecture, no optimizer state).
        best: The accuracy to beat: a resumed stage's recorded best, so it keeps a better earlier epoch.
    """

    def __init__(self, path: Path, weights_only: bool = False, best: float = -np.inf):
        super().__init__()
        self.path, self.weights_only, self.best = path, weights_only, best

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy", -np.inf)
        if accuracy > self.best:
            self.best = accuracy
            partial = self.path.with_name(f"partial.{self.path.name}")
            (self.model.save_weights if self.weights_only else self.model.save)(partial)
            os.replace(partial, self.path)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on val_accuracy that, in a resumed stage, goes on from the epochs before the interruption.

    Keras's EarlyStopping starts afresh at every fit(): a resumed run would wait the full patience
    again, and would restore the first resumed epoch's weights as the best even when an epoch
    before the interruption was better.
    """

    def __init__(self, patience: int, record: StageRecord | None):
        super().__init__(monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True, verbose=1)
        self.record = record

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.record is None:
            return
        self.best, self.best_epoch = self.record.best_val_accuracy, self.record.best_epoch
        self.wait = self.record.last_epoch - self.record.best_epoch
        self.best_weights = keras.saving.load_model(self.record.best_model, compile=False).get_weights()


def schedule_callbacks(train: TrainConfig, record: StageRecord | None = None) -> list[keras.callbacks.Callback]:
    """Learning-rate reduction on plateau and early stopping, as the config selects.

    Args:
        train: Training settings.
        record: A resumed stage's best epoch so far, so early stopping goes on where it was.
    """
    callbacks: list[keras.callbacks.Callback] = []
    if train.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-6, verbose=1))
    if train.early_stopping_patience > 0:
        callbacks.append(ResumableEarlyStopping(train.early_stopping_patience, record))
    return callbacks


def weight_averaging(train: TrainConfig) -> list[keras.callbacks.Callback]:
    """With ``train.ema_momentum``: puts the averaged weights in the model for validation and for the callbacks after it.

    Callbacks listed after it at epoch end (checkpoints, early stopping, confusion matrices) see
    the averaged weights; the live ones come back at the next epoch's start.
    """
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if train.ema_momentum > 0 else []


def make_callbacks(run_dir: Path, train: TrainConfig, val: Split, labels: tuple[str, ...], stage: str = "stage1") -> list[keras.callbacks.Callback]:
    """The callbacks of one training stage, in the order their logs must flow.

    Loggers that add to the epoch logs come first, so CSVLogger and TensorBoard see their values.
    BackupAndRestore makes a SIGKILLed run resume from its last finished epoch; it saves before the
    averaged weights are swapped in, so a resumed run goes on from the live weights. In a resumed
    stage, the checkpoint and early stopping start from the best epoch its history.csv holds.

    Args:
        run_dir: The run folder.
        train: Training settings (schedule, patience, confusion-matrix period).
        val: The validation split (for the confusion-matrix image).
        labels: Class names.
        stage: Training stage; each keeps its own backup so a resume restores the right optimizer.
            Stage 2 (fine-tuning) numbers its epochs on from ``train.epochs``.
    """
    record = recorded_stage(run_dir, first_epoch=train.epochs if stage == "stage2" else 0)
    callbacks: list[keras.callbacks.Callback] = [
        LearningRateLogger(),
        # double_checkpoint: a SIGKILL during the backup write leaves a corrupt .h5 (seen in our test);
        # Keras then restores the previous epoch's copy instead of failing.
        keras.callbacks.BackupAndRestore(backup_dir=str(run_dir / "backup" / stage), double_checkpoint=True),
        *weight_averaging(train),
    ]
    if train.confusion_matrix_every > 0:
        callbacks.append(ConfusionMatrixImage(val, labels, run_dir / "tensorboard", train.confusion_matrix_every))
    callbacks += schedule_callbacks(train, record)
    callbacks += [
        # Keras's ModelCheckpoint starts each fit() with no best, so a resumed run's first epoch
        # overwrote a better best.keras from before the interruption: this one starts from the record.
        SaveBest(run_dir / "best.keras", best=record.best_val_accuracy if record else -np.inf),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False, profile_batch=0),
    ]
    return callbacks
