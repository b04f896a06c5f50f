"""Average trained models in one network: ``python -m fer_keras.ensemble --model A.keras --model B.keras --out DIR``.

The ensemble is an ordinary functional Keras model: the members run side by side on the same
raw-pixel input and their probabilities are averaged, so evaluate, export and the runtime
handle it as one model with one ``.keras`` and one ``.tflite``. With ``--flip`` every member also
sees the mirrored face: flip test-time augmentation built into the graph. It is deterministic, so
unlike training augmentation it belongs in the deployed model, where every caller gets it. Choose
members on validation accuracy (the command prints each member's and the ensemble's) and mind the
accurate tier's latency budget: an ensemble costs the sum of its members, twice with ``--flip``.

DIR becomes a run folder: best.keras, the first member's config.yaml (data settings for export
and evaluate), and metrics.json with the labels, the members and the validation metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import keras

from fer_keras.config import load_config
from fer_keras.data import load_for_experiment
from fer_keras.errors import UserError, cli_entry
from fer_keras.evaluate import load_keras_model
from fer_keras.files import write_json
from fer_keras.models.common import HorizontalMirror
from fer_keras.records import evaluate_splits


def average_models(members: list[keras.Model], flip: bool = False, name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of the members' probabilities (on the input and, with ``flip``, its mirror).

    Args:
        members: Models with the same input shape and number of classes (renamed member0_..., so names never clash).
        flip: Also average every member's output on the horizontally mirrored input.
        name: The ensemble's model name.

    Raises:
        UserError: When the members' input or output shapes differ.
    """
    shapes = {(tuple(m.input_shape[1:]), m.output_shape[-1]) for m in members}
    if len(shapes) != 1:
        raise UserError(f"ensemble members must share input shape and classes; got {sorted(shapes)}")
    inputs = keras.Input(shape=members[0].input_shape[1:], name="image")
    views = [inputs, HorizontalMirror(name="mirror")(inputs)] if flip else [inputs]
    outputs = []
    for index, member in enumerate(members):
        member.name = f"member{index}_{member.name}"
        outputs += [member(view) for view in views]
    return keras.Model(inputs, keras.layers.Average(name="probabilities")(outputs), name=name)


def _member_labels(path: Path) -> list[str]:
    metrics = path.parent / "metrics.json"
    if not metrics.is_file():
        raise UserError(f"{path}: no metrics.json beside it, so its labels are unknown")
    return json.loads(metrics.read_text())["labels"]


def build_ensemble(model_paths: list[Path], out_dir: Path, flip: bool = False, data_dir: str | None = None) -> dict:
    """Averages the models in ``model_paths`` into ``out_dir`` and measures members and ensemble on validation.

    Args:
        model_paths: best.keras files in run folders (config.yaml and metrics.json beside each).
        out_dir: The ensemble's run folder.
        flip: Build flip test-time augmentation into the ensemble.
        data_dir: Dataset root for the validation check (default: the first member's config).

    Returns:
        The metrics written to ``out_dir/metrics.json``.

    Raises:
        UserError: When a file is missing or unreadable, fewer than two are given, or members' labels differ.
    """
    if len(model_paths) < 2 and not flip:
        raise UserError("an ensemble needs at least two --model files (or one with --flip)")
    for path in model_paths:
        if not path.is_file():
            raise UserError(f"{path}: model file not found")
    labels = _member_labels(model_paths[0])
    for path in model_paths[1:]:
        if _member_labels(path) != labels:
            raise UserError(f"{path}: labels {_member_labels(path)} differ from {model_paths[0]}'s {labels}")
    # The evaluate loader turns an unreadable file into a one-line error; load before the slow data read.
    members = [load_keras_model(path)[0] for path in model_paths]
    config = load_config(model_paths[0].parent / "config.yaml", [f"data.data_dir={data_dir}"] if data_dir else [])
    dataset = load_for_experiment(config, with_test=False)
    dataset.splits.pop("train")
    member_val = [evaluate_splits(member, dataset)["val"]["accuracy"] for member in members]
    ensemble = average_models(members, flip)
    metrics = {
        "model": "ensemble",
        "members": [str(path) for path in model_paths],
        "flip": flip,
        "member_val_accuracy": member_val,
        "parameters": int(ensemble.count_params()),
        "label_set": config.data.label_set,
        "labels": labels,
        **evaluate_splits(ensemble, dataset),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    ensemble.save(out_dir / "best.keras")
    shutil.copyfile(model_paths[0].parent / "config.yaml", out_dir / "config.yaml")
    write_json(out_dir / "metrics.json", metrics)
    for path, accuracy in zip(model_paths, member_val):
        print(f"val accuracy {accuracy:.4f}  {path}")
    print(f"val accuracy {metrics['val']['accuracy']:.4f}  ensemble of {len(members)} -> {out_dir / 'best.keras'}")
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_keras.ensemble", description="Average trained models into one .keras model.")
    parser.add_argument("--model", action="append", required=True, type=Path, help="a member's best.keras (repeat; one is enough with --flip)")
    parser.add_argument("--out", required=True, type=Path, help="the ensemble's run folder")
    parser.add_argument("--flip", action="store_true", help="also average each member on the mirrored face (flip TTA in the graph)")
    parser.add_argument("--data-dir", help="dataset root for the validation check (default: the first member's config, $FER_KERAS_DATA)")
    args = parser.parse_args(argv)
    build_ensemble(args.model, args.out, args.flip, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
