"""Training-time augmentation in NumPy and OpenCV, for both trainers.

The tf.data pipeline (CPU training) calls it on each batch, and the array trainer on Keras's
JAX backend (accelerators) in its worker threads, so both trainers see the same faces and the
same mixed batches. Neither puts it in the exported model.
"""

from __future__ import annotations

import numpy as np

from fer_keras.config import AugmentConfig


class HostAugmenter:
    """Random flips, one affine warp (rotation, translation and zoom together), camera degradations, face wear, brightness, contrast and erasing.

    Rotation, translation and zoom are composed into a single warp, so each face is resampled
    once; Keras's separate random layers resampled it three times and blurred it. On the host,
    it is also cheap where Keras's affine layers were slow (under JAX on an H100 a VGG step took
    3.5 ms without them and over 350 ms with them): 128 images at 48x48 take 2.6 ms on the 2-core
    dev machine, overlapped with the training step.
    Rotation is a fraction of a full turn, translation a fraction of the size, zoom a scale
    change, brightness a fraction of the 0-255 range, and contrast a factor around each image's
    mean. Erasing fills one rectangle with noise. The camera degradations (low resolution, blur,
    noise, JPEG) each hit a face with their own probability, at a strength drawn per face. Face
    wear (occlusion) covers a face with a mask or sunglasses, before the lighting changes that
    would fall on them too.

    Args:
        augment: Which augmentations to apply and how strongly.
        seed: Seed of the random draws.
    """

    def __init__(self, augment: AugmentConfig, seed: int):
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Augments a batch (N, H, W, C) of 0-255 pixels; returns float32 in 0-255."""
        import cv2

        a, rng = self.augment, self.rng
        n, height, width, channels = images.shape
        out = images.astype(np.float32)
        if a.flip:
            flipped = rng.random(n) < 0.5
            out[flipped] = out[flipped, :, ::-1]
        if a.rotation > 0 or a.translation > 0 or a.zoom > 0:
            angles = rng.uniform(-a.rotation, a.rotation, n) * 360.0
            scales = 1.0 + rng.uniform(-a.zoom, a.zoom, n)
            shifts = rng.uniform(-a.translation, a.translation, (n, 2)) * (width, height)
            for i in range(n):
                matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), angles[i], scales[i])
                matrix[:, 2] += shifts[i]
                warped = cv2.warpAffine(out[i], matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                out[i] = warped.reshape(height, width, channels)
        out = self._cover(self._degrade(out))
        if a.brightness > 0:
            out += rng.uniform(-a.brightness, a.brightness, (n, 1, 1, 1)).astype(np.float32) * 255.0
        if a.contrast > 0:
            means = out.mean(axis=(1, 2, 3), keepdims=True)
            out = (out - means) * rng.uniform(1 - a.contrast, 1 + a.contrast, (n, 1, 1, 1)).astype(np.float32) + means
        if a.erasing > 0:
            for i in np.flatnonzero(rng.random(n) < a.erasing):
                h, w = (rng.uniform(0.1, 0.4, 2) * (height, width)).astype(int) + 1
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                out[i, top : top + h, left : left + w] = rng.uniform(0, 255, (h, w, channels))
        return np.clip(out, 0.0, 255.0)

    def _degrade(self, out: np.ndarray) -> np.ndarray:
        """Camera degradations in a camera's order: distance (low resolution), optics (blur), sensor (noise), codec (JPEG)."""
        import cv2

        from fer_keras.shifts import jpeg_round_trip, shrink_and_enlarge

        a, rng = self.augment, self.rng
        n, height, width, channels = out.shape
        hit = self._hit
        for i in np.flatnonzero(hit(a.low_resolution, n)):
            out[i] = shrink_and_enlarge(out[i], rng.uniform(0.25, 0.75)).reshape(height, width, channels)
        for i in np.flatnonzero(hit(a.blur, n)):
            out[i] = cv2.GaussianBlur(out[i], (0, 0), rng.uniform(0.005, 0.05) * width).reshape(height, width, channels)
        noisy = hit(a.noise, n)
        if noisy.any():
            out[noisy] += rng.normal(0.0, 1.0, out[noisy].shape).astype(np.float32) * rng.uniform(2, 20, (int(noisy.sum()), 1, 1, 1)).astype(np.float32)
        for i in np.flatnonzero(hit(a.jpeg, n)):
            face = np.clip(np.rint(out[i]), 0, 255).astype(np.uint8)
            out[i] = jpeg_round_trip(face, int(rng.integers(10, 61))).reshape(height, width, channels)
        return out

    def _hit(self, probability: float, n: int) -> np.ndarray:
        """Which of ``n`` faces a kind of augmentation hits; at probability 0 nothing is drawn, so configs without it keep their random stream."""
        return self.rng.random(n) < probability if probability > 0 else np.zeros(n, dtype=bool)

    def _cover(self, out: np.ndarray) -> np.ndarray:
        """Face wear: a mask from below the nose bridge down, or sunglasses across the eyes, at even odds.

        On FER-style crops the eyes sit at about 37% of the height and the nose tip at 55%. A mask's
        top edge falls at 42-62% of the height and it runs to the bottom; sunglasses start at 18-34%
        and are 14-28% tall. Masks take any shade, sunglasses a dark one, each uniform.
        """
        rng = self.rng
        n, height = out.shape[:2]
        for i in np.flatnonzero(self._hit(self.augment.occlusion, n)):
            if rng.random() < 0.5:
                top, bottom, shade = rng.uniform(0.42, 0.62), 1.0, rng.uniform(0, 255)
            else:
                top = rng.uniform(0.18, 0.34)
                bottom, shade = top + rng.uniform(0.14, 0.28), rng.uniform(0, 80)
            out[i, round(top * height) : round(bottom * height)] = shade
        return out


