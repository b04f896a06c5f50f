import numpy as np
import pytest
from PIL import Image

from conftest import BROKEN_FILES, SYNTHETIC_CLASSES, write_ferplus_layout
from fer_keras import data
from fer_keras.errors import UserError
from fer_keras.labels import FER2013_LABELS, FERPLUS_LABELS

AMBIGUOUS_FILE = "train/angry/Training_10334355.jpg"  # maps to two FERPlus rows


def test_folder_dataset_skips_broken_files_and_holds_out_stratified_val(face_folder):
    dataset = data.load_dataset("folder", face_folder, val_fraction=0.25, seed=3)
    assert dataset.labels == SYNTHETIC_CLASSES
    assert {p.split("/")[-1] for p, _ in dataset.skipped} == BROKEN_FILES
    counts = dataset.class_counts()
    assert counts["train"] == {"angry": 30, "happy": 30, "sad": 30}
    assert counts["val"] == {"angry": 10, "happy": 10, "sad": 10}
    assert counts["test"] == {"angry": 12, "happy": 12, "sad": 12}
    assert dataset.splits["train"].images.shape == (90, 48, 48, 1)
    assert dataset.splits["train"].images.dtype == np.uint8
    assert not set(dataset.splits["train"].paths) & set(dataset.splits["val"].paths)


def test_a_plain_folder_to_train_on_splits_into_disjoint_stratified_seeded_hold_outs(face_folder):
    plain = face_folder / "train"  # class folders with no train/ inside: 40 faces a class
    whole = data.load_dataset("folder", plain)
    assert set(whole.splits) == {"test"} and len(whole.splits["test"]) == 120  # scored whole, as faces never seen
    dataset = data.load_dataset("folder", plain, val_fraction=0.25, test_fraction=0.25, seed=3)
    counts = dataset.class_counts()
    assert counts["train"] == {"angry": 20, "happy": 20, "sad": 20}
    assert counts["val"] == counts["test"] == {"angry": 10, "happy": 10, "sad": 10}  # fractions of the whole folder
    paths = [set(split.paths) for split in dataset.splits.values()]
    assert sum(map(len, paths)) == 120 and len(set().union(*paths)) == 120
    # Shares of the whole folder, counted exactly: 0.1 / 0.9 of the 108 left after the test split is 12.000000000000002.
    assert {name: len(split) for name, split in data.load_dataset("folder", plain, test_fraction=0.1).splits.items()} == {"train": 96, "val": 12, "test": 12}
    again = data.load_dataset("folder", plain, val_fraction=0.25, test_fraction=0.25, seed=3, with_test=False)
    assert set(again.splits) == {"train", "val"} and again.splits["val"].paths == dataset.splits["val"].paths


def test_hold_outs_by_subject_keep_each_subject_within_one_split(face_folder, tmp_path):
    files = [(str(p), p.parent.name) for p in sorted((face_folder / "train").rglob("*.png")) if p.name != "truncated.png"]
    rows = [(file, label, f"s{i % 12}") for i, (file, label) in enumerate(files)]  # 12 subjects of 10 faces
    write_label_list(tmp_path / "faces.csv", rows, header="path,label,Subject")
    dataset = data.load_dataset("folder", tmp_path / "faces.csv", val_fraction=0.25, test_fraction=0.25, seed=3, split_by="subject")
    subject = {file: group for file, _, group in rows}
    by_split = {name: {subject[path] for path in split.paths} for name, split in dataset.splits.items()}
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"] or by_split["val"] & by_split["test"])
    assert {name: len(split) for name, split in dataset.splits.items()} == {"train": 60, "val": 30, "test": 30}  # whole subjects of 10
    again = data.load_dataset("folder", tmp_path / "faces.csv", val_fraction=0.25, test_fraction=0.25, seed=3, split_by="subject")
    other = data.load_dataset("folder", tmp_path / "faces.csv", val_fraction=0.25, test_fraction=0.25, seed=4, split_by="subject")
    assert again.splits["val"].paths == dataset.splits["val"].paths != other.splits["val"].paths
    # The run's config names the column, so evaluate and export cut the same hold-outs.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"data:\n  data_dir: {tmp_path / 'faces.csv'}\n  split_by: subject\n  split_seed: 3\n")
    assert data.run_data_settings(run)["holdout"] == {"seed": 3, "split_by": "subject"}
    write_label_list(tmp_path / "one.csv", [(file, label, "s1") for file, label, _ in rows], header="path,label,subject")
    with pytest.raises(UserError, match="one.csv: a hold-out by group .data.split_by. needs at least 2 groups; all 120 faces are in s1"):
        data.load_dataset("folder", tmp_path / "one.csv", test_fraction=0.25, split_by="subject")
    with pytest.raises(UserError, match="no column age to group by"):
        data.load_dataset("folder", tmp_path / "faces.csv", test_fraction=0.25, split_by="age")
    with pytest.raises(UserError, match="needs a .csv label list, and this data has none"):
        data.load_dataset("folder", face_folder / "train", test_fraction=0.25, split_by="subject")
    with pytest.raises(UserError, match="FERPlus has fixed splits"):
        data.load_dataset("ferplus", face_folder, split_by="subject")


