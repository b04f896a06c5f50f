import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fer_keras
from conftest import REPO
from fer_keras.api import FaceResult
from fer_keras.detect import DetectOptions, face_json, run_detect
from fer_keras.errors import UserError

DATA = REPO / "tests" / "data"
CLIP = REPO / "fer_keras" / "resources" / "sample" / "hamilton_clip.mp4"
LABELS = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]


def _detect(*args):
    return subprocess.run([sys.executable, "-m", "fer_keras.detect", "--no-progress", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120)


def _rows(out):
    with open(out / "detections.csv") as f:
        return list(csv.DictReader(f))


def test_video_outputs_schema_and_consistency(tmp_path):
    done = _detect("--source", CLIP, "--out", tmp_path, "--annotate", "--max-frames", 30)
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path)
    assert list(rows[0]) == ["source", "frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "score", *LABELS]
    for row in rows:
        probabilities = [float(row[label]) for label in LABELS]
        assert abs(sum(probabilities) - 1) < 1e-3  # rows sum to 1 up to the CSV's 4 decimals
        assert row["emotion"] == LABELS[int(np.argmax(probabilities))]
        assert float(row["score"]) == pytest.approx(max(probabilities), abs=1e-3)
        assert float(row["time_s"]) == pytest.approx(int(row["frame"]) / 29.97, abs=1e-3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 30 and summary["faces"] == len(rows) > 0
    assert summary["detector"] == "blazeface" and summary["labels"] == LABELS
    assert summary["model"].endswith("accurate.tflite")  # the package default is the accurate tier
    assert summary["frames_without_faces"] == 30 - len({row["frame"] for row in rows})
    assert {"decode", "detect", "classify", "track", "annotate", "write"} <= set(summary["timings_ms_per_frame"])
    tracks = {t["track_id"]: t for t in summary["tracks"]}
    assert set(tracks) == {int(row["track_id"]) for row in rows}
    for t in tracks.values():
        assert sum(t["time_share"].values()) == pytest.approx(1, abs=1e-3)
        assert t["dominant_emotion"] == max(t["time_share"], key=t["time_share"].get)
    jsonl = [json.loads(line) for line in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert len(jsonl) == len(rows) and jsonl[0]["box"] == [int(rows[0][k]) for k in "xywh"]
    assert (tmp_path / "annotated" / "hamilton_clip.mp4").stat().st_size > 10_000
    assert list(tmp_path.glob("timeline_hamilton_clip_track*.png"))
    assert not list(tmp_path.rglob("*.tmp*"))


def test_photo_face_counts_and_api_agree_with_cli(tmp_path):
    done = _detect("--source", DATA / "multiface.jpg", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path)
    assert len(rows) == 6 and {row["track_id"] for row in rows} == {str(i) for i in range(1, 7)}
    faces = fer_keras.analyze(DATA / "multiface.jpg")
    assert [f.box for f in faces] == [tuple(int(row[k]) for k in "xywh") for row in rows]
    assert [f.emotion for f in faces] == [row["emotion"] for row in rows]
    for face, row in zip(faces, rows):
        assert face.score == pytest.approx(float(row["score"]), abs=1e-4)
    tracks = json.loads((tmp_path / "summary.json").read_text())["tracks"]  # a still's tracks carry each face's box and score
    assert [(t["box"], t["score"]) for t in tracks] == [([int(row[k]) for k in "xywh"], float(row["score"])) for row in rows]


def test_api_selects_faces_as_the_cli_does(tmp_path):
    everyone = fer_keras.analyze(DATA / "multiface.jpg")
    sides = sorted(min(f.box[2:]) for f in everyone)
    done = _detect("--source", DATA / "multiface.jpg", "--out", tmp_path, "--min-face", sides[2], "--max-faces", 3, "--margin", 0.3)
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path)
    chosen = fer_keras.analyze(DATA / "multiface.jpg", min_face=sides[2], max_faces=3, margin=0.3)
    assert len(chosen) == 3 and [f.box for f in chosen] == [f.box for f in everyone[:3]]  # the largest three
    assert [(f.box, f.emotion) for f in chosen] == [(tuple(int(row[k]) for k in "xywh"), row["emotion"]) for row in rows]
    for face, row in zip(chosen, rows):
        assert face.score == pytest.approx(float(row["score"]), abs=1e-4)
    assert [f.score for f in chosen] != [f.score for f in everyone[:3]]  # the wider crop was used
    assert len(fer_keras.analyze(DATA / "multiface.jpg")) == 6  # the next call's defaults, not this one's choice
    first = next(fer_keras.analyze_video(CLIP, max_faces=1, smooth=1.0))
    assert len(first.faces) == 1
    for margin in (-0.1, 50):
        with pytest.raises(UserError, match=rf"^margin={margin} must be in \[0, 1.0\] \(a fraction of the face box's side\)$"):
            fer_keras.analyze(DATA / "multiface.jpg", margin=margin)


def test_api_accepts_arrays_and_pil_images():
    from PIL import Image

    pil = Image.open(DATA / "two_people.jpg")
    from_pil = fer_keras.analyze(pil)
    from_array = fer_keras.analyze(np.asarray(pil)[..., ::-1])  # BGR array
    assert len(from_pil) == len(from_array) == 2
    assert set(from_pil[0].probabilities) == set(LABELS)


def test_analyze_takes_a_classifier_as_analyze_video_does():
    """A classifier set up for a third-party model (labels, value range): analyze() looked it up as a file name."""
    photo = DATA / "two_people.jpg"
    classifier = fer_keras.EmotionClassifier("fast")
    by_name = [(f.box, f.emotion, f.score) for f in fer_keras.analyze(photo, model="fast")]
    assert [(f.box, f.emotion, f.score) for f in fer_keras.analyze(photo, model=classifier)] == by_name
    first = next(fer_keras.analyze_video(CLIP, model=classifier, smooth=1.0))
    assert first.faces and first.faces[0].emotion in classifier.labels


def test_api_takes_encoded_bytes_and_binary_files_as_a_web_upload_gives_them(tmp_path):
    import io

    from PIL import Image

    from fer_keras.api import load_image
    from fer_keras.errors import UserError
    from fer_keras.sources import register_pillow_formats

    photo = DATA / "two_people.jpg"
    expected = [(f.box, f.emotion, f.score) for f in fer_keras.analyze(photo)]
    data = photo.read_bytes()
    with open(photo, "rb") as upload:
        for same_photo in (data, bytearray(data), io.BytesIO(data), upload):
            assert [(f.box, f.emotion, f.score) for f in fer_keras.analyze(same_photo)] == expected
    # A phone's HEIC upload, which OpenCV cannot decode, through Pillow; upright as a file is.
    register_pillow_formats()
    heic = io.BytesIO()
    Image.open(photo).save(heic, format="HEIF")
    (tmp_path / "photo.heic").write_bytes(heic.getvalue())
    assert np.array_equal(load_image(heic.getvalue()), load_image(tmp_path / "photo.heic"))
    with pytest.raises(UserError, match=r"^image bytes \(7 bytes\): not a readable image$"):
        fer_keras.analyze(b"garbage")
    with open(DATA / "README.md") as text, pytest.raises(UserError, match="a file opened in text mode; open it in binary mode"):
        fer_keras.analyze(text)


def test_api_takes_gray_bgra_and_float_arrays_and_refuses_other_shapes():
    import cv2

    from fer_keras.errors import UserError

    bgr = cv2.imread(str(DATA / "two_people.jpg"))
    expected = [(f.box, f.emotion, f.score) for f in fer_keras.analyze(bgr)]
    for same_pixels in (cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), bgr / 255.0, bgr.astype(np.float32)):
        assert [(f.box, f.emotion, f.score) for f in fer_keras.analyze(same_pixels)] == expected
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert len(fer_keras.analyze(gray)) == len(fer_keras.analyze(gray[..., None])) == 2
    # So does a FrameAnalyzer in a frame loop of one's own (a screen grabber's BGRA, a camera's gray).
    analyzer = fer_keras.FrameAnalyzer(smooth=1.0)
    for same_pixels in (bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), bgr / 255.0):
        assert [(f.box, f.emotion, f.score) for f in analyzer(same_pixels)] == expected
    assert len(analyzer(gray)) == 2
    with pytest.raises(UserError, match=r"got shape \(4, 4, 2\)"):
        fer_keras.analyze(np.zeros((4, 4, 2), np.uint8))
    # cv2.imread's None for an unreadable file said "got shape ()".
    with pytest.raises(UserError, match=r"^image: expected an image array, got NoneType \(cv2.imread returns None for a file it cannot read\)$"):
        fer_keras.analyze(None)
    with pytest.raises(UserError, match=r"^face crop 1: expected an image array, got int$"):
        fer_keras.EmotionClassifier("fast").predict([bgr, 3])
    with pytest.raises(UserError, match=r"^image: expected numeric pixels, got dtype complex128$"):
        fer_keras.analyze(np.zeros((4, 4), complex))
    broken = bgr / 255.0
    broken[0, :2] = np.nan
    with pytest.raises(UserError, match=r"^image has 6 NaN and 0 infinite pixel values$"):
        fer_keras.analyze(broken)


