"""Ensembles: averaging members (and their mirrored views) in one savable model."""

import numpy as np
import pytest
import keras

from conftest import REPO, tiny_run_at_64
from fer_keras.ensemble import average_models, build_ensemble, main
from fer_keras.errors import UserError
from fer_keras.models import build_model


def _members():
    keras.utils.set_random_seed(0)
    return [build_model("tiny", 3, width=4), build_model("tiny", 3, width=6)]


def test_ensemble_averages_members_and_their_mirrors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.float32)
    members = _members()
    plain = [m.predict(images, verbose=0) for m in members]
    mirrored = [m.predict(images[:, :, ::-1], verbose=0) for m in members]
    assert np.allclose(average_models(members).predict(images, verbose=0), np.mean(plain, axis=0), atol=1e-6)
    with_flip = average_models(members, flip=True)
    assert np.allclose(with_flip.predict(images, verbose=0), np.mean(plain + mirrored, axis=0), atol=1e-6)
    with_flip.save(tmp_path / "ensemble.keras")
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    assert np.allclose(reloaded.predict(images, verbose=0), with_flip.predict(images, verbose=0), atol=1e-6)


def test_weighted_ensemble_weighs_members_and_reloads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.float32)
    members = _members()
    views = [m.predict(images, verbose=0) + m.predict(images[:, :, ::-1], verbose=0) for m in members]
    weighted = average_models(members, flip=True, shares=[0.75, 0.25])
    expected = (0.75 * views[0] + 0.25 * views[1]) / 2
    assert np.allclose(weighted.predict(images, verbose=0), expected, atol=1e-6)
    assert weighted.get_layer("member_mean").__class__.__name__ == "WeightedMean"
    weighted.save(tmp_path / "weighted.keras")
    assert np.allclose(keras.saving.load_model(tmp_path / "weighted.keras").predict(images, verbose=0), expected, atol=1e-6)
    # Equal shares keep the plain Average layer, so unweighted graphs are unchanged.
    assert average_models(_members(), shares=[0.5, 0.5]).get_layer("member_mean").__class__.__name__ == "Average"


def test_members_may_see_the_face_only_beside_members_that_see_its_mirror_too(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.float32)
    members = _members()
    both = (members[0].predict(images, verbose=0) + members[0].predict(images[:, :, ::-1], verbose=0)) / 2
    original = members[1].predict(images, verbose=0)
    mixed = average_models(members, flip=True, shares=[0.75, 0.25], views=["both", "original"])
    assert np.allclose(mixed.predict(images, verbose=0), 0.75 * both + 0.25 * original, atol=1e-6)
    mixed.save(tmp_path / "mixed.keras")
    assert np.allclose(keras.saving.load_model(tmp_path / "mixed.keras").predict(images, verbose=0), 0.75 * both + 0.25 * original, atol=1e-6)
    # Every member on both views keeps the stacked graph of a plain flip ensemble.
    assert average_models(_members(), flip=True, views=["both", "both"]).get_layer("probabilities").__class__.__name__ == "ViewMean"


@pytest.mark.parametrize(
    ("views", "flip", "message"),
    [(["both"], True, "1 --views values for 2"), (["original", "original"], True, "at least one both"), (["both", "mirror"], True, "must be both or original"),
     (["both", "original"], False, "needs an ensemble with flip views")],
)
def test_views_must_fit_the_members_and_flip(views, flip, message):
    with pytest.raises(UserError, match=message):
        average_models(_members(), flip=flip, views=views)


def test_members_must_share_classes():
    with pytest.raises(UserError, match="share their classes"):
        average_models([build_model("tiny", 3), build_model("tiny", 4)])


def test_a_member_trained_on_larger_faces_gets_the_first_members_input_upsampled(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    keras.utils.set_random_seed(0)
    small, large = build_model("tiny", 3, width=4), build_model("tiny", 3, (64, 64, 1), width=4)
    upsampled = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (64, 64), interpolation="bilinear"))
    assert upsampled.shape == (4, 64, 64, 1)
    expected = 0.25 * small.predict(images, verbose=0) + 0.75 * large.predict(upsampled, verbose=0)
    ensemble = average_models([small, large], shares=[0.25, 0.75])
    assert ensemble.input_shape == (None, 48, 48, 1)
    assert np.allclose(ensemble.predict(images, verbose=0), expected, atol=1e-5)
    ensemble.save(tmp_path / "upsampled.keras")
    assert np.allclose(keras.saving.load_model(tmp_path / "upsampled.keras").predict(images, verbose=0), expected, atol=1e-5)


