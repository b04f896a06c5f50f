"""Typed experiment configuration: dataclasses loaded from YAML with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import yaml

from fer_keras.errors import UserError, check_at_least

# data.val_split values that validate on FER2013's PublicTest (public_test_refit trains on it too).
PUBLIC_TEST_SPLITS = ("public_test", "public_test_refit")

@dataclass
class AugmentConfig:
    """Training-time augmentation, applied in the tf.data pipeline only (never at evaluation)."""

    flip: bool = True
    rotation: float = 0.05  # fraction of a full turn (0.05 = +-18 degrees)
    translation: float = 0.1  # fraction of the image size
    zoom: float = 0.1
    brightness: float = 0.2  # fraction of the 0-255 range
    contrast: float = 0.2
    erasing: float = 0.0  # probability of erasing one random rectangle
    # Camera degradations, each a probability per face (0 disables): what phones and webcams add and FER's
    # studio-like crops lack (fer_keras.benchmark robustness measured the shipped models losing up to 43 points to them).
    low_resolution: float = 0.0  # shrink to 25-75% of the size and enlarge back (a distant face)
    blur: float = 0.0  # Gaussian defocus, sigma 0.5-5% of the width
    noise: float = 0.0  # Gaussian sensor noise, sigma 2-20 grey levels
    jpeg: float = 0.0  # JPEG round trip at quality 10-60
    # Face wear, a probability per face: a mask over the lower face or sunglasses over the eyes, at even odds,
    # of random extent and shade (release 0.9.0's tiers, trained without it, lost 38-42 points under
    # benchmark robustness's mask; 0.10.0's, fine-tuned with 0.1, lose 27-29).
    occlusion: float = 0.0
    mixup: float = 0.0  # MixUp alpha; 0 disables
    cutmix: float = 0.0  # CutMix alpha (1.0 in its paper); 0 disables; with mixup too, each batch takes one at even odds


@dataclass
class DataConfig:
    """Where the images come from and how they are labelled and batched."""

    label_set: str = "fer2013"  # fer2013 | ferplus | folder
    data_dir: str | None = None  # else $FER_KERAS_DATA, else kagglehub when online
    val_fraction: float = 0.1  # stratified hold-out from train (fer2013, folder)
    # holdout: val_fraction of train/. public_test: FER2013's published protocol (train/ whole, test/'s
    # PublicTest files validate, its PrivateTest files test), so results compare with the literature's.
    # public_test_refit: that protocol's refit once a recipe is chosen, PublicTest trained on too (its val figures are fit).
    val_split: str = "holdout"
    test_fraction: float = 0.1  # training on a plain folder of class folders (no train/ inside): its stratified test hold-out, taken first
    split_seed: int = 1337  # seed of the hold-outs, apart from train.seed so re-seeded runs share one validation set
    # A label list's column (subject, person): the hold-outs take whole groups, so no one's face is in two
    # splits (subject-independent, as the posed datasets' protocols are); None splits face by face.
    split_by: str | None = None
    # k-fold cross-validation of a folder or label list trained on: >1 makes the test hold-out fold cv_fold
    # (0-based) of cv_folds, stratified (and by data.split_by's groups where set), in place of data.test_fraction.
    cv_folds: int = 0
    cv_fold: int = 0
    soft_labels: bool = False  # ferplus only: the crowd-vote distribution as the target
    batch_size: int = 64
    class_weights: bool = False  # balanced class weights in the loss
    max_per_class: int = 0  # cap images per class and split (0 = all): quick runs and tests
    teacher: str | None = None  # .tflite or .keras whose probabilities are mixed into train targets (distillation)
    teacher_weight: float = 0.5  # share of the teacher in each training target
    crowd_vote_weight: float = 0.0  # fer2013 only: share of each train face's FERPlus crowd votes (over its 7 classes) in its target; faces without usable votes keep their label
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """Which registered model to build; see ``fer_keras.models.list_models()``."""

    name: str = "mini_xception"
    image_size: int = 48  # input height and width in raw pixels
    channels: int = 1  # 1 = grayscale input, 3 = RGB
    dropout: float = 0.3
    width: int = 0  # base filter count; 0 = the model's default
    weights: str = "none"  # transfer backbones: imagenet | none | path to a weights file


@dataclass
class TrainConfig:
    """Optimisation, schedule, callbacks and hardware settings."""

    epochs: int = 30
    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4  # adamw and sgd: decoupled, scaled by the learning rate
    momentum: float = 0.9  # sgd only (Nesterov)
    schedule: str = "plateau"  # plateau | cosine
    warmup_epochs: int = 0  # cosine only
    label_smoothing: float = 0.0
    ema_momentum: float = 0.0  # 0 disables; else validation, checkpoints and the model use an exponential moving average of the weights, updated every step (0.999: about the last 1,000 steps)
    early_stopping_patience: int = 10  # 0 disables early stopping
    seed: int = 1337
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    strategy: str = "default"  # default | mirrored | multiworker
    cpu_replicas: int = 2  # logical CPU devices for the mirrored strategy when no GPU is present
    fine_tune_epochs: int = 0  # transfer backbones: second stage with the top layers unfrozen
    fine_tune_layers: int = 30
    fine_tune_learning_rate: float = 1e-4
    confusion_matrix_every: int = 1  # epochs between confusion-matrix images in TensorBoard; 0 disables
    init_from: str | None = None  # start from this .keras model's weights (same architecture): fine-tuning, distillation
    freeze_batch_norm: bool = False  # with init_from: batch norm keeps its statistics (inference mode); for members rebuilt by fer_keras.recover, whose batch norm is folded
    score_test: bool = True  # train only (train_accel never reads the test split): score the best model on it when training ends; false keeps candidates off it (score the chosen one with fer_keras.evaluate)
    sam_rho: float = 0.0  # train only: sharpness-aware minimization's ascent radius (0 disables; the paper's default is 0.05); each step then costs two passes
    time_budget_s: float = 0  # train_accel only: stop before an epoch would end past this many seconds, cosine annealed within it (0 = no limit)


@dataclass
class ExperimentConfig:
    """One named experiment: data, model and training settings plus where runs are written."""

    name: str = "experiment"
    output_dir: str = "experiments/runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Checks enumerated values and ranges.

        Raises:
            UserError: When a value is out of its allowed set or range.
        """
        choices = {
            "data.label_set": (self.data.label_set, ("fer2013", "ferplus", "folder")),
            "data.val_split": (self.data.val_split, ("holdout", *PUBLIC_TEST_SPLITS)),
            "train.optimizer": (self.train.optimizer, ("adam", "adamw", "sgd")),
            "train.schedule": (self.train.schedule, ("plateau", "cosine")),
            "train.precision": (self.train.precision, ("auto", "float32", "mixed_bfloat16", "mixed_float16")),
            "train.strategy": (self.train.strategy, ("default", "mirrored", "multiworker")),
            "model.channels": (self.model.channels, (1, 3)),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise UserError(f"{key}={value!r} is not one of {', '.join(map(str, allowed))}")
        # The run folder is <time>-<name>, and a resume looks for it by that pattern.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise UserError(f"name={self.name!r} must start with a letter or digit and hold only letters, digits, '.', '_' and '-' (it names the run folder)")
        for key in ("data.val_fraction", "data.test_fraction", "train.ema_momentum", "model.dropout", "train.label_smoothing"):
            value = attrgetter(key)(self)
            if not 0.0 <= value < 1.0:
                raise UserError(f"{key}={value} must be in [0, 1)")
        if self.data.val_fraction + self.data.test_fraction >= 1.0:
            raise UserError(f"data.val_fraction + data.test_fraction = {self.data.val_fraction + self.data.test_fraction:g} leaves nothing to train on")
        for key in ("train.learning_rate", "train.fine_tune_learning_rate"):
            value = attrgetter(key)(self)
            if not value > 0.0:
                raise UserError(f"{key}={value} must be positive")
        least = {
            "model.image_size": 16, "data.batch_size": 1, "train.epochs": 1, "train.cpu_replicas": 1, "model.width": 0,
            "data.max_per_class": 0, "train.warmup_epochs": 0, "train.early_stopping_patience": 0, "train.fine_tune_epochs": 0,
            "train.fine_tune_layers": 0, "train.confusion_matrix_every": 0, "train.weight_decay": 0, "train.time_budget_s": 0, "train.sam_rho": 0,
            "data.augment.mixup": 0, "data.augment.cutmix": 0,
        }
        for key, smallest in least.items():
            check_at_least(key, attrgetter(key)(self), smallest)
        augment = self.data.augment
        for name in ("erasing", "low_resolution", "blur", "noise", "jpeg", "occlusion"):
            if not 0.0 <= getattr(augment, name) <= 1.0:
                raise UserError(f"data.augment.{name}={getattr(augment, name)} is a probability: it must be in [0, 1]")
        for key in ("data.teacher_weight", "data.crowd_vote_weight"):
            if not 0.0 <= attrgetter(key)(self) <= 1.0:
                raise UserError(f"{key}={attrgetter(key)(self)} must be in [0, 1]")
        if self.data.crowd_vote_weight and self.data.label_set != "fer2013":
            raise UserError(f"data.crowd_vote_weight={self.data.crowd_vote_weight} needs data.label_set=fer2013 "
                            "(FERPlus's votes are on FER2013's faces; data.soft_labels=true trains on them alone under ferplus)")
        if self.data.cv_folds == 1 or self.data.cv_folds < 0:
            raise UserError(f"data.cv_folds={self.data.cv_folds} must be 0 (no cross-validation) or at least 2")
        if self.data.cv_folds and not 0 <= self.data.cv_fold < self.data.cv_folds:
            raise UserError(f"data.cv_fold={self.data.cv_fold} must be in [0, {self.data.cv_folds - 1}] for data.cv_folds={self.data.cv_folds}")
        if self.data.soft_labels and self.data.label_set != "ferplus":
            raise UserError("data.soft_labels=true needs data.label_set=ferplus (vote distributions)")


def to_dict(config: Any) -> dict:
    """Returns a dataclass config as nested plain dicts (what config.yaml stores)."""
    return dataclasses.asdict(config)


def _from_dict(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise UserError(_unknown_key_message(prefix + key))
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"{prefix}{key} must be a mapping of its fields")
            kwargs[key] = _from_dict(hints[key], value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys.append(prefix + f.name)
            keys.extend(_valid_keys(hint, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown_key_message(key: str) -> str:
    valid = _valid_keys(ExperimentConfig)
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {nearest[0]}?" if nearest else ""
    return f"unknown config key {key!r}{hint} (valid keys: {', '.join(valid)})"


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Converts a YAML or command-line value to the field's declared type, or raises UserError."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, str) and type(None) in allowed and value.lower() in ("none", "null", "~"):
        return None
    target = next(t for t in allowed if t is not type(None))
    # str() would turn YAML's null into a run folder named "None", and a list or mapping into its repr.
    if value is None:
        raise UserError(f"{key} is empty (null); it needs a value of type {target.__name__}")
    if isinstance(value, (list, dict)):
        raise UserError(f"{key}={value!r} is not a valid {target.__name__}")
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except ValueError:
        raise UserError(f"{key}={value!r} is not a valid {target.__name__}") from None


def _parse_value(raw: str) -> Any:
    """An override's value as YAML reads it (``5``, ``true``, ``3e-4``); text YAML cannot parse (``*``, ``[``) stays text for the type check."""
    if not raw.strip():
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Applies ``section.key=value`` overrides to a config.

    Args:
        config: The config to start from (not modified).
        overrides: Strings such as ``"train.epochs=5"`` or ``"name=quick"``.

    Returns:
        A new, validated config.

    Raises:
        UserError: On a malformed override, an unknown key (naming the nearest valid one) or a bad value.
    """
    values = to_dict(config)
    for override in overrides:
        if "=" not in override:
            raise UserError(f"override {override!r} must look like key=value (e.g. train.epochs=5)")
        key, raw = override.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise UserError(_unknown_key_message(key))
            node = node[part]
        if isinstance(node.get(parts[-1]), dict):
            fields = ", ".join(f"{key.strip()}.{name}" for name in node[parts[-1]])
            raise UserError(f"{key.strip()} is a section, not a value: set its keys ({fields})")
        if parts[-1] not in node:
            raise UserError(_unknown_key_message(key))
        node[parts[-1]] = _parse_value(raw)
    resolved = _from_dict(ExperimentConfig, values, "")
    _expand_home(resolved)
    resolved.validate()
    return resolved


# Keys holding paths. A shell expands "~" only at the start of a word, so not in a YAML file, sh's
# key=value arguments or quoted ones: it is expanded here.
PATH_KEYS = ("output_dir", "data.data_dir", "data.teacher", "train.init_from", "model.weights")


def _expand_home(config: ExperimentConfig) -> None:
    for key in PATH_KEYS:
        section, _, name = key.rpartition(".")
        owner = attrgetter(section)(config) if section else config
        value = getattr(owner, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(owner, name, os.path.expanduser(value))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Loads an experiment config from YAML (or the defaults when ``path`` is None) and applies overrides.

    Args:
        path: A YAML file whose top-level keys are ExperimentConfig fields.
        overrides: ``key=value`` strings applied after the file.

    Returns:
        The resolved, validated config.

    Raises:
        UserError: When the file is missing or not valid YAML, or a key or value is invalid.
    """
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a mapping of config sections at the top level")
    config = _from_dict(ExperimentConfig, values, "")
    return apply_overrides(config, overrides or [])


def load_run_config(run_dir: Path, data_dir: str | None = None) -> ExperimentConfig:
    """A run folder's config.yaml, with ``data.data_dir`` replaced by ``data_dir`` when given (the data may have moved)."""
    return load_config(run_dir / "config.yaml", [f"data.data_dir={data_dir}"] if data_dir else [])


def save_config(config: ExperimentConfig, path: Path) -> None:
    """Writes the resolved config as YAML."""
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