def test_16_bit_and_float_images_read_as_their_8_bit_pixels(tmp_path):
    """16-bit PNGs and arrays (full range 0-65535), 32-bit and float TIFFs (OpenCV reads neither) as the 8-bit image."""
    import cv2
    from PIL import Image

    from fer_keras.api import load_image
    from fer_keras.data import read_images

    gray = cv2.imread(str(DATA / "two_people.jpg"), cv2.IMREAD_GRAYSCALE)
    eight_bit = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    files = {"deep.png": gray.astype(np.uint16) * 257, "float.tif": gray / np.float32(255), "int32.tif": gray.astype(np.int32) * 1000}
    for name, pixels in files.items():
        Image.fromarray(pixels).save(tmp_path / name)
        # A path, the file opened by Pillow (whose own convert() clipped 16-bit pixels to white) and detect's reader.
        for image in (tmp_path / name, Image.open(tmp_path / name)):
            assert np.abs(load_image(image).astype(int) - eight_bit).max() <= 1, (name, image)
    wide = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert wide.dtype == np.uint16 and np.array_equal(load_image(wide), eight_bit)
    expected = [(f.box, f.emotion) for f in fer_keras.analyze(eight_bit)]
    assert len(expected) == 2 and [(f.box, f.emotion) for f in fer_keras.analyze(wide)] == expected
    # Training reads the same files to the same pixels.
    images, ok, _ = read_images([tmp_path / name for name in files], size=gray.shape[0], channels=1)
    assert ok.all()
    square = cv2.resize(gray, (gray.shape[0],) * 2, interpolation=cv2.INTER_LINEAR)
    for image in images:
        assert np.abs(image[..., 0].astype(int) - square).mean() < 2