def test_k_fold_cross_validation_tests_each_face_once_over_the_folds(face_folder, tmp_path):
    files = [(str(p), p.parent.name) for p in sorted((face_folder / "train").rglob("*.png")) if p.name != "truncated.png"]
    rows = [(file, label, f"s{i % 12}") for i, (file, label) in enumerate(files)]
    write_label_list(tmp_path / "faces.csv", rows, header="path,label,subject")
    subject = {file: group for file, _, group in rows}
    for split_by in (None, "subject"):
        tested: list[str] = []
        for fold in range(4):
            dataset = data.load_dataset("folder", tmp_path / "faces.csv", val_fraction=0.1, seed=5, split_by=split_by, cv_folds=4, cv_fold=fold)
            paths = {name: set(split.paths) for name, split in dataset.splits.items()}
            assert len(paths["train"] | paths["val"] | paths["test"]) == 120 and not (paths["train"] & paths["test"] or paths["val"] & paths["test"])
            if split_by:  # whole subjects: none of the fold's people in training
                assert not {subject[path] for path in paths["test"]} & {subject[path] for path in paths["train"] | paths["val"]}
            else:  # stratified: a quarter of each class
                assert dataset.class_counts()["test"] == {"angry": 10, "happy": 10, "sad": 10}
            tested += dataset.splits["test"].paths
        assert sorted(tested) == sorted(file for file, _ in files)  # every face tested once over the folds
    with pytest.raises(UserError, match="data.cv_folds folds a folder or label list trained on, and this one has its own train part"):
        data.load_dataset("folder", face_folder, cv_folds=4)
    with pytest.raises(UserError, match="16-fold cross-validation: "):
        data.load_dataset("folder", tmp_path / "faces.csv", split_by="subject", cv_folds=16)


def write_label_list(path, rows, header="path,label") -> None:
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n", encoding="utf-8")


def test_a_label_list_is_read_like_the_class_folders_it_lists(face_folder, tmp_path):
    plain = face_folder / "train"
    listed = [(f"{name}_{i:03d}.png", name) for name in SYNTHETIC_CLASSES for i in range(40)]
    # Relative paths start from the list's folder, with / or Windows' \\; absolute ones are kept; labels go through the aliases.
    written = {"angry": "../faces/angry/{}", "happy": "..\\faces\\happy\\{}", "sad": str(plain / "sad" / "{}")}
    rows = [(written[name].format(file), {"angry": "Anger", "happy": "happiness"}.get(name, name)) for file, name in listed]
    (tmp_path / "faces").symlink_to(plain)
    (tmp_path / "lists").mkdir()
    label_list = tmp_path / "lists" / "labels.csv"
    write_label_list(label_list, [(file, label, "subject7") for file, label in rows], header="Path,Label,subject")
    files = data.read_label_list(label_list)
    assert sorted(files) == ["Anger", "happiness", "sad"] and [len(f) for f in files.values()] == [40, 40, 40]
    assert files["Anger"][0] == tmp_path / "lists" / "../faces/angry/angry_000.png"
    assert data.locate_data_dir(label_list) == label_list
    assert data.folder_labels(label_list) == SYNTHETIC_CLASSES
    # Scored whole, or split to train on, exactly as the folder it lists.
    from_list = data.load_dataset("folder", label_list, val_fraction=0.25, test_fraction=0.25, seed=3)
    from_folder = data.load_dataset("folder", plain, val_fraction=0.25, test_fraction=0.25, seed=3)
    for name, split in from_folder.splits.items():
        assert np.array_equal(from_list.splits[name].images, split.images)
        assert np.array_equal(from_list.splits[name].targets, split.targets)
    assert set(data.load_dataset("folder", label_list).splits) == {"test"}
    # A listed file that is missing is skipped and named, as a corrupt file in a folder is.
    write_label_list(label_list, [rows[0], ("gone.png", "sad")])
    dataset = data.load_dataset("folder", label_list)
    assert [p.rsplit("/", 1)[-1] for p, _ in dataset.skipped] == ["gone.png"] and len(dataset.splits["test"]) == 1
    write_label_list(label_list, [("gone.png", "sad"), ("/elsewhere/faces/a.png", "sad")])  # a list from another machine
    with pytest.raises(UserError, match=r"the test split has no readable images \(2 skipped; the first: .*No such file"):
        data.load_dataset("folder", label_list)


