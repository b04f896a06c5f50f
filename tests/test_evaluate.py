import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, copy_run, synthetic_face, synthetic_ferplus_rows, tiny_run_at_64, write_ferplus_layout
from fer_keras import evaluate as ev
from fer_keras.data import Split
from fer_keras.explain import gradcam, last_conv_layer, occlusion_sensitivity
from fer_keras.errors import UserError
from fer_keras.metrics import classification_metrics


def test_metrics_match_hand_computed_values():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    m = classification_metrics(y, p, ("a", "b", "c"))
    # predictions: 0 0 1 1 0 2 → 4 of 6 right
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3, "auc": 8 / 9})
    assert m["per_class"]["b"]["precision"] == pytest.approx(1 / 2) and m["per_class"]["b"]["recall"] == pytest.approx(1 / 2)
    assert m["per_class"]["c"]["f1"] == 1.0 and m["per_class"]["c"]["auc"] == 1.0
    # class b: scores of positives 0.8, 0.4 vs negatives 0.1 0.3 0.7 0.1 → 7 of 8 pairs ordered right
    assert m["per_class"]["b"]["auc"] == pytest.approx(7 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_absent_classes_do_not_count_in_macro_scores():
    m = classification_metrics(np.array([0, 1]), np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), ("a", "b", "c"))
    assert m["per_class"]["c"]["support"] == 0 and m["per_class"]["c"]["auc"] is None
    assert m["macro_f1"] == 1.0 and m["balanced_accuracy"] == 1.0


def test_alias_mapping_and_exclusion():
    split = Split(np.zeros((4, 2, 2, 1), np.uint8), np.eye(3, dtype=np.float32)[[0, 1, 2, 2]], ["a", "b", "c", "d"])
    images, y, paths, excluded = ev.map_to_model_labels(split, ("happiness", "anger", "contempt"), ("angry", "disgust", "fear", "happy"))
    assert y.tolist() == [3, 0] and len(images) == 2 and paths == ["a", "b"]
    assert excluded == ["contempt"]


def test_accuracy_by_usage_splits_kaggle_fer2013_file_names():
    paths = ["test/angry/PrivateTest_1.jpg", "test/happy/PublicTest_2.jpg", "test/happy/PrivateTest_3.jpg", "test/sad/PrivateTest_4.jpg"]
    by_usage = ev.accuracy_by_usage(paths, np.array([True, False, True, False]))
    assert by_usage == {"PublicTest": {"accuracy": 0.0, "n": 1}, "PrivateTest": {"accuracy": 2 / 3, "n": 3}}
    assert ev.accuracy_by_usage(paths + ["test/sad/my_face.jpg"], np.ones(5, bool)) == {}


def test_predictions_csv_has_one_row_per_image():
    text = ev.predictions_csv(["a.jpg", "b,c.jpg"], np.array([0, 1]), np.array([[0.7, 0.3], [0.9, 0.1]]), ("happy", "sad"))
    assert text.splitlines() == ["file,label,predicted,score,happy,sad", "a.jpg,happy,happy,0.7000,0.7000,0.3000", '"b,c.jpg",sad,happy,0.9000,0.9000,0.1000']


def test_restrict_to_present_takes_argmax_over_present_classes():
    p = np.array([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3]])
    restricted = ev.restrict_to_present(p, np.array([1, 2]))
    assert restricted.argmax(1).tolist() == [1, 2]
    np.testing.assert_allclose(restricted.sum(1), 1)


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    """A folder of class folders (no train/test), named with dataset aliases, one corrupt file, one unknown class."""
    root = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(5)
    for k, name in enumerate(("anger", "happiness", "sadness")):
        (root / name).mkdir()
        for i in range(8):
            Image.fromarray(np.kron(synthetic_face(k, rng), np.ones((2, 2), np.uint8))).convert("RGB").save(root / name / f"{i}.jpg", quality=95)
    (root / "calm_but_unknown_to_model").mkdir()
    Image.fromarray(synthetic_face(0, rng)).save(root / "calm_but_unknown_to_model" / "x.png")
    (root / "happiness" / "broken.jpg").write_bytes(b"\xff\xd8broken")
    return root


