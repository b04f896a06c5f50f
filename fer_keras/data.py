"""Datasets: where the images are, how they are labelled, and reading them into arrays.

This module imports no TensorFlow, so `.tflite` evaluation can reuse it; the tf.data
pipeline that feeds training lives in `fer_keras.pipeline`.

Images are decoded once with Pillow into uint8 arrays. That decode is the fast scan
for corrupt files: anything Pillow cannot fully load is listed and skipped before
training starts, so no epoch can crash on it. (Keras's `image_dataset_from_directory`
can neither skip listed files nor select FERPlus splits that cut across the Kaggle
train/test folders nor carry vote distributions, so file lists are built here.)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PureWindowsPath

import numpy as np
from PIL import Image

from fer_keras import labels as taxonomy
from fer_keras.config import PUBLIC_TEST_SPLITS, DataConfig, ExperimentConfig
from fer_keras.errors import UserError, missing_train_extra
from fer_keras.sources import HEIF_SUFFIXES, eight_bit_upright, register_pillow_formats

log = logging.getLogger(__name__)

KAGGLE_DATASET = "msambare/fer2013"
DATA_ENV = "FER_KERAS_DATA"
# A label list names each face's file and label, for datasets whose labels live in a table or in
# file names (RAF-DB, KDEF, JAFFE, AffectNet) rather than in class folders.
LABEL_LIST_SUFFIX = ".csv"
LABEL_LIST_COLUMNS = ("path", "label")
# A dataset root's own map from its files to FERPlus rows (``fer_keras.unpack`` writes one), read in
# place of the vendored msambare map.
FERPLUS_ROW_MAP = "ferplus_rows.csv"
# FERPlus's vote columns (fer2013new.csv's after Usage and Image name): its emotions, then unknown and NF (not a face).
FERPLUS_VOTE_COLUMNS = (*(taxonomy.FERPLUS_COLUMNS[label] for label in taxonomy.FERPLUS_LABELS), "unknown", "NF")
# FERPlus's own layout, as Microsoft's generate_training_data.py writes it: a folder per usage, each
# with its PNGs and a header-less label.csv of image name, face box, then the FERPLUS_VOTE_COLUMNS.
FERPLUS_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
FERPLUS_LABEL_FILE = "label.csv"


@dataclass
class Split:
    """One split held in memory.

    Attributes:
        images: uint8 array (N, H, W, C) of raw pixels.
        targets: float32 array (N, num_classes): one-hot labels or vote distributions.
        paths: The source file of each image.
    """

    images: np.ndarray
    targets: np.ndarray
    paths: list[str]

    @property
    def labels(self) -> np.ndarray:
        """Hard labels (N,): the argmax of the targets."""
        return self.targets.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: np.ndarray) -> "Split":
        """The images at ``indices``, in that order."""
        return Split(self.images[indices], self.targets[indices], [self.paths[i] for i in indices])

    def joined(self, other: "Split") -> "Split":
        """This split's images followed by ``other``'s."""
        return Split(np.concatenate([self.images, other.images]), np.concatenate([self.targets, other.targets]), self.paths + other.paths)


# The Kaggle FER2013 files are named after the original split they come from ("PrivateTest_123.jpg"):
# published FER2013 results train on Training, choose on PublicTest and test on PrivateTest, while
# the Kaggle test folder holds both halves.
FER2013_USAGES = ("Training", "PublicTest", "PrivateTest")


def fer2013_usage(path: str | os.PathLike) -> str:
    """The original FER2013 split a Kaggle file name starts with (``PublicTest_42.jpg`` → ``PublicTest``); other names give their own first word."""
    return Path(path).name.split("_", 1)[0]


@dataclass
class Dataset:
    """A labelled dataset: class names and its splits ("train", "val", "test")."""

    labels: tuple[str, ...]
    splits: dict[str, Split]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    excluded_classes: list[str] = field(default_factory=list)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class for every split."""
        return {
            name: {label: int(n) for label, n in zip(self.labels, np.bincount(split.labels, minlength=len(self.labels)))}
            for name, split in self.splits.items()
        }


def locate_data_dir(data_dir: str | os.PathLike | None, option: str = "--data-dir") -> Path:
    """Finds the dataset root: the argument, then $FER_KERAS_DATA, then a kagglehub download.

    Args:
        data_dir: An explicit directory or ``.csv`` label list (see ``read_label_list``), or None.
        option: The command-line option that gave ``data_dir``, for the error messages.

    Returns:
        The existing dataset directory or label list.

    Raises:
        UserError: When the given path is missing or is a file other than a label list, or when no
            option yields data.
    """
    for candidate, origin in ((data_dir, option), (os.environ.get(DATA_ENV), f"${DATA_ENV}")):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file() and path.suffix.lower() != LABEL_LIST_SUFFIX:
                raise UserError(f"{path}: data ({origin}) must be a folder of class folders or a {LABEL_LIST_SUFFIX} label list")
            if not path.exists():
                raise UserError(f"{path}: data directory ({origin}) does not exist")
            return path
    try:
        import kagglehub
    except ImportError as err:
        raise UserError(f"no dataset found: pass --data-dir DIR or set ${DATA_ENV}=DIR; downloading {KAGGLE_DATASET} {missing_train_extra(err)}") from None
    try:
        return Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as err:  # kagglehub raises many types offline (connection, auth, HTTP)
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(
            f"no dataset found: pass --data-dir DIR, set ${DATA_ENV}=DIR, or go online so kagglehub can "
            f"download {KAGGLE_DATASET} (download failed: {reason})"
        ) from None


