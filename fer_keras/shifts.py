"""Everyday camera and framing shifts applied to face crops, for ``fer_keras.benchmark robustness``.

FER2013 and FERPlus faces are centred, upright and mostly well lit; a phone's faces are not. Each
shift stands for one thing a deployed model meets (defocus, sensor noise, dark rooms, compressed
video, distant faces, head tilt, a loose detector box, masks, sunglasses) at one fixed, moderate
strength. Geometric sizes are fractions of the crop, so a shift means the same at any resolution.
Every shift is deterministic given its random generator, and returns a new uint8 batch. The
per-face JPEG and low-resolution steps are shared with training's camera degradations
(``fer_keras.augment``), which draw their strength per face.

Each is one OpenCV or NumPy call: corruption suites such as ImageNet-C (``imagecorruptions``) are
tuned for 224-pixel colour photos and would add a dependency for what these lines do on 48-pixel
gray faces.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _per_face(images: np.ndarray, change: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Applies ``change`` to each (H, W) or (H, W, C) face of a batch (N, H, W, C), keeping the batch shape."""
    return np.stack([change(np.ascontiguousarray(face)).reshape(face.shape) for face in images])


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def blur(sigma_fraction: float) -> Shift:
    """Gaussian defocus with standard deviation ``sigma_fraction`` of the crop width."""

    def shift(images, rng):
        sigma = sigma_fraction * images.shape[2]
        return _per_face(images, lambda face: cv2.GaussianBlur(face, (0, 0), sigma))

    return shift


def noise(sigma: float) -> Shift:
    """Additive Gaussian sensor noise of ``sigma`` grey levels."""

    def shift(images, rng):
        return _clip(images + rng.normal(0.0, sigma, images.shape))

    return shift


def brightness(factor: float) -> Shift:
    """Exposure: every pixel times ``factor`` (below 1: a dark room)."""

    def shift(images, rng):
        return _clip(images * factor)

    return shift


def contrast(factor: float) -> Shift:
    """Contrast around each face's mean grey level, scaled by ``factor`` (below 1: haze, flat light)."""

    def shift(images, rng):
        mean = images.mean(axis=(1, 2, 3), keepdims=True)
        return _clip(mean + (images - mean) * factor)

    return shift


def jpeg_round_trip(face: np.ndarray, quality: int) -> np.ndarray:
    """One uint8 face (H, W) or (H, W, C) encoded as JPEG at ``quality`` (0-100) and decoded; gray faces come back (H, W)."""
    _, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def shrink_and_enlarge(face: np.ndarray, fraction: float) -> np.ndarray:
    """One face shrunk to ``fraction`` of its size (area averaging) and enlarged back (bilinear); gray faces come back (H, W)."""
    height, width = face.shape[:2]
    small = cv2.resize(face, (max(1, round(width * fraction)), max(1, round(height * fraction))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(quality: int) -> Shift:
    """A JPEG round trip at ``quality`` (0-100), as in compressed video calls."""

    def shift(images, rng):
        return _per_face(images, lambda face: jpeg_round_trip(face, quality))

    return shift


def low_resolution(fraction: float) -> Shift:
    """A distant face: shrunk to ``fraction`` of its size and enlarged back (``shrink_and_enlarge``)."""

    def shift(images, rng):
        return _per_face(images, lambda face: shrink_and_enlarge(face, fraction))

    return shift


def _warp(face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = face.shape[:2]
    return cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def rotation(degrees: float) -> Shift:
    """Head tilt: each face turned by ``degrees`` about its centre, clockwise or anticlockwise at random."""

    def shift(images, rng):
        height, width = images.shape[1:3]
        signs = rng.choice([-1.0, 1.0], size=len(images))
        return np.stack([
            _warp(np.ascontiguousarray(face), cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), sign * degrees, 1.0)).reshape(face.shape)
            for face, sign in zip(images, signs)
        ])

    return shift


def offset(fraction: float) -> Shift:
    """A loose detector box: each face moved by ``fraction`` of its size up, down, left or right at random."""

    def shift(images, rng):
        height, width = images.shape[1:3]
        directions = np.array([(0, -1), (0, 1), (-1, 0), (1, 0)], dtype=np.float64)
        moves = directions[rng.integers(0, 4, size=len(images))] * (fraction * width, fraction * height)
        return np.stack([
            _warp(np.ascontiguousarray(face), np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])).reshape(face.shape)
            for face, (dx, dy) in zip(images, moves)
        ])

    return shift


def occlusion(top: float, bottom: float, grey: int) -> Shift:
    """A band across every face from ``top`` to ``bottom`` (fractions of its height), filled with ``grey``."""

    def shift(images, rng):
        height = images.shape[1]
        covered = images.copy()
        covered[:, round(top * height) : round(bottom * height)] = grey
        return covered

    return shift


# The benchmark's shifts, in report order: name → shift. "clean" is the reference row.
SHIFTS: dict[str, Shift] = {
    "clean": lambda images, rng: images.copy(),
    "blur σ=2% of width": blur(0.02),
    "blur σ=4% of width": blur(0.04),
    "noise σ=15": noise(15.0),
    "dark ×0.35": brightness(0.35),
    "low contrast ×0.5": contrast(0.5),
    "JPEG quality 15": jpeg(15),
    "low resolution ⅓": low_resolution(1 / 3),
    "rotation ±20°": rotation(20.0),
    "offset 12%": offset(0.12),
    # FER2013's mean face has its eyes at about 37% of the height and its nose tip at about 55%.
    "mask: lower half grey": occlusion(0.5, 1.0, 128),
    "sunglasses: band 25–48% black": occlusion(0.25, 0.48, 0),
}


def apply_shift(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The batch (N, H, W, C) of uint8 faces under the shift ``name`` of ``SHIFTS``, reproducibly for ``seed``."""
    return SHIFTS[name](images, np.random.default_rng(seed))
