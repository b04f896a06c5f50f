import keras
import numpy as np
import pytest

from fer_keras.errors import UserError
from fer_keras.models import build_model, list_models, load_saved_model


def test_registry_lists_every_family():
    assert {"tiny", "mini_xception", "vgg", "resnet_se", "mobilenet_v3_small", "mobilenet_v3_large"} <= set(list_models())


def test_fast_and_accurate_sizes():
    assert build_model("mini_xception", 7).count_params() <= 150_000
    assert 1_000_000 <= build_model("vgg", 7).count_params() <= 5_000_000


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_raw_pixels_and_round_trips_through_keras_file(name, tmp_path):
    model = build_model(name, 5, (48, 48, 1))
    x = np.random.default_rng(0).integers(0, 256, size=(2, 48, 48, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    assert before.shape == (2, 5)
    assert np.allclose(before.sum(axis=1), 1, atol=1e-5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    after = keras.saving.load_model(path).predict(x, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_vgg_slim_halves_the_vgg_s_first_three_blocks():
    def block_widths(model):
        return [model.get_layer(f"block{i}a_conv").filters for i in range(4)]

    assert block_widths(build_model("vgg", 8)) == [32, 64, 128, 256]
    assert block_widths(build_model("vgg_slim", 8)) == [16, 32, 64, 256]
    assert build_model("vgg_slim", 8).count_params() == 880_408


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(UserError, match="registered models: .*mini_xception"):
        build_model("resnet9000", 7)


@pytest.mark.parametrize("trainer", ["train", "train_accel"])
@pytest.mark.parametrize(
    "model, message",
    [
        (["model.name=resnet9000"], "unknown model 'resnet9000'; registered models: "),
        (["model.name=vgg", "model.weights=imagenet"], "model.weights=imagenet: vgg trains from scratch; pretrained backbones are "),
        (["model.name=mobilenet_v3_small", "model.weights=/no/backbone.h5"], "/no/backbone.h5: backbone weights file not found"),
    ],
)
def test_model_errors_come_before_the_data_loads(trainer, model, message, tmp_path, capsys):
    import importlib

    # The data folder holds no classes: its error would come first if the data were loaded before the model was checked.
    (tmp_path / "no_classes").mkdir()
    args = ["--data-dir", str(tmp_path / "no_classes"), "data.label_set=folder", f"output_dir={tmp_path / 'runs'}", *model]
    assert importlib.import_module(f"fer_keras.{trainer}").main(args) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "trainer, model, message",
    [
        ("train", "vgg", "train.fine_tune_epochs=2: only the transfer backbones (mobilenet_v3_large, mobilenet_v3_small) train in two stages; vgg trains in one (give all its epochs as train.epochs)"),
        ("train_accel", "mobilenet_v3_small", "train.fine_tune_epochs=2: train_accel trains in one stage; two-stage transfer learning runs in fer_keras.train"),
    ],
)
def test_a_second_stage_that_would_be_ignored_is_refused(trainer, model, message, tmp_path, capsys):
    """Both trainers ran train.epochs alone and left train.fine_tune_epochs unused, saying nothing."""
    import importlib

    (tmp_path / "no_classes").mkdir()
    args = ["--data-dir", str(tmp_path / "no_classes"), "data.label_set=folder", f"output_dir={tmp_path / 'runs'}", f"model.name={model}", "train.fine_tune_epochs=2"]
    assert importlib.import_module(f"fer_keras.{trainer}").main(args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_imagenet_weights_offline_is_a_clear_error(monkeypatch):
    from keras.src.applications import mobilenet_v3

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(mobilenet_v3.file_utils, "get_file", offline)
    with pytest.raises(UserError, match="offline, use model.weights=none or a local weights file"):
        build_model("mobilenet_v3_small", 7, weights="imagenet")


def test_local_backbone_weights_file_is_loaded(tmp_path):
    donor = build_model("mobilenet_v3_small", 7).get_layer("backbone")
    path = tmp_path / "backbone.weights.h5"
    donor.save_weights(path)
    model = build_model("mobilenet_v3_small", 7, weights=str(path))
    np.testing.assert_array_equal(model.get_layer("backbone").get_weights()[0], donor.get_weights()[0])
    with pytest.raises(UserError, match="weights file not found"):
        build_model("mobilenet_v3_small", 7, weights=str(tmp_path / "missing.h5"))


def test_missing_or_unreadable_keras_file_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match=r"none\.keras: train\.init_from model not found"):
        load_saved_model(tmp_path / "none.keras", "train.init_from model")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(UserError, match=r"garbage\.keras: cannot load Keras model \(") as raised:
        load_saved_model(garbage)
    assert "\n" not in str(raised.value)


def test_frozen_batch_norm_keeps_loaded_statistics_while_the_rest_trains(tmp_path):
    from fer_keras.models import initialize_from

    keras.utils.set_random_seed(0)
    source = build_model("vgg", 3, width=4)
    source.save(tmp_path / "source.keras")
    model = build_model("vgg", 3, width=4)
    initialize_from(model, str(tmp_path / "source.keras"), freeze_batch_norm=True)
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    before = [layer.moving_mean.numpy().copy() for layer in batch_norms]
    kernel_before = model.get_layer("block0a_conv").kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 1)).astype(np.float32)
    model.fit(images, np.eye(3)[np.arange(8) % 3], epochs=1, verbose=0)
    for layer, mean in zip(batch_norms, before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
    assert not np.allclose(model.get_layer("block0a_conv").kernel.numpy(), kernel_before)
