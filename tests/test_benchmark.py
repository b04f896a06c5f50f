"""Benchmark command lines (the benchmarks themselves are recorded runs, not tests)."""

import json

import pytest

from conftest import synthetic_ferplus_rows, write_ferplus_layout
from fer_keras import benchmark
from fer_keras import export as exporter
from fer_keras.errors import UserError
from fer_keras.runtime import packaged_model_path, parse_value_range


@pytest.fixture(scope="module")
def tiny_tflite(trained_tiny, tmp_path_factory):
    model, labels, _, _ = trained_tiny
    out = tmp_path_factory.mktemp("bench")
    exporter.export(model, labels, out, "float32", "float32", None, None, None, "tiny", "synthetic")
    return out / "tiny_float32.tflite"


def test_accuracy_benchmark_pairs_each_peer_with_its_labels_and_range(tmp_path, tiny_tflite):
    peer = str(tiny_tflite)
    assert parse_value_range("-1,1", "--x") == (-1.0, 1.0)
    with pytest.raises(UserError, match=r"^--x '-1' must look like LOW,HIGH \(e.g. --x=-1,1: with '=', as argparse"):
        parse_value_range("-1", "--x")
    # An inverted or empty range fed negatives or blanks to the model, silently.
    for text in ("1,-1", "0,0"):
        with pytest.raises(UserError, match=rf"^--x {text}: LOW must be below HIGH \(e.g. -1,1 or 0,1\)$"):
            parse_value_range(text, "--x")
    assert benchmark.parse_peers([tiny_tflite], ["a,b,c"], ["0,255"]) == [(tiny_tflite, "a,b,c", (0.0, 255.0))]
    out = ["--out", str(tmp_path)]
    assert benchmark.main(["accuracy", "--peer", peer, "--peer-labels", "a,b,c", *out]) == 2
    assert benchmark.main(["accuracy", "--peer", peer, "--peer-labels", "a,b,c", "--peer-value-range", "minus one", *out]) == 2
    assert benchmark.main(["accuracy", "--peer", str(tmp_path / "none.tflite"), "--peer-labels", "a", "--peer-value-range", "0,1", *out]) == 2
    assert not list(tmp_path.iterdir()), "nothing is written for bad input"


def test_accuracy_on_other_datasets_scores_each_whole_beside_the_peers(tiny_tflite, face_folder, tmp_path, capsys):
    files = sorted(p for p in (face_folder / "test").rglob("*.png"))
    (tmp_path / "other.csv").write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    peer = ["--peer", str(tiny_tflite), "--peer-labels", "angry,happy,sad", "--peer-value-range=0,255"]
    out = ["--out", str(tmp_path / "results")]
    assert benchmark.main(["accuracy", "--models", str(tiny_tflite), *peer, "--other", str(tmp_path / "other.csv"), *out]) == 0
    rows = json.loads((tmp_path / "results" / "accuracy_other.json").read_text())["rows"]
    assert [(row["split"], row["model"], row["n"]) for row in rows] == [
        (str(tmp_path / "other.csv"), str(tiny_tflite), 36), (str(tmp_path / "other.csv"), "peer: tiny_float32.tflite", 36)]
    assert rows[0]["accuracy %"] == rows[1]["accuracy %"] >= 80  # one model, under both names
    assert not (tmp_path / "results" / "accuracy.md").exists(), "the release table is left as it was"
    assert benchmark.main(["accuracy", "--crop-faces", *out]) == 2
    assert benchmark.main(["accuracy", "--other", str(tmp_path / "other.csv"), "--other", str(tmp_path / "none"), *out]) == 2
    assert capsys.readouterr().err.strip().endswith("none: data directory (--other) does not exist")


def test_accuracy_on_ferplus_own_layout_has_its_ferplus_row_only(tiny_tflite, tmp_path):
    write_ferplus_layout(tmp_path / "ferplus", synthetic_ferplus_rows(test_per_class=5, seed=4))
    out = ["--out", str(tmp_path / "results")]
    assert benchmark.main(["accuracy", "--models", str(tiny_tflite), "--data-dir", str(tmp_path / "ferplus"), *out]) == 0
    rows = json.loads((tmp_path / "results" / "accuracy.json").read_text())["rows"]
    assert [(row["split"], row["n"]) for row in rows] == [("FERPlus PrivateTest", 15)]
    assert "FER2013:" not in (tmp_path / "results" / "accuracy.md").read_text()


def test_latency_times_exported_files_as_they_are(tiny_tflite, tmp_path):
    assert benchmark.main(["latency", "--tflite", str(tiny_tflite), "--repeats", "3", "--name", "shipped", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "shipped.json").read_text())["rows"]
    assert [(row["model"], row["quantization"]) for row in rows] == [(str(tiny_tflite), "float32")]
    assert all(row[f"ms/face b{b} t{t}"] > 0 for row in rows for b in (1, 16) for t in (1, 2))
    assert "--tflite" in (tmp_path / "shipped.md").read_text()
    assert benchmark.main(["latency", "--tflite", "fast", "--repeats", "1", "--name", "packaged", "--out", str(tmp_path)]) == 0
    assert [row["model"] for row in json.loads((tmp_path / "packaged.json").read_text())["rows"]] == [str(packaged_model_path("fast"))]
    assert benchmark.main(["latency", "--tflite", "fastest", "--out", str(tmp_path / "none")]) == 2
    assert benchmark.main(["latency", "--out", str(tmp_path / "none")]) == 2
    assert benchmark.main(["latency", "--tflite", str(tiny_tflite), "--repeats", "0", "--out", str(tmp_path / "none")]) == 2
    assert benchmark.main(["train", "--steps", "0", "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_robustness_scores_every_shift_against_the_clean_faces(tiny_tflite, trained_tiny, tiny_keras_run, face_folder, tmp_path):
    from fer_keras.runtime import EmotionClassifier
    from fer_keras.shifts import SHIFTS

    _, _, test_images, test_labels = trained_tiny
    # tiny_keras_run is the same network as a float .keras in its run folder: how a candidate is scored before its export.
    out = tmp_path / "out"
    args = ["robustness", "--models", str(tiny_tflite), str(tiny_keras_run), "--label-set", "folder", "--data-dir", str(face_folder), "--out", str(out)]
    assert benchmark.main(args) == 0
    rows = json.loads((out / "robustness.json").read_text())["rows"]
    column = f"{tiny_tflite} %"
    assert [row["shift"] for row in rows] == list(SHIFTS)
    one_face = 100 / len(test_labels)
    assert all(row[f"{tiny_keras_run} %"] == pytest.approx(row[column], abs=one_face + 0.01) for row in rows)
    clean = 100 * (EmotionClassifier(tiny_tflite).predict_many(test_images).argmax(1) == test_labels).mean()
    assert rows[0][column] == pytest.approx(clean, abs=0.01) and rows[0][f"{tiny_tflite} Δ"] == 0
    assert all(row[f"{tiny_tflite} Δ"] == pytest.approx(row[column] - rows[0][column], abs=0.02) for row in rows)
    assert "--label-set folder --split test --seed 0" in (out / "robustness.md").read_text()
    assert benchmark.main([*args[:-2], "--out", str(tmp_path / "bad"), "--peer", str(tiny_tflite)]) == 2
    assert not (tmp_path / "bad").exists()