def test_a_boolean_mask_reads_as_black_and_white():
    """True is white, as scikit-image reads a mask; it was read as 1 of 255, a black image."""
    from fer_keras.runtime import as_uint8

    assert as_uint8(np.array([[True, False]])).tolist() == [[255, 0]]


def test_labels_outside_ascii_are_drawn_not_turned_into_question_marks():
    """Own classes named in German or Russian: OpenCV's font drew 'überrascht' as '?berrascht'."""
    from fer_keras.annotate import annotate

    def label(emotion):
        frame = np.full((120, 200, 3), 255, np.uint8)
        face = FaceResult((10, 60, 50, 50), 0, 1, emotion, 0.35, {emotion: 0.35}, 0.9)
        return annotate(frame, [face])[:60]

    # 'ü' and 'ú' (both '?' to OpenCV) differ only in the first letter's accent, drawn at the box's left.
    differs = np.flatnonzero((label("überrascht") != label("úberrascht")).any(axis=(0, 2)))
    assert differs.size and differs.max() < 10 + 2 + 10
    assert (label("Радость") < 100).sum() > 50  # drawn in black on the grey box
    # ASCII labels are drawn by OpenCV as before.
    assert (label("happy") < 100).sum() > 50


def test_the_package_lists_its_lazy_api_without_loading_it():
    code = "import sys, fer_keras; print([n for n in dir(fer_keras) if not n.startswith('__')], 'fer_keras.api' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    public = sorted(name for name in fer_keras.__all__ if not name.startswith("__"))
    assert done.stdout == f"{public} False\n"  # the lazy API, not the modules the package imports
    assert fer_keras.FrameAnalyzer is fer_keras.api.FrameAnalyzer


@pytest.mark.parametrize("live", [False, True], ids=["file", "stream"])
def test_a_video_that_opens_but_yields_no_frame_is_an_error(tmp_path, live):
    import cv2

    from fer_keras.sources import Video

    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()  # a header, no frames
    # A stream is read as a live source: this one ended before its first picture, and said nothing before.
    with Video(str(empty), live=live) as video, pytest.raises(UserError, match=r"empty\.avi: no frame could be (decoded|read)"):
        list(video)


