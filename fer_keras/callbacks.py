"""Training callbacks: the standard Keras set wired to a run folder, plus learning-rate and confusion-matrix logging."""

from __future__ import annotations

from pathlib import Path

import keras

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


def schedule_callbacks(train: TrainConfig) -> list[keras.callbacks.Callback]:
    """Learning-rate reduction on plateau and early stopping, as the config selects."""
    callbacks: list[keras.callbacks.Callback] = []
    if train.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-6, verbose=1))
    if train.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=train.early_stopping_patience, restore_best_weights=True, verbose=1)
        )
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
    averaged weights are swapped in, so a resumed run goes on from the live weights.

    Args:
        run_dir: The run folder.
        train: Training settings (schedule, patience, confusion-matrix period).
        val: The validation split (for the confusion-matrix image).
        labels: Class names.
        stage: Training stage; each keeps its own backup so a resume restores the right optimizer.
    """
    callbacks: list[keras.callbacks.Callback] = [
        LearningRateLogger(),
        # double_checkpoint: a SIGKILL during the backup write leaves a corrupt .h5 (seen in our test);
        # Keras then restores the previous epoch's copy instead of failing.
        keras.callbacks.BackupAndRestore(backup_dir=str(run_dir / "backup" / stage), double_checkpoint=True),
        *weight_averaging(train),
    ]
    if train.confusion_matrix_every > 0:
        callbacks.append(ConfusionMatrixImage(val, labels, run_dir / "tensorboard", train.confusion_matrix_every))
    callbacks += schedule_callbacks(train)
    callbacks += [
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False, profile_batch=0),
    ]
    return callbacks
