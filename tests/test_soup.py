"""Soups: weighted averages of one architecture's weights, written as a run folder."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from fer_keras.errors import UserError
from fer_keras.evaluate import load_keras_model
from fer_keras.models import build_model
from fer_keras.soup import build_soup, check_architectures, greedy_selection, main


def test_soup_is_the_weighted_average_and_a_run_folder(two_tiny_runs, tmp_path):
    first, second = (load_keras_model(path)[0].get_weights() for path in two_tiny_runs)
    metrics = build_soup(two_tiny_runs, [0.75, 0.25], tmp_path / "soup")
    soup, labels = load_keras_model(tmp_path / "soup" / "best.keras")
    assert labels == ("angry", "happy", "sad")
    for got, a, b in zip(soup.get_weights(), first, second, strict=True):
        np.testing.assert_allclose(got, 0.75 * a + 0.25 * b, rtol=1e-6, atol=1e-7)
    written = json.loads((tmp_path / "soup" / "metrics.json").read_text())
    assert written["sources"] == [str(path) for path in two_tiny_runs] and written["shares"] == [0.75, 0.25]
    assert written["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"]) and written["val"]["n"] == 30
    assert (tmp_path / "soup" / "config.yaml").read_text() == (two_tiny_runs[0].parent / "config.yaml").read_text()
    assert sorted(path.name for path in (tmp_path / "soup").iterdir()) == ["best.keras", "config.yaml", "metrics.json"]


def test_all_of_one_model_is_that_model(two_tiny_runs, tmp_path):
    build_soup(two_tiny_runs, [0.0, 1.0], tmp_path / "soup")
    images = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    expected = load_keras_model(two_tiny_runs[1])[0].predict(images, verbose=0)
    np.testing.assert_allclose(load_keras_model(tmp_path / "soup" / "best.keras")[0].predict(images, verbose=0), expected, atol=1e-6)


def test_shares_and_architectures_are_checked(two_tiny_runs, tmp_path):
    with pytest.raises(UserError, match="at least two"):
        build_soup(two_tiny_runs[:1], [1.0], tmp_path / "out")
    with pytest.raises(UserError, match="sum to 1"):
        build_soup(two_tiny_runs, [0.5, 0.6], tmp_path / "out")
    with pytest.raises(UserError, match="non-negative"):
        build_soup(two_tiny_runs, [1.5, -0.5], tmp_path / "out")
    with pytest.raises(UserError, match="one per model"):
        build_soup(two_tiny_runs, [1.0], tmp_path / "out")
    with pytest.raises(UserError, match="not found"):
        build_soup([two_tiny_runs[0], tmp_path / "none.keras"], [0.5, 0.5], tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(two_tiny_runs[1], other / "best.keras")
    with pytest.raises(UserError, match="no metrics.json beside it"):
        build_soup([two_tiny_runs[0], other / "best.keras"], [0.5, 0.5], tmp_path / "out")
    (other / "metrics.json").write_text(json.dumps({"labels": ["sad", "happy", "angry"]}))
    with pytest.raises(UserError, match=r"labels \('sad', 'happy', 'angry'\) differ from"):
        build_soup([two_tiny_runs[0], other / "best.keras"], [0.5, 0.5], tmp_path / "out")
    keras.utils.set_random_seed(0)
    with pytest.raises(UserError, match="b: its weights do not fit a's architecture"):
        check_architectures([build_model("tiny", 3, width=width).get_weights() for width in (4, 6)], ["a", "b"])
    assert not (tmp_path / "out").exists()


def test_cli_defaults_to_equal_shares_and_rejects_bad_ones(two_tiny_runs, tmp_path, capsys):
    models = [arg for path in two_tiny_runs for arg in ("--model", str(path))]
    assert main([*models, "--share", "0.9", "--out", str(tmp_path / "bad")]) == 2
    assert "one per model" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main([*models, "--out", str(tmp_path / "equal")]) == 0
    assert json.loads((tmp_path / "equal" / "metrics.json").read_text())["shares"] == [0.5, 0.5]


def test_greedy_selection_tries_the_best_first_and_keeps_what_does_not_lower_the_score():
    soup_scores = {(1, 2): 0.80, (1, 2, 0): 0.79, (1, 2, 3): 0.80}
    kept, trail = greedy_selection([0.6, 0.8, 0.7, 0.5], lambda indices: soup_scores[tuple(indices)])
    assert kept == [1, 2, 3]
    assert trail == [
        {"index": 1, "alone": 0.8, "kept": True},
        {"index": 2, "alone": 0.7, "with": 0.80, "kept": True},
        {"index": 0, "alone": 0.6, "with": 0.79, "kept": False},
        {"index": 3, "alone": 0.5, "with": 0.80, "kept": True},
    ]


def test_greedy_soup_records_every_candidate_and_never_falls_under_the_best_alone(two_tiny_runs, tmp_path, capsys):
    models = [arg for path in two_tiny_runs for arg in ("--model", str(path))]
    assert main([*models, "--greedy", "--share", "0.5", "--share", "0.5", "--out", str(tmp_path / "bad")]) == 2
    assert "leave out --share" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main([*models, "--greedy", "--out", str(tmp_path / "greedy")]) == 0
    written = json.loads((tmp_path / "greedy" / "metrics.json").read_text())
    steps = written["greedy"]
    assert sorted(step["source"] for step in steps) == sorted(str(path) for path in two_tiny_runs)
    assert steps[0]["kept"] and steps[0]["alone"] >= steps[1]["alone"] and "with" not in steps[0]
    assert written["sources"] == [step["source"] for step in steps if step["kept"]]
    assert written["shares"] == [1 / len(written["sources"])] * len(written["sources"])
    assert written["val"]["accuracy"] == pytest.approx(steps[-1]["with"] if steps[1]["kept"] else steps[0]["alone"])
    assert written["val"]["accuracy"] >= steps[0]["alone"]
    expected = [load_keras_model(Path(path))[0].get_weights() for path in written["sources"]]
    for got, *tensors in zip(load_keras_model(tmp_path / "greedy" / "best.keras")[0].get_weights(), *expected, strict=True):
        np.testing.assert_allclose(got, sum(tensors) / len(tensors), rtol=1e-6, atol=1e-7)