def test_train_and_test_label_lists_stand_in_for_the_train_and_test_folders(face_folder, tmp_path):
    for part in ("train", "test"):
        files = sorted(p for p in (face_folder / part).rglob("*") if p.is_file())
        write_label_list(tmp_path / f"{part}.csv", [(str(p), p.parent.name) for p in files])
    from_lists = data.load_dataset("folder", tmp_path, val_fraction=0.25, seed=3)
    from_folders = data.load_dataset("folder", face_folder, val_fraction=0.25, seed=3)
    assert from_lists.labels == from_folders.labels == SYNTHETIC_CLASSES
    assert {p.split("/")[-1] for p, _ in from_lists.skipped} == BROKEN_FILES
    assert set(from_lists.splits) == {"train", "val", "test"}
    for name, split in from_folders.splits.items():
        assert np.array_equal(from_lists.splits[name].images, split.images) and np.array_equal(from_lists.splits[name].targets, split.targets)


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,emotion\na.png,happy\n", "needs a header row with columns path and label; found file, emotion"),
        ("path,label\na.png,happy\nb.png,\n", "line 3 needs both a path and a label"),
        ("path,label\n", "the label list has no rows"),
        ("path,label\na.png,happy\nb.png,sad\na.png,sad\n", "line 4 lists a.png again \\(first on line 2\\)"),
        ("path,label\nfaces/a.png,happy\nfaces\\a.png,sad\n", "line 3 lists faces/a.png again \\(first on line 2\\)"),
        ("", "found nothing"),
    ],
)
def test_a_malformed_label_list_is_a_user_error_naming_the_problem(tmp_path, text, message):
    label_list = tmp_path / "labels.csv"
    label_list.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        data.load_dataset("folder", label_list)


def test_a_label_list_must_be_utf8_csv_with_the_csv_suffix(tmp_path):
    label_list = tmp_path / "labels.csv"
    label_list.write_bytes(b"path,label\n\xff\xfe,happy\n")
    with pytest.raises(UserError, match="not a UTF-8 CSV label list"):
        data.read_label_list(label_list)
    (tmp_path / "labels.txt").write_text("path,label\n")
    with pytest.raises(UserError, match="must be a folder of class folders or a .csv label list"):
        data.locate_data_dir(tmp_path / "labels.txt")


def test_fer2013_label_set_maps_folders_onto_the_seven_labels(face_folder):
    dataset = data.load_dataset("fer2013", face_folder, image_size=32, channels=3, max_per_class=5)
    assert dataset.labels == FER2013_LABELS
    test = dataset.splits["test"]
    assert test.images.shape == (15, 32, 32, 3)
    assert sorted(set(test.labels.tolist())) == [0, 3, 5]  # angry, happy, sad


