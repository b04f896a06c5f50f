"""Label lists written from public datasets' own annotations, on tiny trees laid out as each dataset ships."""

import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from fer_keras import data
from fer_keras import label_list as ll


def image(path, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), 128).save(path)
    return path


def listed(out, group_by=None):
    """(path relative to the list, label, group) per row, as data reads the list back."""
    return [(str(file.relative_to(out.parent)), label, group) for file, label, group in data.label_list_rows(out, group_by)]


def test_rafdb_reads_the_partition_file_aligned_faces_and_the_zipped_manual_attributes(tmp_path, capsys):
    base = tmp_path / "RAF-DB" / "basic"
    (base / "EmoLabel").mkdir(parents=True)
    (base / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 1\ntest_0002.jpg 4\n")
    for stem in ("train_00001", "train_00002", "test_0001"):  # test_0002 was not unpacked
        image(base / "Image" / "aligned" / f"{stem}_aligned.jpg")
    (base / "Annotation").mkdir()
    with zipfile.ZipFile(base / "Annotation" / "manual.zip", "w") as zipped:
        zipped.writestr("manual/train_00001_manu_attri.txt", "1.0\t2.0\n" * 5 + "1\n2\n3\n")
    out = tmp_path / "lists" / "raf.csv"
    assert ll.main(["rafdb", str(tmp_path / "RAF-DB"), "--out", str(out)]) == 0
    assert out.read_text().splitlines()[:2] == [
        "path,label,split,gender,race,age",
        "../RAF-DB/basic/Image/aligned/train_00001_aligned.jpg,sad,train,female,asian,40-69",
    ]
    assert [(label, split) for _, label, split in listed(out, "split")] == [("sad", "train"), ("surprise", "train"), ("surprise", "test")]
    assert [gender for _, _, gender in listed(out, "gender")] == ["female", "", ""]
    printed = capsys.readouterr().out
    assert "wrote 3 faces" in printed and "split: test 1, train 2" in printed and f"left out: 1 (image file missing; the first: {base}/Image/aligned/test_0002_aligned.jpg)" in printed
    # The official split, one list each, reads as a train/test dataset.
    assert ll.main(["rafdb", str(tmp_path / "RAF-DB"), "--out", str(tmp_path / "raf" / "test.csv"), "--where", "split=test"]) == 0
    assert ll.main(["rafdb", str(tmp_path / "RAF-DB"), "--out", str(tmp_path / "raf" / "train.csv"), "--where", "Split=TRAIN"]) == 0
    dataset = data.load_dataset("folder", tmp_path / "raf", val_fraction=0.0)
    assert dataset.splits["test"].images.shape == (1, 48, 48, 1) and len(dataset.splits["train"].images) == 2


def test_rafdb_kaggle_copies_with_numbered_class_folders(tmp_path):
    image(tmp_path / "DATASET" / "train" / "6" / "train_00010_aligned.jpg")
    image(tmp_path / "DATASET" / "test" / "1" / "test_0003_aligned.jpg")
    out = tmp_path / "raf.csv"
    assert ll.main(["rafdb", str(tmp_path), "--out", str(out)]) == 0
    assert listed(out, "split") == [("DATASET/test/1/test_0003_aligned.jpg", "surprise", "test"), ("DATASET/train/6/train_00010_aligned.jpg", "angry", "train")]


def test_affectnet_keeps_the_eight_emotions_from_tables_with_and_without_a_header(tmp_path, capsys):
    lists, images = tmp_path / "Manually_Annotated_file_lists", tmp_path / "Manually_Annotated" / "Manually_Annotated_Images"
    lists.mkdir()
    (lists / "training.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        '689/a.jpg,10,10,50,50,"1;2",7,0.1,0.2\n689/b.jpg,10,10,50,50,"1;2",9,0,0\n'
    )
    (lists / "validation.csv").write_text('12/c.jpg,10,10,50,50,"1;2",0,0.1,0.2\n')  # the header-less copy
    for name in ("689/a.jpg", "689/b.jpg", "12/c.jpg"):
        image(images / name)
    out = tmp_path / "affectnet.csv"
    assert ll.main(["affectnet", str(tmp_path), "--out", str(out)]) == 0
    prefix = "Manually_Annotated/Manually_Annotated_Images"
    assert listed(out, "split") == [(f"{prefix}/689/a.jpg", "contempt", "train"), (f"{prefix}/12/c.jpg", "neutral", "validation")]
    assert "left out: 1 (expression 8-10 (none, uncertain, no face))" in capsys.readouterr().out
    # With --cut-faces, each row's box (50 px square from 10,10 of an 8-px image, filled by reflection) is cut out.
    assert ll.main(["affectnet", str(tmp_path), "--out", str(out), "--cut-faces", "--where", "split=validation"]) == 0
    assert listed(out) == [("affectnet_faces/Manually_Annotated/Manually_Annotated_Images/12/c_0.jpg", "neutral", "")]
    assert Image.open(tmp_path / "affectnet_faces/Manually_Annotated/Manually_Annotated_Images/12/c_0.jpg").size == (50, 50)


def test_expw_cuts_out_every_boxed_face_of_a_photo_with_its_own_label(tmp_path, capsys):
    photo = tmp_path / "ExpW" / "data" / "image" / "origin" / "afraid_african_214.jpg"
    photo.parent.mkdir(parents=True)
    pixels = np.zeros((80, 100, 3), np.uint8)
    pixels[:, 50:] = 255  # the first face is in the dark half, the second in the bright one
    Image.fromarray(pixels).save(photo, quality=100)
    (tmp_path / "ExpW" / "data" / "label").mkdir()
    (tmp_path / "ExpW" / "data" / "label" / "label.lst").write_text(
        "afraid_african_214.jpg 0 10 5 45 40 0.9 3\nafraid_african_214.jpg 1 20 55 85 40 0.8 6\n"
        "afraid_african_214.jpg 2 20 55 55 40 0.1 2\ngone.jpg 0 1 1 9 9 0.9 0\n"
    )
    out = tmp_path / "lists" / "expw.csv"
    assert ll.main(["expw", str(tmp_path / "ExpW"), "--out", str(out)]) == 0
    faces = "expw_faces/data/image/origin"
    assert listed(out) == [(f"{faces}/afraid_african_214_0.jpg", "happy", ""), (f"{faces}/afraid_african_214_1.jpg", "neutral", "")]
    dark, bright = (np.asarray(Image.open(out.parent / file)) for file, _, _ in listed(out))
    assert dark.shape == (40, 40, 3) and bright.shape == (30, 30, 3)  # the larger side of each box, squared
    assert dark[5:35, 5:35].max() < 20 and bright.min() > 235
    printed = capsys.readouterr().out
    assert f"left out: 1 (face box without area; the first: {photo})" in printed and "left out: 1 (image file missing; the first: " in printed
    assert ll.main(["expw", str(tmp_path / "ExpW"), "--out", str(out), "--margin", "0.5"]) == 0
    assert Image.open(out.parent / f"{faces}/afraid_african_214_0.jpg").size == (60, 60)


def test_ckplus_labels_the_frames_up_to_the_apex_and_the_onset_as_neutral(tmp_path):
    frames = tmp_path / "CK+" / "cohn-kanade-images" / "S005" / "001"
    for number in range(1, 7):  # frame 6 comes after the labelled apex, 5
        image(frames / f"S005_001_{number:08d}.png")
    image(tmp_path / "CK+" / "cohn-kanade-images" / "S005" / "002" / "S005_002_00000001.png")  # unlabelled sequence
    emotion = tmp_path / "CK+" / "Emotion" / "S005" / "001" / "S005_001_00000005_emotion.txt"
    emotion.parent.mkdir(parents=True)
    emotion.write_text("   3.0000000e+00\n")
    out = tmp_path / "ck.csv"
    assert ll.main(["ckplus", str(tmp_path), "--out", str(out), "--peak-frames", "2"]) == 0
    rows = listed(out, "frame")
    assert [(file.rsplit("_", 1)[-1], label, frame) for file, label, frame in rows] == [
        ("00000001.png", "neutral", "onset"), ("00000004.png", "disgust", "peak"), ("00000005.png", "disgust", "peak"),
    ]
    assert {subject for _, _, subject in listed(out, "subject")} == {"S005"}
    assert ll.main(["ckplus", str(tmp_path), "--out", str(out), "--where", "frame=peak"]) == 0  # default: three peak frames
    assert [file.rsplit("_", 1)[-1] for file, _, _ in listed(out)] == ["00000003.png", "00000004.png", "00000005.png"]


def test_kdef_and_jaffe_read_the_codes_in_file_names(tmp_path, capsys):
    for name in ("AF01/AF01ANS.JPG", "AF01/AF01HAHL.JPG", "BM02/BM02SUFR.jpg", "AF01/notes.jpg"):
        image(tmp_path / "KDEF" / name)
    out = tmp_path / "kdef.csv"
    assert ll.main(["kdef", str(tmp_path / "KDEF"), "--out", str(out), "--where", "pose=frontal,half-left"]) == 0
    assert listed(out, "subject") == [("KDEF/AF01/AF01ANS.JPG", "angry", "F01"), ("KDEF/AF01/AF01HAHL.JPG", "happy", "F01")]
    assert out.read_text().splitlines()[0] == "path,label,subject,gender,session,pose"
    printed = capsys.readouterr().out
    assert f"left out: 1 (name not in KDEF's code (AF01ANS.JPG); the first: {tmp_path / 'KDEF/AF01/notes.jpg'})" in printed and "left out: 1 (not kept by --where)" in printed
    for name in ("KA.AN1.39.tiff", "NA.HA2.202.tiff"):
        image(tmp_path / "jaffe" / name)
    (tmp_path / "jaffe" / "README").write_text("JAFFE")
    assert ll.main(["jaffe", str(tmp_path / "jaffe"), "--out", str(out)]) == 0
    assert listed(out, "subject") == [("jaffe/KA.AN1.39.tiff", "angry", "KA"), ("jaffe/NA.HA2.202.tiff", "happy", "NA")]


def test_your_own_photos_get_their_largest_face_cut_out_as_detect_frames_it(tmp_path, capsys):
    from fer_keras.faces import crop_face, make_detector
    from fer_keras.sources import decode_image

    photos = tmp_path / "photos"
    for label, name in (("happy", "two_people.jpg"), ("Neutral", "multiface.jpg")):
        (photos / label).mkdir(parents=True)
        (photos / label / name).write_bytes((REPO / "tests" / "data" / name).read_bytes())
    image(photos / "sad" / "blank.png", size=64)
    out = tmp_path / "faces.csv"
    assert ll.main(["folder", str(photos), "--out", str(out), "--detect-faces"]) == 0
    assert listed(out) == [("faces_faces/Neutral/multiface_0.jpg", "Neutral", ""), ("faces_faces/happy/two_people_0.jpg", "happy", "")]
    assert f"left out: 1 (no face found by blazeface; the first: {photos / 'sad/blank.png'})" in capsys.readouterr().out
    # The crop is detect's: the largest face (117 px) with BlazeFace's 20% margin, eyes levelled.
    frame = decode_image(photos / "happy" / "two_people.jpg")
    largest = max(make_detector("blazeface")(frame), key=lambda face: face.box[2])
    expected = crop_face(frame, largest, 0.2, max_side=ll.FACE_SIDE)[..., ::-1]
    written = np.asarray(Image.open(tmp_path / "faces_faces" / "happy" / "two_people_0.jpg"))
    assert written.shape == expected.shape == (140, 140, 3) and np.abs(written.astype(int) - expected).mean() < 3
    # A label list's own columns travel with its faces, and --where may pick on them.
    (photos / "list.csv").write_text("Path,Label,Subject\nhappy/two_people.jpg,happy,s1\nNeutral/multiface.jpg,neutral,s2\n")
    assert ll.main(["folder", str(photos / "list.csv"), "--out", str(out), "--where", "subject=S1"]) == 0
    assert listed(out, "subject") == [("photos/happy/two_people.jpg", "happy", "s1")]


@pytest.mark.parametrize(
    "format_, argv, message",
    [
        ("kdef", ["--out", "x.txt"], "a label list is a .csv file"),
        ("kdef", ["--peak-frames", "2"], "--peak-frames applies to ckplus sequences, not kdef"),
        ("kdef", ["--cut-faces"], "--cut-faces needs face boxes, which kdef does not give (only affectnet, expw)"),
        ("kdef", ["--margin", "0.2"], "--margin applies to cut-out faces"),
        ("affectnet", ["--detect-faces", "--cut-faces"], "--detect-faces and --cut-faces both choose the face: give one"),
        ("expw", ["--detect-faces"], "--detect-faces finds faces where the annotations box none; expw boxes them"),
        ("kdef", ["--detect-faces", "yunet"], "yunet"),
        ("folder", [], "expected one sub-folder of images per class, found none"),
        ("expw", ["--margin", "2"], "--margin"),
        ("expw", [], "no ExpW annotations: expected label/label.lst"),
        ("kdef", ["--where", "pose"], "expected COLUMN=VALUE"),
        ("kdef", ["--where", "age=20"], "no column age; this list's columns: path, label, subject, gender, session, pose"),
        ("kdef", ["--where", "pose=upside-down"], "no face to list (not kept by --where: 1)"),
        ("jaffe", [], "no JAFFE images (named like KA.AN1.39.tiff)"),
        ("rafdb", [], "no RAF-DB annotations: expected EmoLabel/list_patition_label.txt, or split folders of class folders numbered 1-7"),
        ("affectnet", [], "no AffectNet annotations"),
        ("ckplus", [], "no CK+ annotations: expected folders Emotion and cohn-kanade-images"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, format_, argv, message):
    image(tmp_path / "KDEF" / "AF01ANS.JPG")
    argv = [format_, str(tmp_path / "KDEF"), *argv]
    out = tmp_path / "out.csv"
    assert ll.main(argv if "--out" in argv else [*argv, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


def test_images_missing_everywhere_name_the_first_expected_file(tmp_path, capsys):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 5\n")
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    assert ll.main(["rafdb", str(tmp_path), "--out", str(tmp_path / "raf.csv")]) == 2
    assert f"no face to list (image file missing: 1); the first image it expected: {tmp_path}/Image/aligned/train_00001_aligned.jpg" in capsys.readouterr().err
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 9\n")
    assert ll.main(["rafdb", str(tmp_path), "--out", str(tmp_path / "raf.csv")]) == 2
    assert "line 1 is not 'IMAGE LABEL' with a label 1-7: 'train_00001.jpg 9'" in capsys.readouterr().err
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text("a.jpg 0 10 five 45 40 0.9 3\n")
    assert ll.main(["expw", str(tmp_path), "--out", str(tmp_path / "expw.csv")]) == 2
    assert "line 1 is not 'IMAGE FACE_ID TOP LEFT RIGHT BOTTOM CONFIDENCE LABEL' with a label 0-6: 'a.jpg 0 10 five 45 40 0.9 3'" in capsys.readouterr().err
    assert ll.main(["rafdb", str(tmp_path / "nowhere"), "--out", str(tmp_path / "raf.csv")]) == 2
    assert "nowhere: folder not found" in capsys.readouterr().err
