import keras
import numpy as np
import pytest

from fer_keras.callbacks import SaveBest, StageRecord, make_callbacks, recorded_stage
from fer_keras.config import TrainConfig
from fer_keras.data import Split

# A stage interrupted after four epochs: its best (0.8, first reached at epoch 1) came before the interruption.
HISTORY = "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\r\n" + "".join(
    f"{epoch},0.5,0.001,1.0,{value},1.0\r\n" for epoch, value in enumerate([0.5, 0.8, 0.8, 0.6])
)


def test_the_recorded_stage_is_its_earliest_best_and_its_last_epoch(tmp_path):
    best = tmp_path / "best.keras"
    assert recorded_stage(tmp_path, first_epoch=0) is None
    (tmp_path / "history.csv").write_text(HISTORY)
    # Logged but never saved: nothing to keep, so the first resumed epoch becomes the best.
    assert recorded_stage(tmp_path, first_epoch=0) is None
    best.write_bytes(b"")
    assert recorded_stage(tmp_path, first_epoch=0) == StageRecord(0.8, best_epoch=1, last_epoch=3, best_model=best)
    # A fine-tuning stage numbered on from epoch 2 sees only its own rows.
    assert recorded_stage(tmp_path, first_epoch=2) == StageRecord(0.8, best_epoch=2, last_epoch=3, best_model=best)
    assert recorded_stage(tmp_path, first_epoch=4) is None


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _resumed_callbacks(run_dir, patience):
    val = Split(np.zeros((1, 48, 48, 1), np.uint8), np.eye(2, dtype=np.float32)[:1], ["face.png"])
    train = TrainConfig(epochs=10, early_stopping_patience=patience, confusion_matrix_every=0)
    found = make_callbacks(run_dir, train, val, ("a", "b"))
    checkpoint = next(c for c in found if isinstance(c, SaveBest))
    stopping = [c for c in found if isinstance(c, keras.callbacks.EarlyStopping)]
    return checkpoint, stopping


@pytest.fixture
def resumed_run(tmp_path):
    """A run folder as an interruption leaves it: history.csv and the best epoch's checkpoint."""
    (tmp_path / "history.csv").write_text(HISTORY)
    best = _model(seed=1)
    best.save(tmp_path / "best.keras")
    return tmp_path, best


def test_a_resumed_checkpoint_keeps_the_best_from_before_the_interruption(resumed_run):
    run_dir, best = resumed_run
    checkpoint, _ = _resumed_callbacks(run_dir, patience=0)
    live = _model(seed=2)
    checkpoint.set_model(live)
    saved = (run_dir / "best.keras").read_bytes()
    checkpoint.on_epoch_end(4, {"val_accuracy": 0.7})  # under 0.8: best.keras stays the earlier epoch's
    assert (run_dir / "best.keras").read_bytes() == saved
    checkpoint.on_epoch_end(5, {"val_accuracy": 0.9})
    reloaded = keras.saving.load_model(run_dir / "best.keras")
    assert all(np.array_equal(a, b) for a, b in zip(reloaded.get_weights(), live.get_weights()))


def test_resumed_early_stopping_counts_patience_from_the_recorded_best_and_restores_its_weights(resumed_run):
    run_dir, best = resumed_run
    _, (stopping,) = _resumed_callbacks(run_dir, patience=3)
    live = _model(seed=2)
    stopping.set_model(live)
    stopping.on_train_begin()
    assert (stopping.best, stopping.best_epoch, stopping.wait) == (0.8, 1, 2)
    stopping.on_epoch_end(4, {"val_accuracy": 0.75})  # the third epoch since the best: patience is spent
    assert live.stop_training
    stopping.on_train_end()
    assert all(np.array_equal(a, b) for a, b in zip(live.get_weights(), best.get_weights()))


def test_a_fresh_run_has_no_recorded_best(tmp_path):
    checkpoint, (stopping,) = _resumed_callbacks(tmp_path, patience=3)
    assert checkpoint.best == -np.inf
    stopping.set_model(_model(seed=2))
    stopping.on_train_begin()
    assert (stopping.best, stopping.wait, stopping.best_weights) == (None, 0, None)


def test_a_save_killed_half_way_leaves_the_previous_best_whole(resumed_run, monkeypatch):
    run_dir, _ = resumed_run
    saved = (run_dir / "best.keras").read_bytes()
    live = _model(seed=2)

    def save_half_and_die(path):
        path.write_bytes(b"PK half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(live, "save", save_half_and_die)
    checkpoint = SaveBest(run_dir / "best.keras")
    checkpoint.set_model(live)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_epoch_end(0, {"val_accuracy": 0.9})
    assert (run_dir / "best.keras").read_bytes() == saved