class BatchMixer:
    """MixUp and CutMix: each face mixed with another face of its batch, and its target in the same shares.

    MixUp (Zhang et al. 2018) blends the two faces' pixels with a share drawn from Beta(alpha,
    alpha). CutMix (Yun et al. 2019) pastes a rectangle of the partner face instead, of area
    ``1 - share`` and at a random place inside the face, and mixes the targets by the share of
    pixels actually kept. With both enabled each batch takes one of the two at even odds, as
    timm does, so no face is mixed twice.

    Args:
        augment: ``augment.mixup`` and ``augment.cutmix`` are the Beta alphas (0 disables).
        seed: Seed of the random draws.
    """

    def __init__(self, augment: AugmentConfig, seed):
        self.mixup_alpha, self.cutmix_alpha = augment.mixup, augment.cutmix
        self.rng = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mixes a batch: images (N, H, W, C) float32 and targets (N, K); returns new arrays of the same shapes."""
        use_cutmix = self.cutmix_alpha > 0
        if self.mixup_alpha > 0 and use_cutmix:
            use_cutmix = self.rng.random() < 0.5
        if not use_cutmix and self.mixup_alpha <= 0:
            return images, targets
        mixed, kept, partner = self._cutmix(images) if use_cutmix else self._mixup(images)
        return mixed, kept[:, None] * targets + (1 - kept[:, None]) * targets[partner]

    def _mixup(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blended faces, each face's share kept and its partner's index."""
        kept = self.rng.beta(self.mixup_alpha, self.mixup_alpha, size=len(images)).astype(np.float32)
        partner = self.rng.permutation(len(images))
        mixed = kept[:, None, None, None] * images + (1 - kept[:, None, None, None]) * images[partner]
        return mixed, kept, partner

    def _cutmix(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The faces with a partner's rectangle pasted in, each face's share kept and its partner's index."""
        n, height, width = images.shape[:3]
        side = np.sqrt(1.0 - self.rng.beta(self.cutmix_alpha, self.cutmix_alpha, size=n))
        box_height, box_width = np.rint(side * height).astype(int), np.rint(side * width).astype(int)
        top = self.rng.integers(0, height - box_height + 1)
        left = self.rng.integers(0, width - box_width + 1)
        rows, columns = np.arange(height), np.arange(width)
        inside_rows = (rows >= top[:, None]) & (rows < (top + box_height)[:, None])
        inside_columns = (columns >= left[:, None]) & (columns < (left + box_width)[:, None])
        pasted = inside_rows[:, :, None] & inside_columns[:, None, :]
        partner = self.rng.permutation(n)
        mixed = np.where(pasted[..., None], images[partner], images)
        # The share kept is counted in whole pixels, so the target matches the face exactly.
        kept = (1.0 - pasted.mean(axis=(1, 2))).astype(np.float32)
        return mixed, kept, partner
