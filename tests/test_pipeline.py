import numpy as np
import pytest

from conftest import flat_faces, pixel_shares

from fer_keras.config import AugmentConfig
from fer_keras.data import Split
from fer_keras.augment import HostAugmenter
from fer_keras.data import balanced_class_weights
from fer_keras.pipeline import make_dataset


def _split(n=20):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 48, 48, 1), dtype=np.uint8)
    targets = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    return Split(images, targets, [f"f{i}" for i in range(n)])


def test_evaluation_pipeline_passes_pixels_through_unchanged():
    split = _split()
    x, y = next(iter(make_dataset(split, batch_size=8, augment=AugmentConfig())))
    np.testing.assert_array_equal(x.numpy(), split.images[:8].astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), split.targets[:8])


def test_training_pipeline_augments_within_pixel_range_and_emits_sample_weights():
    split = _split()
    weights = balanced_class_weights(split.labels, 3)
    augment = AugmentConfig(erasing=0.5, mixup=0.2)
    x, y, w = next(iter(make_dataset(split, batch_size=8, training=True, augment=augment, class_weights=weights)))
    assert x.shape == (8, 48, 48, 1)
    assert float(x.numpy().min()) >= 0 and float(x.numpy().max()) <= 255
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1, atol=1e-5)  # mixup keeps distributions
    assert w.shape == (8,)


def test_balanced_class_weights_known_values():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    # n / (k * count): 4 / (2 * 3) and 4 / (2 * 1); the absent class gets 0.
    np.testing.assert_allclose(weights, [2 / 3, 2.0, 0.0], rtol=1e-6)


def test_training_pipeline_warps_each_face_once_with_the_host_augmenter():
    """The CPU pipeline gives exactly HostAugmenter's faces (one warp each, as the accelerator trainer gets)."""
    n = 8
    images = np.random.default_rng(0).integers(0, 256, size=(n, 48, 48, 1), dtype=np.uint8)
    split = Split(images, np.eye(n, dtype=np.float32), [f"f{i}" for i in range(n)])
    augment = AugmentConfig(erasing=0.5)
    x, y = next(iter(make_dataset(split, batch_size=n, training=True, augment=augment, seed=5)))
    order = y.numpy().argmax(axis=1)  # the shuffle's order: each image has its own one-hot target
    np.testing.assert_array_equal(x.numpy(), HostAugmenter(augment, 5)(images[order]))


def test_training_pipeline_cutmix_targets_match_the_share_of_each_face_in_the_pixels():
    n = 16
    faces, targets = flat_faces(n, step=16)
    split = Split(faces.astype(np.uint8), targets, [f"f{i}" for i in range(n)])
    augment = AugmentConfig(flip=False, rotation=0, translation=0, zoom=0, brightness=0, contrast=0, cutmix=1.0)
    x, y = next(iter(make_dataset(split, batch_size=n, training=True, augment=augment, seed=2)))
    x, y = x.numpy(), y.numpy()
    np.testing.assert_allclose(y, pixel_shares(x, n, step=16), atol=1e-6)
    assert (y.max(axis=1) < 1.0).sum() >= n // 2  # most faces mixed


@pytest.mark.parametrize("flags, expected", [("flags : avx512f avx512_bf16 fma", True), ("flags : avx2 fma", False)])
def test_bf16_detection_reads_cpu_flags(tmp_path, flags, expected):
    from fer_keras.hardware import cpu_supports_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags + "\n")
    assert cpu_supports_bf16(cpuinfo) is expected
    assert cpu_supports_bf16(tmp_path / "absent") is False