@pytest.mark.parametrize(("second_input", "ending"), [((32, 32, 1), r"upsampled in the graph\): list a member with the smallest input first$"), ((48, 48, 3), r"upsampled in the graph\)$")])
def test_a_member_on_smaller_faces_or_other_channels_is_refused(second_input, ending):
    """Smaller faces are refused with the fix (reorder); other channels without it, since reordering cannot help."""
    with pytest.raises(UserError, match=rf"takes \({', '.join(map(str, second_input))}\) images: .*{ending}"):
        average_models([build_model("tiny", 3, width=4), build_model("tiny", 3, second_input, width=4)])


def test_build_ensemble_needs_two_members_or_flip(tmp_path):
    with pytest.raises(UserError, match="at least two"):
        build_ensemble([tmp_path / "a.keras"], tmp_path / "out")
    with pytest.raises(UserError, match="not found"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out")
    with pytest.raises(UserError, match="1 --share values for 2"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out", shares=[1.0])
    with pytest.raises(UserError, match="not known in advance"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out", budget_ms=3, shares=[0.5, 0.5])
    with pytest.raises(UserError, match="not known in advance"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out", flip=True, budget_ms=3, views=["both", "original"])
    with pytest.raises(UserError, match="needs an ensemble with flip views"):
        build_ensemble([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "out", views=["both", "original"])
    two = [tmp_path / "a.keras", tmp_path / "b.keras"]
    fast_tier = REPO / "tflite" / "fast" / "fer_keras_fast_int8.tflite"
    with pytest.raises(UserError, match=r"^--reference-tflite scales .* it needs --budget-ms$"):
        build_ensemble(two, tmp_path / "out", budget_mb=5, reference=(fast_tier, 0.3))
    with pytest.raises(UserError, match=r"^--reference-ms must be positive, not 0$"):
        build_ensemble(two, tmp_path / "out", budget_ms=3, reference=(fast_tier, 0.0))
    with pytest.raises(UserError, match=r"missing.tflite: no such file \(--reference-tflite\)$"):
        build_ensemble(two, tmp_path / "out", budget_ms=3, reference=(tmp_path / "missing.tflite", 0.3))
    assert not (tmp_path / "out").exists()


def test_reference_flags_go_together(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "a.keras"), "--out", str(tmp_path / "out"), "--budget-ms", "3", "--reference-ms", "0.3"]) == 2
    assert capsys.readouterr().err == "error: python -m fer_keras.ensemble: --reference-tflite and --reference-ms go together (see --help)\n"


def test_build_ensemble_writes_a_run_folder_that_evaluate_reads(two_tiny_runs, face_folder, tmp_path):
    import json

    from fer_keras.evaluate import evaluate, load_keras_model

    metrics = build_ensemble(two_tiny_runs, tmp_path / "ensemble", flip=True)
    written = json.loads((tmp_path / "ensemble" / "metrics.json").read_text())
    assert written["labels"] == ["angry", "happy", "sad"] and written["flip"] is True
    assert written["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert len(written["member_val_accuracy"]) == 2
    model, labels = load_keras_model(tmp_path / "ensemble" / "best.keras")
    assert labels == ("angry", "happy", "sad") and model.output_shape == (None, 3)
    # Its members are nested models, so no one layer explains it: the report has an occlusion grid instead of Grad-CAM's.
    evaluated = evaluate(tmp_path / "ensemble" / "best.keras", str(face_folder), tmp_path / "report")
    assert evaluated["n"] == 36  # test/: 12 faces in each of the three classes
    assert (tmp_path / "report" / "occlusion_grid.png").is_file() and not (tmp_path / "report" / "gradcam_grid.png").exists()
    # Nor can Grad-CAM explain a face: explain falls back to occlusion, unless Grad-CAM is asked for.
    from fer_keras import explain

    face = next((face_folder / "test" / "happy").glob("*.png"))
    command = ["--model", str(tmp_path / "ensemble" / "best.keras"), "--image", str(face), "--out", str(tmp_path / "cam")]
    assert explain.main(command) == 0 and (tmp_path / "cam" / f"{face.stem}_face1_occlusion.png").is_file()
    assert explain.main([*command, "--method", "gradcam"]) == 2


def test_build_ensemble_with_shares_records_and_applies_them(two_tiny_runs, tmp_path):
    import json

    from fer_keras.ensemble import main
    from fer_keras.evaluate import load_keras_model

    assert main([arg for path in two_tiny_runs for arg in ("--model", str(path))] + ["--share", "0.75", "--share", "0.25", "--out", str(tmp_path / "weighted")]) == 0
    written = json.loads((tmp_path / "weighted" / "metrics.json").read_text())
    assert written["shares"] == [0.75, 0.25] and written["flip"] is False
    images = np.random.default_rng(2).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    first, second = (load_keras_model(path)[0].predict(images, verbose=0) for path in two_tiny_runs)
    ensemble = load_keras_model(tmp_path / "weighted" / "best.keras")[0]
    assert np.allclose(ensemble.predict(images, verbose=0), 0.75 * first + 0.25 * second, atol=1e-6)

    assert main([arg for path in two_tiny_runs for arg in ("--model", str(path))] + ["--flip", "--views", "original", "--views", "both", "--out", str(tmp_path / "views")]) == 0
    written = json.loads((tmp_path / "views" / "metrics.json").read_text())
    assert written["views"] == ["original", "both"] and written["flip"] is True
    mirrored = load_keras_model(two_tiny_runs[1])[0].predict(images[:, :, ::-1], verbose=0)
    ensemble = load_keras_model(tmp_path / "views" / "best.keras")[0]
    assert np.allclose(ensemble.predict(images, verbose=0), (first + (second + mirrored) / 2) / 2, atol=1e-6)


def test_build_ensemble_upsamples_for_a_member_trained_on_larger_faces(two_tiny_runs, tmp_path):
    """A run at model.image_size=64 beside a 48-pixel one: the ensemble takes the first member's input; in the other order, refused by file."""
    import json

    import yaml

    from fer_keras.evaluate import load_keras_model

    larger = tiny_run_at_64(two_tiny_runs[1].parent, tmp_path / "run64").parent

    metrics = build_ensemble([two_tiny_runs[0], larger / "best.keras"], tmp_path / "mixed")
    ensemble = load_keras_model(tmp_path / "mixed" / "best.keras")[0]
    assert ensemble.input_shape == (None, 48, 48, 1)
    images = np.random.default_rng(4).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    upsampled = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (64, 64), interpolation="bilinear"))
    first = load_keras_model(two_tiny_runs[0])[0].predict(images, verbose=0)
    second = load_keras_model(larger / "best.keras")[0].predict(upsampled, verbose=0)
    assert np.allclose(ensemble.predict(images, verbose=0), (first + second) / 2, atol=1e-5)
    # The folder's config is the first member's, so evaluate and export read 48-pixel faces for it.
    assert yaml.safe_load((tmp_path / "mixed" / "config.yaml").read_text())["model"]["image_size"] == 48
    assert json.loads((tmp_path / "mixed" / "metrics.json").read_text())["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    with pytest.raises(UserError, match=r"^\S*run1/best.keras takes \(48, 48, 1\) images: members take the first member's \(64, 64, 1\), .*: list a member with the smallest input first$"):
        build_ensemble([larger / "best.keras", two_tiny_runs[0]], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize(("shares", "views"), [(None, None), ([0.7, 0.3], None), ([0.7, 0.3], ["both", "original"])])
def test_flip_ensemble_exports_and_batches_like_keras(tmp_path, shares, views):
    """The stacked mirror views, the members' weights and views survive TFLite conversion at any batch size the runtime resizes to."""
    from fer_keras import export as exporter
    from fer_keras.runtime import EmotionClassifier

    images = np.random.default_rng(1).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    ensemble = average_models(_members(), flip=True, shares=shares, views=views)
    exporter.export(ensemble, ("angry", "happy", "sad"), tmp_path, "float32", "uint8", images, images, np.zeros(4, int), "flip", "synthetic")
    classifier = EmotionClassifier(tmp_path / "flip_float32.tflite")
    expected = ensemble.predict(images, verbose=0)
    np.testing.assert_allclose(classifier.predict(images), expected, atol=1e-5)
    np.testing.assert_allclose(classifier.predict(images[2:3]), expected[2:3], atol=1e-5)


def test_select_members_keeps_the_most_accurate_subset_that_fits():
    from fer_keras.ensemble import select_members

    y = np.array([0, 1, 2, 0])
    # Alone, candidate 0 gets 3/4 and candidates 1 and 2 get 2/4; 0 with 1 and 0 with 2 get all four.
    probabilities = [
        np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0, 0.4], [0.7, 0.3, 0]]),
        np.array([[0.2, 0.8, 0], [0.1, 0.9, 0], [0, 0, 1.0], [0.45, 0.55, 0]]),
        np.array([[0.4, 0.6, 0], [0.4, 0.6, 0], [0, 0.1, 0.9], [0.4, 0.6, 0]]),
    ]
    assert select_members(probabilities, y, [1.0, 1.0, 0.5], budget_ms=2.0) == (0, 2)  # tie with (0, 1): the cheaper wins
    assert select_members(probabilities, y, [1.0, 1.0, 0.5], budget_ms=1.2) == (0,)
    assert select_members(probabilities, y, [1.0, 1.0, 0.5], budget_ms=0.6) == (2,)
    with pytest.raises(UserError, match="fastest costs 0.500 ms"):
        select_members(probabilities, y, [1.0, 1.0, 0.5], budget_ms=0.4)
    # A size cap rules out (0, 2), 5 MB: (0, 1) is as accurate and weighs 3 MB.
    assert select_members(probabilities, y, [1.0, 1.0, 0.5], 2.0, sizes_mb=[2.0, 1.0, 3.0], budget_mb=3.5) == (0, 1)
    assert select_members(probabilities, y, [1.0, 1.0, 0.5], sizes_mb=[2.0, 1.0, 3.0], budget_mb=2.5) == (0,)
    with pytest.raises(UserError, match="--budget-ms 2 and --budget-mb 0.5: the fastest costs 0.500 ms, the smallest is 1 MB"):
        select_members(probabilities, y, [1.0, 1.0, 0.5], 2.0, sizes_mb=[2.0, 1.0, 3.0], budget_mb=0.5)


def test_select_members_searches_a_large_round_within_the_budget():
    from fer_keras.ensemble import MAX_AFFORDABLE_SUBSETS, select_members

    y = np.array([0, 1, 2, 0])
    wrong = np.array([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0], [0, 0, 1.0]])  # 0/4
    # 24 candidates, as many as a GPU round and the shipped members give: only 17 and 20 together are right on all four.
    probabilities = [wrong] * 24
    probabilities[17] = np.array([[0.7, 0.3, 0], [0, 0.6, 0.4], [0.4, 0, 0.6], [0.4, 0.6, 0]])  # 3/4
    probabilities[20] = np.array([[0.45, 0.55, 0], [0.4, 0.6, 0], [0, 0.4, 0.6], [0.7, 0.3, 0]])  # 3/4
    assert select_members(probabilities, y, [1.0] * 24, budget_ms=2.5) == (17, 20)
    with pytest.raises(UserError, match=f"more than {MAX_AFFORDABLE_SUBSETS} ensembles of the 17 candidates"):
        select_members([wrong] * 17, y, [0.01] * 17, budget_ms=1.0)


