"""FER2013's pixel table written as the Kaggle image layout, with a FERPlus row map that the FERPlus label set reads."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_keras import data
from fer_keras import unpack as up

# Four faces of 2x2 pixels: a Training face FERPlus labels, one it removed, and one of each test half.
TABLE = "emotion,pixels,Usage\n3,0 1 2 3,Training\n6,10 11 12 13,Training\n0,20 21 22 23,PublicTest\n5,30 31 32 33,PrivateTest\n"
FERPLUS = [("Training", "fer0000000.png"), ("Training", ""), ("PublicTest", "fer0000001.png"), ("PrivateTest", "fer0000002.png")]


@pytest.fixture
def small_ferplus(monkeypatch):
    """FERPlus's tables cut to the four faces of TABLE: votes neutral, -, anger, surprise."""
    monkeypatch.setattr(up, "ferplus_rows", lambda: FERPLUS)
    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    votes = pd.DataFrame(
        [["Training", "fer0000000.png", 8, 2, 0, 0, 0, 0, 0, 0, 0, 0], ["PublicTest", "fer0000001.png", 0, 0, 0, 0, 6, 4, 0, 0, 0, 0],
         ["PrivateTest", "fer0000002.png", 0, 0, 10, 0, 0, 0, 0, 0, 0, 0]],
        columns=["Usage", "Image name", *columns],
    )
    original = data._ferplus_table
    monkeypatch.setattr(data, "_ferplus_table", lambda name: votes if name == "fer2013new" else original(name))


def test_a_pixel_table_unpacks_losslessly_into_the_kaggle_layout_with_its_ferplus_row_map(tmp_path, small_ferplus, capsys):
    (tmp_path / "fer2013.csv").write_text(TABLE)
    assert up.main([str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "fer")]) == 0
    files = sorted(str(path.relative_to(tmp_path / "fer")) for path in (tmp_path / "fer").rglob("*.png"))
    assert files == ["test/angry/PublicTest_00002.png", "test/surprise/PrivateTest_00003.png", "train/happy/Training_00000.png", "train/neutral/Training_00001.png"]
    assert np.asarray(Image.open(tmp_path / "fer/test/angry/PublicTest_00002.png")).tolist() == [[20, 21], [22, 23]]
    assert (tmp_path / "fer" / data.FERPLUS_ROW_MAP).read_text().splitlines() == [
        "file,usage,ferplus_image,ferplus_candidates,n_candidates",
        "train/happy/Training_00000.png,Training,fer0000000.png,fer0000000.png,1",
        "test/angry/PublicTest_00002.png,PublicTest,fer0000001.png,fer0000001.png,1",
        "test/surprise/PrivateTest_00003.png,PrivateTest,fer0000002.png,fer0000002.png,1",
    ]
    assert "wrote 4 faces" in capsys.readouterr().out
    # The FERPlus label set reads the root's own map: FERPlus's majority, not FER2013's label (happy -> neutral).
    dataset = data.load_dataset("ferplus", tmp_path / "fer")
    by_split = {name: [data.taxonomy.FERPLUS_LABELS[i] for i in split.targets.argmax(1)] for name, split in dataset.splits.items()}
    assert by_split == {"train": ["neutral"], "val": ["angry"], "test": ["surprise"]}
    # FER2013's own labels, with Kaggle's PublicTest/PrivateTest names, as for the msambare folders.
    fer2013 = data.load_dataset("fer2013", tmp_path / "fer", val_fraction=0.0)
    assert [data.fer2013_usage(path) for path in fer2013.splits["test"].paths] == ["PublicTest", "PrivateTest"]


def test_a_table_out_of_fer2013_order_gets_no_ferplus_map(tmp_path, small_ferplus, capsys):
    (tmp_path / "fer").mkdir()
    (tmp_path / "fer" / data.FERPLUS_ROW_MAP).write_text("left from an earlier table\n")
    (tmp_path / "shuffled.csv").write_text("emotion,pixels,Usage\n0,20 21 22 23,PublicTest\n3,0 1 2 3,Training\n")
    assert up.main([str(tmp_path / "shuffled.csv"), "--out", str(tmp_path / "fer")]) == 0
    assert "no FERPlus row map: row 0 is PublicTest here but Training in FERPlus (not fer2013.csv's order)" in capsys.readouterr().out
    assert not (tmp_path / "fer" / data.FERPLUS_ROW_MAP).exists()


def test_the_challenge_train_table_without_usage_maps_onto_the_real_ferplus_rows(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("emotion, pixels\n3,0 1 2 3\n6,10 11 12 13\n")
    assert up.main([str(tmp_path / "train.csv"), "--out", str(tmp_path / "fer")]) == 0
    rows = (tmp_path / "fer" / data.FERPLUS_ROW_MAP).read_text().splitlines()
    assert rows[1:] == ["train/happy/Training_00000.png,Training,fer0000000.png,fer0000000.png,1", "train/neutral/Training_00001.png,Training,fer0000001.png,fer0000001.png,1"]
    assert "FERPlus votes for 2 of 2 faces" in capsys.readouterr().out


@pytest.mark.parametrize(
    "table, message",
    [
        ("emotion,Usage\n3,Training\n", "needs columns emotion and pixels; found emotion, Usage"),
        ("emotion,pixels\n7,0 1 2 3\n", "line 2: emotion '7' is not 0-6"),
        ("emotion,pixels,Usage\n3,0 1 2 3,Validation\n", "line 2: usage 'Validation' is not one of Training, PublicTest, PrivateTest"),
        ("emotion,pixels\n3,0 1 2\n", "line 2: expected a square image of values 0-255, found 3 values"),
        ("emotion,pixels\n3,0 1 2 300\n", "expected a square image of values 0-255"),
        ("emotion,pixels\n3,0 1 2 x\n", "line 2: pixels are not whole numbers"),
        ("emotion,pixels\n", "the pixel table has no rows"),
    ],
)
def test_a_malformed_pixel_table_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, table, message):
    (tmp_path / "fer2013.csv").write_text(table)
    assert up.main([str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "fer")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "fer").exists()


def test_a_pixel_table_given_as_a_label_list_says_to_unpack_it(tmp_path, capsys):
    (tmp_path / "fer2013.csv").write_text(TABLE)
    with pytest.raises(data.UserError, match=r"FER2013's pixel table, not a label list; write it as image folders first: python -m fer_keras.unpack"):
        data.read_label_list(tmp_path / "fer2013.csv")
    assert up.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "fer")]) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
