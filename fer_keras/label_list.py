"""Label lists from public FER datasets' own annotations: ``python -m fer_keras.label_list FORMAT ROOT --out LIST.csv``.

RAF-DB, AffectNet, ExpW, CK+, KDEF and JAFFE keep their labels in a text file, a table, one file
per sequence or a code in each file name, and number or abbreviate the emotions each in its own
way. This writes the ``.csv`` label list (``path``, ``label`` and the dataset's groups: split,
subject, pose, gender...) that ``train``, ``evaluate --group-by`` and ``benchmark accuracy --other``
read, so a dataset is scored from where it was unpacked, without copying a face into class folders.
Your own class folders or label list (``folder``) are listed likewise. Where the annotations box
each face in a whole photo (ExpW; AffectNet with ``--cut-faces``), or a detector finds it
(``--detect-faces``), the faces are cut out once into a folder beside the list, as ``detect`` cuts
out a detected face.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fer_keras.data import LABEL_LIST_COLUMNS, LABEL_LIST_SUFFIX, label_list_entries, list_labelled_files
from fer_keras.errors import ArgumentParser, UserError, at_least, cli_entry, in_range
from fer_keras.faces import DETECTORS, MAX_CROP_MARGIN, Face, FaceDetector, box_area, crop_face, crop_margin, make_detector
from fer_keras.files import write_atomic
from fer_keras.sources import decode_image

# Each dataset's own emotion codes, spelled in the canonical vocabulary (fer_keras.labels).
RAFDB_EMOTIONS = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happy", "5": "sad", "6": "angry", "7": "neutral"}
AFFECTNET_EMOTIONS = {"0": "neutral", "1": "happy", "2": "sad", "3": "surprise", "4": "fear", "5": "disgust", "6": "angry", "7": "contempt"}
EXPW_EMOTIONS = {"0": "angry", "1": "disgust", "2": "fear", "3": "happy", "4": "sad", "5": "surprise", "6": "neutral"}
CKPLUS_EMOTIONS = {1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}
KDEF_EMOTIONS = {"AF": "fear", "AN": "angry", "DI": "disgust", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}
JAFFE_EMOTIONS = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}

# RAF-DB's manual attributes (Annotation/manual/*_manu_attri.txt: five landmark lines, then these three).
RAFDB_GENDERS = {"0": "male", "1": "female", "2": "unsure"}
RAFDB_RACES = {"0": "caucasian", "1": "african-american", "2": "asian"}
RAFDB_AGES = {"0": "0-3", "1": "4-19", "2": "20-39", "3": "40-69", "4": "70+"}

# AffectNet's table without its header row (validation.csv in some copies): the columns in release order.
AFFECTNET_COLUMNS = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression", "valence", "arousal")

# Cut-out faces are stored this many pixels square at most: four times the models' 48-pixel input,
# as detect cuts them (faces.CROP_OVERSAMPLE), so the final resize still averages without aliasing.
FACE_SIDE = 192

# KDEF: session A/B, gender F/M, subject 01-35, emotion, angle (AF01ANS.JPG: session A, female 01, afraid, straight).
KDEF_NAME = re.compile(r"([AB])([FM])(\d\d)(AF|AN|DI|HA|NE|SA|SU)(S|HL|HR|FL|FR)\.jpe?g", re.IGNORECASE)
KDEF_POSES = {"S": "frontal", "HL": "half-left", "HR": "half-right", "FL": "full-left", "FR": "full-right"}
# JAFFE: poser, emotion and its take, image number (KA.AN1.39.tiff: poser KA, angry, first take).
JAFFE_NAME = re.compile(r"([A-Z]{2})\.(AN|DI|FE|HA|NE|SA|SU)\d*\.\d+\.tiff?", re.IGNORECASE)


@dataclass
class Entry:
    """One face a dataset annotates.

    Attributes:
        file: Its image file.
        label: Its emotion, in the canonical vocabulary.
        groups: Its values of the dataset's group columns (split, subject, pose...).
        box: (x, y, width, height) of the face in the upright image, where the dataset boxes it.
        face_id: Which of the image's boxed faces it is (ExpW numbers them per image).
    """

    file: Path
    label: str
    groups: dict[str, str]
    box: tuple[float, float, float, float] | None = None
    face_id: str = "0"


@dataclass
class Listing:
    """What a dataset's annotations say: its faces, and why other entries were left out."""

    faces: list[Entry] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)
    first_left_out: dict[str, Path] = field(default_factory=dict)  # per reason, the first file so left out

    def leave_out(self, reason: str, file: Path | None = None) -> None:
        self.left_out[reason] += 1
        if file is not None:
            self.first_left_out.setdefault(reason, file)

    def left_out_counts(self) -> str:
        """Each reason with its count ("image file missing: 3, ..."), for an error that no face was left."""
        return ", ".join(f"{why}: {n}" for why, n in self.left_out.items())

    def add(self, file: Path, label: str, box: tuple[float, float, float, float] | None = None, face_id: str = "0", **groups: str) -> None:
        self.faces.append(Entry(file, label, groups, box, face_id))