def test_a_video_file_served_over_http_is_read_frame_by_frame_and_a_live_one_thinned_by_every(tmp_path):
    import functools
    import http.server
    import threading

    import cv2

    from fer_keras.sources import Video, open_video

    clip = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(12):
        clip.write(np.full((48, 64, 3), 20 * i, np.uint8))
    clip.release()
    (tmp_path / "photo.jpg").write_bytes((DATA / "two_people.jpg").read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Read as a live source, it lost every frame but the newest few while the reader ran ahead.
        with open_video(f"http://127.0.0.1:{server.server_address[1]}/clip.avi") as video:
            frames = list(video)
        assert not video.live and video.frame_count == 12
        assert [f.index for f in frames] == list(range(12)) and frames[3].time_s == pytest.approx(0.3)
        # A photo's URL is an image, to detect and the API alike.
        photo_url = f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
        assert len(fer_keras.analyze(photo_url)) == 2
        with pytest.raises(UserError, match="missing.jpg: cannot read an image from this URL"):
            fer_keras.analyze(f"http://127.0.0.1:{server.server_address[1]}/missing.jpg")
        done = _detect("--source", photo_url, "--out", tmp_path / "out", "--annotate")
        assert done.returncode == 0, done.stderr
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["kind"] == "image" and summary["sources"] == [{"source": photo_url, "kind": "image", "frames": 1, "faces": 2}]
        assert [path.name for path in (tmp_path / "out" / "annotated").iterdir()] == ["photo.jpg"]
    finally:
        server.shutdown()
    # Live, --every N still thins the frames: the newest, but at least N after the last one analyzed.
    # Noisy 320x240 frames, 200 of them, so the reader cannot finish before the loop takes several
    # (12 small ones were all read before the first was taken when the machine was busy).
    noisy = cv2.VideoWriter(str(tmp_path / "noisy.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(200):
        noisy.write(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8))
    noisy.release()
    with Video(str(tmp_path / "noisy.avi"), every=3, live=True) as video:
        indices = [f.index for f in video]
    assert len(indices) >= 3 and all(later - earlier >= 3 for earlier, later in zip(indices, indices[1:]))


def test_annotated_video_keeps_real_time():
    from fer_keras.detect import frames_to_write

    def copies(times, fps):
        written, out = 0, []
        for t in times:
            out.append(frames_to_write(t, fps, written))
            written += out[-1]
        return out

    # A 30 fps camera analyzed at 10 fps: three copies each, so a second of video lasts a second.
    assert copies([0.0, 0.1, 0.2, 0.3], 30) == [1, 3, 3, 3]
    # Analyzed at the camera's rate: one copy each.
    assert copies([i / 30 for i in range(10)], 30) == [1] * 10


def test_file_frames_are_timed_by_the_container_where_it_has_timestamps():
    from fer_keras.sources import presentation_time

    # A variable-rate video (a phone's) pausing 1 s after frame 60 of an average 25 fps.
    assert presentation_time(3003.0, 0.0, 60, 25.0) == pytest.approx(3.003)
    assert presentation_time(1500.0, 500.0, 30, 25.0) == pytest.approx(1.0)  # from the first frame's stamp
    # No usable stamps: the frame number over the average rate.
    assert presentation_time(float("nan"), float("nan"), 50, 25.0) == 2.0
    assert presentation_time(0.0, 0.0, 50, 25.0) == 2.0
    assert presentation_time(0.0, 0.0, 0, 25.0) == 0.0


def test_stopping_a_live_source_early_does_not_crash(tmp_path):
    import cv2

    clip = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(12):
        clip.write(np.full((48, 64, 3), 20 * i, np.uint8))
    clip.release()
    # Closing the capture while the reader thread was inside read() killed the process (SIGSEGV)
    # within 30 rounds: a webcam run stopped by --max-frames or the window's q key.
    code = (
        "from fer_keras.sources import Video\n"
        "for i in range(60):\n"
        f"    with Video({str(tmp_path / 'clip.avi')!r}, live=True, max_frames=1 + i % 2) as video:\n"
        "        for frame in video:\n"
        "            if i % 3 == 0: break\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "name, problem",
    [("absent.jpg", "no such file"), ("folder", "a folder, not an image"), ("clip.mp4", "a video, not an image"), ("fake.jpg", "not a readable image")],
)
def test_a_path_that_is_not_an_image_says_what_it_is(tmp_path, name, problem):
    from fer_keras.errors import UserError

    (tmp_path / "folder").mkdir()
    (tmp_path / "clip.mp4").write_bytes((REPO / "fer_keras" / "resources" / "sample" / "hamilton_clip.mp4").read_bytes()[:4096])
    (tmp_path / "fake.jpg").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError) as raised:
        fer_keras.analyze(tmp_path / name)
    assert str(raised.value) == f"{tmp_path / name}: {problem}"


def test_analyze_from_several_threads_gives_each_its_own_result():
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    photos = [cv2.imread(str(DATA / name)) for name in ("two_people.jpg", "multiface.jpg")]
    expected = [[(f.box, f.emotion, f.score) for f in fer_keras.analyze(photo, model="fast")] for photo in photos]

    def same_as_alone(i):
        return [(f.box, f.emotion, f.score) for f in fer_keras.analyze(photos[i % 2], model="fast")] == expected[i % 2]

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(same_as_alone, range(40)))


