"""experiments/accelerator/pack_images.py: what a GPU round carries, for each layout it trains on."""

import importlib.util

import numpy as np

from conftest import REPO, write_ferplus_layout

spec = importlib.util.spec_from_file_location("pack_images", REPO / "experiments" / "accelerator" / "pack_images.py")
pack_images = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack_images)


def _write(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode() * 3)


def _round_trip(source, tmp_path):
    pack_images.pack(source, tmp_path / "packed.npz")
    pack_images.unpack(tmp_path / "packed.npz", tmp_path / "out")
    return sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_the_kaggle_layout_travels_without_its_private_test_files(tmp_path):
    kept = ["ferplus_rows.csv", "test/angry/PublicTest_2.png", "train/angry/Training_1.jpg", "train/happy/Training_4.png"]
    _write(tmp_path / "fer", kept + ["test/angry/PrivateTest_3.jpg", "train/angry/notes.txt"])
    assert _round_trip(tmp_path / "fer", tmp_path) == kept
    assert all((tmp_path / "out" / name).read_bytes() == name.encode() * 3 for name in kept)


def test_ferplus_own_layout_travels_without_its_test_folder(tmp_path):
    face = np.zeros((48, 48), np.uint8)
    votes = (10, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    write_ferplus_layout(tmp_path / "ferplus", {folder: [(f"fer{i}.png", votes, face)] for i, folder in enumerate(("FER2013Train", "FER2013Valid", "FER2013Test"))})
    assert _round_trip(tmp_path / "ferplus", tmp_path) == ["FER2013Train/fer0.png", "FER2013Train/label.csv", "FER2013Valid/fer1.png", "FER2013Valid/label.csv"]


def test_more_than_the_device_carries_is_refused(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "fer", ["train/angry/Training_1.jpg"])
    monkeypatch.setattr(pack_images, "CARRY_BYTES", 10)
    assert pack_images.main(["pack", str(tmp_path / "fer"), str(tmp_path / "packed.npz")]) == 2
    assert "more than the device tool carries" in capsys.readouterr().err
    assert not (tmp_path / "packed.npz").exists()
