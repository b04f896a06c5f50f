"""Rebuilding float members from an exported int8 ensemble."""

import keras
import numpy as np
import pytest

from fer_keras.errors import UserError


@pytest.fixture(scope="module")
def exported_pair(face_folder, tmp_path_factory):
    """A VGG and a ResNet-SE (batch norm to fold, squeeze-excitation dense layers on 1x1 maps) trained on the synthetic faces, exported as an int8 flip ensemble.

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
    for name, width in (("vgg", 4), ("resnet_se", 8)):
        config = tiny_run_config(face_folder, root, f"name={name}", f"model.name={name}", f"model.width={width}")
        keras.utils.set_random_seed(0)
        model = build_from_config(config.model, len(data.labels))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
        model.fit(train.images.astype("float32"), train.targets, epochs=20, batch_size=16, verbose=0)
        (root / name).mkdir()
        save_config(config, root / name / "config.yaml")
        runs.append(root / name)
        members.append(model)
    reference = [m.predict(val.images, verbose=0) for m in members]
    ensemble = average_models(members, flip=True)
    exporter.export(ensemble, data.labels, root / "exported", "int8", "uint8", train.images, val.images, val.labels, "pair", "synthetic")
    return root / "exported" / "pair_int8.tflite", runs, reference, val.images


def test_members_come_back_with_their_weights_and_batch_norm_folded(exported_pair, tmp_path):
    from fer_keras.evaluate import load_keras_model
    from fer_keras.recover import recover

    tflite, runs, reference, images = exported_pair
    check = recover(tflite, runs, tmp_path / "members")
    assert check["flip"] is True and check["agreement"] >= 0.97
    for run, expected in zip(runs, reference):
        model, labels = load_keras_model(tmp_path / "members" / run.name / "best.keras")
        assert labels == ("angry", "happy", "sad")
        got = model.predict(images, verbose=0)
        # Only int8 rounding of the weights separates the rebuilt member from the trained one.
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
        assert np.abs(got - expected).max() < 0.15
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                np.testing.assert_allclose(layer.gamma.numpy(), 1)
                np.testing.assert_allclose(layer.moving_mean.numpy(), 0)


def test_members_in_the_wrong_order_or_missing_are_refused(exported_pair, tmp_path):
    from fer_keras.recover import recover

    tflite, runs, _, _ = exported_pair
    with pytest.raises(UserError, match="no weights of shape"):
        recover(tflite, runs[::-1], tmp_path / "out")
    with pytest.raises(UserError, match="left after the 1 --run members"):
        recover(tflite, runs[:1], tmp_path / "out")
    with pytest.raises(UserError, match="no config.yaml"):
        recover(tflite, [tmp_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()
