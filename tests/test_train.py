import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, tiny_run_config
from fer_keras import array_trainer, callbacks, train
from fer_keras.errors import UserError
from fer_keras.models import build_from_config


def _config(face_folder, tmp_path, *extra):
    return tiny_run_config(face_folder, tmp_path, "name=tiny_test", "train.precision=float32", *extra)


def test_training_writes_a_complete_run_folder(face_folder, tmp_path):
    result = train.run_training(_config(face_folder, tmp_path, "train.schedule=cosine", "train.warmup_epochs=1", "data.class_weights=true"))
    run = result.run_dir
    for name in ("config.yaml", "history.csv", "best.keras", "metrics.json", "training_curves.png", "confusion_matrix_val.png", "confusion_matrix_test.png", "skipped_files.txt"):
        assert (run / name).is_file(), name
    assert (run / "tensorboard").is_dir() and not (run / "backup").exists()
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"accuracy", "val_accuracy", "loss", "val_loss", "learning_rate"} <= set(history.columns)
    # Logged at epoch end: the one warm-up epoch ends at the peak, then cosine decays to 1% of it.
    assert history["learning_rate"].tolist() == pytest.approx([0.01, 0.00505, 0.0001], rel=1e-3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["labels"] == ["angry", "happy", "sad"]
    assert metrics["precision"] == "float32" and metrics["skipped_files"] == 4
    assert set(metrics["test"]["per_class"]) == {"angry", "happy", "sad"}
    assert metrics["test"]["n"] == 36
    assert len((run / "skipped_files.txt").read_text().splitlines()) == 4
    assert result.best_val_accuracy == pytest.approx(history["val_accuracy"].max())


def test_a_plain_folder_of_classes_trains_and_is_scored_on_its_hold_out(face_folder, tmp_path):
    from fer_keras import evaluate, export

    plain = face_folder / "train"  # class folders only, as a user's own labelled faces often are
    config = _config(face_folder, tmp_path, "train.epochs=1", f"data.data_dir={plain}", "data.val_fraction=0.2", "data.test_fraction=0.2")
    run = train.run_training(config).run_dir
    recorded = json.loads((run / "metrics.json").read_text())
    assert recorded["class_counts"]["train"] == {"angry": 24, "happy": 24, "sad": 24}
    assert recorded["val"]["n"] == recorded["test"]["n"] == 24
    # The run's model on the folder it trained on scores the faces the run held out, not the whole folder.
    scored = evaluate.evaluate(run / "best.keras", str(plain), tmp_path / "eval", plots=False)
    assert scored["n"] == 24 and scored["accuracy"] == pytest.approx(recorded["test"]["accuracy"], abs=1e-6)
    assert export.main(["--model", str(run / "best.keras"), "--quantize", "dynamic", "--out", str(tmp_path / "tflite")]) == 0
    assert json.loads((tmp_path / "tflite" / "parity.json").read_text())["n"] == 24
    exported = tmp_path / "tflite" / f"{run.name}_dynamic.tflite"
    assert evaluate.evaluate(exported, str(plain), tmp_path / "whole", plots=False)["n"] == 120  # no run beside it: all faces
    assert evaluate.evaluate(exported, str(plain), tmp_path / "held", plots=False, run_dir=run)["n"] == 24
    # Scored on its run's data, a model takes that run's label set unless one is given; elsewhere the folder's own.
    fer2013_run = tmp_path / "fer2013_run"
    fer2013_run.mkdir()
    (fer2013_run / "config.yaml").write_text(f"data:\n  label_set: fer2013\n  data_dir: {plain}\n  val_fraction: 0.2\n  test_fraction: 0.2\n")
    assert evaluate.evaluate(exported, str(plain), tmp_path / "as_run", plots=False, run_dir=fer2013_run)["label_set"] == "fer2013"
    assert evaluate.evaluate(exported, str(plain), tmp_path / "as_folder", plots=False, run_dir=fer2013_run, label_set="folder")["label_set"] == "folder"
    assert json.loads((tmp_path / "whole" / "metrics.json").read_text())["label_set"] == "folder"
    with pytest.raises(UserError, match="nothing to train on: no train/ folder, and data.test_fraction=0 keeps a plain folder whole"):
        train.run_training(_config(face_folder, tmp_path, f"data.data_dir={plain}", "data.test_fraction=0"))


def test_a_folder_of_one_class_is_refused_before_a_run_folder_is_made(face_folder, tmp_path):
    one_class = tmp_path / "one_class"
    (one_class / "happy").mkdir(parents=True)
    for face in sorted((face_folder / "train" / "happy").glob("*.png"))[:10]:
        (one_class / "happy" / face.name).write_bytes(face.read_bytes())
    (one_class / "sad").mkdir()  # an empty class folder adds no class
    config = _config(face_folder, tmp_path, f"data.data_dir={one_class}", "data.test_fraction=0.2")
    with pytest.raises(UserError, match="training needs faces of at least 2 classes; found only happy$"):
        train.run_training(config)
    (one_class / "sad" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0")  # nor does one of unreadable files
    with pytest.raises(UserError, match="training needs faces of at least 2 classes; found only happy$"):
        train.run_training(config)
    assert not (tmp_path / "runs").exists()


def test_a_class_folder_without_a_readable_face_is_refused(face_folder, tmp_path):
    """It became an output the model never learned, and export shipped it as a label."""
    folder = tmp_path / "faces"
    for name in ("happy", "sad"):
        (folder / name).mkdir(parents=True)
        for face in sorted((face_folder / "train" / name).glob("*.png"))[:10]:
            (folder / name / face.name).write_bytes(face.read_bytes())
    (folder / "smirk").mkdir()
    (folder / "smirk" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    config = _config(face_folder, tmp_path, f"data.data_dir={folder}", "data.test_fraction=0.2")
    with pytest.raises(UserError, match="no readable training faces in class folder smirk: its files are unreadable, or its faces are in test/ only"):
        train.run_training(config)
    assert not (tmp_path / "runs").exists()


def test_fixed_classes_without_training_faces_are_warned_of(face_folder, tmp_path, caplog):
    """Three own classes trained under the default label set made a 7-output model without a word."""
    from fer_keras.data import load_for_experiment

    with caplog.at_level("WARNING", logger="fer_keras.data"):
        load_for_experiment(_config(face_folder, tmp_path, "data.label_set=fer2013"), with_test=False)
    warned = [r.getMessage() for r in caplog.records if "no training faces" in r.getMessage()]
    assert warned == ["no training faces for disgust, fear, neutral, surprise of the fer2013 classes: the model will not "
                      "learn to predict them; to train on a folder's own classes, use data.label_set=folder"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="fer_keras.data"):
        load_for_experiment(_config(face_folder, tmp_path), with_test=False)
    assert not [r for r in caplog.records if "no training faces" in r.getMessage()]


def test_a_time_budget_is_warned_of_as_train_accel_only(face_folder, tmp_path, caplog):
    """train.time_budget_s was silently ignored by this trainer (a CPU run set it as a safety)."""
    config = _config(face_folder, tmp_path, "train.time_budget_s=600", f"data.data_dir={tmp_path / 'missing'}")
    with caplog.at_level("WARNING", logger="fer_keras.train"), pytest.raises(UserError):
        train.run_training(config)
    assert [r.getMessage() for r in caplog.records if r.name == "fer_keras.train"] == [
        "train.time_budget_s=600 is honoured by fer_keras.train_accel only: fer_keras.train runs all 3 epochs"]


def test_score_test_false_leaves_the_test_split_unread(face_folder, tmp_path):
    result = train.run_training(_config(face_folder, tmp_path, "train.epochs=1", "train.score_test=false"))
    assert set(result.metrics) >= {"val"} and "test" not in result.metrics
    assert "test" not in json.loads((result.run_dir / "metrics.json").read_text())
    assert (result.run_dir / "confusion_matrix_val.png").is_file() and not (result.run_dir / "confusion_matrix_test.png").exists()


@pytest.mark.parametrize("run", [train.run_training, array_trainer.run_accelerated], ids=["train", "train_accel"])
def test_init_from_a_model_that_does_not_fit_fails_before_a_run_folder_is_made(run, face_folder, tmp_path):
    other = build_from_config(_config(face_folder, tmp_path, "model.name=mini_xception").model, 3)
    other.save(tmp_path / "other.keras")
    with pytest.raises(UserError, match="other.keras: its weights do not fit model"):
        run(_config(face_folder, tmp_path, f"train.init_from={tmp_path / 'other.keras'}"))
    assert not (tmp_path / "runs").exists()


def test_weight_averaging_validates_and_checkpoints_the_averaged_weights(face_folder, tmp_path):
    config = _config(face_folder, tmp_path)
    start = build_from_config(config.model, 3)
    start.save(tmp_path / "start.keras")
    initial = [np.asarray(w) for w in start.trainable_weights]

    def trained(momentum):
        run = train.run_training(_config(face_folder, tmp_path, f"train.init_from={tmp_path / 'start.keras'}", f"train.ema_momentum={momentum}", "train.early_stopping_patience=0"))
        weights = [np.asarray(w) for w in keras.saving.load_model(run.run_dir / "best.keras").trainable_weights]
        return max(np.abs(w - w0).max() for w, w0 in zip(weights, initial)), pd.read_csv(run.run_dir / "history.csv")["val_loss"]

    # Keras starts the average at the weights after the first step (one Adam step moves each weight
    # by at most the learning rate, 0.01); an average that barely moves after that (momentum
    # 1 - 1e-7) stays there, so every validation sees the same weights and the checkpoint holds them.
    averaged_shift, averaged_val_loss = trained(1 - 1e-7)
    assert averaged_shift <= 0.01 * 1.001
    assert averaged_val_loss.tolist() == pytest.approx([averaged_val_loss[0]] * 3, abs=1e-6)
    live_shift, live_val_loss = trained(0)
    assert live_shift > 0.02 and live_val_loss.nunique() == 3


class _Crash(Exception):
    pass


@pytest.mark.parametrize("ema_momentum", [0.0, 0.9])
def test_killed_run_resumes_from_its_last_finished_epoch(face_folder, tmp_path, monkeypatch, ema_momentum):
    config = _config(face_folder, tmp_path, "train.epochs=4", f"train.ema_momentum={ema_momentum}")
    original = callbacks.make_callbacks

    class CrashAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Crash()

    monkeypatch.setattr(callbacks, "make_callbacks", lambda *a: original(*a) + [CrashAfterSecondEpoch()])
    with pytest.raises(_Crash):
        train.run_training(config)
    monkeypatch.setattr(callbacks, "make_callbacks", original)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "backup").exists() and not (run_dir / "metrics.json").exists()
    # As a run begun before data.test_fraction existed saved it: a key added since, at its default, still resumes.
    saved = (run_dir / "config.yaml").read_text()
    assert "  test_fraction: 0.1\n" in saved
    (run_dir / "config.yaml").write_text(saved.replace("  test_fraction: 0.1\n", ""))
    result = train.run_training(config)
    assert result.run_dir == run_dir
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2, 3]
    # best.keras is the best epoch of the whole run, before or after the interruption.
    assert result.metrics["val"]["accuracy"] == pytest.approx(history["val_accuracy"].max(), abs=1e-6)


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fer_keras.train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        timeout=300,
    )


