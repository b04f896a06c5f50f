import numpy as np
import pytest

from conftest import REPO
from fer_keras.errors import UserError
from fer_keras.onnx_model import OnnxClassifier
from fer_keras.runtime import EmotionClassifier, rebalance

FAST_ONNX = REPO / "tflite" / "fast" / "onnx" / "fer_keras_fast_float32.onnx"
FERPLUS_LABELS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")


@pytest.fixture(scope="module")
def faces():
    """Four 48x48 gray faces of random pixels, a fixed seed: the model's answer to them is what is compared."""
    return np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)


def test_the_shipped_onnx_describes_itself_as_its_tflite_does():
    model, tflite = OnnxClassifier(FAST_ONNX), EmotionClassifier("fast")
    assert model.labels == tflite.labels == FERPLUS_LABELS
    assert (model.input_size, model.channels, model.value_range) == ((48, 48), 1, (0, 255))
    assert model.metadata["class_prior"] == tflite.metadata["class_prior"]
    assert model.predict_many(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, 8)


def test_balance_moves_the_probabilities_to_equal_class_odds(faces):
    plain, balanced = OnnxClassifier(FAST_ONNX).predict_many(faces), OnnxClassifier(FAST_ONNX, balance=1).predict_many(faces)
    prior = np.asarray(OnnxClassifier(FAST_ONNX).metadata["class_prior"])
    np.testing.assert_allclose(balanced, rebalance(plain, 1 / (prior / prior.sum())), rtol=1e-5)
    np.testing.assert_allclose(balanced.sum(1), 1, rtol=1e-5)


def test_a_value_range_scales_the_pixels_of_a_model_without_metadata(tmp_path, faces):
    import onnx

    proto = onnx.load(str(FAST_ONNX))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(UserError, match=r"bare.onnx: no labels in its metadata; give them \(--labels"):
        OnnxClassifier(bare)
    with pytest.raises(UserError, match="bare.onnx: 3 labels for a model with 8 outputs"):
        OnnxClassifier(bare, labels=["a", "b", "c"])
    # The network takes 0-255: told it takes 0-1, it is fed faces / 255, as a third-party model would be.
    scaled = OnnxClassifier(bare, labels=FERPLUS_LABELS, value_range=(0, 1))
    np.testing.assert_allclose(scaled.predict_many(faces), OnnxClassifier(FAST_ONNX).predict_many(faces / 255), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match=r"its metadata says it takes inputs in \(0, 255\); value_range \(0, 1\) is for models without metadata"):
        OnnxClassifier(FAST_ONNX, value_range=(0, 1))


def test_missing_broken_and_non_image_files_are_one_line_errors(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(UserError, match="missing.onnx: model file not found"):
        OnnxClassifier(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not onnx")
    with pytest.raises(UserError, match=r"text.onnx: not a loadable ONNX model \(.*INVALID_PROTOBUF"):
        OnnxClassifier(tmp_path / "text.onnx")
    vector = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "vector", [vector], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "vector.onnx"))
    with pytest.raises(UserError, match=r"vector.onnx: expected an image input \(batch, height, width, 1 or 3\), got \['batch', 8\]"):
        OnnxClassifier(tmp_path / "vector.onnx", labels=FERPLUS_LABELS)