def test_public_test_protocol_trains_on_all_of_train_and_splits_test_by_kaggle_name(face_folder, tmp_path):
    from conftest import write_kaggle_fer2013

    from fer_keras.evaluate import load_evaluation_data

    kaggle = write_kaggle_fer2013(tmp_path / "kaggle")  # two PublicTest and four PrivateTest faces a class
    dataset = data.load_dataset("fer2013", kaggle, val_split="public_test")
    counts = {split: {name: n for name, n in per_class.items() if n} for split, per_class in dataset.class_counts().items()}
    assert counts["train"] == {"angry": 10, "happy": 10, "sad": 10}  # no hold-out taken from train/
    assert counts["val"] == {"angry": 2, "happy": 2, "sad": 2}
    assert counts["test"] == {"angry": 4, "happy": 4, "sad": 4}
    assert {data.fer2013_usage(p) for p in dataset.splits["val"].paths} == {"PublicTest"}
    assert {data.fer2013_usage(p) for p in dataset.splits["test"].paths} == {"PrivateTest"}
    # A cap applies to each split: sorted, the test folder's PrivateTest names all come before its PublicTest ones.
    capped = data.load_dataset("fer2013", kaggle, val_split="public_test", max_per_class=1).class_counts()
    assert {split: sum(per_class.values()) for split, per_class in capped.items()} == {"train": 3, "val": 3, "test": 3}
    training_host = data.load_dataset("fer2013", kaggle, val_split="public_test", with_test=False)
    assert set(training_host.splits) == {"train", "val"} and training_host.splits["val"].paths == dataset.splits["val"].paths
    # evaluate scores a run trained so on PrivateTest, as published FER2013 results are.
    _, scored = load_evaluation_data("fer2013", kaggle, "test", (48, 48, 1), {"val_split": "public_test"})
    assert scored.paths == dataset.splits["test"].paths
    # The refit trains on train/ and PublicTest, keeps PublicTest as its (fitted) val split, and tests on PrivateTest alone.
    refit = data.load_dataset("fer2013", kaggle, val_split="public_test_refit")
    assert refit.splits["train"].paths == dataset.splits["train"].paths + dataset.splits["val"].paths
    assert np.array_equal(refit.splits["train"].images, np.concatenate([dataset.splits["train"].images, dataset.splits["val"].images]))
    assert refit.splits["train"].labels.tolist() == dataset.splits["train"].labels.tolist() + dataset.splits["val"].labels.tolist()
    assert refit.splits["val"].paths == dataset.splits["val"].paths and refit.splits["test"].paths == dataset.splits["test"].paths
    _, refit_scored = load_evaluation_data("fer2013", kaggle, "test", (48, 48, 1), {"val_split": "public_test_refit"})
    assert refit_scored.paths == dataset.splits["test"].paths
    with pytest.raises(UserError, match=r"test: data.val_split=public_test needs FER2013's Kaggle file names \(PublicTest_\*.jpg\), and none is here$"):
        data.load_dataset("fer2013", face_folder, val_split="public_test")
    with pytest.raises(UserError, match=r"train: data.val_split=public_test needs FER2013's test/ folder beside train/$"):
        data.load_dataset("fer2013", face_folder / "train", val_split="public_test", test_fraction=0.2)
    with pytest.raises(UserError, match=r"test: data.val_split=public_test_refit needs FER2013's Kaggle file names \(PublicTest_\*.jpg\), and none is here$"):
        data.load_dataset("fer2013", face_folder, val_split="public_test_refit")


def test_any_mode_and_bit_depth_is_converted(tmp_path):
    sixteen = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)).save(sixteen)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (30, 20), (255, 0, 0, 128)).save(rgba)
    images, ok, skipped = data.read_images([sixteen, rgba], size=64, channels=1)
    assert ok.all() and not skipped
    assert images.shape == (2, 64, 64, 1)
    # The 16-bit ramp is scaled onto 0-255, not clipped to white.
    assert images[0].max() == 255 and 120 < images[0].mean() < 135


def test_reading_faces_needs_pillow_heif_only_for_heif_files(tmp_path, monkeypatch):
    """Trainers on a GPU machine carry Keras alone; a FER2013 JPEG must not import the HEIF plugin."""

    def plugin_missing():
        raise ModuleNotFoundError("No module named 'pillow_heif'")

    monkeypatch.setattr(data, "register_pillow_formats", plugin_missing)
    face = tmp_path / "face.jpg"
    Image.new("L", (48, 48), 128).save(face)
    images, ok, _ = data.read_images([face], size=48, channels=1)
    assert ok.all() and images[0].mean() == pytest.approx(128, abs=1)
    with pytest.raises(ModuleNotFoundError):
        data.read_images([tmp_path / "face.HEIC"], size=48, channels=1)


@pytest.mark.parametrize("suffix", [".jpg", ".heic", ".avif"])
def test_phone_photos_stored_sideways_are_read_upright(tmp_path, suffix):
    """JPEG through OpenCV (detect) and Pillow (training); HEIC, as phones save photos, and AVIF through Pillow alone."""
    from fer_keras.api import load_image
    from fer_keras.sources import register_pillow_formats

    register_pillow_formats()
    upright = np.zeros((40, 64), np.uint8)
    upright[:10] = 255  # a white band at the top
    sideways = tmp_path / f"phone{suffix}"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: show rotated 90 degrees clockwise
    Image.fromarray(upright).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif.tobytes(), quality=100)
    images, ok, _ = data.read_images([sideways], size=64, channels=1)
    assert ok.all() and images[0, :12].mean() > 200 and images[0, 20:].mean() < 30
    # The Python API reads a path as the runtime does, and a Pillow image the same way.
    from_path = load_image(sideways)
    assert from_path.shape == (40, 64, 3) and from_path[:8].mean() > 200 and from_path[12:].mean() < 30
    assert np.array_equal(load_image(Image.open(sideways)), from_path)


