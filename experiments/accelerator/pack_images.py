"""Packs the training images an accelerator run needs into one file, and unpacks them there.

``python experiments/accelerator/pack_images.py pack DATA_DIR .devdata/fer2013_trainval.npz``
``python experiments/accelerator/pack_images.py unpack .devdata/fer2013_trainval.npz /tmp/fer2013``

The device tool carries at most 64 MiB, and the Kaggle FER2013 JPEGs are 56 MB. Decoded
pixels compress worse than the JPEGs do (zlib 79 MB, lzma 62 MB, lossless WebP 59 MB, measured
here), so the image files travel unchanged: what ``fer_keras.data.load_dataset(..., with_test=False)``
reads, and nothing else. For the Kaggle layout (and a root written by ``fer_keras.unpack``) that is
the train/ folder, test/'s PublicTest files (FERPlus validation, and FER2013's with
``data.val_split=public_test``) and the root's FERPlus row map where it has one; for FERPlus's own
layout, its training and validation folders with their label.csv files. The test files stay behind,
because the test split is evaluated only on this machine. Unpacking rebuilds the same layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# What the device tool carries, working tree included; the tree needs a few MB of it.
CARRY_BYTES = 64 * 2**20
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def fail(message: str) -> None:
    """Bad input, as the project's commands report it: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def trainval_files(data_dir: Path) -> list[str]:
    """The files, relative to ``data_dir``, that a run reads without its test split."""
    from fer_keras.data import FERPLUS_FOLDERS, FERPLUS_ROW_MAP, is_ferplus_layout

    if is_ferplus_layout(data_dir):
        folders = [data_dir / FERPLUS_FOLDERS[usage] for usage in ("Training", "PublicTest")]
        return [p.relative_to(data_dir).as_posix() for folder in folders for p in sorted(folder.iterdir()) if p.is_file()]

    def images(folder: Path, prefix: str = "") -> list[str]:
        return sorted(p.relative_to(data_dir).as_posix() for p in folder.rglob(f"{prefix}*") if p.suffix.lower() in IMAGE_SUFFIXES)

    row_map = [FERPLUS_ROW_MAP] if (data_dir / FERPLUS_ROW_MAP).is_file() else []
    return images(data_dir / "train") + images(data_dir / "test", "PublicTest_") + row_map


def pack(data_dir: Path, archive: Path) -> None:
    files = trainval_files(data_dir)
    if not files:
        fail(f"{data_dir}: no training images (the Kaggle layout's train/, or FERPlus's FER2013Train/)")
    blobs = [(data_dir / f).read_bytes() for f in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    if offsets[-1] > CARRY_BYTES:
        fail(f"{data_dir}: {len(files)} files of {offsets[-1] / 2**20:.1f} MiB, more than the device tool carries ({CARRY_BYTES / 2**20:.0f} MiB)")
    archive.parent.mkdir(parents=True, exist_ok=True)
    np.savez(archive, paths=np.array(files, dtype="S"), offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    print(f"{archive}: {len(files)} files, {offsets[-1] / 1e6:.1f} MB")


def unpack(archive: Path, out_dir: Path) -> None:
    if not archive.is_file():
        fail(f"{archive}: archive not found (pack it first)")
    packed = np.load(archive)
    data, offsets = packed["data"], packed["offsets"]
    for i, name in enumerate(packed["paths"]):
        target = out_dir / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    print(f"{out_dir}: {len(packed['paths'])} files")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        fail("usage: pack_images.py pack DATA_DIR ARCHIVE.npz | unpack ARCHIVE.npz OUT_DIR")
    command, source, destination = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    pack(source, destination) if command == "pack" else unpack(source, destination)
