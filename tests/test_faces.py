import math

import cv2
import numpy as np
import pytest

import fer_keras
from conftest import REPO, SHARED
from fer_keras.errors import UserError
from fer_keras.faces import Face, crop_face, crop_margin, make_detector

DATA = REPO / "tests" / "data"
KNOWN_COUNTS = {"two_people.jpg": 2, "multiface.jpg": 6}
YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"


@pytest.mark.parametrize("photo, expected", KNOWN_COUNTS.items())
def test_default_detector_finds_every_face_in_known_photos(photo, expected):
    faces = make_detector()(cv2.imread(str(DATA / photo)))
    assert len(faces) == expected
    for face in faces:
        assert 0 < face.score <= 1
        assert face.eyes is not None  # BlazeFace gives landmarks, so crops are aligned


def test_no_detector_takes_each_image_as_one_face_crop():
    import fer_keras
    from fer_keras.runtime import EmotionClassifier

    # A FER2013-style crop: the face fills the frame, where detectors often find nothing.
    photo = cv2.imread(str(DATA / "two_people.jpg"))
    face = cv2.resize(crop_face(photo, make_detector()(photo)[0]), (48, 48), interpolation=cv2.INTER_AREA)
    (whole,) = make_detector("none")(face)
    assert whole.box == (0, 0, 48, 48) and crop_margin(make_detector("none")) == 0.0
    (result,) = fer_keras.analyze(face, detector="none")
    assert result.probabilities == pytest.approx(dict(zip(result.probabilities, EmotionClassifier().predict(face)[0])), abs=1e-6)


def test_haar_detector_on_a_known_photo():
    assert len(make_detector("haar")(cv2.imread(str(DATA / "two_people.jpg")))) == 2


@pytest.mark.skipif(not YUNET.is_file(), reason="YuNet .onnx not present (optional third-party file)")
def test_yunet_with_a_user_supplied_model():
    faces = make_detector("yunet", YUNET)(cv2.imread(str(DATA / "multiface.jpg")))
    assert len(faces) == 6
    assert {"left_eye", "right_eye", "nose"} <= set(faces[0].keypoints)
    # The one-call API takes it too.
    assert [f.box for f in fer_keras.analyze(DATA / "multiface.jpg", detector="yunet", detector_model=YUNET)] == sorted(
        (f.box for f in faces), key=lambda box: box[2] * box[3], reverse=True)


def test_detector_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown detector 'dlib'"):
        make_detector("dlib")
    with pytest.raises(UserError, match=r"^the yunet detector needs its .onnx file \(--detector-model PATH; detector_model= in the Python API\)$"):
        make_detector("yunet")
    with pytest.raises(UserError, match="missing.onnx: no such file; the yunet detector needs its .onnx file"):
        make_detector("yunet", tmp_path / "missing.onnx")
    for call in (fer_keras.analyze, lambda *a, **k: next(fer_keras.analyze_video(*a, **k))):  # the API passes the file on
        with pytest.raises(UserError, match="missing.onnx: no such file; the yunet detector needs its .onnx file"):
            call(DATA / "multiface.jpg", detector="yunet", detector_model=tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="bad.onnx: OpenCV cannot load"):
        make_detector("yunet", bad)


def test_benchmarks_take_the_yunet_file_by_the_flag_its_error_names(tmp_path, capsys):
    from fer_keras import benchmark

    for command, source in (("detectors", ["--media", str(DATA)]), ("pipeline", ["--source", str(DATA / "two_people.jpg")])):
        args = [command, *source, "--detectors", "yunet", "--out", str(tmp_path)]
        assert benchmark.main([*args, "--detector-model", str(tmp_path / "missing.onnx")]) == 2
        assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.onnx'}: no such file")


def test_blank_frame_has_no_faces():
    assert make_detector()(np.zeros((360, 640, 3), np.uint8)) == []


def test_crop_levels_tilted_eyes():
    frame = np.zeros((200, 200), np.uint8)
    left, right = (70.0, 80.0), (130.0, 120.0)  # eyes tilted by atan(40/60)
    for x, y in (left, right):
        cv2.circle(frame, (int(x), int(y)), 4, 255, -1)
    face = Face((50, 50, 100, 100), 0.9, {"left_eye": left, "right_eye": right})
    crop = crop_face(frame, face, margin=0.2)
    assert crop.shape == (120, 120)
    ys, xs = np.nonzero(crop > 128)
    left_blob, right_blob = ys[xs < 60].mean(), ys[xs >= 60].mean()
    assert abs(left_blob - right_blob) < 1.5
    # Rotation about the face centre keeps the eye distance.
    assert xs[xs >= 60].mean() - xs[xs < 60].mean() == pytest.approx(math.hypot(60, 40), abs=2)


def test_crop_without_landmarks_is_the_square_box_with_margin():
    frame = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = crop_face(frame, Face((20, 30, 40, 20)), margin=0.0)
    assert crop.shape == (40, 40)
    np.testing.assert_array_equal(crop[10:30, :], frame[30:50, 20:60])


