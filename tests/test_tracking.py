import numpy as np
import pytest

from conftest import REPO
from fer_keras.tracking import IoUTracker, iou, smooth


def test_iou_known_values():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_smoothing_arithmetic():
    np.testing.assert_allclose(smooth(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25), [0.75, 0.25])
    np.testing.assert_allclose(smooth(None, np.array([0.2, 0.8]), 0.25), [0.2, 0.8])
    np.testing.assert_allclose(smooth(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 1.0), [0.0, 1.0])


def test_ids_stay_with_moving_faces_and_new_faces_get_new_ids():
    tracker = IoUTracker(min_iou=0.3, max_age=2)
    ids = []
    for frame in range(10):
        boxes = [(10 + 4 * frame, 50, 40, 40), (300 - 3 * frame, 60, 50, 50)]
        if frame >= 5:
            boxes.append((150, 200, 30, 30))
        ids.append(tracker.assign(boxes))
    assert all(frame_ids[:2] == [1, 2] for frame_ids in ids)
    assert all(frame_ids[2] == 3 for frame_ids in ids[5:])


def test_order_of_boxes_does_not_change_ids():
    tracker = IoUTracker()
    assert tracker.assign([(0, 0, 40, 40), (100, 0, 40, 40)]) == [1, 2]
    assert tracker.assign([(102, 0, 40, 40), (2, 0, 40, 40)]) == [2, 1]


def test_a_face_gone_longer_than_max_age_analyzed_frames_returns_with_a_new_id():
    tracker = IoUTracker(max_age=2)
    assert tracker.assign([(0, 0, 40, 40)]) == [1]
    assert tracker.assign([]) == []
    assert tracker.assign([(0, 0, 40, 40)]) == [1]  # missing from one analyzed frame: still alive
    assert tracker.assign([]) == tracker.assign([]) == []
    assert tracker.assign([(0, 0, 40, 40)]) == [2]  # missing from two, then back 3 after its last match
    assert [t.track_id for t in tracker.all_tracks()] == [1, 2]


def test_faces_keep_their_ids_when_only_every_20th_frame_is_analyzed():
    """detect --every 20 gave every face a new track in every analyzed frame (max_age counted frame numbers)."""
    import cv2

    import fer_keras

    photo = cv2.imread(str(REPO / "tests" / "data" / "multiface.jpg"))
    analyzer = fer_keras.FrameAnalyzer()
    ids = [sorted(face.track_id for face in analyzer(np.roll(photo, 2 * step, axis=1), 20 * step)) for step in range(4)]
    assert ids == [[1, 2, 3, 4, 5, 6]] * 4  # no new ids: each face stays on its track


def test_per_track_probabilities_are_smoothed():
    tracker = IoUTracker(alpha=0.5)
    (track,) = tracker.assign([(0, 0, 10, 10)])
    tracker.update_probabilities(track, np.array([1.0, 0.0]))
    np.testing.assert_allclose(tracker.update_probabilities(track, np.array([0.0, 1.0])), [0.5, 0.5])
