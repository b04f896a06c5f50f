import json

import numpy as np
import pytest

from conftest import REPO
from fer_keras import export as exporter
from fer_keras.errors import UserError
from fer_keras.onnx_model import OnnxClassifier
from fer_keras.runtime import EmotionClassifier, open_interpreter, read_metadata


@pytest.fixture(scope="module")
def exported(trained_tiny, tmp_path_factory):
    """The trained tiny model exported in all four modes: {mode: (path, parity report)}."""
    model, labels, images, y = trained_tiny
    out = tmp_path_factory.mktemp("export")
    results = {}
    for mode in exporter.QUANTIZATIONS:
        report = exporter.export(model, labels, out / mode, mode, "uint8", images, images, y, "tiny", "synthetic")
        results[mode] = (out / mode / f"tiny_{mode}.tflite", report)
    return results


@pytest.mark.parametrize("mode", exporter.QUANTIZATIONS)
def test_every_mode_agrees_with_keras_and_describes_itself(exported, trained_tiny, mode):
    model, labels, images, y = trained_tiny
    path, report = exported[mode]
    classifier = EmotionClassifier(path)
    assert classifier.labels == labels
    assert classifier.input_size == (48, 48) and classifier.channels == 1
    assert classifier.metadata["quantization"] == mode
    assert classifier.metadata["input"]["value_range"] == [0, 255]
    probabilities = classifier.predict(list(images[..., 0]))
    agreement = (probabilities.argmax(1) == model.predict(images, verbose=0).argmax(1)).mean()
    assert agreement >= 0.97
    assert report["top1_agreement"] == pytest.approx(agreement)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)  # renormalised after dequantization
    sidecar = path.parent
    assert (sidecar / "labels.txt").read_text().split() == list(labels)
    assert json.loads((sidecar / "model.json").read_text())["labels"] == list(labels)


def test_int8_takes_raw_uint8_pixels(exported):
    classifier = EmotionClassifier(exported["int8"][0])
    details = classifier._interpreter.get_input_details()[0]
    assert details["dtype"] == np.uint8
    scale, zero_point = details["quantization"]
    assert scale == pytest.approx(1.0, rel=0.01) and zero_point == 0


def test_int8_io_variant_round_trips(trained_tiny, tmp_path):
    model, labels, images, y = trained_tiny
    exporter.export(model, labels, tmp_path, "int8", "int8", images, images, y, "tiny", "synthetic")
    classifier = EmotionClassifier(tmp_path / "tiny_int8.tflite")
    details = classifier._interpreter.get_input_details()[0]
    assert details["dtype"] == np.int8 and details["quantization"][1] == -128
    probabilities = classifier.predict(images)
    assert (probabilities.argmax(1) == y).mean() >= 0.9


