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

import io
import sys
from pathlib import Path

import numpy as np

from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.files import write_atomic

# What the device tool carries, working tree included; the tree needs a few MB of it.
CARRY_BYTES = 64 * 2**20
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


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
        raise UserError(f"{data_dir}: no training images (the Kaggle layout's train/, or FERPlus's FER2013Train/)")
    blobs = [(data_dir / f).read_bytes() for f in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    if offsets[-1] > CARRY_BYTES:
        raise UserError(f"{data_dir}: {len(files)} files of {offsets[-1] / 2**20:.1f} MiB, more than the device tool carries ({CARRY_BYTES / 2**20:.0f} MiB)")
    archive.parent.mkdir(parents=True, exist_ok=True)
    packed = io.BytesIO()
    np.savez(packed, paths=np.array(files, dtype="S"), offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    write_atomic(archive, packed.getvalue())  # an interrupted pack leaves no half archive for unpack to trip on
    print(f"{archive}: {len(files)} files, {offsets[-1] / 1e6:.1f} MB")


def unpack(archive: Path, out_dir: Path) -> None:
    if not archive.is_file():
        raise UserError(f"{archive}: archive not found (pack it first)")
    packed = np.load(archive)
    data, offsets = packed["data"], packed["offsets"]
    for i, name in enumerate(packed["paths"]):
        target = out_dir / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    print(f"{out_dir}: {len(packed['paths'])} files")


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="pack_images.py", description="Pack the training images a GPU round needs into one file, or unpack them there.")
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack DATA_DIR's training and validation images into ARCHIVE")
    packing.add_argument("data_dir", type=Path)
    packing.add_argument("archive", type=Path)
    unpacking = commands.add_parser("unpack", help="write ARCHIVE's files under OUT_DIR")
    unpacking.add_argument("archive", type=Path)
    unpacking.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    pack(args.data_dir, args.archive) if args.command == "pack" else unpack(args.archive, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