def test_video_iterator_gives_per_frame_results():
    frames = []
    for result in fer_keras.analyze_video(CLIP, every=5):
        frames.append(result)
        if len(frames) == 4:
            break
    assert [f.frame for f in frames] == [0, 5, 10, 15]
    assert frames[1].time_s == pytest.approx(5 / 29.97, abs=1e-3)
    from fer_keras.errors import UserError

    with pytest.raises(UserError, match="every=0 must be at least 1"):
        next(fer_keras.analyze_video(CLIP, every=0))
    with pytest.raises(UserError, match=r": a folder, not a video$"):
        next(fer_keras.analyze_video(DATA))


def test_frames_without_faces_write_no_rows(tmp_path):
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    summary = run_detect(DetectOptions(source=str(blank), out=tmp_path / "out", progress=False))
    assert summary["faces"] == 0 and summary["frames_without_faces"] == 1 and summary["note"] == "no faces found"
    assert len(_rows(tmp_path / "out")) == 0


def test_folder_skips_a_bad_file_and_processes_the_rest(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((DATA / "two_people.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "broken.mp4").write_bytes(b"nope")
    (folder / "notes.txt").write_text("hello")
    done = _detect("--source", folder, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["faces"] == 2
    assert sorted(os.path.basename(s["source"]) for s in summary["skipped"]) == ["broken.jpg", "broken.mp4", "notes.txt"]


def test_same_named_media_in_a_folder_get_their_own_outputs(tmp_path):
    folder = tmp_path / "in"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "clip.mp4").write_bytes(CLIP.read_bytes())
    (folder / "x.jpg").write_bytes((DATA / "two_people.jpg").read_bytes())
    (folder / "x.png").write_bytes((DATA / "two_people.jpg").read_bytes())  # a JPEG named .png still reads
    done = _detect("--source", folder, "--out", tmp_path / "out", "--annotate", "--max-frames", 6)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in (tmp_path / "out" / "annotated").iterdir()) == ["a_clip.mp4", "b_clip.mp4", "x.jpg", "x_2.jpg"]
    assert sorted(path.name for path in (tmp_path / "out").glob("timeline_*.png")) == ["timeline_a_clip_track1.png", "timeline_b_clip_track1.png"]


def test_a_still_gif_is_an_image_and_an_animated_one_a_video(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    photo = Image.open(DATA / "two_people.jpg")
    photo.save(folder / "still.gif")
    mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    photo.save(folder / "moving.gif", save_all=True, append_images=[mirrored, photo], duration=[100, 300, 100], loop=0)
    (folder / "fake.gif").write_bytes(b"GIF89a and nothing else")
    done = _detect("--source", folder, "--out", tmp_path / "out", "--annotate")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    kinds = {os.path.basename(s["source"]): (s["kind"], s["frames"], s["faces"]) for s in summary["sources"]}
    assert kinds == {"moving.gif": ("video", 3, 6), "still.gif": ("image", 1, 2)}
    assert [os.path.basename(s["source"]) for s in summary["skipped"]] == ["fake.gif"]
    assert sorted(path.name for path in (tmp_path / "out" / "annotated").iterdir()) == ["moving.mp4", "still.jpg"]
    times = sorted({float(row["time_s"]) for row in _rows(tmp_path / "out") if row["source"].endswith("moving.gif")})
    assert times == pytest.approx([0.0, 0.1, 0.4])  # the GIF's own frame delays, not their average (0.167 s)
    tracks = [t for t in summary["tracks"] if t["source"].endswith("moving.gif")]
    assert {(t["first_time_s"], t["last_time_s"]) for t in tracks} == {(0.0, 0.4)}


def test_annotated_video_can_be_webm_for_browsers(tmp_path):
    import cv2

    run_detect(DetectOptions(source=str(CLIP), out=tmp_path, annotate=True, max_frames=4, progress=False, video_format="webm"))
    written = tmp_path / "annotated" / "hamilton_clip.webm"
    assert written.read_bytes()[:4] == bytes.fromhex("1a45dfa3")  # the EBML header WebM files open with
    video = cv2.VideoCapture(str(written))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 4
    assert sorted(path.name for path in (tmp_path / "annotated").iterdir()) == ["hamilton_clip.webm"]
    with pytest.raises(UserError, match=r"^--video-format must be one of mp4, webm, not 'avi'$"):
        run_detect(DetectOptions(source=str(CLIP), out=tmp_path / "other", annotate=True, video_format="avi"))


def test_heic_and_avif_photos_are_read(tmp_path):
    from PIL import Image

    from fer_keras.sources import register_pillow_formats

    register_pillow_formats()
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("phone.heic", "web.avif"):
        Image.open(DATA / "two_people.jpg").save(folder / name, quality=90)
    (folder / "broken.heic").write_bytes(b"not a heic")
    done = _detect("--source", folder, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {os.path.basename(s["source"]): s["faces"] for s in summary["sources"]} == {"phone.heic": 2, "web.avif": 2}
    assert summary["skipped"] == [{"source": str(folder / "broken.heic"), "error": f"{folder / 'broken.heic'}: not a readable image"}]


def test_outputs_are_utf8_whatever_the_locale(tmp_path):
    """Files named in any script are written as UTF-8, not in the locale's encoding (Windows' cp1252 cannot hold them)."""
    folder = tmp_path / "фото"
    folder.mkdir()
    (folder / "写真.jpg").write_bytes((DATA / "two_people.jpg").read_bytes())
    config = tmp_path / "données.yaml"
    config.write_text(f"data:\n  data_dir: {folder}\n", encoding="utf-8")
    code = (
        "import sys; from fer_keras.config import load_config; from fer_keras.detect import main\n"
        "assert load_config(sys.argv[1]).data.data_dir == sys.argv[2]\n"
        "sys.exit(main(['--source', sys.argv[2], '--out', sys.argv[3], '--no-progress']))\n"
    )
    # Python's EncodingWarning flags every open() that would use the locale's encoding.
    done = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", "-c", code, str(config), str(folder), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if "EncodingWarning" in line and "fer_keras" in line]
    rows = (tmp_path / "out" / "detections.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and all("фото/写真.jpg" in row for row in rows[1:])


def test_a_folder_run_does_not_read_its_own_out_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((DATA / "two_people.jpg").read_bytes())
    for _ in range(2):
        done = _detect("--source", folder, "--out", folder / "results", "--annotate")
        assert done.returncode == 0, done.stderr
        summary = json.loads((folder / "results" / "summary.json").read_text())
        assert [os.path.basename(s["source"]) for s in summary["sources"]] == ["a.jpg"] and summary["skipped"] == []


def test_a_source_is_known_by_its_content_when_its_extension_says_nothing(tmp_path):
    """A download saved without an extension (a photo, a video, a HEIC, an animated GIF), and a camcorder's .mts."""
    from PIL import Image

    from fer_keras.sources import classify_source, register_pillow_formats

    register_pillow_formats()

    photo = Image.open(DATA / "two_people.jpg")
    (tmp_path / "photo").write_bytes((DATA / "two_people.jpg").read_bytes())
    (tmp_path / "clip").write_bytes(CLIP.read_bytes())
    photo.save(tmp_path / "phone", format="HEIF")
    photo.save(tmp_path / "moving", format="GIF", save_all=True, append_images=[photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    (tmp_path / "camcorder.mts").write_bytes(CLIP.read_bytes())
    kinds = {name: classify_source(str(tmp_path / name)) for name in ("photo", "clip", "phone", "moving", "camcorder.mts")}
    assert kinds == {"photo": "image", "clip": "video", "phone": "image", "moving": "video", "camcorder.mts": "video"}
    done = _detect("--source", tmp_path / "clip", "--out", tmp_path / "out", "--max-frames", 3)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kind"] == "video" and summary["frames"] == 3


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.mp4", "missing.mp4: no such file or folder"),
        ("notes.txt", "notes.txt: not an image or video (extension .txt; OpenCV and Pillow cannot read it)"),
        ("fake.mp4", "fake.mp4: cannot open video (missing, unreadable or not a video)"),
        ("fake.jpg", "fake.jpg: not a readable image"),
        ("fake.gif", "fake.gif: not a readable image"),  # OpenCV logs its GIF reader's failure at ERROR level
        ("fake.heic", "fake.heic: not a readable image"),
        ("9", "9: cannot open camera (no such camera, no permission to use it, or another program holds it)"),
        ("/dev/null", "/dev/null: cannot open camera"),  # a device file is a camera, as /dev/video0
        ("rtsp://127.0.0.1:9/live", "rtsp://127.0.0.1:9/live: cannot open stream (unreachable, not found, or not a video stream)"),
    ],
)
def test_bad_sources_exit_2_with_one_line(tmp_path, source, message):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "fake.jpg").write_bytes(b"\x00" * 100)
    (tmp_path / "fake.gif").write_bytes(b"GIF89a")
    (tmp_path / "fake.heic").write_bytes(b"\x00" * 100)
    path = source if source.isdigit() or source.startswith(("/dev/", "rtsp:")) else tmp_path / source
    done = _detect("--source", path, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [line for line in done.stderr.strip().splitlines() if line.startswith("error:")]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("out/*.tmp"))


def test_a_failed_run_leaves_the_previous_results_in_out_as_they_were(tmp_path):
    out = tmp_path / "out"
    assert _detect("--source", DATA / "two_people.jpg", "--out", out).returncode == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    (tmp_path / "fake.jpg").write_bytes(b"\x00" * 100)
    done = _detect("--source", tmp_path / "fake.jpg", "--out", out)
    assert done.returncode == 2 and "fake.jpg: not a readable image" in done.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_out_naming_a_file_is_one_error_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    done = _detect("--source", DATA / "two_people.jpg", "--out", taken)
    assert done.returncode == 2
    assert done.stderr == f"error: {taken}: a file is there, where an output folder should go\n"
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--every", "0", "0 must be at least 1"),
        ("--max-frames", "-1", "-1 must be at least 0"),
        ("--max-faces", "-1", "-1 must be at least 0"),
        ("--min-face", "-1", "-1 must be at least 0"),
        ("--margin", "-1", "-1.0 must be in [0, 1.0]"),
        ("--margin", "50", "50.0 must be in [0, 1.0]"),
        ("--threads", "0", "0 must be at least 1"),
        ("--detect-size", "-5", "-5 must be at least 0"),
        ("--detect-size", "big", "invalid int value: 'big'"),
        ("--smooth", "0", "0.0 must be in (0, 1]"),
        ("--balance", "1.5", "1.5 must be in [0, 1]"),
    ],
)
def test_out_of_range_options_are_one_error_line(flag, value, message, capsys):
    from fer_keras.detect import main

    assert main(["--source", str(DATA / "two_people.jpg"), "--no-progress", flag, value]) == 2
    assert capsys.readouterr().err == f"error: python -m fer_keras.detect: argument {flag}: {message} (see --help)\n"



@pytest.mark.parametrize(
    "args, message",
    [
        (["a.jpg", "--source", "b.jpg"], "two sources given: a.jpg and --source b.jpg"),
        ([], "a source is required: a camera index, video, image, folder or stream URL, first or as --source"),
    ],
)
def test_a_source_given_twice_or_not_at_all_is_one_error_line(args, message, capsys):
    from fer_keras.detect import main

    assert main([*args, "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: python -m fer_keras.detect: {message} (see --help)\n"


def test_a_photo_named_first_lists_each_face_with_its_confidence_and_box():
    done = _detect(DATA / "multiface.jpg")  # the source first, without --source, and no --out: the console is the output
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 frame, 6 faces, ") and lines[0].endswith(" FPS (blazeface)")
    expected = [f"  multiface.jpg face {n}: {face.emotion} {face.score:.0%}, box x={face.box[0]} y={face.box[1]} {face.box[2]}x{face.box[3]}"
                for n, face in enumerate(fer_keras.analyze(DATA / "multiface.jpg"), start=1)]
    assert lines[1:] == expected



def test_json_streams_the_faces_on_stdout_as_detections_jsonl_records_them(tmp_path):
    done = _detect(CLIP, "--out", tmp_path, "--json", "--max-frames", 5)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # stdout holds JSON lines only; the totals went to stderr
    assert lines and lines == (tmp_path / "detections.jsonl").read_text().splitlines()
    assert {json.loads(line)["frame"] for line in lines} <= set(range(5))
    assert done.stderr.splitlines()[-1].startswith("5 frames, ")

def test_console_lines_name_tracks_by_time_and_count_what_they_leave_out():
    from fer_keras.detect import console_lines

    still = {"source": "/p/a.jpg", "track_id": 1, "frames": 1, "dominant_emotion": "happy", "time_share": {"happy": 1.0},
             "box": [4, 5, 60, 61], "score": 0.8349}
    video = {"source": "/p/clip.mp4", "track_id": 3, "frames": 8, "first_time_s": 0.5, "last_time_s": 2.25,
             "dominant_emotion": "sad", "time_share": {"sad": 0.75, "neutral": 0.25}}
    summary = {"frames": 9, "faces": 9, "fps": 12.5, "detector": "yunet", "tracks": [still, video, still]}
    assert console_lines(summary, limit=2) == [
        "9 frames, 9 faces, 12.5 FPS (yunet)",
        "  a.jpg face 1: happy 83%, box x=4 y=5 60x61",
        "  clip.mp4 track 3: sad in 75% of 8 frames, 0.5-2.2 s",
        "  ... and 1 more (--out DIR writes every face)",
    ]
    assert console_lines({**summary, "frames": 1, "faces": 1, "tracks": [still]}, limit=2)[0] == "1 frame, 1 face, 12.5 FPS (yunet)"
    assert console_lines({**summary, "frames": 0, "faces": 0, "fps": None, "tracks": []}) == ["0 frames, 0 faces (yunet)"]


def test_the_api_names_its_keywords_in_range_errors():
    from fer_keras.api import FrameAnalyzer

    with pytest.raises(UserError, match=r"^max_faces=-1 must be at least 0$"):
        FrameAnalyzer(max_faces=-1)
    with pytest.raises(UserError, match=r"^smooth=0 must be in \(0, 1\] \(1 = no smoothing\)$"):
        FrameAnalyzer(smooth=0)


def test_bad_model_exits_2(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    done = _detect("--source", DATA / "two_people.jpg", "--model", bad)
    assert done.returncode == 2 and "bad.tflite: not a TFLite model" in done.stderr


def test_inference_path_imports_no_tensorflow():
    code = (
        "import sys, fer_keras, fer_keras.detect, fer_keras.serve, multipart, waitress.server\n"
        f"fer_keras.analyze(r'{DATA / 'two_people.jpg'}')\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), 'TensorFlow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_moving_face_keeps_one_track_id_through_the_pipeline(tmp_path):
    import cv2

    photo = cv2.imread(str(DATA / "two_people.jpg"))
    (face,) = [f for f in fer_keras.analyze(photo) if f.index == 0]
    x, y, w, h = face.box
    patch = photo[max(0, y - h // 2) : y + h + h // 2, max(0, x - w // 2) : x + w + w // 2]
    clip = tmp_path / "moving.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
    for frame_index in range(20):
        frame = np.full((360, 640, 3), 90, np.uint8)
        left = 40 + 12 * frame_index
        frame[60 : 60 + patch.shape[0], left : left + patch.shape[1]] = patch[: 300, : 640 - left]
        writer.write(frame)
    writer.release()
    summary = run_detect(DetectOptions(source=str(clip), out=tmp_path / "out", progress=False))
    rows = _rows(tmp_path / "out")
    assert summary["frames"] == 20 and len(rows) >= 18
    assert {row["track_id"] for row in rows} == {"1"}
    xs = [int(row["x"]) for row in rows]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 150


def test_a_face_as_json_is_rounded_and_keeps_the_label_order():
    face = FaceResult((12, 34, 56, 56), 0, 3, "happy", 0.912345, {"neutral": 0.0876549, "happy": 0.912345}, 0.99)
    assert face.to_json() == {"track_id": 3, "box": [12, 34, 56, 56], "emotion": "happy", "score": 0.9123,
                              "probabilities": {"neutral": 0.0877, "happy": 0.9123}}
    assert json.loads(face_json("clip.mp4", 7, 0.23456, face)) == {"source": "clip.mp4", "frame": 7, "time_s": 0.235, **face.to_json()}
