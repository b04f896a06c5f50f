"""Narrowing a trained VGG into vgg_slim by keeping its strongest filters."""

import json

import keras
import numpy as np
import pytest

from fer_keras.errors import UserError
from fer_keras.models import build_model
from fer_keras.prune import narrow_into, prune, refit

# At width 8 the VGG's blocks have 8, 16, 32 and 64 filters; vgg_slim's 4, 8, 16 and 64.
NARROWED_BLOCKS = ("block0", "block1", "block2")


def _vgg_with_silent_odd_filters(seed: int = 0) -> keras.Model:
    """A width-8 VGG with random weights whose odd-numbered filters in the first three blocks output exactly zero.

    Each such filter has a zero kernel and a batch norm that maps zero to zero (beta 0, mean 0), so
    its channel is zero after ReLU, and a network without those channels computes the same function.
    The even filters get random batch-norm terms, so the kept channels carry distinct values.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model("vgg", 8, width=8)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    for block in NARROWED_BLOCKS:
        for conv in ("a", "b"):
            kernel = model.get_layer(f"{block}{conv}_conv").kernel
            kernel.assign(kernel.numpy() * (np.arange(kernel.shape[-1]) % 2 == 0))
            batch_norm = model.get_layer(f"{block}{conv}_bn")
            for variable in (batch_norm.beta, batch_norm.moving_mean):
                variable.assign(variable.numpy() * (np.arange(variable.shape[0]) % 2 == 0))
    return model


def test_slim_keeps_the_strongest_filters_and_the_function_they_compute():
    source = _vgg_with_silent_odd_filters()
    target = build_model("vgg_slim", 8, width=8)

    narrowed = narrow_into(source, target)

    assert {name: (kept.tolist(), total) for name, (kept, total) in narrowed.items()} == {
        f"{block}{conv}_conv": (list(range(0, total, 2)), total) for block, total in zip(NARROWED_BLOCKS, (8, 16, 32)) for conv in "ab"}
    np.testing.assert_array_equal(target.get_layer("block1a_conv").kernel.numpy(), source.get_layer("block1a_conv").kernel.numpy()[:, :, ::2, ::2])
    np.testing.assert_array_equal(target.get_layer("block2b_bn").gamma.numpy(), source.get_layer("block2b_bn").gamma.numpy()[::2])
    # The last block keeps all 64 filters but only the 16 input channels that survived.
    np.testing.assert_array_equal(target.get_layer("block3a_conv").kernel.numpy(), source.get_layer("block3a_conv").kernel.numpy()[:, :, ::2, :])
    faces = np.random.default_rng(1).integers(0, 256, size=(6, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(target.predict(faces, verbose=0), source.predict(faces, verbose=0), atol=1e-5)
    assert target.count_params() < source.count_params()


def test_narrowing_into_the_same_architecture_copies_every_weight():
    source = _vgg_with_silent_odd_filters(seed=3)
    target = build_model("vgg", 8, width=8)

    assert narrow_into(source, target) == {}
    for got, expected in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, expected)


def _faces(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48, 1)).astype("float32")


def test_refit_keeps_an_exact_narrowing_exact():
    source = _vgg_with_silent_odd_filters()
    target = build_model("vgg_slim", 8, width=8)
    narrowed = narrow_into(source, target)

    remaining = refit(source, target, narrowed, _faces(40))

    # The layers whose inputs lost channels: the second conv of each narrowed block, and the first of the next.
    assert sorted(remaining) == ["block0b_conv", "block1a_conv", "block1b_conv", "block2a_conv", "block2b_conv", "block3a_conv"]
    assert max(remaining.values()) < 0.01  # the ridge's shrinkage only
    faces = _faces(6, seed=2)
    np.testing.assert_allclose(target.predict(faces, verbose=0), source.predict(faces, verbose=0), atol=0.01)


def test_refit_brings_a_narrowed_network_closer_to_its_source():
    # Halving every layer, the dense head included (its logits get their bias refitted), of a network whose every filter counts.
    keras.utils.set_random_seed(5)
    source, target = build_model("vgg", 8, width=8), build_model("vgg", 8, width=4)
    narrowed = narrow_into(source, target)
    faces, held_out = _faces(60), _faces(20, seed=3)
    logits = lambda model: keras.Model(model.input, model.get_layer("logits").output).predict(held_out, verbose=0)  # noqa: E731
    copied_error = np.mean((logits(target) - logits(source)) ** 2)

    remaining = refit(source, target, narrowed, faces)

    assert "logits" in remaining and "fc" in remaining and all(0 <= error < 1 for error in remaining.values())
    assert np.mean((logits(target) - logits(source)) ** 2) < 0.5 * copied_error


def test_networks_with_residual_sums_are_refused():
    with pytest.raises(UserError, match="merges branches"):
        narrow_into(build_model("resnet_se", 8, width=8), build_model("vgg_slim", 8, width=8))


def test_networks_that_flatten_their_channels_are_refused():
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.Flatten(name="flat")(keras.layers.Conv2D(4, 3, name="conv")(inputs)))
    with pytest.raises(UserError, match="reshapes its channels \\(layer 'flat'\\)"):
        narrow_into(keras.Model(inputs, outputs), keras.Model(inputs, outputs))


def test_refit_refuses_a_layer_with_a_built_in_activation():
    def two_convs(first_width: int) -> keras.Model:
        inputs = keras.Input((48, 48, 1))
        x = keras.layers.Conv2D(first_width, 3, padding="same", name="first")(inputs)
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="second")(x)  # ReLU inside: not linear in its kernel
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))

    source, target = two_convs(8), two_convs(4)
    narrowed = narrow_into(source, target)
    with pytest.raises(UserError, match="layer 'second': its built-in relu activation"):
        refit(source, target, narrowed, _faces(4))


def test_a_wider_target_is_refused():
    with pytest.raises(UserError, match="does not fit inside"):
        narrow_into(build_model("vgg", 8, width=8), build_model("vgg", 8, width=16))


def test_prune_writes_a_run_folder_that_training_can_start_from(face_folder, tmp_path):
    from conftest import tiny_run_config
    from fer_keras.config import load_run_config, save_config
    from fer_keras.models import build_from_config, initialize_from

    run = tmp_path / "20261201-000000-vgg"
    run.mkdir()
    config = tiny_run_config(face_folder, tmp_path, "model.name=vgg", "model.width=8")
    save_config(config, run / "config.yaml")
    _vgg_with_silent_odd_filters().save(run / "best.keras")
    labels = [f"class{i}" for i in range(8)]
    (run / "metrics.json").write_text(json.dumps({"labels": labels}))

    folder = prune(run, "vgg_slim", tmp_path / "pruned")

    assert folder == tmp_path / "pruned" / "20261201-000000-vgg_vgg_slim"
    assert sorted(path.name for path in (tmp_path / "pruned").iterdir()) == [folder.name]  # no staging left behind
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["labels"] == labels and metrics["narrowed"]["block0a_conv"] == {"kept": [0, 2, 4, 6], "of": 8}
    assert metrics["refit"]["faces"] == 90 and max(metrics["refit"]["remaining_error"].values()) < 0.01  # all the folder's training faces: under 300 a class
    resolved = load_run_config(folder)
    assert (resolved.model.name, resolved.model.width) == ("vgg_slim", 8)
    fine_tune = build_from_config(resolved.model, len(labels))
    assert initialize_from(fine_tune, str(folder / "best.keras"), freeze_batch_norm=True) == tuple(labels)


def test_prune_without_faces_copies_the_kept_filters_only(face_folder, tmp_path):
    from conftest import tiny_run_config
    from fer_keras.config import save_config

    run = tmp_path / "vgg"
    run.mkdir()
    save_config(tiny_run_config(face_folder, tmp_path, "model.name=vgg", "model.width=8"), run / "config.yaml")
    _vgg_with_silent_odd_filters().save(run / "best.keras")
    (run / "metrics.json").write_text(json.dumps({"labels": [f"class{i}" for i in range(8)]}))

    folder = prune(run, "vgg_slim", tmp_path / "pruned", faces_per_class=0)

    assert json.loads((folder / "metrics.json").read_text())["refit"] == {"faces": 0, "remaining_error": {}}


def test_prune_names_a_missing_model_file(tmp_path):
    with pytest.raises(UserError, match="best.keras: not found"):
        prune(tmp_path, "vgg_slim", tmp_path / "out")