def test_keras_and_tflite_evaluations_agree_and_write_the_report(trained_tiny, tiny_keras_run, plain_folder, tmp_path):
    from fer_keras.export import export

    model, labels, images, y = trained_tiny
    export(model, labels, tmp_path / "tflite", "float32", "float32", None, None, None, "tiny", "synthetic")
    export(model, labels, tmp_path / "onnx", "float32", "float32", None, None, None, "tiny", "synthetic", file_format="onnx")
    keras_metrics = ev.evaluate(tiny_keras_run, str(plain_folder), tmp_path / "k")
    tflite_metrics = ev.evaluate(tmp_path / "tflite" / "tiny_float32.tflite", str(plain_folder), tmp_path / "t")
    onnx_metrics = ev.evaluate(tmp_path / "onnx" / "tiny_float32.onnx", str(plain_folder), tmp_path / "o")
    assert keras_metrics["n"] == tflite_metrics["n"] == onnx_metrics["n"] == 24
    assert keras_metrics["accuracy"] == tflite_metrics["accuracy"] == onnx_metrics["accuracy"] >= 0.9
    assert keras_metrics["excluded_classes"] == ["calm_but_unknown_to_model"]
    assert [s["path"].rsplit("/", 1)[-1] for s in keras_metrics["skipped_files"]] == ["broken.jpg"]
    written = json.loads((tmp_path / "k" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "macro_auc", "confusion_matrix", "labels", "n",
                "excluded_classes", "skipped_files", "model", "data_dir", "label_set", "split"):
        assert key in written
    rows = (tmp_path / "k" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,label,predicted,score," + ",".join(labels) and len(rows) == 25
    assert rows[1].split(",")[0] == "anger/0.jpg"  # relative to the data folder
    assert sum(row.split(",")[1] == row.split(",")[2] for row in rows[1:]) == round(keras_metrics["accuracy"] * 24)
    assert "accuracy_by_usage" not in written
    report = (tmp_path / "k" / "report.html").read_text()
    for image in ("confusion_matrix.png", "confusion_matrix_normalized.png", "roc_curves.png", "per_class_scores.png", "class_distribution.png", "gradcam_grid.png"):
        assert (tmp_path / "k" / image).stat().st_size > 1000
        assert f"alt='{image}' src='data:image/png;base64," in report
    # A .tflite has no gradients: its report explains faces by occlusion.
    assert "alt='occlusion_grid.png' src='data:image/png;base64," in (tmp_path / "t" / "report.html").read_text()
    assert not (tmp_path / "t" / "gradcam_grid.png").exists()
    assert (tmp_path / "o" / "occlusion_grid.png").stat().st_size > 1000


def test_a_one_class_folder_gets_its_report_without_warnings(trained_tiny, plain_folder, tmp_path):
    import shutil
    import warnings

    from fer_keras.export import export

    model, labels, _, _ = trained_tiny
    export(model, labels, tmp_path / "tflite", "float32", "float32", None, None, None, "tiny", "synthetic")
    shutil.copytree(plain_folder / "anger", tmp_path / "one" / "anger")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned that the ROC plot, with no curve, had no legend
        metrics = ev.evaluate(tmp_path / "tflite" / "tiny_float32.tflite", str(tmp_path / "one"), tmp_path / "out")
    assert metrics["n"] == 8 and (tmp_path / "out" / "roc_curves.png").stat().st_size > 1000


def test_a_label_list_scores_as_the_class_folders_it_lists(tiny_keras_run, plain_folder, tmp_path, capsys):
    # Datasets such as KDEF or JAFFE keep every face in one folder, with the label in a table or the file name.
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["Path,Label,Subject"]
    for folder in sorted(p for p in plain_folder.iterdir() if p.is_dir()):
        for image in sorted(folder.iterdir()):
            (flat / f"{folder.name}_{image.name}").write_bytes(image.read_bytes())
            rows.append(f"{folder.name}_{image.name},{folder.name},{'s1' if image.stem in ('0', '1', '2') else ''}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    by_folder = ev.evaluate(tiny_keras_run, str(plain_folder), tmp_path / "folder", plots=False)
    by_list = ev.evaluate(tiny_keras_run, str(flat / "labels.csv"), tmp_path / "list", plots=False, group_by="subject")
    for key in ("n", "accuracy", "confusion_matrix", "excluded_classes"):
        assert by_list[key] == by_folder[key]
    # Per value of a column (any case), with the rows that leave it empty as a group of their own.
    predictions = [row.split(",") for row in (tmp_path / "list" / "predictions.csv").read_text().splitlines()[1:]]
    right = {row[0]: row[1] == row[2] for row in predictions}
    s1 = [right[f] for f in right if f.rsplit("_", 1)[1] in ("0.jpg", "1.jpg", "2.jpg")]
    assert by_list["group_by"] == "subject" and len(s1) == 9
    assert by_list["accuracy_by_group"] == {
        "(blank)": {"accuracy": (sum(right.values()) - sum(s1)) / (24 - 9), "n": 15},
        "s1": {"accuracy": sum(s1) / 9, "n": 9},
    }
    with pytest.raises(UserError, match="no column age to group by; found Path, Label, Subject"):
        ev.evaluate(tiny_keras_run, str(flat / "labels.csv"), tmp_path / "age", plots=False, group_by="age")
    with pytest.raises(UserError, match="needs a .csv label list, and this data has none"):
        ev.evaluate(tiny_keras_run, str(plain_folder), tmp_path / "age", plots=False, group_by="age")
    assert [s["path"].rsplit("/", 1)[-1] for s in by_list["skipped_files"]] == ["happiness_broken.jpg"]
    rows = (tmp_path / "list" / "predictions.csv").read_text().splitlines()
    assert rows[1].split(",")[:2] == ["anger_0.jpg", "angry"]  # relative to the list's folder
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(flat / "anger_0.jpg"), "--out", str(tmp_path / "x")]) == 2
    # Numeric labels (RAF-DB's 1-7) match no model label: the error names both sides.
    (flat / "numeric.csv").write_text("path,label\nanger_0.jpg,6\nhappiness_0.jpg,4\n")
    capsys.readouterr()
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(flat / "numeric.csv"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith("no images of any class the model knows (angry, happy, sad); the data's classes: 4, 6")


def test_seen_in_scores_faces_identical_to_training_images_apart(tiny_keras_run, plain_folder, tmp_path, capsys):
    # A training set holding two of the test faces: one copied under another class and name, one
    # re-saved losslessly as PNG (other bytes, the same pixels); its own train/ part is what counts.
    train = tmp_path / "trainset" / "train"
    (train / "sad").mkdir(parents=True)
    (train / "sad" / "copy.jpg").write_bytes((plain_folder / "anger" / "3.jpg").read_bytes())
    Image.open(plain_folder / "happiness" / "5.jpg").save(train / "sad" / "resaved.png")
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(train / "sad" / "other.png")
    (tmp_path / "trainset" / "test" / "sad").mkdir(parents=True)
    Image.open(plain_folder / "sadness" / "0.jpg").save(tmp_path / "trainset" / "test" / "sad" / "held_out.png")  # test/ is not training data
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(plain_folder), "--out", str(tmp_path / "e"), "--seen-in", str(tmp_path / "trainset")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    right = {row.split(",")[0]: row.split(",")[1] == row.split(",")[2] for row in (tmp_path / "e" / "predictions.csv").read_text().splitlines()[1:]}
    assert sorted(metrics["seen_files"]) == ["anger/3.jpg", "happiness/5.jpg"]
    assert metrics["accuracy_by_seen"] == {
        "unseen": {"accuracy": sum(v for f, v in right.items() if f not in metrics["seen_files"]) / 22, "n": 22},
        "seen": {"accuracy": (right["anger/3.jpg"] + right["happiness/5.jpg"]) / 2, "n": 2},
    }
    assert f"seen in {tmp_path / 'trainset'}: accuracy" in capsys.readouterr().out
    assert "pixel-identical to one in" in (tmp_path / "e" / "report.html").read_text()
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(plain_folder), "--out", str(tmp_path / "x"), "--seen-in", str(tmp_path / "nowhere")]) == 2
    assert "(--seen-in) does not exist" in capsys.readouterr().err


