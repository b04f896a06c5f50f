"""FER2013's pixel table as image folders: ``python -m fer_keras.unpack fer2013.csv --out DIR``.

FER2013 first shipped as one table, ``fer2013.csv`` (``emotion``, ``pixels``, ``Usage``: 35,887
rows of 48x48 grey faces as space-separated numbers), which the ICML 2013 challenge and FERPlus's
own tools use; the Kaggle ``msambare/fer2013`` copy this project reads holds the same faces as JPEG
files in class folders. This writes the table in that layout (``train/<emotion>/Training_00000.png``,
``test/<emotion>/PublicTest_28709.png``...), losslessly, so every command takes ``--data-dir DIR``.

FERPlus's vote table has one row per row of ``fer2013.csv``, in its order. Where the table's
usages match FERPlus's row for row, a FERPlus row map is written beside the folders, which
``data.label_set=ferplus`` and ``data.crowd_vote_weight`` then read instead of the vendored
msambare map: every face FERPlus labels is used, including the 2,584 that the msambare copy leaves
unmatched or ambiguous (its duplicate images match several FERPlus rows).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fer_keras.data import FER2013_USAGES, FERPLUS_ROW_MAP, ferplus_rows
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.files import write_atomic

# fer2013.csv's emotion numbers, named as the msambare class folders are.
FER2013_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PART = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}


def read_pixel_table(table: Path) -> list[tuple[str, str, np.ndarray]]:
    """(emotion, usage, square uint8 image) per row of a FER2013-style pixel table.

    Column names are matched in any case and with spaces around them (``icml_face_data.csv``
    writes `` Usage``); without a Usage column (the challenge's ``train.csv``) every row is Training.

    Raises:
        UserError: Naming the line, for a missing column, an emotion outside 0-6, an unknown usage,
            or pixels that are not a square number of values 0-255.
    """
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {name.strip().lower(): name for name in reader.fieldnames or () if name}
            if "emotion" not in columns or "pixels" not in columns:
                raise UserError(f"{table}: a FER2013 pixel table needs columns emotion and pixels; found {', '.join(reader.fieldnames or ()) or 'nothing'}")
            rows = []
            for row in reader:
                where = f"{table}: line {reader.line_num}"
                emotion, usage = (row.get(columns["emotion"]) or "").strip(), (row.get(columns.get("usage", "")) or "Training").strip()
                if emotion not in {str(i) for i in range(len(FER2013_EMOTIONS))}:
                    raise UserError(f"{where}: emotion {emotion!r} is not 0-6")
                if usage not in FER2013_USAGES:
                    raise UserError(f"{where}: usage {usage!r} is not one of {', '.join(FER2013_USAGES)}")
                try:
                    values = np.array((row.get(columns["pixels"]) or "").split(), dtype=np.int64)
                except ValueError:
                    raise UserError(f"{where}: pixels are not whole numbers") from None
                side = math.isqrt(values.size)
                if values.size == 0 or side * side != values.size or values.min() < 0 or values.max() > 255:
                    raise UserError(f"{where}: expected a square image of values 0-255, found {values.size} values")
                rows.append((FER2013_EMOTIONS[int(emotion)], usage, values.astype(np.uint8).reshape(side, side)))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{table}: not a UTF-8 CSV pixel table ({err})") from None
    if not rows:
        raise UserError(f"{table}: the pixel table has no rows")
    return rows


def ferplus_row_map(usages: list[str], files: list[str]) -> tuple[str | None, str]:
    """The FERPlus row map's CSV text for faces in ``fer2013.csv``'s row order, or None, and why.

    The map has the vendored msambare map's columns, so ``data.ferplus_targets`` reads either.
    """
    ferplus = ferplus_rows()
    if len(usages) > len(ferplus):
        return None, f"the table has {len(usages)} rows, FERPlus {len(ferplus)}"
    mismatch = next((i for i, (usage, (ferplus_usage, _)) in enumerate(zip(usages, ferplus)) if usage != ferplus_usage), None)
    if mismatch is not None:
        return None, f"row {mismatch} is {usages[mismatch]} here but {ferplus[mismatch][0]} in FERPlus (not fer2013.csv's order)"
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "usage", "ferplus_image", "ferplus_candidates", "n_candidates"])
    for file, usage, (_, name) in zip(files, usages, ferplus):
        if name:  # FERPlus removed some rows (no face); they keep their FER2013 label only
            writer.writerow([file, usage, name, name, 1])
    return text.getvalue(), f"FERPlus votes for {sum(bool(name) for _, name in ferplus[: len(usages)])} of {len(usages)} faces"


def unpack(table: Path, out: Path) -> tuple[int, str]:
    """Writes each face of ``table`` as a PNG in the Kaggle layout under ``out``, and the FERPlus row map where it applies.

    Returns:
        The number of faces written, and what became of the FERPlus map.
    """
    rows = read_pixel_table(table)
    files = []
    for index, (emotion, usage, image) in enumerate(rows):
        file = f"{PART[usage]}/{emotion}/{usage}_{index:05d}.png"
        (out / file).parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        write_atomic(out / file, buffer.getvalue())
        files.append(file)
    map_text, why = ferplus_row_map([usage for _, usage, _ in rows], files)
    if map_text is not None:
        write_atomic(out / FERPLUS_ROW_MAP, map_text)
    else:
        (out / FERPLUS_ROW_MAP).unlink(missing_ok=True)  # a map from an earlier table would label these faces wrongly
    return len(rows), (f"wrote {out / FERPLUS_ROW_MAP}: {why}" if map_text else f"no FERPlus row map: {why}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.unpack", description="Write FER2013's pixel table (fer2013.csv) as image folders in the Kaggle layout, with its FERPlus row map.")
    parser.add_argument("table", type=Path, help="fer2013.csv (emotion, pixels, Usage), or another table of those columns")
    parser.add_argument("--out", required=True, type=Path, help="the dataset folder to write (train/ and test/ of class folders), for --data-dir")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.table, args.out = args.table.expanduser(), args.out.expanduser()  # "~/fer2013.csv" quoted, or from a script
    if not args.table.is_file():
        raise UserError(f"{args.table}: file not found")
    count, ferplus = unpack(args.table, args.out)
    print(f"wrote {count} faces under {args.out}\n{ferplus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