def test_budget_selects_members_and_records_the_choice(two_tiny_runs, tmp_path):
    import json

    runs = two_tiny_runs
    metrics = build_ensemble(runs, tmp_path / "chosen", flip=True, budget_ms=60.0)
    selection = metrics["selection"]
    assert [c["model"] for c in selection["candidates"]] == [str(r) for r in runs]
    assert all(c["cost_ms"] > 0 and c["size_mb"] > 0 for c in selection["candidates"]) and selection["estimated_ms"] <= 60.0
    chosen = [c for c in selection["candidates"] if c["model"] in metrics["members"]]
    assert selection["estimated_ms"] == pytest.approx(sum(c["cost_ms"] for c in chosen), abs=1e-3)
    assert selection["estimated_mb"] == pytest.approx(sum(c["size_mb"] for c in chosen), abs=1e-2)
    assert json.loads((tmp_path / "chosen" / "metrics.json").read_text())["selection"] == selection
    with pytest.raises(UserError, match="no candidate fits"):
        build_ensemble(runs, tmp_path / "none", flip=True, budget_ms=1e-6)
    # The same budget in the terms of a machine that runs the reference a billion times faster: it fits.
    fast_tier = REPO / "tflite" / "fast" / "fer_keras_fast_int8.tflite"
    scaled = build_ensemble(runs, tmp_path / "scaled", flip=True, budget_ms=1e-6, reference=(fast_tier, 1e-9))
    reference = scaled["selection"]["reference"]
    assert reference["tflite"] == str(fast_tier) and reference["ms"] == 1e-9 and reference["ms_here"] > 0
    assert reference["scale"] == pytest.approx(1e-9 / reference["ms_here"], rel=1e-3)
    assert scaled["members"] and scaled["selection"]["estimated_ms"] <= 1e-6
    # A size cap alone also selects; either candidate's file fits it, the two together do not.
    one_member = max(c["size_mb"] for c in selection["candidates"]) * 1.5
    capped = build_ensemble(runs, tmp_path / "small", budget_mb=one_member)
    assert len(capped["members"]) == 1 and capped["selection"]["budget_ms"] is None and capped["selection"]["estimated_mb"] <= one_member
