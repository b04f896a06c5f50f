"""Packs the training images an accelerator run needs into one file, and unpacks them there.

``python experiments/accelerator/pack_images.py pack DATA_DIR .devdata/fer2013_trainval.npz``
``python experiments/accelerator/pack_images.py unpack .devdata/fer2013_trainval.npz /tmp/fer2013``

The device tool carries at most 64 MiB, and the Kaggle FER2013 JPEGs are 56 MB. Decoded
pixels compress worse than the JPEGs do (zlib 79 MB, lzma 62 MB, lossless WebP 59 MB, measured
here), so the original JPEG bytes travel unchanged: the train/ folder, plus test/'s PublicTest
files (FERPlus validation, and FER2013's with ``data.val_split=public_test``). The PrivateTest
files stay behind, because the test split is evaluated only on this machine. Unpacking rebuilds the Kaggle layout, which
``fer_keras.data.load_dataset(..., with_test=False)`` reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def pack(data_dir: Path, archive: Path) -> None:
    files = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "train").rglob("*.jpg"))
    files += sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "test").rglob("PublicTest_*.jpg"))
    blobs = [(data_dir / f).read_bytes() for f in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    archive.parent.mkdir(parents=True, exist_ok=True)
    np.savez(archive, paths=np.array(files, dtype="S"), offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    print(f"{archive}: {len(files)} files, {offsets[-1] / 1e6:.1f} MB")


def unpack(archive: Path, out_dir: Path) -> None:
    packed = np.load(archive)
    data, offsets = packed["data"], packed["offsets"]
    for i, name in enumerate(packed["paths"]):
        target = out_dir / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    print(f"{out_dir}: {len(packed['paths'])} files")


if __name__ == "__main__":
    command, source, destination = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    pack(source, destination) if command == "pack" else unpack(source, destination)