def find_one(root: Path, name: str, want_dir: bool) -> Path | None:
    """``root/name``, or the first ``root/*/name`` or ``root/*/*/name`` (sorted): archives unpack a folder or two deep."""
    for pattern in (name, f"*/{name}", f"*/*/{name}"):
        found = [path for path in sorted(root.glob(pattern)) if path.is_dir() == want_dir]
        if found:
            return found[0]
    return None


def _rafdb_attributes(base: Path) -> dict[str, dict[str, str]]:
    """Gender, race and age per image stem from RAF-DB's manual annotation (a folder, or the zip it ships as); {} without it."""
    folder, archive = base / "Annotation" / "manual", base / "Annotation" / "manual.zip"
    if folder.is_dir():
        texts = {path.name: path.read_text(errors="replace") for path in folder.glob("*_manu_attri.txt")}
    elif archive.is_file():
        try:
            with zipfile.ZipFile(archive) as zipped:
                texts = {Path(name).name: zipped.read(name).decode(errors="replace") for name in zipped.namelist() if name.endswith("_manu_attri.txt")}
        except zipfile.BadZipFile as err:
            raise UserError(f"{archive}: not a readable zip ({err})") from None
    else:
        return {}
    attributes = {}
    for name, text in texts.items():
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) >= 8:
            gender, race, age = lines[5:8]
            attributes[name.removesuffix("_manu_attri.txt")] = {
                "gender": RAFDB_GENDERS.get(gender, gender), "race": RAFDB_RACES.get(race, race), "age": RAFDB_AGES.get(age, age),
            }
    return attributes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _annotation_lines(label_file: Path, spec: str, emotions: dict[str, str], numbers: tuple[int, ...] = ()):
    """The fields of each non-empty line of a whitespace-separated annotation file laid out as ``spec``, its last field an emotion code.

    Raises:
        UserError: Naming the line, when it has another number of fields, a code not in
            ``emotions``, or something other than a number at one of the ``numbers`` positions.
    """
    for number, line in enumerate(label_file.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(spec.split()) or fields[-1] not in emotions or not all(_is_number(fields[i]) for i in numbers):
            raise UserError(f"{label_file}: line {number} is not '{spec}' with a label {min(emotions)}-{max(emotions)}: {line.strip()!r}")
        yield fields


def read_rafdb(root: Path) -> Listing:
    """RAF-DB (basic): ``EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``), or the numbered class folders of its Kaggle copies.

    Faces are the aligned 100x100 crops (``Image/aligned``) when present, else the original photos
    (score those with ``--crop-faces``). The manual annotation adds gender, race and age groups.
    """
    label_file = find_one(root, "EmoLabel/list_patition_label.txt", want_dir=False)
    if label_file is None:
        return _numbered_class_folders(root, RAFDB_EMOTIONS, "RAF-DB", "EmoLabel/list_patition_label.txt")
    base = label_file.parent.parent
    aligned = base / "Image" / "aligned"
    attributes = _rafdb_attributes(base)
    listing = Listing()
    for name, code in _annotation_lines(label_file, "IMAGE LABEL", RAFDB_EMOTIONS):
        stem = Path(name).stem
        file = aligned / f"{stem}_aligned.jpg" if aligned.is_dir() else base / "Image" / "original" / name
        listing.add(file, RAFDB_EMOTIONS[code], split=stem.split("_")[0], **attributes.get(stem, {}))
    return listing


def _numbered_class_folders(root: Path, emotions: dict[str, str], dataset: str, annotation: str) -> Listing:
    """Split folders of numbered class folders (``train/1/*.jpg``), as Kaggle copies of a dataset repackage it."""
    listing = Listing()
    for class_dir in sorted(path for pattern in ("*/*", "*/*/*") for path in root.glob(pattern) if path.is_dir() and path.name in emotions):
        for file in sorted(path for path in class_dir.iterdir() if path.is_file() and not path.name.startswith(".")):
            listing.add(file, emotions[class_dir.name], split=class_dir.parent.name)
    if not listing.faces:
        raise UserError(f"{root}: no {dataset} annotations: expected {annotation}, or split folders of class folders numbered {min(emotions)}-{max(emotions)}")
    return listing


def _affectnet_rows(table: Path):
    """(image path, expression, face box or None) per row of an AffectNet table, with or without its header row."""
    with table.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        rows = list(csv.reader(handle))
    header = [name.strip().lower() for name in rows[0]] if rows else []
    has_header = "expression" in header
    columns = header if has_header else list(AFFECTNET_COLUMNS)
    if AFFECTNET_COLUMNS[0] not in columns:
        raise UserError(f"{table}: an AffectNet table needs columns {AFFECTNET_COLUMNS[0]} and expression; found {', '.join(rows[0])}")
    path_at, expression_at = columns.index(AFFECTNET_COLUMNS[0]), columns.index("expression")
    box_at = [columns.index(name) for name in AFFECTNET_COLUMNS[1:5]] if all(name in columns for name in AFFECTNET_COLUMNS[1:5]) else []
    for row in rows[1:] if has_header else rows:
        if len(row) > max(path_at, expression_at, *box_at):
            yield row[path_at].strip(), row[expression_at].strip(), _box([row[i] for i in box_at])


def _box(values: list[str]) -> tuple[float, float, float, float] | None:
    """(x, y, width, height) from four numbers, or None when they are missing, unreadable or enclose no area."""
    try:
        x, y, width, height = map(float, values)
    except ValueError:
        return None
    return (x, y, width, height) if width > 0 and height > 0 else None


def read_affectnet(root: Path) -> Listing:
    """AffectNet: ``training.csv`` and ``validation.csv`` (its test split) over ``Manually_Annotated_Images``.

    Expressions 0-7 are the eight emotions; 8-10 (none, uncertain, no face) are left out. Each
    row's face box (face_x, face_y, face_width, face_height) is kept for ``--cut-faces``.
    """
    tables = {split: find_one(root, f"{name}.csv", want_dir=False) for split, name in (("train", "training"), ("validation", "validation"))}
    if not any(tables.values()):
        raise UserError(f"{root}: no AffectNet annotations: expected training.csv or validation.csv")
    images = find_one(root, "Manually_Annotated_Images", want_dir=True) or root
    listing = Listing()
    for split, table in tables.items():
        for file, code, box in _affectnet_rows(table) if table else ():
            if code in AFFECTNET_EMOTIONS:
                listing.add(images / file, AFFECTNET_EMOTIONS[code], box, split=split)
            else:
                listing.leave_out("expression 8-10 (none, uncertain, no face)")
    return listing


def read_expw(root: Path) -> Listing:
    """ExpW: ``label.lst`` rows ``IMAGE FACE_ID TOP LEFT RIGHT BOTTOM CONFIDENCE LABEL`` (0-6) over ``image/origin``.

    Its photos hold several faces each, every one boxed and labelled on its own row, so its faces are always cut out.
    """
    label_file = find_one(root, "label/label.lst", want_dir=False)
    if label_file is None:
        raise UserError(f"{root}: no ExpW annotations: expected label/label.lst")
    images = find_one(root, "image/origin", want_dir=True) or find_one(root, "origin", want_dir=True) or label_file.parent.parent
    listing = Listing()
    for name, face_id, top, left, right, bottom, _, code in _annotation_lines(label_file, "IMAGE FACE_ID TOP LEFT RIGHT BOTTOM CONFIDENCE LABEL", EXPW_EMOTIONS, numbers=(2, 3, 4, 5)):
        box = _box([left, top, str(float(right) - float(left)), str(float(bottom) - float(top))])
        if box is None:
            listing.leave_out("face box without area", images / name)
            continue
        listing.add(images / name, EXPW_EMOTIONS[code], box, face_id)
    return listing


def read_ckplus(root: Path, peak_frames: int) -> Listing:
    """CK+: each labelled sequence's last ``peak_frames`` frames as its emotion and its first frame as neutral.

    Labels come from ``Emotion/S005/001/S005_001_00000011_emotion.txt`` (1-7), frames from
    ``cohn-kanade-images/S005/001/``. Sequences without an emotion file are left out, as in the
    dataset's own protocol. Group by ``subject`` for subject-independent folds, or keep ``frame=peak``.
    """
    emotions, frames = find_one(root, "Emotion", want_dir=True), find_one(root, "cohn-kanade-images", want_dir=True)
    if emotions is None or frames is None:
        raise UserError(f"{root}: no CK+ annotations: expected folders Emotion and cohn-kanade-images")
    listing = Listing()
    for emotion_file in sorted(emotions.glob("*/*/*_emotion.txt")):
        subject, sequence = emotion_file.parent.parent.name, emotion_file.parent.name
        try:
            code = int(float(emotion_file.read_text().split()[0]))
        except (ValueError, IndexError):
            raise UserError(f"{emotion_file}: expected one emotion code 1-7") from None
        if code not in CKPLUS_EMOTIONS:
            raise UserError(f"{emotion_file}: expected one emotion code 1-7, found {code}")
        apex = emotion_file.name.removesuffix("_emotion.txt")
        sequence_frames = sorted(path for path in (frames / subject / sequence).glob("*.png") if path.stem <= apex)
        if not sequence_frames:
            listing.leave_out("labelled sequence without frames", emotion_file)
            continue
        listing.add(sequence_frames[0], "neutral", subject=subject, frame="onset")
        for file in sequence_frames[1:][-peak_frames:]:
            listing.add(file, CKPLUS_EMOTIONS[code], subject=subject, frame="peak")
    if not listing.faces and not listing.left_out:
        raise UserError(f"{emotions}: no *_emotion.txt files in SUBJECT/SEQUENCE folders")
    return listing


def _coded_file_names(root: Path, pattern: re.Pattern, dataset: str, example: str) -> tuple[Listing, list[tuple[Path, re.Match]]]:
    """Files under ``root`` whose names match a dataset's naming code; others count as left out."""
    listing, matched = Listing(), []
    for file in sorted(path for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")):
        match = pattern.fullmatch(file.name)
        if match:
            matched.append((file, match))
        elif file.suffix.lower() in (".jpg", ".jpeg", ".tif", ".tiff"):
            listing.leave_out(f"name not in {dataset}'s code ({example})", file)
    if not matched:
        raise UserError(f"{root}: no {dataset} images (named like {example})")
    return listing, matched


def read_kdef(root: Path) -> Listing:
    """KDEF: the emotion, subject, gender, session and angle coded in each file name (``AF01ANS.JPG``)."""
    listing, matched = _coded_file_names(root, KDEF_NAME, "KDEF", "AF01ANS.JPG")
    for file, match in matched:
        session, gender, number, emotion, pose = (part.upper() for part in match.groups())
        listing.add(file, KDEF_EMOTIONS[emotion], subject=f"{gender}{number}", gender={"F": "female", "M": "male"}[gender], session=session, pose=KDEF_POSES[pose])
    return listing


def read_jaffe(root: Path) -> Listing:
    """JAFFE: the poser and emotion coded in each file name (``KA.AN1.39.tiff``)."""
    listing, matched = _coded_file_names(root, JAFFE_NAME, "JAFFE", "KA.AN1.39.tiff")
    for file, match in matched:
        listing.add(file, JAFFE_EMOTIONS[match.group(2).upper()], subject=match.group(1).upper())
    return listing


def read_folder(root: Path) -> Listing:
    """Your own labelled faces or photos: a folder of class folders, or a ``.csv`` label list whose other columns are kept as groups."""
    listing = Listing()
    if root.is_file():
        for file, label, values in label_list_entries(root)[1]:
            groups = {name.strip().lower(): value for name, value in values.items() if name.strip().lower() not in LABEL_LIST_COLUMNS}
            listing.faces.append(Entry(file, label, groups))
    else:
        for label, files in list_labelled_files(root).items():
            listing.faces.extend(Entry(file, label, {}) for file in files)
    return listing


FORMATS = {
    "folder": "your own faces: class folders, or a .csv label list (its other columns kept); whole photos: add --detect-faces",
    "rafdb": "RAF-DB basic: EmoLabel/list_patition_label.txt (or numbered class folders), aligned faces, split/gender/race/age",
    "affectnet": "AffectNet: training.csv and validation.csv over Manually_Annotated_Images, split (face boxes: --cut-faces)",
    "expw": "ExpW: label/label.lst over image/origin, each boxed face cut out",
    "ckplus": "CK+: Emotion/ and cohn-kanade-images/, peak frames and the onset as neutral, subject/frame",
    "kdef": "KDEF: codes in file names (AF01ANS.JPG), subject/gender/session/pose",
    "jaffe": "JAFFE: codes in file names (KA.AN1.39.tiff), subject",
}


# The formats whose annotations box each face in its image.
BOXED_FORMATS = ("affectnet", "expw")


def read_dataset(name: str, root: Path, peak_frames: int = 3) -> Listing:
    """Reads a dataset's annotations into a Listing.

    Args:
        name: One of ``FORMATS``.
        root: Where the dataset was unpacked (its top folder, or the one above).
        peak_frames: CK+ only: how many frames up to each sequence's labelled apex carry its emotion.

    Raises:
        UserError: When ``root`` is missing or holds no annotations of that dataset.
    """
    if not root.is_dir() and not (name == "folder" and root.suffix.lower() == LABEL_LIST_SUFFIX and root.is_file()):
        raise UserError(f"{root}: folder not found")
    readers = {"folder": read_folder, "rafdb": read_rafdb, "affectnet": read_affectnet, "expw": read_expw, "kdef": read_kdef, "jaffe": read_jaffe}
    return read_ckplus(root, peak_frames) if name == "ckplus" else readers[name](root)


def parse_where(conditions: list[str], columns: list[str]) -> dict[str, set[str]]:
    """``COLUMN=VALUE[,VALUE...]`` filters, keyed by column, values casefolded.

    Raises:
        UserError: When a condition has no ``=`` or names a column the list does not have.
    """
    wanted: dict[str, set[str]] = {}
    for condition in conditions:
        column, sep, values = condition.partition("=")
        if not sep or not values.strip():
            raise UserError(f"--where {condition}: expected COLUMN=VALUE[,VALUE...]")
        if column.strip().lower() not in columns:
            raise UserError(f"--where {condition}: no column {column.strip()}; this list's columns: {', '.join(columns)}")
        wanted.setdefault(column.strip().lower(), set()).update(value.strip().casefold() for value in values.split(","))
    return wanted


def select(listing: Listing, where: list[str]) -> tuple[list[str], list[Entry]]:
    """The list's columns, and the faces that pass every ``where`` filter and whose image is on disk.

    Raises:
        UserError: When a filter is malformed or no face is left.
    """
    columns = list(LABEL_LIST_COLUMNS) + list(dict.fromkeys(name for entry in listing.faces for name in entry.groups))
    wanted = parse_where(where, columns)
    kept = []
    for entry in listing.faces:
        values = {"label": entry.label, **entry.groups}
        if any((values.get(column) or "").casefold() not in allowed for column, allowed in wanted.items()):
            listing.leave_out("not kept by --where")
        elif not entry.file.is_file():
            listing.leave_out("image file missing", entry.file)
        else:
            kept.append(entry)
    if not kept:
        first_missing = next((str(entry.file) for entry in listing.faces if not entry.file.is_file()), None)
        hint = f"; the first image it expected: {first_missing}" if first_missing else ""
        raise UserError(f"no face to list ({listing.left_out_counts()}){hint}")
    return columns, kept


def cut_faces(entries: list[Entry], root: Path, faces_dir: Path, margin: float | None, listing: Listing, detector: FaceDetector | None = None) -> list[Entry]:
    """Cuts each entry's face out of its image into ``faces_dir``, as ``detect`` cuts out a detected face.

    The face is the entry's annotated box, or with a ``detector`` the largest face it finds (eyes
    levelled where it gives them). The crop is the square about the box's centre whose side is the
    box's larger side times ``1 + margin`` (None: 0 for an annotated box, the detector's measured
    margin for a detected one), at most ``FACE_SIDE`` pixels, saved as JPEG under the image's path
    below ``root`` with the face's number appended. Images are decoded once for all their faces.

    Returns:
        The entries pointing at their crops; those without a box, a readable image or a detected face are left out (counted in ``listing``).
    """
    import cv2

    if margin is None:
        margin = crop_margin(detector) if detector else 0.0
    cut: list[Entry] = []
    decoded: tuple[Path | None, object] = (None, None)
    for done, entry in enumerate(entries, 1):
        if entry.box is None and detector is None:
            listing.leave_out("no face box", entry.file)
            continue
        if decoded[0] != entry.file:
            decoded = (entry.file, decode_image(entry.file))
        frame = decoded[1]
        if frame is None:
            listing.leave_out("image unreadable", entry.file)
            continue
        face = max(detector(frame), key=box_area, default=None) if detector else Face(entry.box)
        if face is None:
            listing.leave_out(f"no face found by {detector.name}", entry.file)
            continue
        crop = crop_face(frame, face, margin, max_side=FACE_SIDE)
        if crop.shape[0] > FACE_SIDE:
            crop = cv2.resize(crop, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
        try:
            relative = entry.file.relative_to(root if root.is_dir() else root.parent)
        except ValueError:  # a listed file outside the list's folder: its whole path, so names cannot clash
            relative = Path(*entry.file.absolute().parts[1:])
        target = faces_dir / relative.parent / f"{relative.stem}_{entry.face_id}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        cut.append(Entry(target, entry.label, entry.groups))
        if done % 5000 == 0:
            print(f"cut {done}/{len(entries)} faces", flush=True)
    if not cut:
        raise UserError(f"no face to cut out ({listing.left_out_counts()})")
    return cut


def label_list_text(columns: list[str], entries: list[Entry], out: Path) -> str:
    """The label list's CSV text; paths relative to the list's folder where they can be, so the list and its images move together."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for entry in entries:
        try:
            path = Path(os.path.relpath(entry.file.absolute(), out.absolute().parent)).as_posix()
        except ValueError:  # Windows: another drive than the list's has no relative path
            path = str(entry.file.absolute())
        writer.writerow([path, entry.label, *(entry.groups.get(name, "") for name in columns[2:])])
    return text.getvalue()


def summary(entries: list[Entry], listing: Listing) -> str:
    """Counts per label, per split where the dataset has one, and of what was left out (with the first such file), for the printout."""
    lines = ["  " + ", ".join(f"{label} {n}" for label, n in sorted(Counter(entry.label for entry in entries).items()))]
    splits = Counter(entry.groups["split"] for entry in entries if "split" in entry.groups)
    if splits:
        lines.append("  split: " + ", ".join(f"{name} {n}" for name, n in sorted(splits.items())))
    lines += [f"  left out: {n} ({why}{f'; the first: {listing.first_left_out[why]}' if why in listing.first_left_out else ''})" for why, n in listing.left_out.items()]
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m fer_keras.label_list",
        description="Write a .csv label list (path, label, groups) from a public FER dataset's own annotations.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="formats:\n" + "\n".join(f"  {name:<10} {text}" for name, text in FORMATS.items()),
    )
    parser.add_argument("format", choices=FORMATS, help="the dataset whose annotations ROOT holds")
    parser.add_argument("root", type=Path, help="where the dataset was unpacked")
    parser.add_argument("--out", required=True, type=Path, help=f"the label list to write ({LABEL_LIST_SUFFIX}); name it train.csv or test.csv in one folder for a train/test pair")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]", help="keep only faces with one of these values in a column (repeatable; e.g. split=test, pose=frontal, frame=peak)")
    parser.add_argument("--peak-frames", type=at_least(1), metavar="N", help="ckplus: frames up to each sequence's apex labelled with its emotion (default 3)")
    parser.add_argument("--cut-faces", action="store_true", help=f"cut each annotated face box out into OUT's name + _faces/ ({FACE_SIDE} px JPEGs) and list those (always for expw; affectnet's boxes otherwise unused)")
    parser.add_argument("--detect-faces", nargs="?", const="blazeface", choices=DETECTORS, metavar="DETECTOR", help="cut the largest face a detector finds in each image out into OUT's name + _faces/, as detect and evaluate --crop-faces frame it (default detector blazeface)")
    parser.add_argument("--detector-model", help="model file for a detector that needs one (yunet: its .onnx)")
    parser.add_argument("--margin", type=in_range(0, MAX_CROP_MARGIN), metavar="M", help="with cut-out faces: a border around each box, as a fraction of its larger side (default: 0 for annotated boxes, the detector's measured margin for detected ones)")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.root, args.out = args.root.expanduser(), args.out.expanduser()  # "~/KDEF" quoted, or from a script
    if args.out.suffix.lower() != LABEL_LIST_SUFFIX:
        raise UserError(f"--out {args.out}: a label list is a {LABEL_LIST_SUFFIX} file")
    if args.peak_frames is not None and args.format != "ckplus":
        raise UserError(f"--peak-frames applies to ckplus sequences, not {args.format}")
    if args.cut_faces and args.format not in BOXED_FORMATS:
        raise UserError(f"--cut-faces needs face boxes, which {args.format} does not give (only {', '.join(BOXED_FORMATS)})")
    if args.detect_faces and (args.cut_faces or args.format == "expw"):
        raise UserError(f"--detect-faces finds faces where the annotations box none; {args.format} boxes them (--cut-faces)" if args.format == "expw" else "--detect-faces and --cut-faces both choose the face: give one")
    cutting = args.cut_faces or args.format == "expw" or args.detect_faces
    if args.margin is not None and not cutting:
        raise UserError("--margin applies to cut-out faces: add --detect-faces, or --cut-faces (affectnet), or list expw")
    detector = make_detector(args.detect_faces, args.detector_model) if args.detect_faces else None  # fails before any image is read
    listing = read_dataset(args.format, args.root, args.peak_frames or 3)
    columns, kept = select(listing, args.where)
    if cutting:
        faces_dir = args.out.with_name(f"{args.out.stem}_faces")
        kept = cut_faces(kept, args.root, faces_dir, args.margin, listing, detector)
        print(f"cut {len(kept)} faces out into {faces_dir}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, label_list_text(columns, kept, args.out))
    print(f"wrote {len(kept)} faces to {args.out}\n{summary(kept, listing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
