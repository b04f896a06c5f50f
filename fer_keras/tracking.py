"""IoU tracking of face boxes across frames, and per-track exponential smoothing of probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def smooth(previous: np.ndarray | None, current: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing: ``alpha * current + (1 - alpha) * previous``; alpha 1 (or no history) returns ``current``."""
    if previous is None or alpha >= 1.0:
        return current
    return alpha * current + (1.0 - alpha) * previous


@dataclass
class Track:
    """One face followed across frames."""

    track_id: int
    box: Box
    last_step: int  # the analyzed frame (count of assign calls) it was last matched in
    probabilities: np.ndarray | None = None
    history: list[tuple[int, str]] = field(default_factory=list)  # (frame, emotion) of every update


class IoUTracker:
    """Matches each frame's boxes to existing tracks by IoU (optimal assignment), giving stable ids.

    Args:
        min_iou: Least IoU for a box to continue a track.
        max_age: Analyzed frames a track survives without a match. Counted in analyzed frames, not
            frame numbers: analyzing every 20th frame (or a live source's newest) would otherwise
            end every track before the next frame analyzed.
        alpha: Smoothing weight of the newest probabilities (1 = no smoothing).
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 15, alpha: float = 1.0):
        self.min_iou, self.max_age, self.alpha = min_iou, max_age, alpha
        self.tracks: dict[int, Track] = {}
        self.finished: list[Track] = []
        self._next_id = 1
        self._step = -1  # analyzed frames so far, less one

    def assign(self, boxes: list[Box]) -> list[int]:
        """Track ids for one analyzed frame's (x, y, w, h) boxes (new ids for unmatched boxes); drops tracks unseen for ``max_age`` analyzed frames."""
        self._step += 1
        live = [t for t in self.tracks.values() if self._step - t.last_step <= self.max_age]
        for track in [t for t in self.tracks.values() if t not in live]:
            self.finished.append(self.tracks.pop(track.track_id))
        ids: list[int | None] = [None] * len(boxes)
        if live and boxes:
            overlap = np.array([[iou(t.box, b) for b in boxes] for t in live])
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols):
                if overlap[r, c] >= self.min_iou:
                    ids[c] = live[r].track_id
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next_id
                self.tracks[self._next_id] = Track(self._next_id, box, self._step)
                self._next_id += 1
            track = self.tracks[ids[i]]
            track.box, track.last_step = box, self._step
        return ids  # type: ignore[return-value]

    def update_probabilities(self, track_id: int, probabilities: np.ndarray) -> np.ndarray:
        """Smooths a track's probabilities with this frame's and returns the smoothed vector."""
        track = self.tracks[track_id]
        track.probabilities = smooth(track.probabilities, probabilities, self.alpha)
        return track.probabilities

    def all_tracks(self) -> list[Track]:
        """Every track seen so far, finished or live, by id."""
        return sorted(self.finished + list(self.tracks.values()), key=lambda t: t.track_id)