def test_ferplus_own_layout_is_scored_on_its_test_votes_without_being_told(tiny_keras_run, tmp_path, capsys):
    rows = synthetic_ferplus_rows(test_per_class=4, seed=3)
    rows["FER2013Test"].append(("fer_contempt.png", (0, 0, 0, 0, 0, 0, 0, 9, 1, 0), rows["FER2013Test"][0][2]))
    write_ferplus_layout(tmp_path / "ferplus", rows)
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(tmp_path / "ferplus"), "--out", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["label_set"] == "ferplus" and metrics["n"] == 12 and metrics["excluded_classes"] == ["contempt"]
    assert all(row.startswith("FER2013Test/") for row in (tmp_path / "e" / "predictions.csv").read_text().splitlines()[1:])
    assert ev.main(["--model", str(tiny_keras_run), "--data-dir", str(tmp_path / "ferplus"), "--out", str(tmp_path / "f"), "--label-set", "folder"]) == 2
    assert "use the ferplus label set" in capsys.readouterr().err


def _predict(model):
    return lambda x: model.predict(x, verbose=0)


def test_tta_on_flip_symmetric_data_changes_nothing(trained_tiny):
    model, labels, images, y = trained_tiny
    symmetric = np.concatenate([images[:4], images[:4, :, ::-1]], axis=2)[:, :, 24:72]
    plain = ev.predict_probabilities(_predict(model), symmetric, tta=None)
    np.testing.assert_allclose(ev.predict_probabilities(_predict(model), symmetric, tta="flip"), plain, atol=1e-5)