def test_runs_of_one_config_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    from fer_keras import records

    monkeypatch.setattr(records.time, "strftime", lambda _: "20261201-120000")
    config = _config(tmp_path, tmp_path)
    folders = [records.resolve_run_dir(config, new=True) for _ in range(3)]
    assert [(run.name, resumed) for run, resumed in folders] == [
        ("20261201-120000-tiny_test", False), ("20261201-120000-2-tiny_test", False), ("20261201-120000-3-tiny_test", False)]


def test_a_run_whose_resume_state_is_gone_is_named_and_not_resumed(tmp_path, caplog):
    from fer_keras import records
    from fer_keras.config import save_config

    config = _config(tmp_path, tmp_path)
    lost = tmp_path / "runs" / f"20261204-230450-{config.name}"  # as a clone or a new machine gets it: records, no backup/
    lost.mkdir(parents=True)
    save_config(config, lost / "config.yaml")
    (lost / "history.csv").write_text("epoch,accuracy\n0,0.5\n1,0.6\n")
    with caplog.at_level("WARNING", logger="fer_keras.records"):
        run_dir, resumed = records.resolve_run_dir(config, new=False)
    assert not resumed and run_dir != lost
    assert [r.getMessage() for r in caplog.records] == [
        f"{lost}: 2 finished epoch(s) recorded but no resume state (backup/ is missing), so it cannot be resumed"]
    # With its resume state back, the same folder resumes, and nothing is said.
    (lost / "backup").mkdir()
    caplog.clear()
    assert records.resolve_run_dir(config, new=False) == (lost, True)
    assert not caplog.records


