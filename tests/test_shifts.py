"""The camera and framing shifts of the robustness benchmark, on known images."""

import numpy as np
import pytest

from fer_keras.shifts import SHIFTS, apply_shift


def _faces(n=4, size=48, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(3, 48, 48, 1), (2, 64, 64, 3)])
def test_every_shift_keeps_the_batch_shape_and_dtype_and_is_reproducible(shape):
    faces = _faces(*shape[:1], shape[1], shape[3])
    for name in SHIFTS:
        out = apply_shift(name, faces, seed=1)
        assert out.shape == faces.shape and out.dtype == np.uint8, name
        assert np.array_equal(out, apply_shift(name, faces, seed=1)), name
    assert np.array_equal(apply_shift("clean", faces), faces)


def test_photometric_shifts_have_their_known_effect():
    flat = np.full((2, 48, 48, 1), 200, dtype=np.uint8)
    assert (apply_shift("dark ×0.35", flat) == 70).all()
    ramp = np.tile(np.linspace(0, 200, 48).round().astype(np.uint8), (1, 48, 1))[..., None]  # mean 100
    low = apply_shift("low contrast ×0.5", ramp)
    assert low.min() == 50 and low.max() == 150
    noisy = apply_shift("noise σ=15", np.full((4, 48, 48, 1), 128, dtype=np.uint8)).astype(float)
    assert noisy.std() == pytest.approx(15, abs=0.5) and noisy.mean() == pytest.approx(128, abs=0.5)
    checkerboard = (np.indices((48, 48)).sum(axis=0) % 2 * 255).astype(np.uint8)[None, ..., None]
    for name in ("blur σ=2% of width", "blur σ=4% of width", "low resolution ⅓"):
        assert apply_shift(name, checkerboard).std() < 0.25 * checkerboard.std(), name
    smooth = np.tile(np.linspace(40, 200, 48).round().astype(np.uint8), (1, 48, 1))[..., None]
    assert np.abs(apply_shift("JPEG quality 15", smooth).astype(int) - smooth).mean() < 5


def test_occlusions_cover_their_bands_only():
    faces = _faces(2)
    masked = apply_shift("mask: lower half grey", faces)
    assert (masked[:, 24:] == 128).all() and np.array_equal(masked[:, :24], faces[:, :24])
    glasses = apply_shift("sunglasses: band 25–48% black", faces)
    assert (glasses[:, 12:23] == 0).all() and np.array_equal(glasses[:, 23:], faces[:, 23:]) and np.array_equal(glasses[:, :12], faces[:, :12])


def test_offset_moves_each_face_by_twelve_percent_in_one_of_four_directions():
    dot = np.zeros((8, 50, 50, 1), dtype=np.uint8)
    dot[:, 25, 25] = 255
    moved = apply_shift("offset 12%", dot, seed=3)
    for face in moved[..., 0]:
        row, col = np.unravel_index(face.argmax(), face.shape)
        assert sorted((abs(row - 25), abs(col - 25))) == [0, 6]  # 12% of 50
    directions = {tuple(np.sign(np.subtract(np.unravel_index(f.argmax(), f.shape), 25))) for f in moved[..., 0]}
    assert len(directions) > 1