def test_ten_crop_views_cut_the_corners_and_the_centre():
    images = np.zeros((2, 48, 48, 1), np.uint8)
    images[:, 46:, 46:] = 255  # a bright 2x2 block in the bottom-right corner: the centre crop (rows and columns 2-45) misses it too
    top_left, top_right, bottom_left, bottom_right, centre = ev.ten_crop_views(images)
    for view in (top_left, top_right, bottom_left, centre):
        assert view.shape == images.shape and view.dtype == np.uint8 and view.max() == 0
    assert bottom_right[:, -2:, -2:].min() == 255 and bottom_right[:, :-3].max() == 0  # the 44-px crop (rows 4-47) blown back up to 48 px


def test_ten_crop_of_a_uniform_face_matches_the_plain_prediction(trained_tiny):
    model, labels, images, y = trained_tiny
    uniform = np.full((3, 48, 48, 1), 128, np.uint8)
    np.testing.assert_allclose(ev.predict_probabilities(_predict(model), uniform, tta="ten-crop"), ev.predict_probabilities(_predict(model), uniform, tta=None), atol=1e-5)


def _bright_patch_model():
    """Identity 1x1 conv → global average → class 0 = brightness: Grad-CAM of class 0 must peak on the bright patch."""
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]), bias_initializer="zeros")(pooled)
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def test_gradcam_peaks_where_the_evidence_is():
    image = np.zeros((1, 32, 32, 1), np.float32)
    image[0, 20:26, 4:10] = 1.0
    heatmaps, classes = gradcam(_bright_patch_model(), image, class_index=0)
    assert heatmaps.shape == (1, 32, 32) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and heatmaps.max() == pytest.approx(1.0)
    peak = np.unravel_index(heatmaps[0].argmax(), (32, 32))
    assert 20 <= peak[0] < 26 and 4 <= peak[1] < 10
    assert heatmaps[0, :10, 20:].max() < 0.2
    assert classes.tolist() == [0]


def test_occlusion_heat_lies_on_the_evidence_and_needs_one_prediction_per_face():
    """Class 0's probability rises with the brightness of one patch: hiding any of it lowers class 0, hiding elsewhere changes nothing."""
    calls = []

    def predict(images):
        calls.append(len(images))
        evidence = images[:, 20:26, 4:10, 0].mean(axis=(1, 2)) / 255
        p0 = 1 / (1 + np.exp(-(8 * evidence - 4)))
        return np.stack([p0, 1 - p0], axis=1)

    images = np.zeros((2, 48, 48, 1), np.float32)
    images[:, 20:26, 4:10] = 255
    heatmaps, classes = occlusion_sensitivity(predict, images)
    assert calls == [2, 100, 100]  # the faces once, then each face's 10 x 10 hidden squares in one batch
    assert classes.tolist() == [0, 0] and heatmaps.shape == (2, 48, 48) and heatmaps.dtype == np.float32
    assert heatmaps.max() == pytest.approx(1.0) and heatmaps.min() == 0
    # Squares centred on the patch hide all of it: the map peaks there. Where no square centred
    # nearby reaches the patch, the map is empty.
    assert heatmaps[:, 22:26, 4:10].min() == pytest.approx(1.0)
    assert heatmaps[:, :8, 20:].max() == 0 and heatmaps[:, 36:, 24:].max() == 0  # no square there touches the patch
    # Class 1 only gains when the patch is hidden: nothing speaks for it, so its map is empty.
    explained, classes = occlusion_sensitivity(predict, images, class_index=1)
    assert classes.tolist() == [1, 1] and explained.max() == 0