def test_sigkilled_run_resumes_when_the_same_command_runs_again(face_folder, tmp_path):
    import signal
    import time

    args = [f"--data-dir={face_folder}", f"output_dir={tmp_path}", "name=killed", "data.label_set=folder", "model.name=tiny",
            "train.epochs=25", "train.precision=float32", "data.batch_size=8", "train.confusion_matrix_every=0", "train.early_stopping_patience=0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fer_keras.train", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    history = None
    while time.time() < deadline and process.poll() is None:
        found = list(tmp_path.glob("*-killed/history.csv"))
        if found and len(found[0].read_text().splitlines()) >= 4:  # header + 3 epochs
            history = found[0]
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert history is not None, "training did not reach epoch 3 in time"
    done_before = len(history.read_text().splitlines()) - 1
    assert done_before < 25
    resumed = _cli(*args, env={"CI": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming run" in resumed.stdout
    assert [p.name for p in tmp_path.iterdir()] == [history.parent.name]
    assert list(pd.read_csv(history)["epoch"]) == list(range(25))


def test_mirrored_strategy_trains_over_two_logical_cpus(face_folder, tmp_path):
    done = _cli(
        f"--data-dir={face_folder}",
        f"output_dir={tmp_path}",
        "name=mirrored",
        "data.label_set=folder",
        "model.name=tiny",
        "train.epochs=1",
        "train.strategy=mirrored",
        "train.precision=float32",
        "data.batch_size=16",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run folder:" in done.stdout
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "metrics.json").read_text())["strategy"] == "mirrored"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.epoch=3"], "did you mean train.epochs?"),
        (["--data-dir=/no/such/dir"], "/no/such/dir: data directory (--data-dir) does not exist"),
        (["--config=/no/such.yaml"], "/no/such.yaml: config file not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    # In process (the subprocess in test_cli_help covers the entry point): a process per case costs 5 s of imports.
    monkeypatch.chdir(tmp_path)
    assert train.main(args) == 2
    stderr = capsys.readouterr().err
    assert stderr == f"error: {stderr.split('error: ', 1)[1]}" and stderr.count("\n") == 1
    assert message in stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_help():
    done = _cli("--help")
    assert done.returncode == 0 and "key=value" in done.stdout


@pytest.mark.parametrize("arg", ["train.epoch=3", "--data-dir=/no/such/dir"])
def test_cli_refuses_a_bad_override_before_tensorflow_loads(arg):
    # TensorFlow writes start-up lines to stderr at import, whatever its log level: the error must come first and alone.
    done = _cli(arg)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_transfer_backbone_trains_in_two_stages_with_batchnorm_frozen(face_folder, tmp_path, monkeypatch):
    seen = {}
    original = train._unfreeze_top

    def spy(backbone, n_layers):
        original(backbone, n_layers)
        seen["trainable"] = [layer for layer in backbone.layers if layer.trainable and layer.weights]

    monkeypatch.setattr(train, "_unfreeze_top", spy)
    config = _config(face_folder, tmp_path, "model.name=mobilenet_v3_small", "train.epochs=1", "train.fine_tune_epochs=1", "train.fine_tune_layers=10")
    result = train.run_training(config)
    assert list(pd.read_csv(result.run_dir / "history.csv")["epoch"]) == [0, 1]
    assert (result.run_dir / "stage1.weights.h5").is_file() and not (result.run_dir / "backup").exists()
    assert seen["trainable"] and not any(isinstance(layer, keras.layers.BatchNormalization) for layer in seen["trainable"])
