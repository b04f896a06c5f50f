"""Rebuilding float members from an exported int8 ensemble."""

import keras
import numpy as np
import pytest

from fer_keras.errors import UserError


def _randomize(model, rng, images, targets, biases: bool):
    """Random weights and a least-squares head in place of training, whose graph tracing costs 20 s here.

    Every batch norm gets random affine terms and, from one pass over ``images``, the statistics
    of what reaches it, so every layer has its own values to fold and the features keep their
    spread. Every other bias gets random values with ``biases``; without, the dense layers keep
    all-zero biases, which the file then omits. The logits layer is fitted in closed form to
    ``targets``, so predictions spread over the classes, decisively enough for int8.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
            layer.momentum = 0.0  # so that the training-mode pass below sets the moving statistics to its batch's
        elif biases and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    model(images.astype("float32"), training=True)
    logits = model.get_layer("logits")
    features = keras.Model(model.input, logits.input).predict(images, verbose=0)
    if biases:
        features = np.c_[features, np.ones(len(features))]
    weights = np.linalg.lstsq(features, 6 * (targets - targets.mean(1, keepdims=True)), rcond=None)[0]
    logits.kernel.assign(weights[: logits.kernel.shape[0]])
    if biases:
        logits.bias.assign(weights[-1])


@pytest.fixture(scope="module")
def exported_pair(face_folder, tmp_path_factory):
    """A VGG (zero dense biases) and a ResNet-SE (batch norm to fold, squeeze-excitation dense layers on 1x1 maps), exported as an int8 flip ensemble.

    Returns (tflite path, the two run folders, their float probabilities on the validation images, those images).
    """
    from conftest import tiny_run_config
    from fer_keras import export as exporter
    from fer_keras.config import save_config
    from fer_keras.data import load_dataset
    from fer_keras.ensemble import average_models
    from fer_keras.models import build_from_config

    root = tmp_path_factory.mktemp("recover")
    data = load_dataset("folder", face_folder, val_fraction=0.25, with_test=False)
    train, val = data.splits["train"], data.splits["val"]
    runs, members = [], []
    rng = np.random.default_rng(0)
    # The head is fitted to the validation faces too, so that the export's parity check on them meets no near-ties.
    faces, targets = np.concatenate([train.images, val.images]), np.concatenate([train.targets, val.targets])
    # Equal widths give both members a stem of one shape; distinct seeds keep the converter from sharing equal kernels.
    for seed, name in enumerate(("vgg", "resnet_se")):
        config = tiny_run_config(face_folder, root, f"name={name}", f"model.name={name}", "model.width=8")
        keras.utils.set_random_seed(seed)
        model = build_from_config(config.model, len(data.labels))
        _randomize(model, rng, faces, targets, biases=name == "resnet_se")
        (root / name).mkdir()
        save_config(config, root / name / "config.yaml")
        runs.append(root / name)
        members.append(model)
    reference = [m.predict(val.images, verbose=0) for m in members]
    ensemble = average_models(members, flip=True)
    exporter.export(ensemble, data.labels, root / "exported", "int8", "uint8", train.images, val.images, val.labels, "pair", "synthetic")
    return root / "exported" / "pair_int8.tflite", runs, reference, val.images


@pytest.fixture(scope="module")
def recovered_pair(exported_pair, tmp_path_factory):
    """The exported pair's members rebuilt by recover, once for the module: (its check, the folder of their run folders)."""
    from fer_keras.recover import recover

    tflite, runs, _, _ = exported_pair
    members_dir = tmp_path_factory.mktemp("recovered") / "members"
    return recover(tflite, runs, members_dir), members_dir


def test_members_come_back_with_their_weights_and_batch_norm_folded(exported_pair, recovered_pair):
    from fer_keras.evaluate import load_keras_model

    _, runs, reference, images = exported_pair
    check, members_dir = recovered_pair
    assert check["flip"] is True and check["agreement"] >= 0.97
    for run, expected in zip(runs, reference):
        model, labels = load_keras_model(members_dir / run.name / "best.keras")
        assert labels == ("angry", "happy", "sad")
        got = model.predict(images, verbose=0)
        # Only int8 rounding of the weights separates the rebuilt member from the trained one.
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
        assert np.abs(got - expected).mean() < 0.05  # measured: 0.027 (VGG), 0.001 (ResNet-SE)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                np.testing.assert_allclose(layer.gamma.numpy(), 1)
                np.testing.assert_allclose(layer.moving_mean.numpy(), 0)


def test_members_in_the_wrong_order_or_missing_are_refused(exported_pair, tmp_path):
    from fer_keras.recover import recover

    tflite, runs, _, _ = exported_pair
    with pytest.raises(UserError, match="no weights of shape"):
        recover(tflite, runs[::-1], tmp_path / "out")
    with pytest.raises(UserError, match="1 --share values for 2 --run folders"):
        recover(tflite, runs, tmp_path / "out", shares=[1.0])
    with pytest.raises(UserError, match="left after the 1 --run members"):
        recover(tflite, runs[:1], tmp_path / "out")
    with pytest.raises(UserError, match="no config.yaml"):
        recover(tflite, [tmp_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_members_on_the_face_only_come_back_with_views(exported_pair, recovered_pair, face_folder, tmp_path):
    """Rebuilt in a new layout (the ResNet-SE on the face only) and exported again, the members come back from that file with --views."""
    from fer_keras import export as exporter
    from fer_keras.data import load_dataset
    from fer_keras.ensemble import average_models
    from fer_keras.evaluate import load_keras_model
    from fer_keras.recover import recover

    _, runs, _, _ = exported_pair
    _, members_dir = recovered_pair
    members = [load_keras_model(members_dir / run.name / "best.keras")[0] for run in runs]
    split = load_dataset("folder", face_folder, val_fraction=0.25, with_test=False).splits
    mixed = average_models(members, flip=True, shares=[0.6, 0.4], views=["both", "original"])
    exporter.export(mixed, ("angry", "happy", "sad"), tmp_path / "mixed", "int8", "uint8", split["train"].images, split["val"].images, split["val"].labels, "mixed", "synthetic")
    check = recover(tmp_path / "mixed" / "mixed_int8.tflite", runs, tmp_path / "again", shares=[0.6, 0.4], views=["both", "original"])
    assert check["flip"] is True and check["agreement"] >= 0.97
    with pytest.raises(UserError, match="1 --views values for 2 --run folders"):
        recover(tmp_path / "mixed" / "mixed_int8.tflite", runs, tmp_path / "out", views=["both"])