def test_last_conv_layer_is_found(trained_tiny):
    assert last_conv_layer(trained_tiny[0]) == "conv"


def test_evaluate_cli_bad_input_exits_2(tmp_path, plain_folder, capsys):
    assert ev.main(["--model", str(tmp_path / "none.tflite"), "--data-dir", str(plain_folder), "--out", str(tmp_path)]) == 2
    assert ev.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07broken")
    capsys.readouterr()
    assert ev.main(["--model", str(tmp_path / "broken.onnx"), "--data-dir", str(plain_folder), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'broken.onnx'}: not a loadable ONNX model (") and error.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_explain_cli_writes_an_overlay(trained_tiny, tmp_path):
    from fer_keras import explain

    model, labels, images, _ = trained_tiny
    model.save(tmp_path / "m.keras")
    Image.fromarray(images[0, ..., 0]).save(tmp_path / "face.png")
    code = explain.main(["--model", str(tmp_path / "m.keras"), "--labels", ",".join(labels), "--image", str(tmp_path / "face.png"), "--out", str(tmp_path / "cam")])
    assert code == 0
    assert (tmp_path / "cam" / "face_face1_gradcam.png").stat().st_size > 1000
    assert explain.main(["--model", str(tmp_path / "m.keras"), "--labels", ",".join(labels), "--image", str(tmp_path / "face.png"), "--class", "bored", "--out", str(tmp_path)]) == 2
    # A photo: each detected face is cropped as detect crops it, and explained.
    photo = REPO / "tests" / "data" / "two_people.jpg"
    assert explain.main(["--model", str(tmp_path / "m.keras"), "--labels", ",".join(labels), "--image", str(photo), "--out", str(tmp_path / "photo")]) == 0
    assert sorted(p.name for p in (tmp_path / "photo").iterdir()) == ["two_people_face1_gradcam.png", "two_people_face2_gradcam.png"]


def test_explain_occludes_a_shipped_tier_and_keeps_grad_cam_for_keras_models(tmp_path, capsys):
    from fer_keras import explain

    photo = REPO / "tests" / "data" / "two_people.jpg"
    assert explain.main(["--model", "fast", "--image", str(photo), "--out", str(tmp_path / "cam")]) == 0
    written = [tmp_path / "cam" / f"two_people_face{i}_occlusion.png" for i in (1, 2)]
    assert sorted((tmp_path / "cam").iterdir()) == written
    assert [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()] == list(map(str, written))  # each face's file, with its label
    common = ["--image", str(photo), "--out", str(tmp_path / "refused")]
    assert explain.main(["--model", "fast", "--method", "gradcam", *common]) == 2
    assert capsys.readouterr().err == ("error: fast: Grad-CAM needs a .keras model's gradients; use --method occlusion, "
                                       "or rebuild a shipped tier's members as .keras with fer_keras.recover\n")
    assert explain.main(["--layer", "conv", *common]) == 2
    assert capsys.readouterr().err == "error: --layer names the conv layer Grad-CAM explains; occlusion uses none\n"
    assert not (tmp_path / "refused").exists()


def test_explain_names_the_layers_to_choose_from_and_refuses_a_broken_tflite(trained_tiny, tmp_path, capsys):
    from fer_keras import explain

    model, labels, images, _ = trained_tiny
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    Image.fromarray(images[0, ..., 0]).save(tmp_path / "face.png")
    common = ["--labels", ",".join(labels), "--image", str(tmp_path / "face.png"), "--out", str(tmp_path / "cam")]
    assert explain.main(["--model", str(tmp_path / "m.keras"), "--layer", "conv9", *common]) == 2
    assert capsys.readouterr().err == "error: tiny: no layer named 'conv9'; its spatial layers are conv\n"
    assert explain.main(["--model", str(tmp_path / "m.tflite"), *common]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'm.tflite'}: ")
    # The same face explained by occlusion on the .keras model: the method is the caller's choice.
    assert explain.main(["--model", str(tmp_path / "m.keras"), "--method", "occlusion", *common]) == 0
    assert (tmp_path / "cam" / "face_face1_occlusion.png").is_file()
    assert explain.main(["--model", str(tmp_path / "m.keras"), "--detector", "yunet", *common[:-1], str(tmp_path / "yunet")]) == 2
    assert capsys.readouterr().err == "error: the yunet detector needs its .onnx file (--detector-model PATH; detector_model= in the Python API)\n"
    assert not (tmp_path / "yunet").exists()


def test_crop_faces_frames_whole_photos_as_detect_does(tmp_path):
    import fer_keras
    from fer_keras.sources import register_pillow_formats

    register_pillow_formats()
    (tmp_path / "happy").mkdir()
    (tmp_path / "sad").mkdir()
    photo = tmp_path / "happy" / "two_people.heic"  # as a phone saves it: Pillow reads it, not OpenCV
    Image.open(REPO / "tests" / "data" / "two_people.jpg").save(photo, quality=95)
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(tmp_path / "sad" / "blank.png")
    metrics = ev.evaluate("fast", str(tmp_path), tmp_path / "out", crop_faces="blazeface", plots=False)
    assert metrics["n"] == 1 and metrics["crop_faces"] == "blazeface"
    assert [p.rsplit("/", 1)[-1] for p in metrics["no_face_files"]] == ["blank.png"]
    # The largest face, cut out as the detect pipeline cuts it, gets the pipeline's answer.
    expected = fer_keras.analyze(photo, model="fast")[0].emotion
    row = metrics["confusion_matrix"][metrics["labels"].index("happy")]
    assert metrics["labels"][int(np.argmax(row))] == expected
    photo.unlink()
    assert ev.main(["--model", "fast", "--data-dir", str(tmp_path), "--out", str(tmp_path / "none"), "--crop-faces"]) == 2


def test_importing_evaluate_leaves_keras_for_keras_models():
    # .tflite evaluation and the benchmark CLI import this module; Keras (and TensorFlow) load only for a .keras model.
    code = "import sys, fer_keras.evaluate\nassert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), 'Keras was imported'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_run_validation_views_scores_each_run_on_its_own_validation_faces(two_tiny_runs, tmp_path):
    """The face and the face-with-mirror views on the run's own split; a 64-pixel run gets the same faces upsampled."""
    from fer_keras.config import load_run_config
    from fer_keras.data import load_config_dataset

    labels, views = ev.run_validation_views(two_tiny_runs[0])
    val = load_config_dataset(load_run_config(two_tiny_runs[0].parent), with_test=False).splits["val"]
    model = ev.load_keras_model(two_tiny_runs[0])[0]
    face = model.predict(val.images, verbose=0)
    assert np.array_equal(labels, val.labels) and set(views) == {"original", "both"}
    assert np.allclose(views["original"], face, atol=1e-6)
    assert np.allclose(views["both"], (face + model.predict(val.images[:, :, ::-1], verbose=0)) / 2, atol=1e-6)

    labels64, views64 = ev.run_validation_views(tiny_run_at_64(two_tiny_runs[1].parent, tmp_path / "run64"))
    assert np.array_equal(labels64, labels) and views64["original"].shape == views["original"].shape


def test_a_run_whose_data_folder_is_missing_here_is_scored_on_its_own_hold_out(two_tiny_runs, face_folder, tmp_path):
    """A run made on a lent GPU names a data folder this machine lacks: --split val is the split it held out,
    not a fresh 10% cut of faces it trained on; a run that trained on another folder that exists keeps the fresh cut."""
    from fer_keras.config import load_run_config
    from fer_keras.data import load_config_dataset

    held_out = load_config_dataset(load_run_config(two_tiny_runs[0].parent), with_test=False).splits["val"]
    for name, data_dir in (("device_run", tmp_path / "device" / "fer2013"), ("foreign_run", tmp_path)):
        copy_run(two_tiny_runs[0].parent, tmp_path / name, {"data.data_dir": str(data_dir)})
    device = ev.evaluate(tmp_path / "device_run" / "best.keras", str(face_folder), tmp_path / "device_out", split="val", plots=False)
    foreign = ev.evaluate(tmp_path / "foreign_run" / "best.keras", str(face_folder), tmp_path / "foreign_out", split="val", plots=False)
    assert device["n"] == len(held_out) == 30  # val_fraction 0.25 of the 120 synthetic faces
    assert foreign["n"] == 12  # the loader's default 10%


def test_a_refit_run_scored_on_its_val_split_is_flagged_as_fit(two_tiny_runs, tmp_path, caplog):
    """A run trained with data.val_split=public_test_refit also trained on PublicTest: --split val warns and flags it, --split test does not."""
    from conftest import write_kaggle_fer2013

    kaggle = write_kaggle_fer2013(tmp_path / "kaggle")
    for name, val_split in (("refit", "public_test_refit"), ("protocol", "public_test")):
        copy_run(two_tiny_runs[0].parent, tmp_path / name, {"data.data_dir": str(kaggle), "data.val_split": val_split, "data.label_set": "fer2013"})
    with caplog.at_level("WARNING", logger="fer_keras.evaluate"):
        refit_val = ev.evaluate(tmp_path / "refit" / "best.keras", str(kaggle), tmp_path / "refit_val", split="val", plots=False)
    assert refit_val["n"] == 6 and refit_val["val_trained_on"] is True  # the 2 PublicTest faces of each of 3 classes
    assert "trained on the val split too (data.val_split=public_test_refit" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fer_keras.evaluate"):
        refit_test = ev.evaluate(tmp_path / "refit" / "best.keras", str(kaggle), tmp_path / "refit_test", plots=False)
        protocol_val = ev.evaluate(tmp_path / "protocol" / "best.keras", str(kaggle), tmp_path / "protocol_val", split="val", plots=False)
    assert refit_test["n"] == 12 and protocol_val["n"] == 6  # PrivateTest's 4 a class; the same PublicTest faces
    assert "val_trained_on" not in refit_test and "val_trained_on" not in protocol_val and "public_test_refit" not in caplog.text


def test_ensembles_and_soups_with_a_refit_member_are_flagged_as_fit(two_tiny_runs, tmp_path, caplog):
    """Scored on PublicTest, an ensemble or soup with a refit member warns and lists it; evaluate --split val then flags the result."""
    from conftest import write_kaggle_fer2013
    from fer_keras.ensemble import build_ensemble
    from fer_keras.soup import build_soup

    kaggle = write_kaggle_fer2013(tmp_path / "kaggle")
    runs = {}
    for name, run, val_split in (("protocol", 0, "public_test"), ("refit", 1, "public_test_refit"), ("protocol2", 1, "public_test")):
        # Class folders as labels (the models know 3 of FER2013's 7): build_ensemble and build_soup score members on their own labels.
        copy_run(two_tiny_runs[run].parent, tmp_path / name, {"data.data_dir": str(kaggle), "data.val_split": val_split, "data.label_set": "folder"})
        runs[name] = tmp_path / name / "best.keras"
    # The protocol run first: the ensemble's config.yaml is its, so only the recorded member tells evaluate.
    with caplog.at_level("WARNING", logger="fer_keras.data"):
        ensemble = build_ensemble([runs["protocol"], runs["refit"]], tmp_path / "ensemble")
        soup = build_soup([runs["protocol"], runs["refit"]], None, tmp_path / "soup")
    assert ensemble["val_trained_on"] == soup["val_trained_on"] == [str(runs["refit"])]
    assert caplog.text.count(f"{runs['refit']}: trained on the val split too") == 2
    caplog.clear()
    with caplog.at_level("WARNING"):
        clean = build_ensemble([runs["protocol"], runs["protocol2"]], tmp_path / "clean")
        clean_val = ev.evaluate(tmp_path / "clean" / "best.keras", str(kaggle), tmp_path / "clean_val", split="val", plots=False)
    assert "val_trained_on" not in clean and "val_trained_on" not in clean_val and "trained on the val split" not in caplog.text
    for folder in ("ensemble", "soup"):
        assert ev.evaluate(tmp_path / folder / "best.keras", str(kaggle), tmp_path / f"{folder}_val", split="val", plots=False)["val_trained_on"] is True


def test_on_a_hold_out_members_that_did_not_cut_it_are_flagged_as_fit(two_tiny_runs, tmp_path, caplog):
    """Scored on a hold-out cut from train/, a protocol member (all of train/ learnt) or one cut with another seed trained on its faces; one cut alike did not."""
    import yaml

    from conftest import write_kaggle_fer2013
    from fer_keras.ensemble import build_ensemble
    from fer_keras.soup import build_soup

    kaggle = write_kaggle_fer2013(tmp_path / "kaggle")
    runs = {}
    # test_share cut alike: a folder with its own train/ leaves data.test_fraction unused.
    for name, run, settings in (("cut", 0, {}), ("cut2", 1, {}), ("test_share", 1, {"data.test_fraction": 0.2}),
                                ("protocol", 1, {"data.val_split": "public_test"}), ("reseeded", 1, {"data.split_seed": 7})):
        copy_run(two_tiny_runs[run].parent, tmp_path / name, {"data.data_dir": str(kaggle), "data.val_split": "holdout", "data.label_set": "folder", **settings})
        runs[name] = tmp_path / name / "best.keras"
    # cut2's config.yaml predates cross-validation: without cv_folds and cv_fold it cut with their defaults, as cut did.
    config = yaml.safe_load((tmp_path / "cut2" / "config.yaml").read_text())
    del config["data"]["cv_folds"], config["data"]["cv_fold"]
    (tmp_path / "cut2" / "config.yaml").write_text(yaml.safe_dump(config))
    with caplog.at_level("WARNING", logger="fer_keras.data"):
        clean = build_ensemble([runs["cut"], runs["cut2"], runs["test_share"]], tmp_path / "clean")
    assert "val_trained_on" not in clean and "trained on the val split" not in caplog.text
    with caplog.at_level("WARNING", logger="fer_keras.data"):
        flagged = build_ensemble([runs["cut"], runs["protocol"], runs["reseeded"]], tmp_path / "flagged")
        soup = build_soup([runs["cut"], runs["protocol"]], None, tmp_path / "soup")
    assert flagged["val_trained_on"] == [str(runs["protocol"]), str(runs["reseeded"])]
    assert soup["val_trained_on"] == [str(runs["protocol"])]
    assert ev.evaluate(tmp_path / "flagged" / "best.keras", str(kaggle), tmp_path / "flagged_val", split="val", plots=False)["val_trained_on"] is True


def test_runs_started_from_or_taught_by_a_model_that_trained_on_the_val_split_are_flagged_as_fit(two_tiny_runs, tmp_path, caplog):
    """A fine-tune (train.init_from) or student (data.teacher) of a model that learnt the val faces learnt them too; a run naming its own model is not."""
    from conftest import write_kaggle_fer2013
    from fer_keras.ensemble import build_ensemble

    kaggle = write_kaggle_fer2013(tmp_path / "kaggle")
    holdout = {"data.data_dir": str(kaggle), "data.val_split": "holdout", "data.label_set": "folder"}
    copy_run(two_tiny_runs[1].parent, tmp_path / "protocol", {**holdout, "data.val_split": "public_test"})
    copy_run(two_tiny_runs[1].parent, tmp_path / "refit", {**holdout, "data.val_split": "public_test_refit"})
    start, refit = str(tmp_path / "protocol" / "best.keras"), str(tmp_path / "refit" / "best.keras")
    runs = {}
    for name, settings in (("cut", {}), ("finetuned", {"train.init_from": start}), ("taught", {"data.teacher": start}),
                           ("restarted", {"train.init_from": str(tmp_path / "restarted" / "best.keras")}),
                           ("from_refit", {"data.val_split": "public_test", "train.init_from": refit})):
        copy_run(two_tiny_runs[0].parent, tmp_path / name, {**holdout, **settings})
        runs[name] = tmp_path / name / "best.keras"
    with caplog.at_level("WARNING", logger="fer_keras.data"):
        ensemble = build_ensemble([runs["cut"], runs["finetuned"], runs["taught"], runs["restarted"]], tmp_path / "ensemble")
    assert ensemble["val_trained_on"] == [str(runs["finetuned"]), str(runs["taught"])]
    scored = {name: ev.evaluate(runs[name], str(kaggle), tmp_path / f"{name}_val", split="val", plots=False) for name in ("finetuned", "restarted", "from_refit")}
    assert scored["finetuned"]["val_trained_on"] is True and scored["from_refit"]["val_trained_on"] is True
    assert "val_trained_on" not in scored["restarted"]