def label_list_entries(path: Path) -> tuple[list[str], list[tuple[Path, str, dict[str, str]]]]:
    """Reads a CSV label list: its header, and (file, label, every column's value by header name) per row, in the list's order.

    The list has a header row naming a ``path`` and a ``label`` column, in any case (others, such as
    a subject or a source, serve for grouping), and one face per row. Relative paths are taken
    from the list's own folder, so a list travels with its images; backslashes separate folders, as
    in a list written on Windows.

    Raises:
        UserError: When the file cannot be read as UTF-8 CSV, lacks a column it needs, has a row
            with an empty path or label, lists a path twice, or has no rows.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets save a BOM
            reader = csv.DictReader(handle)
            header = [name for name in reader.fieldnames or () if name]
            columns = {name.strip().lower(): name for name in header}
            if "pixels" in columns and "emotion" in columns:
                raise UserError(f"{path}: this is FER2013's pixel table, not a label list; write it as image folders first: python -m fer_keras.unpack {path} --out DIR")
            if any(name not in columns for name in LABEL_LIST_COLUMNS):
                raise UserError(f"{path}: a label list needs a header row with columns {' and '.join(LABEL_LIST_COLUMNS)}; found {', '.join(header) or 'nothing'}")
            rows: list[tuple[Path, str, dict[str, str]]] = []
            first_line: dict[str, int] = {}
            for row in reader:
                file, label = ((row.get(columns[name]) or "").strip() for name in LABEL_LIST_COLUMNS)
                if not (file and label):
                    raise UserError(f"{path}: line {reader.line_num} needs both a path and a label")
                if os.sep == "/" and "\\" in file:  # a list written on Windows: faces\angry\1.jpg
                    file = PureWindowsPath(file).as_posix()
                # A face listed twice would count twice, or under two labels: one label a face.
                if file in first_line:
                    raise UserError(f"{path}: line {reader.line_num} lists {file} again (first on line {first_line[file]})")
                first_line[file] = reader.line_num
                rows.append((path.parent / Path(file).expanduser(), label, {name: (row.get(name) or "").strip() for name in header}))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a UTF-8 CSV label list ({err})") from None
    if not rows:
        raise UserError(f"{path}: the label list has no rows")
    return header, rows


def label_list_rows(path: Path, group_by: str | None = None) -> list[tuple[Path, str, str]]:
    """(file, label, the row's ``group_by`` value or "") per row of a CSV label list (``label_list_entries``), in the list's order.

    Raises:
        UserError: As ``label_list_entries``, and when ``group_by`` names no column (in any case).
    """
    header, rows = label_list_entries(path)
    column = next((name for name in header if group_by and name.strip().lower() == group_by.strip().lower()), None)
    if group_by and column is None:
        raise UserError(f"{path}: no column {group_by} to group by; found {', '.join(header)}")
    return [(file, label, groups.get(column, "") if column else "") for file, label, groups in rows]


def read_label_list(path: Path) -> dict[str, list[Path]]:
    """Lists image files per label from a CSV label list (``label_list_rows``), in the list's order.

    Labels map onto a model's labels through the same aliases as class folders (``Anger`` is ``angry``).
    """
    files: dict[str, list[Path]] = {}
    for file, label, _ in label_list_rows(path):
        files.setdefault(label, []).append(file)
    return dict(sorted(files.items()))


def label_list_groups(root: Path, column: str) -> dict[str, str]:
    """Each listed file's value in ``column`` of the label lists at ``root``: the list itself, or its ``train.csv`` and ``test.csv``.

    The keys are the file paths as the dataset's splits spell them.

    Raises:
        UserError: When ``root`` holds no label list, or a list lacks ``column``.
    """
    parts = (dataset_part(root, name) for name in ("train", "test"))
    lists = [root] if root.is_file() else [part for part in parts if part and part.is_file()]
    if not lists:
        raise UserError(f"{root}: grouping by a column ({column}) needs a {LABEL_LIST_SUFFIX} label list, and this data has none")
    return {str(file): group for label_list in lists for file, _, group in label_list_rows(label_list, column)}


def list_labelled_files(root: Path) -> dict[str, list[Path]]:
    """Lists image files per class folder of ``root`` (sorted, so the order is reproducible), or per label of a label list.

    Raises:
        UserError: When ``root`` is missing or has no class folders with files.
    """
    if root.is_file():
        return read_label_list(root)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    classes = {
        d.name: sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    classes = {name: files for name, files in classes.items() if files}
    if not classes:
        raise UserError(f"{root}: expected one sub-folder of images per class, found none")
    return classes


def to_uint8_array(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """Converts a Pillow image of any mode and bit depth to a (size, size, channels) uint8 array.

    The image is turned upright as its EXIF orientation says (phone photos are stored sideways) and
    brought to 8 bits as ``detect`` and the API read it (``sources.eight_bit_upright``).
    """
    image = eight_bit_upright(image).convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def read_images(paths: list[Path], size: int, channels: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decodes image files, skipping the unreadable ones.

    Args:
        paths: Files to read.
        size: Output height and width.
        channels: 1 for grayscale, 3 for RGB.

    Returns:
        The images (M, size, size, channels) uint8, a boolean mask over ``paths`` of those read,
        and (path, reason) for each skipped file.
    """
    if any(path.suffix.lower() in HEIF_SUFFIXES for path in paths):
        register_pillow_formats()  # faces saved as HEIC; imported only then, so trainers need pillow-heif only for such files
    images = np.zeros((len(paths), size, size, channels), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    skipped = []
    for i, path in enumerate(paths):
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            with Image.open(path) as image:
                image.load()  # forces a full decode, so truncated files fail here and not mid-epoch
                images[i] = to_uint8_array(image, size, channels)
            ok[i] = True
        except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
            skipped.append((str(path), str(err).splitlines()[0] if str(err) else type(err).__name__))
    return images[ok], ok, skipped


def pixel_digests(paths: list[str | os.PathLike]) -> list[str | None]:
    """A digest of each image's pixels in grayscale (upright, 8-bit, its own size), or None where it cannot be read.

    Equal digests mean pixel-identical faces, whatever the files are named or labelled: FER2013's
    test folder holds faces identical to training ones, which a model may simply remember.
    """
    digests: list[str | None] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                gray = np.asarray(eight_bit_upright(image).convert("L"))
        except Exception:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
            digests.append(None)
            continue
        digests.append(hashlib.blake2b(gray.tobytes() + str(gray.shape).encode(), digest_size=16).hexdigest())
    return digests


def training_files(root: Path) -> list[Path]:
    """The image files a model would train on from ``root``: its ``train`` part (folder or list) where it has one, else all of it."""
    if is_ferplus_layout(root):
        return sorted((root / FERPLUS_FOLDERS["Training"]).glob("*.png"))
    return [file for files in list_labelled_files(dataset_part(root, "train") or root).values() for file in files]


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced class weights n / (k * count_c), as scikit-learn's 'balanced'; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _one_hot(indices: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[indices]


def _cap_per_class(paths: list[Path], targets: np.ndarray, cap: int) -> tuple[list[Path], np.ndarray]:
    if cap <= 0:
        return paths, targets
    keep, seen = [], {}
    for i, label in enumerate(targets.argmax(axis=1)):
        if seen.get(label, 0) < cap:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    return [paths[i] for i in keep], targets[keep]


def _stratified_holdout(split: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Splits off ``size`` images, seeded, stratified where it can be: (the rest, the hold-out)."""
    from sklearn.model_selection import train_test_split

    labels = split.labels
    counts = np.bincount(labels)
    # Stratify only where every class can appear on both sides; tiny folders fall back to a plain shuffle.
    stratifiable = counts[counts > 0].min() >= 2 and size >= (counts > 0).sum()
    stratify = labels if stratifiable else None
    train_idx, val_idx = train_test_split(np.arange(len(split)), test_size=size, random_state=seed, stratify=stratify)
    return split.take(np.sort(train_idx)), split.take(np.sort(val_idx))


def _group_members(split: Split, groups: dict[str, str]) -> list[str]:
    """Each image's group by its path; an image without one is a group of its own."""
    return [groups.get(path) or path for path in split.paths]


def _group_holdout(split: Split, size: int, seed: int, groups: dict[str, str], source: Path) -> tuple[Split, Split]:
    """Splits off whole groups of images, seeded, until the hold-out holds at least ``size``: (the rest, the hold-out).

    ``groups`` gives the images' groups (``_group_members``).

    Raises:
        UserError: When the images form a single group, which cannot be on both sides.
    """
    members = _group_members(split, groups)
    names = sorted(set(members))
    if len(names) < 2:
        raise UserError(f"{source}: a hold-out by group (data.split_by) needs at least 2 groups; all {len(split)} faces are in {names[0]}")
    order = np.random.default_rng(seed).permutation(len(names))
    counts = Counter(members)
    chosen: set[str] = set()
    held_count = 0
    for index in order:
        # At least one group stays behind, however large the share asked for.
        if held_count >= size or len(chosen) == len(names) - 1:
            break
        chosen.add(names[index])
        held_count += counts[names[index]]
    held = np.array([member in chosen for member in members])
    return split.take(np.flatnonzero(~held)), split.take(np.flatnonzero(held))


def _fold_holdout(split: Split, folds: int, fold: int, seed: int, groups: dict[str, str] | None, source: Path) -> tuple[Split, Split]:
    """Fold ``fold`` of ``folds`` as the hold-out: (the rest, the fold), stratified by class and seeded.

    With ``groups`` (the images' groups, ``_group_members``) each group falls in one fold whole (scikit-learn's StratifiedGroupKFold).

    Raises:
        UserError: When the images cannot be cut into that many folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    try:
        if groups is None:
            parts = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(split)), split.labels)
        else:
            parts = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(split)), split.labels, _group_members(split, groups))
        rest, held = list(parts)[fold]
    except ValueError as err:
        raise UserError(f"{source}: {folds}-fold cross-validation: {err}") from None
    return split.take(rest), split.take(held)


def _usage_splits(
    folder: Path, labels: tuple[str, ...], size: int, channels: int, cap: int, skipped: list, excluded: set, usages: tuple[str, ...],
    val_split: str,
) -> list[Split]:
    """FER2013's test files of each original split named (``PublicTest``, ``PrivateTest``), by their Kaggle names.

    Each split is capped and read on its own, as every other split is: capped as one folder, the sorted
    names would give every class PrivateTest files only, and a split not asked for is never read.

    Raises:
        UserError: When one has no file, as in a folder not named the Kaggle way.
    """
    paths, targets = _class_files(folder, labels, excluded)
    found = np.array([fer2013_usage(path) for path in paths])
    halves = []
    for usage in usages:
        members = np.flatnonzero(found == usage)
        if members.size == 0:
            raise UserError(f"{folder}: data.val_split={val_split} needs FER2013's Kaggle file names ({usage}_*.jpg), and none is here")
        chosen, chosen_targets = _cap_per_class([paths[i] for i in members], targets[members], cap)
        halves.append(_read_split(chosen, chosen_targets, size, channels, skipped))
    return halves


def _read_split(paths: list[Path], targets: np.ndarray, size: int, channels: int, skipped: list) -> Split:
    images, ok, bad = read_images(paths, size, channels)
    skipped.extend(bad)
    return Split(images, targets[ok], [str(p) for p, good in zip(paths, ok) if good])


def _class_files(root: Path, labels: tuple[str, ...], excluded: set) -> tuple[list[Path], np.ndarray]:
    """The files of the class folders under ``root`` that match ``labels``, with one-hot targets; unmatched folders go to ``excluded``."""
    folders = list_labelled_files(root)
    mapping, unmatched = taxonomy.match_classes(list(folders), labels)
    excluded.update(unmatched)
    if not mapping:
        raise UserError(f"{root}: no class ({', '.join(folders)}) matches the labels {', '.join(labels)}")
    paths = [p for folder, idx in mapping.items() for p in folders[folder]]
    targets = _one_hot(np.array([idx for folder, idx in mapping.items() for _ in folders[folder]]), len(labels))
    return paths, targets


def _folder_split(root: Path, labels: tuple[str, ...], size: int, channels: int, cap: int, skipped: list, excluded: set) -> Split:
    paths, targets = _cap_per_class(*_class_files(root, labels, excluded), cap)
    return _read_split(paths, targets, size, channels, skipped)


def dataset_part(root: Path, name: str) -> Path | None:
    """A root's ``train`` or ``test`` part: the folder of that name, else a label list ``<name>.csv``, else None."""
    folder, label_list = root / name, root / f"{name}{LABEL_LIST_SUFFIX}"
    return folder if folder.is_dir() else label_list if label_list.is_file() else None


def folder_labels(root: Path) -> tuple[str, ...]:
    """Class names of a labelled folder or label list (with or without a train part), canonicalised where known."""
    base = dataset_part(root, "train") or root
    return tuple(sorted({taxonomy.canonical(name) or name for name in list_labelled_files(base)}))


def load_folder_dataset(
    root: Path,
    labels: tuple[str, ...],
    image_size: int,
    channels: int,
    val_fraction: float = 0.1,
    seed: int = 1337,
    max_per_class: int = 0,
    with_test: bool = True,
    test_fraction: float = 0.0,
    val_split: str = "holdout",
    split_by: str | None = None,
    cv_folds: int = 0,
    cv_fold: int = 0,
) -> Dataset:
    """Loads a folder of class folders or a label list, or a root with ``train/`` and ``test/`` inside.

    Class folders map onto ``labels`` through the aliases; unmatched ones are excluded and
    listed. Label lists (``read_label_list``) stand in for class folders anywhere: ``root`` may be
    one, and ``train.csv`` and ``test.csv`` may stand in for ``train/`` and ``test/``. With
    ``train/`` present, validation is a seeded stratified hold-out from it and ``test/`` (if
    present) is the test split. Without it, a plain folder is the test split
    whole (faces a model never saw), or with ``test_fraction`` > 0 (a folder to train on) it
    is split: a stratified test hold-out first, then validation from the rest, all seeded.
    ``val_split="public_test"`` follows FER2013's published protocol instead: ``train/`` is
    trained on whole, ``test/``'s ``PublicTest_*`` files validate and its ``PrivateTest_*`` files
    test (``val_fraction`` is then unused, and ``test/`` is read even without ``with_test``).
    ``val_split="public_test_refit"`` is that protocol's refit: the PublicTest files train too
    (and stay the val split, whose figures are then fit, not validation), for a recipe already
    chosen on PublicTest.
    With ``split_by`` (a column of the label list trained on), each hold-out takes whole groups
    of that column, seeded, instead of single faces, so that no person is in two splits. With
    ``cv_folds`` > 1 a plain folder's test split is fold ``cv_fold`` of that many instead of a
    ``test_fraction`` share (k-fold cross-validation: one run per fold).

    Raises:
        UserError: When the folder is missing, empty or has no matching class folders (FERPlus's
            own layout has its usages' folders instead), or ``split_by`` names no column of a label list.
    """
    if is_ferplus_layout(root):
        raise UserError(f"{root}: FERPlus's own layout ({', '.join(FERPLUS_FOLDERS.values())}) holds FERPlus's votes "
                        "and no class folders: use the ferplus label set (data.label_set=ferplus, --label-set ferplus)")
    skipped: list[tuple[str, str]] = []
    excluded: set[str] = set()
    splits: dict[str, Split] = {}
    train_part, test_part = dataset_part(root, "train"), dataset_part(root, "test")
    plain_to_train = train_part is None and (test_fraction > 0 or cv_folds > 1)
    if cv_folds > 1 and train_part is not None:
        raise UserError(f"{root}: data.cv_folds folds a folder or label list trained on, and this one has its own train part")
    protocol = val_split in PUBLIC_TEST_SPLITS
    if split_by and protocol:
        raise UserError(f"{root}: data.split_by cuts hold-outs, and data.val_split={val_split} takes FER2013's fixed splits instead")
    if train_part or plain_to_train:
        groups = label_list_groups(train_part or root, split_by) if split_by else None  # before any image is read, so a wrong column fails at once
        train = _folder_split(train_part or root, labels, image_size, channels, max_per_class, skipped, excluded)

        def holdout(split: Split, size: int) -> tuple[Split, Split]:
            return _group_holdout(split, size, seed, groups, train_part or root) if groups is not None else _stratified_holdout(split, size, seed)

        # Both hold-outs are shares of all the training images, rounded up (train_test_split rounds a float share so too).
        whole = len(train)
        if plain_to_train and cv_folds > 1:
            train, test = _fold_holdout(train, cv_folds, cv_fold, seed, groups, root)
        elif plain_to_train:
            train, test = holdout(train, int(np.ceil(test_fraction * whole)))
        if protocol:
            if plain_to_train or test_part is None:
                raise UserError(f"{root}: data.val_split={val_split} needs FER2013's test/ folder beside train/")
            # A training-only host holds test/'s PublicTest files alone (experiments/accelerator/pack_images.py).
            wanted = ("PublicTest", "PrivateTest") if with_test else ("PublicTest",)
            held_out = _usage_splits(test_part, labels, image_size, channels, max_per_class, skipped, excluded, wanted, val_split)
            splits = dict(zip(("train", "val", "test"), [train, *held_out]))
            if val_split == "public_test_refit":
                splits["train"] = train.joined(splits["val"])
        else:
            if val_fraction > 0:
                train, splits["val"] = holdout(train, int(np.ceil(val_fraction * whole)))
            splits = {"train": train, **splits}
            if with_test and plain_to_train:
                splits["test"] = test
            elif with_test and test_part:
                splits["test"] = _folder_split(test_part, labels, image_size, channels, max_per_class, skipped, excluded)
    else:
        splits["test"] = _folder_split(root, labels, image_size, channels, max_per_class, skipped, excluded)
    for name, split in splits.items():
        if len(split) == 0:
            # The first reason says why (a label list written on another machine: every path missing).
            why = f" ({len(skipped)} skipped; the first: {skipped[0][1]})" if skipped else ""
            raise UserError(f"{root}: the {name} split has no readable images{why}")
    return Dataset(labels, splits, skipped, sorted(excluded))


def is_ferplus_layout(root: Path) -> bool:
    """Whether ``root`` is FERPlus's own layout (``FER2013Train/label.csv`` and the like; see ``FERPLUS_FOLDERS``)."""
    return any((root / folder / FERPLUS_LABEL_FILE).is_file() for folder in FERPLUS_FOLDERS.values())


def _ferplus_layout_votes(root: Path):
    """Every face's votes from the label.csv files of FERPlus's own layout: file, usage and the FERPLUS_VOTE_COLUMNS."""
    import pandas as pd

    frames = []
    for usage, folder in FERPLUS_FOLDERS.items():
        label_file = root / folder / FERPLUS_LABEL_FILE
        if not label_file.is_file():
            continue
        table = pd.read_csv(label_file, header=None, names=["name", "box", *FERPLUS_VOTE_COLUMNS], dtype=str, keep_default_na=False)
        votes = table[list(FERPLUS_VOTE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
        malformed = votes.isna().any(axis=1) | (table["name"] == "")
        if malformed.any():
            row = int(malformed.to_numpy().argmax()) + 1
            raise UserError(f"{label_file}: row {row} is not FERPlus's label.csv format (image name, face box, "
                            f"{len(FERPLUS_VOTE_COLUMNS)} vote counts: {', '.join(FERPLUS_VOTE_COLUMNS)})")
        votes.insert(0, "usage", usage)
        votes.insert(0, "file", folder + "/" + table["name"])
        frames.append(votes)
    # Five FERPlus image names stand for two fer2013.csv rows each (same votes); the tool saved one file.
    return pd.concat(frames, ignore_index=True).drop_duplicates(subset="file")


def _ferplus_table(name: str):
    import pandas as pd

    with resources.files("fer_keras.resources.ferplus").joinpath(f"{name}.csv.gz").open("rb") as raw:
        with gzip.open(raw) as text:
            return pd.read_csv(text)


def ferplus_rows() -> list[tuple[str, str]]:
    """(usage, FERPlus image name or "" where FERPlus removed the face) per row of FERPlus's vote table, which follows fer2013.csv's row order."""
    table = _ferplus_table("fer2013new")
    return list(zip(table["Usage"], table["Image name"].fillna("")))


def ferplus_targets(soft: bool, root: Path | None = None) -> "object":
    """FERPlus targets for every usable file of a dataset root, from FERPlus's crowd votes.

    FERPlus's own layout (``is_ferplus_layout``) carries its votes. Other roots' files map to rows
    of the vendored vote table through ``root``'s own ``FERPLUS_ROW_MAP`` where it has one (a root
    written by ``fer_keras.unpack``), else through the vendored map of the Kaggle msambare layout.
    Rows are dropped when the file maps to more than one FERPlus image (n_candidates != 1), when the
    top vote is 'unknown' or 'NF' (not a face), or when the top vote is tied. Each file appears once.

    Args:
        soft: Return the vote distribution over the 8 emotions instead of one-hot majority labels.

    Returns:
        A pandas DataFrame with columns file (relative to the dataset root), usage, and one
        float column per FERPlus label.
    """
    table = _ferplus_layout_votes(root) if root is not None and is_ferplus_layout(root) else _mapped_ferplus_votes(root)
    emotions = len(taxonomy.FERPLUS_LABELS)
    all_votes = table[list(FERPLUS_VOTE_COLUMNS)].to_numpy(dtype=np.float32)
    top = all_votes.max(axis=1)
    unique_top = (all_votes == top[:, None]).sum(axis=1) == 1
    emotion_top = all_votes[:, :emotions].max(axis=1) == top
    keep = unique_top & emotion_top & (top > 0)
    table, emotion_votes = table[keep], all_votes[keep, :emotions]
    if soft:
        values = emotion_votes / emotion_votes.sum(axis=1, keepdims=True)
    else:
        values = _one_hot(emotion_votes.argmax(axis=1), emotions)
    out = table[["file", "usage"]].reset_index(drop=True)
    for j, label in enumerate(taxonomy.FERPLUS_LABELS):
        out[label] = values[:, j]
    return out


def _mapped_ferplus_votes(root: Path | None):
    """The vendored votes of every file that ``root``'s row map (or the vendored msambare map) ties to one FERPlus row."""
    import pandas as pd

    votes = _ferplus_table("fer2013new")
    own_map = root / FERPLUS_ROW_MAP if root is not None else None
    mapping = pd.read_csv(own_map) if own_map is not None and own_map.is_file() else _ferplus_table("msambare_to_ferplus")
    mapping = mapping[mapping["n_candidates"] == 1]
    votes = votes.dropna(subset=["Image name"])
    # fer2013new.csv gives five FERPlus image names two rows each (same votes), which the merge would
    # turn into five training faces read twice.
    votes = votes.drop_duplicates(subset=["Image name", "Usage"])
    return mapping.merge(votes, left_on=["ferplus_image", "usage"], right_on=["Image name", "Usage"], how="inner")


def with_crowd_votes(split: Split, root: Path, labels: tuple[str, ...], weight: float) -> Split:
    """The split with each face's target mixed with FERPlus's crowd votes: ``(1 - weight) * target + weight * votes``.

    FERPlus had ten annotators relabel every FER2013 face. Their vote distribution says how
    ambiguous a face is, which its one original label cannot; below a weight of 0.5 the original
    label stays each target's largest share. Votes for classes outside ``labels`` (contempt) are
    dropped and the rest renormalised. Faces without usable votes keep their target: those that
    map to no single FERPlus row, whose top vote is unknown, not-a-face or tied, or whose votes all
    fall outside ``labels``.

    Args:
        split: Faces of the Kaggle msambare/fer2013 layout under ``root``.
        root: The dataset root that ``split.paths`` start with.
        labels: The class order of ``split.targets`` (names shared with FERPlus's labels).
        weight: The crowd's share of each target, in [0, 1].

    Raises:
        UserError: When no face of the split has usable votes (not the msambare layout).
    """
    table = ferplus_targets(soft=True, root=root).set_index("file")
    files = [Path(path).relative_to(root).as_posix() for path in split.paths]
    votes = table.reindex(files)[list(labels)].to_numpy(dtype=np.float32)  # NaN rows: no usable votes
    totals = np.nan_to_num(votes).sum(axis=1)
    usable = totals > 0
    if not usable.any():
        raise UserError(f"{root}: data.crowd_vote_weight needs FERPlus votes, and none of the {len(files)} training "
                        "faces has any (is this the msambare/fer2013 layout?)")
    log.info("crowd votes mixed into %d of %d training targets (weight %g)", usable.sum(), len(files), weight)
    targets = split.targets.copy()
    targets[usable] = (1.0 - weight) * targets[usable] + weight * votes[usable] / totals[usable, None]
    return Split(split.images, targets, split.paths)


def load_ferplus_dataset(
    root: Path, image_size: int, channels: int, soft: bool = False, max_per_class: int = 0, with_test: bool = True
) -> Dataset:
    """Loads FERPlus labels over the FER2013 images: Training, PublicTest (val), PrivateTest (test).

    Raises:
        UserError: When ``root`` holds neither the Kaggle train/ and test/ folders nor FERPlus's own layout.
    """
    if not (is_ferplus_layout(root) or ((root / "train").is_dir() and (root / "test").is_dir())):
        raise UserError(f"{root}: FERPlus needs the Kaggle msambare/fer2013 layout (train/ and test/ folders) or FERPlus's own "
                        f"({', '.join(FERPLUS_FOLDERS.values())} folders with their {FERPLUS_LABEL_FILE})")
    table = ferplus_targets(soft, root)
    skipped: list[tuple[str, str]] = []
    splits = {}
    usages = (("Training", "train"), ("PublicTest", "val")) + ((("PrivateTest", "test"),) if with_test else ())
    for usage, split_name in usages:
        rows = table[table["usage"] == usage]
        paths = [root / f for f in rows["file"]]
        targets = rows[list(taxonomy.FERPLUS_LABELS)].to_numpy(dtype=np.float32)
        present = np.array([p.is_file() for p in paths], dtype=bool)
        if not present.any():
            raise UserError(f"{root}: none of the FERPlus {usage} files were found (in {FERPLUS_FOLDERS[usage]}/ or the msambare layout's folders)")
        paths, targets = _cap_per_class([p for p, ok in zip(paths, present) if ok], targets[present], max_per_class)
        splits[split_name] = _read_split(paths, targets, image_size, channels, skipped)
    return Dataset(taxonomy.FERPLUS_LABELS, splits, skipped, [])


def load_dataset(
    label_set: str,
    data_dir: str | os.PathLike | None,
    image_size: int = 48,
    channels: int = 1,
    val_fraction: float = 0.1,
    soft_labels: bool = False,
    seed: int = 1337,
    max_per_class: int = 0,
    with_test: bool = True,
    test_fraction: float = 0.0,
    val_split: str = "holdout",
    split_by: str | None = None,
    cv_folds: int = 0,
    cv_fold: int = 0,
) -> Dataset:
    """Locates and loads a dataset for one of the label sets.

    Args:
        label_set: ``fer2013`` (7 folder labels), ``ferplus`` (8 vote labels) or ``folder`` (its own classes).
        data_dir: Dataset root, or None to use $FER_KERAS_DATA or kagglehub.
        image_size: Height and width the images are resized to.
        channels: 1 (grayscale) or 3 (RGB).
        val_fraction: Stratified validation hold-out from train (fer2013 and folder).
        soft_labels: FERPlus vote distributions as targets.
        seed: Seed of the hold-out split.
        max_per_class: Cap of images per class and split (0 = all).
        with_test: Also load the test split; training-only hosts leave it out (and need not hold its files).
        test_fraction: A plain folder's test hold-out, for folders trained on (0: the whole folder is the test split).
        val_split: ``holdout`` (``val_fraction`` of train), ``public_test`` (FER2013's published
            protocol, see ``load_folder_dataset``) or ``public_test_refit`` (that protocol with PublicTest
            trained on too); FERPlus always validates on PublicTest.
        split_by: A label list's column whose groups (subjects) each hold-out takes whole (fer2013 and folder).
        cv_folds: More than 1: a plain folder's test split is fold ``cv_fold`` of that many (k-fold cross-validation).
        cv_fold: The fold held out for testing, from 0.

    Returns:
        The dataset with its splits and the list of skipped files.
    """
    root = locate_data_dir(data_dir)
    if label_set == "ferplus":
        if split_by or cv_folds:
            raise UserError(f"{root}: data.{'split_by' if split_by else 'cv_folds'} cuts hold-outs, and FERPlus has fixed splits")
        dataset = load_ferplus_dataset(root, image_size, channels, soft_labels, max_per_class, with_test)
    else:
        labels = taxonomy.FER2013_LABELS if label_set == "fer2013" else folder_labels(root)
        dataset = load_folder_dataset(root, labels, image_size, channels, val_fraction, seed, max_per_class, with_test, test_fraction, val_split, split_by, cv_folds, cv_fold)
    for path, reason in dataset.skipped:
        log.warning("skipped %s: %s", path, reason)
    return dataset


# load_dataset's keyword arguments that cut a run's validation and test hold-outs, and the data.* keys naming them.
_HOLDOUT_KEYS = {"val_fraction": "val_fraction", "test_fraction": "test_fraction", "seed": "split_seed", "val_split": "val_split",
                 "split_by": "split_by", "cv_folds": "cv_folds", "cv_fold": "cv_fold"}


def run_data_settings(run_dir: Path) -> dict:
    """The data a training run used, from its folder's config.yaml; {} without one.

    Returns:
        ``label_set``, ``data_dir``, ``soft_labels``, and ``holdout``: the keyword arguments of
        ``load_dataset`` that cut the run's validation and test hold-outs (``val_fraction``,
        ``test_fraction``, ``seed``, ``val_split``, ``split_by``, ``cv_folds``, ``cv_fold``), those its config names, so the others keep the defaults.
    """
    config = run_dir / "config.yaml"
    if not config.is_file():
        return {}
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8")).get("data", {})
    return {
        "label_set": data.get("label_set"),
        "data_dir": data.get("data_dir"),
        "soft_labels": bool(data.get("soft_labels")),
        "holdout": {parameter: data[key] for parameter, key in _HOLDOUT_KEYS.items() if key in data},
    }


def trained_on_val(run_dir: Path) -> bool:
    """Whether the model in ``run_dir`` trained on its own val split, so its val figures are fit.

    True for a refit (``data.val_split=public_test_refit``: PublicTest trained on too) and for an
    ensemble or soup built with such a member (its metrics.json lists them under ``val_trained_on``).
    """
    if run_data_settings(run_dir).get("holdout", {}).get("val_split") == "public_test_refit":
        return True
    try:
        recorded = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # no metrics.json (a model file in a plain folder) or one written by another tool
    return isinstance(recorded, dict) and bool(recorded.get("val_trained_on"))


def _started_from(run_dir: Path) -> list[Path]:
    """The run folders whose models the run in ``run_dir`` learnt from: its ``train.init_from`` and ``data.teacher``, those with a config.yaml."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return []
    import yaml

    recorded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    sources = (recorded.get("train", {}).get("init_from"), recorded.get("data", {}).get("teacher"))
    folders = [Path(os.path.expanduser(source)).parent for source in sources if source]
    return [folder for folder in folders if (folder / "config.yaml").is_file()]


def trained_on_val_of(run_dir: Path, data: DataConfig, _visited: frozenset[Path] = frozenset()) -> bool:
    """Whether the model in ``run_dir``, or one it learnt from, trained on faces of the val split that ``data`` describes.

    On PublicTest (FERPlus's val split whatever ``val_split`` says, or FER2013's under the protocol),
    only a refit (or an ensemble or soup with one) did. A hold-out cut from the training faces is held
    out only by a run that cut it the same way, from the same data with the same label set and split
    settings (those the folder uses: one with its own train/ takes no test share or folds); any other run on that data, a protocol or FERPlus run on all of train/ included, trained
    on some of its faces. A run recorded on other data, or a model without a run folder, is taken not to have.
    What a run's start (``train.init_from``) or teacher (``data.teacher``) learnt, it learnt too: those
    with a run folder (a config.yaml beside the file, its path as recorded) are checked the same way.
    """
    if data.val_split in PUBLIC_TEST_SPLITS or data.label_set == "ferplus":
        trained = trained_on_val(run_dir)
    else:
        trained = _trained_on_holdout(run_dir, data)
    # A folder already on the lineage is not followed again: a run may name its own best.keras (a restart).
    visited = _visited | {run_dir.resolve()}
    return trained or any(trained_on_val_of(source, data, visited) for source in _started_from(run_dir) if source.resolve() not in visited)


def _trained_on_holdout(run_dir: Path, data: DataConfig) -> bool:
    """``trained_on_val_of`` for the run in ``run_dir`` itself, on a hold-out cut from train/ as ``data`` describes it."""
    run = run_data_settings(run_dir)
    if not run:
        return False
    recorded = Path(run["data_dir"]) if run.get("data_dir") else None
    root = locate_data_dir(data.data_dir)
    # As evaluate does, a run recorded on a folder missing here (a lent GPU's copy) is taken to have trained on this one.
    if recorded is not None and recorded.exists() and recorded.resolve() != root.resolve():
        return False
    # A folder with its own train part cuts only the validation hold-out: the test share and folds go unused.
    unused = {"test_fraction", "cv_folds", "cv_fold"} if dataset_part(root, "train") is not None else set()
    # A run's config.yaml older than a split setting lacks it, and that run split with its default.
    defaults = DataConfig()
    same_cut = run["label_set"] == data.label_set and all(
        run["holdout"].get(parameter, getattr(defaults, key)) == getattr(data, key) for parameter, key in _HOLDOUT_KEYS.items() if parameter not in unused
    )
    return not same_cut or trained_on_val(run_dir)


def run_data_config(run: dict, data_dir: Path) -> DataConfig:
    """The data settings a run cut its val split with, on ``data_dir``, from what ``run_data_settings`` read of its folder."""
    settings = {key: run["holdout"][parameter] for parameter, key in _HOLDOUT_KEYS.items() if parameter in run.get("holdout", {})}
    return DataConfig(data_dir=str(data_dir), label_set=run.get("label_set") or DataConfig().label_set, **settings)


def warn_members_trained_on_val(model_paths: list[Path], data: DataConfig) -> list[str]:
    """Warns of the models among ``model_paths`` that trained on faces of the val split ``data`` describes, and returns them.

    For a tool that scores several models on one val split (an ensemble, a soup): those models'
    figures there, and any choice made on them, are fit, not validation (see ``trained_on_val_of``).

    Args:
        model_paths: best.keras files in run folders (config.yaml, and metrics.json where written, beside each).
        data: The data settings of the split they are scored on (the first member's run's, with the tool's data folder).

    Returns:
        Those models' paths, as strings.
    """
    trained = [str(path) for path in model_paths if trained_on_val_of(Path(path).parent, data)]
    if trained:
        log.warning("%s: trained on the val split too (a refit, a member that was one, a run that cut its hold-out otherwise, or one started from or taught by such a model): "
                    "the val figures, and any choice made on them, are fit, not validation", ", ".join(trained))
    return trained


def val_trained_on_entry(chosen: list[str], trained: list[str]) -> dict:
    """The metrics entry naming the chosen models that trained on faces of the val split, or {} when none did.

    Args:
        chosen: The paths, as strings, of the models an ensemble or soup kept.
        trained: Those of ``warn_members_trained_on_val`` among the candidates.

    Returns:
        ``{"val_trained_on": [...]}`` when any chosen model is in ``trained`` (its tool's figures under
        "val" are then fit, not validation), else an empty dict.
    """
    fit = [path for path in chosen if path in trained]
    return {"val_trained_on": fit} if fit else {}


def load_config_dataset(config: ExperimentConfig, with_test: bool = True, max_per_class: int | None = None) -> Dataset:
    """Loads the dataset an experiment config names, as its data and model sections describe it.

    Args:
        config: A resolved experiment config (a run folder's, for tools that reuse a run's data).
        with_test: Also load the test split.
        max_per_class: Overrides ``data.max_per_class`` (a capped sample for a check or a refit).
    """
    data = config.data
    return load_dataset(
        data.label_set,
        data.data_dir,
        config.model.image_size,
        config.model.channels,
        data.val_fraction,
        data.soft_labels,
        data.split_seed,
        data.max_per_class if max_per_class is None else max_per_class,
        with_test,
        data.test_fraction,
        data.val_split,
        data.split_by,
        data.cv_folds,
        data.cv_fold,
    )


def load_for_experiment(config: ExperimentConfig, with_test: bool = True) -> Dataset:
    """Loads the dataset an experiment config names, checking it can train (train and val splits).

    With ``data.crowd_vote_weight`` set, the train targets are mixed with FERPlus's crowd votes; with
    ``data.teacher``, then with the teacher's probabilities.

    Args:
        config: The resolved experiment config.
        with_test: Also load the test split.

    Raises:
        UserError: When a file the config names is missing, or the data cannot be found or has no
            train split with a validation hold-out, or its train split has faces of only one class.
    """
    # Both trainers start here, so a mistyped path fails before any data is read or a run folder made.
    for key, path in (("data.teacher", config.data.teacher), ("train.init_from", config.train.init_from)):
        if path and not Path(path).is_file():
            raise UserError(f"{path}: {key} file not found")
    dataset = load_config_dataset(config, with_test)
    if "train" not in dataset.splits:
        raise UserError(f"{config.data.data_dir}: nothing to train on: no train/ folder, and data.test_fraction=0 keeps a plain folder whole for testing")
    if "val" not in dataset.splits:
        raise UserError(f"{config.data.data_dir}: training needs a validation hold-out (data.val_fraction > 0, or data.val_split=public_test)")
    present = [dataset.labels[i] for i in np.unique(dataset.splits["train"].labels)]
    if len(present) < 2:  # a classifier of one class learns nothing
        raise UserError(f"{config.data.data_dir}: training needs faces of at least 2 classes; found only {', '.join(present)}")
    # A folder's classes are its class folders: one without a face to train on would be an output
    # the model never learns (FER2013's and FERPlus's fixed classes may be absent from a subset).
    untrained = [label for label in dataset.labels if label not in present]
    if config.data.label_set == "folder" and untrained:
        raise UserError(f"{config.data.data_dir}: no readable training faces in class folder {', '.join(untrained)}: its files "
                        "are unreadable, or its faces are in test/ only; fix or remove it")
    if untrained:
        # Legitimate for a deliberate subset, but usually a folder of one's own classes trained
        # under the default label set: say so before an epoch is spent on outputs that cannot learn.
        log.warning("no training faces for %s of the %s classes: the model will not learn to predict %s; "
                    "to train on a folder's own classes, use data.label_set=folder",
                    ", ".join(untrained), config.data.label_set, "it" if len(untrained) == 1 else "them")
    if config.data.crowd_vote_weight:
        root = locate_data_dir(config.data.data_dir)
        dataset.splits["train"] = with_crowd_votes(dataset.splits["train"], root, dataset.labels, config.data.crowd_vote_weight)
    if config.data.teacher:
        from fer_keras.teacher import teacher_probabilities, with_teacher

        train = dataset.splits["train"]
        probabilities = teacher_probabilities(Path(config.data.teacher), train.images, dataset.labels)
        dataset.splits["train"] = with_teacher(train, probabilities, config.data.teacher_weight)
    return dataset
