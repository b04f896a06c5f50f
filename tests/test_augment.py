"""BatchMixer: MixUp and CutMix shared by both trainers, checked on faces of one flat grey each (conftest.flat_faces)."""

import dataclasses

import numpy as np
import pytest

from conftest import flat_faces, pixel_shares

from fer_keras.augment import BatchMixer
from fer_keras.config import AugmentConfig, ExperimentConfig
from fer_keras.errors import UserError

NO_MIXING = AugmentConfig(mixup=0.0, cutmix=0.0)


def _own_share(images: np.ndarray) -> np.ndarray:
    """The share of each face's pixels that are still its own grey level."""
    return pixel_shares(images, len(images)).diagonal()


def test_no_mixing_returns_the_batch_unchanged():
    images, targets = flat_faces(8)
    mixed_images, mixed_targets = BatchMixer(NO_MIXING, 0)(images, targets)
    np.testing.assert_array_equal(mixed_images, images)
    np.testing.assert_array_equal(mixed_targets, targets)


def test_cutmix_pastes_one_rectangle_of_the_partner_and_mixes_targets_by_the_pixels_kept():
    images, targets = flat_faces(64)
    mixed_images, mixed_targets = BatchMixer(dataclasses.replace(NO_MIXING, cutmix=1.0), 3)(images, targets)
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-6)
    for i in range(len(images)):
        pasted = mixed_images[i, ..., 0] != i
        partner_levels = np.unique(mixed_images[i][pasted[..., None]])
        assert len(partner_levels) <= 1  # one partner
        np.testing.assert_allclose(mixed_targets[i, i], 1.0 - pasted.mean(), atol=1e-6)
        if partner_levels.size:
            np.testing.assert_allclose(mixed_targets[i, int(partner_levels[0])], pasted.mean(), atol=1e-6)
            rows, columns = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
            assert pasted.sum() == len(rows) * len(columns)  # a filled rectangle
            assert rows[-1] - rows[0] + 1 == len(rows) and columns[-1] - columns[0] + 1 == len(columns)


def test_cutmix_keeps_half_of_each_face_on_average_at_alpha_one():
    images, targets = flat_faces(256)
    mixer = BatchMixer(dataclasses.replace(NO_MIXING, cutmix=1.0), 0)
    kept = np.concatenate([mixer(images, targets)[1].diagonal() for _ in range(8)])
    # Beta(1, 1) is uniform: mean 0.5; faces drawn as their own partner keep all (1 in 256).
    assert abs(kept.mean() - 0.5) < 0.03
    assert kept.min() < 0.1 and kept.max() > 0.9


def test_mixup_blends_whole_faces_in_the_shares_of_their_targets():
    images, targets = flat_faces(64)
    mixed_images, mixed_targets = BatchMixer(dataclasses.replace(NO_MIXING, mixup=0.4), 5)(images, targets)
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-6)
    # Each face stays flat, at the grey level its target's shares predict.
    np.testing.assert_allclose(mixed_images.std(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], mixed_targets @ np.arange(64, dtype=np.float32), atol=1e-3)


def test_with_both_each_batch_takes_one_of_them_and_the_draws_are_seeded():
    images, targets = flat_faces(64)
    augment = dataclasses.replace(NO_MIXING, mixup=0.4, cutmix=1.0)
    mixer, again = BatchMixer(augment, 11), BatchMixer(augment, 11)
    kinds = []
    for _ in range(20):
        mixed_images, mixed_targets = mixer(images, targets)
        np.testing.assert_array_equal(mixed_images, again(images, targets)[0])
        own = _own_share(mixed_images)
        if np.allclose(own, mixed_targets.diagonal(), atol=1e-6):
            kinds.append("cutmix")
        else:  # MixUp leaves no face with a pixel of its own level unless it drew itself
            assert (own[mixed_targets.diagonal() < 0.999] == 0).all()
            kinds.append("mixup")
    assert 4 <= kinds.count("cutmix") <= 16


@pytest.mark.parametrize("key", ["mixup", "cutmix"])
def test_negative_mixing_alpha_is_refused(key):
    config = ExperimentConfig()
    setattr(config.data.augment, key, -0.5)
    with pytest.raises(UserError, match=f"data.augment.{key}=-0.5 must be at least 0"):
        config.validate()