def test_missing_or_empty_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.locate_data_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="one sub-folder of images per class"):
        data.load_dataset("folder", tmp_path / "empty")


def test_offline_without_data_names_the_three_options(monkeypatch):
    import kagglehub

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(kagglehub, "dataset_download", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    with pytest.raises(UserError, match=r"--data-dir DIR, set \$FER_KERAS_DATA=DIR, or go online"):
        data.locate_data_dir(None)


def test_environment_variable_locates_data(monkeypatch, face_folder):
    monkeypatch.setenv(data.DATA_ENV, str(face_folder))
    assert data.locate_data_dir(None) == face_folder


def test_ferplus_targets_follow_the_vote_rules():
    majority = data.ferplus_targets(soft=False)
    soft = data.ferplus_targets(soft=True)
    assert list(majority.columns) == ["file", "usage", *FERPLUS_LABELS]
    by_file = majority.set_index("file")
    soft_by_file = soft.set_index("file")
    # Votes (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF): 2,0,0,1,7,0,0,0,0,0
    assert by_file.loc["train/angry/Training_10118481.jpg", list(FERPLUS_LABELS)].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert soft_by_file.loc["train/angry/Training_10118481.jpg", list(FERPLUS_LABELS)].tolist() == pytest.approx([0.2, 0, 0, 0.1, 0.7, 0, 0, 0])
    # 7 neutral, 2 happiness, 1 unknown: the distribution is over the 9 emotion votes.
    assert soft_by_file.loc["train/angry/Training_10120469.jpg", "neutral"] == pytest.approx(7 / 9)
    assert "train/angry/Training_1021836.jpg" not in by_file.index  # surprise 3 = disgust 3: tied top vote
    assert "train/angry/Training_12565431.jpg" not in by_file.index  # top vote 'unknown'
    assert AMBIGUOUS_FILE not in by_file.index  # n_candidates != 1
    values = majority[list(FERPLUS_LABELS)].to_numpy()
    assert np.allclose(values.sum(axis=1), 1) and set(np.unique(values)) == {0.0, 1.0}
    soft_values = soft[list(FERPLUS_LABELS)].to_numpy()
    assert np.allclose(soft_values.sum(axis=1), 1)
    assert (majority["file"].to_numpy() == soft["file"].to_numpy()).all()
    assert majority["file"].is_unique  # fer2013new.csv repeats five image names: Training_17114283.jpg was read twice
    assert (values.argmax(axis=1) == soft_values.argmax(axis=1)).all()
    assert set(majority["usage"]) == {"Training", "PublicTest", "PrivateTest"}


def test_ferplus_own_layout_is_read_with_its_votes_by_the_same_rules(tmp_path):
    rng = np.random.default_rng(0)

    def face():
        return rng.integers(0, 256, (48, 48), dtype=np.uint8)

    # Votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
    write_ferplus_layout(tmp_path, {
        "FER2013Train": [
            ("fer0000000.png", (2, 0, 0, 1, 7, 0, 0, 0, 0, 0), face()),
            ("fer0000001.png", (7, 2, 0, 0, 0, 0, 0, 0, 1, 0), face()),
            ("fer0000002.png", (0, 0, 3, 0, 0, 3, 0, 0, 4, 0), face()),  # top vote 'unknown'
            ("fer0000003.png", (0, 0, 3, 0, 0, 3, 0, 0, 0, 0), face()),  # tied top vote
            ("fer0000004.png", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), face()),  # not a face
            ("fer0000005.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), face()),
            ("fer0000005.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), None),  # one name for two fer2013.csv rows
            ("fer0000006.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), None),  # listed, never written
        ],
        "FER2013Valid": [("fer0028638.png", (0, 0, 10, 0, 0, 0, 0, 0, 0, 0), face())],
        "FER2013Test": [("fer0032220.png", (0, 0, 0, 0, 2, 1, 0, 7, 0, 0), face())],  # the first row Microsoft ships
    })
    assert data.is_ferplus_layout(tmp_path) and not data.is_ferplus_layout(tmp_path / "FER2013Train")
    soft = data.load_dataset("ferplus", tmp_path, soft_labels=True)
    train = soft.splits["train"]
    assert [p.split("/")[-1] for p in map(str, train.paths)] == ["fer0000000.png", "fer0000001.png", "fer0000005.png"]
    assert train.targets[0] == pytest.approx([0.2, 0, 0, 0.1, 0.7, 0, 0, 0])
    assert train.targets[1] == pytest.approx([7 / 9, 2 / 9, 0, 0, 0, 0, 0, 0])
    majority = data.load_dataset("ferplus", tmp_path)
    assert [FERPLUS_LABELS[i] for i in majority.splits["train"].labels] == ["angry", "neutral", "happy"]
    assert [FERPLUS_LABELS[i] for i in majority.splits["val"].labels] == ["surprise"]
    assert [FERPLUS_LABELS[i] for i in majority.splits["test"].labels] == ["contempt"]
    assert (majority.splits["test"].images[0, ..., 0] == np.asarray(Image.open(tmp_path / "FER2013Test" / "fer0032220.png"))).all()
    assert [p.name for p in data.training_files(tmp_path)] == [f"fer000000{i}.png" for i in range(6)]
    with pytest.raises(UserError, match="FERPlus's own layout .* use the ferplus label set"):
        data.load_dataset("fer2013", tmp_path)


def test_a_malformed_ferplus_label_file_is_a_user_error_naming_its_row(tmp_path):
    (tmp_path / "FER2013Train").mkdir()
    (tmp_path / "FER2013Train" / "label.csv").write_text('fer0000000.png,"(0, 0, 48, 48)",2,0,0,1,7,0,0,0,0,0\nfer0000001.png,"(0, 0, 48, 48)",7,2,0,0,0,0,0,0,1\n')
    with pytest.raises(UserError, match=r"FER2013Train/label.csv: row 2 is not FERPlus's label.csv format"):
        data.load_dataset("ferplus", tmp_path)
    write_ferplus_layout(tmp_path, {"FER2013Train": [("fer0000000.png", (2, 0, 0, 1, 7, 0, 0, 0, 0, 0), np.zeros((48, 48), np.uint8))]})
    with pytest.raises(UserError, match="none of the FERPlus PublicTest files were found"):
        data.load_dataset("ferplus", tmp_path)


def test_ferplus_vote_columns_are_the_vendored_tables(tmp_path):
    assert tuple(data._ferplus_table("fer2013new").columns[2:]) == data.FERPLUS_VOTE_COLUMNS


def test_crowd_votes_are_mixed_into_the_targets_of_faces_that_have_usable_votes(tmp_path):
    rng = np.random.default_rng(0)
    names = ("Training_10118481.jpg", "Training_10120469.jpg", "Training_12565431.jpg", "Training_00000000.jpg")
    paths = []
    for name in names:
        paths.append(tmp_path / "train" / "angry" / name)
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(paths[-1])
    angry = np.eye(len(FER2013_LABELS), dtype=np.float32)[[FER2013_LABELS.index("angry")] * len(names)]
    split = data.Split(np.zeros((len(names), 48, 48, 1), np.uint8), angry, [str(p) for p in paths])
    mixed = data.with_crowd_votes(split, tmp_path, FER2013_LABELS, 0.3)
    # Labels: angry, disgust, fear, happy, neutral, sad, surprise.
    assert mixed.targets[0] == pytest.approx([0.7 + 0.3 * 0.7, 0, 0, 0, 0.3 * 0.2, 0.3 * 0.1, 0])  # votes 7 anger, 2 neutral, 1 sadness
    assert mixed.targets[1] == pytest.approx([0.7, 0, 0, 0.3 * 2 / 9, 0.3 * 7 / 9, 0, 0])  # 7 neutral, 2 happiness, 1 unknown
    assert mixed.targets[2:].tolist() == angry[2:].tolist()  # top vote 'unknown'; a file FERPlus does not have
    assert (mixed.labels == split.labels).all() and mixed.paths == split.paths
    nowhere = data.Split(split.images[3:], angry[3:], split.paths[3:])
    with pytest.raises(UserError, match="none of the 1 training faces has any"):
        data.with_crowd_votes(nowhere, tmp_path, FER2013_LABELS, 0.3)