def smooth_frame(height=1000, width=1200):
    """Blurred noise with detail at a 48-pixel face's scale, so two ways of shrinking it agree."""
    noise = np.random.default_rng(0).integers(0, 256, (height, width)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 20), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.mark.parametrize(
    "box, eyes",
    [
        ((300, 200, 600, 600), {}),
        ((300, 200, 600, 600), {"left_eye": (450, 380), "right_eye": (750, 470)}),  # tilted 17 degrees
        ((-100, 500, 600, 600), {"left_eye": (50, 700), "right_eye": (350, 640)}),  # over the left edge
        ((900, 800, 700, 500), {"left_eye": (1000, 900), "right_eye": (1300, 1000)}),  # mostly past the corner
        ((-50, -50, 1300, 1100), {}),  # larger than the frame
    ],
)
def test_large_crops_are_cut_shrunk_and_show_what_the_full_size_crop_shows(box, eyes):
    frame = smooth_frame()
    face = Face(box, 0.9, eyes)
    full, shrunk = crop_face(frame, face, 0.2), crop_face(frame, face, 0.2, max_side=100)
    factor = full.shape[0] // 100
    assert shrunk.shape == (round(full.shape[0] / factor),) * 2 and 100 <= shrunk.shape[0] < 200
    # What the model sees from each: equal to within interpolation, and not shifted.
    seen_full, seen_shrunk = (cv2.resize(c, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32) for c in (full, shrunk))
    assert np.abs(seen_full - seen_shrunk).mean() < 2.0
    assert np.abs(seen_full - seen_shrunk).max() <= 8
    (dx, dy), _ = cv2.phaseCorrelate(seen_full, seen_shrunk)
    assert abs(dx) < 0.15 and abs(dy) < 0.15


def test_crops_under_twice_max_side_are_cut_at_full_size():
    frame = smooth_frame()
    face = Face((300, 200, 160, 160), 0.9, {"left_eye": (340, 250), "right_eye": (420, 270)})
    np.testing.assert_array_equal(crop_face(frame, face, 0.2, max_side=100), crop_face(frame, face, 0.2))


def test_analyzer_cuts_crops_of_four_times_the_model_input_at_most_and_reads_them_as_full_size_ones(monkeypatch):
    from fer_keras import api
    from fer_keras.faces import crop_side

    photo = cv2.imread(str(DATA / "two_people.jpg"))
    large = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)  # faces of about 1,000 pixels
    calls = []
    monkeypatch.setattr(api, "crop_face", lambda *args: calls.append(args) or crop_face(*args))
    analyzer = api.FrameAnalyzer()
    assert crop_side(analyzer.classifier.input_size) == 4 * 48
    results = analyzer(large)
    assert len(results) == len(calls) == 2
    assert all(4 * 48 <= crop_face(*args).shape[0] < 8 * 48 for args in calls)
    full_size = analyzer.classifier.predict([crop_face(frame, face, margin) for frame, face, margin, _ in calls])
    for result, expected in zip(results, full_size):
        assert list(result.probabilities.values()) == pytest.approx(expected, abs=0.03)
        assert result.emotion == analyzer.labels[int(np.argmax(expected))]


def test_crop_margin_follows_the_detector_and_an_explicit_margin_wins():
    from fer_keras.api import FrameAnalyzer

    class NamedDetector:
        def __init__(self, name):
            self.name = name

        def __call__(self, frame):
            return []

    assert crop_margin(NamedDetector("yunet")) == 0.0  # tall boxes already span FER2013's framing
    assert crop_margin(NamedDetector("haar")) == 0.0
    assert crop_margin(NamedDetector("blazeface")) == 0.2
    assert crop_margin(object()) == 0.2  # a user's detector without a name gets the default
    assert FrameAnalyzer(NamedDetector("mtcnn")).margin == 0.0
    assert FrameAnalyzer(NamedDetector("mtcnn"), margin=0.3).margin == 0.3


def test_face_rejects_empty_boxes():
    with pytest.raises(ValueError):
        Face((0, 0, 0, 10))


def test_downscaled_detection_maps_boxes_back_to_the_frame():
    from fer_keras.faces import Downscaled

    seen = []

    class Stub:
        name = "stub"

        def __call__(self, frame):
            seen.append(frame.shape)
            return [Face((10, 20, 30, 40), 0.9, {"nose": (15.0, 25.0)})]

    (face,) = Downscaled(Stub(), max_side=320)(np.zeros((720, 1280, 3), np.uint8))
    assert seen == [(180, 320, 3)]
    assert face.box == (40, 80, 120, 160) and face.keypoints["nose"] == (60.0, 100.0)
    assert Downscaled(Stub(), max_side=2000)(np.zeros((720, 1280, 3), np.uint8))[0].box == (10, 20, 30, 40)
    assert seen[-1] == (720, 1280, 3)  # never enlarged