def test_a_batch_equals_single_calls_and_accepts_any_crop(exported, trained_tiny):
    _, _, images, _ = trained_tiny
    classifier = EmotionClassifier(exported["float32"][0])
    batch = classifier.predict(images[:5])
    singles = np.concatenate([classifier.predict(images[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    bgr_large = np.repeat(np.kron(images[0, ..., 0], np.ones((3, 3), np.uint8))[..., None], 3, axis=2)
    assert classifier.predict([bgr_large]).argmax() == batch[0].argmax()
    assert classifier.predict([]).shape == (0, 3)
    # LiteRT's own refusal named the model file, as if it were broken.
    with pytest.raises(UserError, match=r"^num_threads=0 must be at least 1$"):
        EmotionClassifier(exported["float32"][0], num_threads=0)


def test_one_crop_array_and_float_crops_read_as_the_same_pixels(exported, trained_tiny):
    _, _, images, _ = trained_tiny
    classifier = EmotionClassifier(exported["float32"][0])
    face = images[0]  # (H, W, 1) uint8
    expected = classifier.predict([face])
    for same in (face, face[..., 0], np.repeat(face, 3, axis=2), [face / 255.0], [face.astype(np.float32)]):
        np.testing.assert_allclose(classifier.predict(same), expected, atol=1e-6)
    with pytest.raises(UserError, match=r"face crop 1 is empty \(shape \(0, 4\)\)"):
        classifier.predict([face, np.zeros((0, 4), np.uint8)])
    # A batch of the wrong rank was an OpenCV traceback.
    with pytest.raises(UserError, match=r"^face crop 0: expected an image array .* got shape \(4, 48, 48\)$"):
        classifier.predict(np.zeros((3, 4, 48, 48), np.uint8))


def test_corrupt_or_missing_model_is_a_clean_error(tmp_path, exported):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=r"corrupt.tflite: not a TFLite model \(no TFL3 identifier\)$"):
        EmotionClassifier(corrupt)
    # A trained .keras given to the runtime: the error says how to export it.
    trained = tmp_path / "best.keras"
    trained.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with pytest.raises(UserError, match=r"best.keras: not a TFLite model \(no TFL3 identifier\); export it first: python -m fer_keras.export --model .*best.keras --quantize int8 --out DIR$"):
        EmotionClassifier(trained)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(exported["float32"][0].read_bytes()[:2000])
    with pytest.raises(UserError, match="truncated.tflite"):
        EmotionClassifier(truncated)
    with pytest.raises(UserError, match="model file not found"):
        EmotionClassifier(tmp_path / "absent.tflite")
    with pytest.raises(UserError, match=r"\.tflite: 2 labels were given but the model outputs 3 classes"):
        EmotionClassifier(exported["float32"][0], labels=["a", "b"])
    # The interpreter's own refusal (EmotionClassifier's metadata check catches these files first).
    with pytest.raises(UserError, match=r"truncated\.tflite: cannot load TFLite model \(") as raised:
        open_interpreter(truncated)
    assert "\n" not in str(raised.value)


def test_metadata_reads_back_without_sidecars(exported, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(exported["dynamic"][0].read_bytes())
    assert read_metadata(lone)["labels"] == ["angry", "happy", "sad"]
    # A range that contradicts the embedded one is refused; restating it is harmless.
    with pytest.raises(UserError, match=r"lone\.tflite: its metadata says it takes inputs in \(0, 255\); value_range \(-1, 1\) is for models without"):
        EmotionClassifier(lone, value_range=(-1, 1))
    with pytest.raises(UserError, match=r"^value_range 255,0: LOW must be below HIGH"):
        EmotionClassifier(lone, value_range=(255, 0))
    assert EmotionClassifier(lone, value_range=(0, 255)).value_range == (0, 255)


def test_detect_runs_a_third_party_model_with_its_labels_and_input_range(trained_tiny, tmp_path):
    """A .tflite without our metadata (as the fer package's): detect takes its labels and input range as flags."""
    import csv

    from fer_keras import detect

    model, _, _, _ = trained_tiny
    # A third party's model taking -1..1: ours, with its rescaling undone in front.
    import keras

    pixels = keras.Input((48, 48, 1))
    third_party = keras.Model(pixels, model(keras.layers.Rescaling(127.5, offset=127.5)(pixels)))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(exporter.convert(third_party, "float32"))
    photo = str(REPO / "tests" / "data" / "two_people.jpg")
    args = ["--source", photo, "--no-progress", "--model", str(bare)]
    assert detect.main([*args, "--out", str(tmp_path / "plain"), "--labels", "x,y,z", "--value-range", "-1,1"]) == 0
    with open(tmp_path / "plain" / "detections.csv") as rows:
        named = list(csv.DictReader(rows))
    assert len(named) == 2 and {"x", "y", "z"} <= set(named[0]) and named[0]["emotion"] in ("x", "y", "z")
    # The same faces through our own export of the network: the same answers.
    exporter.export(model, ("x", "y", "z"), tmp_path / "ours", "float32", "float32", None, None, None, "ours", "synthetic")
    assert detect.main([*args[:-1], str(tmp_path / "ours" / "ours_float32.tflite"), "--out", str(tmp_path / "ours_out")]) == 0
    with open(tmp_path / "ours_out" / "detections.csv") as rows:
        assert [row["emotion"] for row in csv.DictReader(rows)] == [row["emotion"] for row in named]
    assert detect.main([*args, "--labels", "x,y"]) == 2
    assert detect.main([*args, "--value-range=-1"]) == 2


def _standard_metadata(model: bytes) -> dict:
    """Reads back the fields tools use from the TFLite Metadata standard's record, by the schema's slot numbers.

    Written independently of fer_keras.tflite_metadata; its output was checked once against
    tflite-support 0.4.4 (MetadataDisplayer, and the Task Library's ImageClassifier on an RGB export).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model, 0)
    (entry,) = [graph.Metadata(i) for i in range(graph.MetadataLength()) if graph.Metadata(i).Name() == b"TFLITE_METADATA"]
    data = graph.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert data[4:8] == b"M001"

    def table(buf, position):
        return flatbuffers.table.Table(buf, position)

    def field(t, slot):
        return t.Offset(4 + 2 * slot)

    def string(t, slot):
        return t.String(t.Pos + field(t, slot)).decode()

    def child(t, slot):
        return table(t.Bytes, t.Indirect(t.Pos + field(t, slot)))

    def first(t, slot):
        return table(t.Bytes, t.Indirect(t.Vector(field(t, slot))))

    def byte(t, slot):
        return t.Get(flatbuffers.number_types.Int8Flags, t.Pos + field(t, slot))

    root = table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    subgraph = first(root, 3)
    image, probability = first(subgraph, 2), first(subgraph, 3)
    labels_file = first(probability, 6)
    return {
        "name": string(root, 0),
        "min_parser_version": string(root, 7),
        "input": string(image, 0),
        "content_type": byte(child(image, 3), 0),
        "color_space": byte(child(child(image, 3), 1), 0),
        "output": string(probability, 0),
        "labels_file": (string(labels_file, 0), byte(labels_file, 2)),
    }


def test_the_tflite_metadata_standard_record_names_labels_and_input(exported, tmp_path):
    import io
    import zipfile

    model = exported["int8"][0].read_bytes()
    assert _standard_metadata(model) == {
        "name": "tiny",
        "min_parser_version": "1.0.0",
        "input": "image",
        "content_type": 2,  # ImageProperties
        "color_space": 2,  # GRAYSCALE
        "output": "probability",
        "labels_file": ("labels.txt", 2),  # TENSOR_AXIS_LABELS
    }
    assert zipfile.ZipFile(io.BytesIO(model)).read("labels.txt") == b"angry\nhappy\nsad\n"
    # Re-stamping replaces both records and the packed labels instead of stacking them.
    restamped = tmp_path / "tiny_int8.tflite"
    restamped.write_bytes(model)
    exporter.restamp(restamped, [0.2, 0.3, 0.5], ("angry", "happy", "sad"))
    again = restamped.read_bytes()
    assert _standard_metadata(again) == _standard_metadata(model) and len(zipfile.ZipFile(io.BytesIO(again)).namelist()) == 1
    from ai_edge_litert import schema_py_generated as schema

    def entries(flatbuffer):
        graph = schema.Model.GetRootAs(flatbuffer, 0)
        return sorted(graph.Metadata(i).Name() for i in range(graph.MetadataLength()))

    assert entries(again) == entries(model) and {b"fer_keras", b"TFLITE_METADATA"} <= set(entries(model))


def test_rgb_input_variant_turns_colour_faces_gray_inside(trained_tiny, tmp_path):
    model, labels, images, y = trained_tiny
    rgb_model = exporter.with_rgb_input(model)
    assert rgb_model.input_shape == (None, 48, 48, 3) and exporter.with_rgb_input(rgb_model) is rgb_model
    rgb_faces = np.repeat(images, 3, axis=-1)
    # A gray face passes unchanged; a colour one is turned gray as BT.601 luma (0.299 R + 0.587 G + 0.114 B).
    np.testing.assert_allclose(rgb_model.predict(rgb_faces, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    (luma_layer,) = [layer for layer in rgb_model.layers if layer.name == "rgb_to_gray"]
    np.testing.assert_allclose(luma_layer.get_weights()[0].ravel(), [0.299, 0.587, 0.114], atol=0.002)
    exporter.export(rgb_model, labels, tmp_path, "int8", "uint8", rgb_faces, rgb_faces, y, "tiny_rgb", "synthetic")
    path = tmp_path / "tiny_rgb_int8.tflite"
    classifier = EmotionClassifier(path)
    assert classifier.channels == 3 and classifier.metadata["input"]["color"] == "rgb"
    assert _standard_metadata(path.read_bytes())["color_space"] == 1  # RGB
    # The runtime turns a gray face into RGB for it: the same answers as the grayscale model's.
    assert (classifier.predict(images).argmax(1) == model.predict(images, verbose=0).argmax(1)).mean() >= 0.97


def test_int8_drift_is_refused_and_nothing_is_written(trained_tiny, tmp_path, monkeypatch):
    model, labels, images, y = trained_tiny
    monkeypatch.setattr(exporter, "MIN_INT8_AGREEMENT", 1.01)
    with pytest.raises(UserError, match="not written"):
        exporter.export(model, labels, tmp_path, "int8", "uint8", images, images, y, "tiny", "synthetic")
    assert not (tmp_path / "tiny_int8.tflite").exists()
    assert json.loads((tmp_path / "parity.json").read_text())["top1_agreement"] < 1.01


def test_export_cli_reads_labels_from_the_run_folder(face_folder, tmp_path):
    from fer_keras import train
    from fer_keras.config import ExperimentConfig, apply_overrides

    config = apply_overrides(
        ExperimentConfig(),
        [f"output_dir={tmp_path / 'runs'}", f"data.data_dir={face_folder}", "data.label_set=folder", "model.name=tiny", "train.epochs=1", "train.precision=float32"],
    )
    run = train.run_training(config).run_dir
    code = exporter.main(["--model", str(run / "best.keras"), "--quantize", "dynamic", "--out", str(tmp_path / "out")])
    assert code == 0
    assert EmotionClassifier(tmp_path / "out" / f"{run.name}_dynamic.tflite").labels == ("angry", "happy", "sad")
    parity = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert parity["split"] == "test" and parity["n"] == 36  # 12 test faces per class
    # While candidates are compared, parity runs on the run's own validation hold-out instead.
    recorded_val = json.loads((run / "metrics.json").read_text())["val"]
    assert exporter.main(["--model", str(run / "best.keras"), "--quantize", "dynamic", "--out", str(tmp_path / "val"), "--parity-split", "val"]) == 0
    parity = json.loads((tmp_path / "val" / "parity.json").read_text())
    assert parity["split"] == "val" and parity["n"] == recorded_val["n"]
    assert parity["keras_accuracy"] == pytest.approx(recorded_val["accuracy"], abs=1e-4)
    no_holdout = tmp_path / "no_holdout"
    no_holdout.mkdir()
    (no_holdout / "config.yaml").write_text(f"data:\n  label_set: folder\n  data_dir: {face_folder}\n  val_fraction: 0.0\n")
    args = ["--model", str(run / "best.keras"), "--run-dir", str(no_holdout), "--out", str(tmp_path / "none"), "--parity-split", "val"]
    assert exporter.main(args) == 2 and not (tmp_path / "none" / "parity.json").exists()
    assert exporter.main(["--model", str(tmp_path / "nope.keras"), "--out", str(tmp_path)]) == 2
    # A calibration count that int8 cannot use is refused before the data loads; other quantizations take none.
    assert exporter.main(["--model", str(run / "best.keras"), "--out", str(tmp_path / "calibration"), "--calibration-images", "-5"]) == 2
    assert not (tmp_path / "calibration").exists()
    assert exporter.main(["--model", str(run / "best.keras"), "--quantize", "float16", "--out", str(tmp_path / "calibration"), "--calibration-images", "0"]) == 0
    # ONNX: float32 by default; a quantization it does not offer is refused before the data loads.
    assert exporter.main(["--model", str(run / "best.keras"), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    assert json.loads((tmp_path / "onnx" / "parity.json").read_text())["model"] == f"{run.name}_float32.onnx"
    assert exporter.main(["--model", str(run / "best.keras"), "--format", "onnx", "--quantize", "int8", "--out", str(tmp_path / "onnx_int8")]) == 2
    assert not (tmp_path / "onnx_int8").exists()


def test_onnx_export_answers_as_keras_and_describes_itself(trained_tiny, tmp_path):
    import onnx

    model, labels, images, y = trained_tiny
    report = exporter.export(model, labels, tmp_path, "float32", "uint8", None, images, y, "tiny", "synthetic", file_format="onnx")
    path = tmp_path / "tiny_float32.onnx"
    runner = OnnxClassifier(path)
    np.testing.assert_allclose(runner.predict_many(images), model.predict(images, verbose=0), atol=1e-5)
    assert report["top1_agreement"] == 1.0 and report["onnx_accuracy"] == report["keras_accuracy"]
    # Self-describing, as the .tflite is: the same metadata in the model's properties, any batch size.
    proto = onnx.load(str(path))
    properties = {entry.key: entry.value for entry in proto.metadata_props}
    metadata = json.loads(properties["fer_keras"])
    assert (metadata["labels"], properties["labels"]) == (list(labels), ",".join(labels))
    assert metadata["input"]["value_range"] == [0, 255] and metadata["input"]["dtype"] == "float32"
    shape = [dim.dim_param or dim.dim_value for dim in proto.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", 48, 48, 1]
    assert (proto.graph.input[0].name, proto.graph.output[0].name) == ("image", "probabilities")
    assert json.loads((tmp_path / "model.json").read_text())["file"] == "tiny_float32.onnx"
    assert (tmp_path / "labels.txt").read_text().split() == list(labels)
    with pytest.raises(UserError, match="ONNX is exported in float32 only, not int8"):
        exporter.export(model, labels, tmp_path / "int8", "int8", "uint8", images, images, y, "tiny", "synthetic", file_format="onnx")
    assert not (tmp_path / "int8").exists()


def test_default_is_the_packaged_accurate_tier():
    from fer_keras.runtime import available_packaged_models, packaged_model_path

    assert packaged_model_path("default") == packaged_model_path("accurate")
    assert {"default", "accurate", "fast"} <= set(available_packaged_models())
    with pytest.raises(UserError, match="no packaged model named 'huge'"):
        packaged_model_path("huge")
    # A bare word that is neither a packaged name nor a file reads as a mistyped name; a path as a missing file.
    with pytest.raises(UserError, match=r"^no packaged model or file named 'acurate' \(packaged: accurate, default, fast"):
        EmotionClassifier("acurate")
    with pytest.raises(UserError, match=r"^acurate\.tflite: model file not found$"):
        EmotionClassifier("acurate.tflite")


@pytest.mark.parametrize("tier", ["fast", "accurate"])
def test_shipped_tiers_rgb_files_answer_as_the_grayscale_ones(tier):
    from conftest import synthetic_face

    gray = EmotionClassifier(REPO / "tflite" / tier / f"fer_keras_{tier}_int8.tflite")
    rgb = EmotionClassifier(REPO / "tflite" / tier / "rgb" / f"fer_keras_{tier}_rgb_int8.tflite")
    assert rgb.channels == 3 and rgb.labels == gray.labels
    assert _standard_metadata((REPO / "tflite" / tier / "rgb" / f"fer_keras_{tier}_rgb_int8.tflite").read_bytes())["color_space"] == 1
    rng = np.random.default_rng(0)
    faces = [synthetic_face(k % 3, rng) for k in range(12)]
    np.testing.assert_allclose(rgb.predict(faces), gray.predict(faces), atol=0.03)


def test_the_shipped_fast_onnx_answers_as_the_fast_tier():
    """tflite/fast/onnx holds the fast tier's network in float32: it must pick the int8 file's emotion for real faces."""
    import fer_keras
    from fer_keras.api import load_image

    classifier = EmotionClassifier("fast")
    runner = OnnxClassifier(REPO / "tflite" / "fast" / "onnx" / "fer_keras_fast_float32.onnx")
    crops = []
    for photo in ("multiface.jpg", "two_people.jpg"):
        image = load_image(REPO / "tests" / "data" / photo)
        crops += [image[y : y + h, x : x + w] for x, y, w, h in (face.box for face in fer_keras.analyze(image, model="fast"))]
    faces = classifier.preprocess(crops)
    assert len(faces) == 8
    int8, float32 = classifier.predict_preprocessed(faces), runner.predict_preprocessed(faces)
    assert (int8.argmax(1) == float32.argmax(1)).all()
    np.testing.assert_allclose(float32, int8, atol=0.02)
