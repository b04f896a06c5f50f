"""Average trained models in one network: ``python -m fer_keras.ensemble --model A.keras --model B.keras --out DIR``.

The ensemble is an ordinary functional Keras model: the members run side by side on the same
raw-pixel input and their probabilities are averaged, so evaluate, export and the runtime
handle it as one model with one ``.keras`` and one ``.tflite``. With ``--flip`` every member also
sees the mirrored face: flip test-time augmentation built into the graph. It is deterministic, so
unlike training augmentation it belongs in the deployed model, where every caller gets it. Choose
members on validation accuracy (the command prints each member's and the ensemble's) and mind the
accurate tier's latency budget: an ensemble costs the sum of its members, twice with ``--flip``.

With ``--budget-ms MS`` the ``--model`` files are candidates rather than members: each is exported
to int8 and timed (batch 1, one thread), and the members become the subset with the best
validation accuracy whose summed latency, twice with ``--flip``, fits MS. That is how a tier is
chosen from a round of trained models: ``--budget-ms 2.9 --flip`` for the accurate tier (3 ms),
``--budget-ms 0.4`` for the fast one. The estimate is conservative (one pass over the stacked
mirror views costs less than two), so time the exported file with ``benchmark latency --tflite``.
Selecting on validation flatters the validation number; the test split stays untouched.

DIR becomes a run folder: best.keras, the first member's config.yaml (data settings for export
and evaluate), and metrics.json with the labels, the members, the selection and the validation metrics.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from fer_keras.config import load_config
from fer_keras.data import load_for_experiment
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.evaluate import load_keras_model, predict_probabilities
from fer_keras.export import convert
from fer_keras.files import write_json
from fer_keras.models.common import MirroredBatch, ViewMean
from fer_keras.metrics import classification_metrics
from fer_keras.records import recorded_labels

# Every affordable subset is scored (a mean and an argmax over the validation set each, about 0.05 ms
# for three members on FERPlus PublicTest), so this bound is a few seconds; a latency budget keeps a
# tier's ensembles small, so a round of two dozen candidates stays far below it.
MAX_AFFORDABLE_SUBSETS = 2**16


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
    # With flip, every member runs once on the batch and its mirror stacked (cheaper than two passes).
    views = MirroredBatch(name="mirror")(inputs) if flip else inputs
    outputs = []
    for index, member in enumerate(members):
        member.name = f"member{index}_{member.name}"
        outputs.append(member(views))
    averaged = keras.layers.Average(name="member_mean")(outputs) if len(outputs) > 1 else outputs[0]
    probabilities = ViewMean(2, name="probabilities")(averaged) if flip else keras.layers.Identity(name="probabilities")(averaged)
    return keras.Model(inputs, probabilities, name=name)


def int8_latency_ms(model: keras.Model, calibration_images: np.ndarray, repeats: int = 100) -> float:
    """Median ms per face of the model exported to full-integer int8, at batch 1 on one thread."""
    from fer_keras.benchmark import time_classifier

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "candidate.tflite"
        path.write_bytes(convert(model, "int8", "uint8", calibration_images))
        return time_classifier(path, batch=1, threads=1, repeats=repeats)


def _affordable_subsets(costs_ms: list[float], budget_ms: float, start: int = 0, chosen: tuple[int, ...] = (), spent_ms: float = 0.0):
    """Yields (subset, cost) for every non-empty subset of candidates from ``start`` on that fits the budget.

    Costs are positive, so a branch stops as soon as its cost passes the budget: the search grows with
    the number of affordable ensembles, not with 2**candidates.
    """
    for index in range(start, len(costs_ms)):
        cost = spent_ms + costs_ms[index]
        if cost <= budget_ms:
            subset = chosen + (index,)
            yield subset, cost
            yield from _affordable_subsets(costs_ms, budget_ms, index + 1, subset, cost)


def select_members(probabilities: list[np.ndarray], y_true: np.ndarray, costs_ms: list[float], budget_ms: float) -> tuple[int, ...]:
    """The subset of candidates whose averaged probabilities are most accurate within a latency budget.

    Args:
        probabilities: Each candidate's (N, C) probabilities on the validation images.
        y_true: Validation labels (N,).
        costs_ms: Each candidate's latency as a member (already doubled for flip views), positive.
        budget_ms: The most the members' summed cost may be.

    Returns:
        Candidate indices, ascending. Ties in accuracy go to the cheaper subset.

    Raises:
        UserError: When no candidate fits the budget, or more than ``MAX_AFFORDABLE_SUBSETS`` subsets do.
    """
    best_key, best_subset = None, None
    for count, (subset, cost) in enumerate(_affordable_subsets(costs_ms, budget_ms), start=1):
        if count > MAX_AFFORDABLE_SUBSETS:
            raise UserError(
                f"more than {MAX_AFFORDABLE_SUBSETS} ensembles of the {len(costs_ms)} candidates fit --budget-ms {budget_ms:g}: pass fewer --model files"
            )
        accuracy = float((np.mean([probabilities[i] for i in subset], axis=0).argmax(axis=1) == y_true).mean())
        if best_key is None or (accuracy, -cost) > best_key:
            best_key, best_subset = (accuracy, -cost), subset
    if best_subset is None:
        raise UserError(f"no candidate fits --budget-ms {budget_ms:g}: the cheapest costs {min(costs_ms):.3f} ms")
    return best_subset


def _member_labels(path: Path) -> tuple[str, ...]:
    labels = recorded_labels(path)
    if labels is None:
        raise UserError(f"{path}: no metrics.json beside it, so its labels are unknown")
    return labels


def build_ensemble(model_paths: list[Path], out_dir: Path, flip: bool = False, data_dir: str | None = None, budget_ms: float | None = None) -> dict:
    """Averages the models in ``model_paths`` into ``out_dir`` and measures members and ensemble on validation.

    Args:
        model_paths: best.keras files in run folders (config.yaml and metrics.json beside each).
        out_dir: The ensemble's run folder.
        flip: Build flip test-time augmentation into the ensemble.
        data_dir: Dataset root for the validation check (default: the first member's config).
        budget_ms: If given, ``model_paths`` are candidates and the members are the subset chosen by
            ``select_members`` under this int8 latency budget (see the module docstring).

    Returns:
        The metrics written to ``out_dir/metrics.json``.

    Raises:
        UserError: When a file is missing or unreadable, fewer than two are given without flip or a
            budget, members' labels differ, or no candidate fits the budget.
    """
    if len(model_paths) < 2 and not flip and budget_ms is None:
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
    train, val = dataset.splits["train"], dataset.splits["val"]
    member_probabilities = [
        predict_probabilities(lambda batch, member=member: member.predict(batch, batch_size=256, verbose=0), val.images, "flip" if flip else None)
        for member in members
    ]
    member_val = [float((p.argmax(axis=1) == val.labels).mean()) for p in member_probabilities]
    selection = None
    if budget_ms is not None:
        calibration = train.images[np.random.default_rng(0).permutation(len(train))[:200]]
        costs = [int8_latency_ms(member, calibration) * (2 if flip else 1) for member in members]
        chosen = select_members(member_probabilities, val.labels, costs, budget_ms)
        selection = {
            "budget_ms": budget_ms,
            "candidates": [{"model": str(path), "val_accuracy": acc, "cost_ms": round(cost, 4)} for path, acc, cost in zip(model_paths, member_val, costs)],
            "estimated_ms": round(sum(costs[i] for i in chosen), 4),
        }
        for path, accuracy, cost in zip(model_paths, member_val, costs):
            print(f"candidate val accuracy {accuracy:.4f}  {cost:.3f} ms{' (with flip)' if flip else ''}  {path}")
        model_paths, members, member_val, member_probabilities = (
            [items[i] for i in chosen] for items in (model_paths, members, member_val, member_probabilities)
        )
    ensemble = average_models(members, flip)
    metrics = {
        "model": "ensemble",
        "members": [str(path) for path in model_paths],
        "flip": flip,
        "member_val_accuracy": member_val,
        **({"selection": selection} if selection else {}),
        "parameters": int(ensemble.count_params()),
        "label_set": config.data.label_set,
        "labels": labels,
        # The ensemble's output is the mean of its members' (view-averaged) probabilities, already computed.
        "val": classification_metrics(val.labels, np.mean(member_probabilities, axis=0), dataset.labels),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    ensemble.save(out_dir / "best.keras")
    shutil.copyfile(model_paths[0].parent / "config.yaml", out_dir / "config.yaml")
    write_json(out_dir / "metrics.json", metrics)
    for path, accuracy in zip(model_paths, member_val):
        print(f"val accuracy {accuracy:.4f}  {path}")
    estimate = f", estimated {selection['estimated_ms']:.3f} ms int8" if selection else ""
    print(f"val accuracy {metrics['val']['accuracy']:.4f}  ensemble of {len(members)}{estimate} -> {out_dir / 'best.keras'}")
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fer_keras.ensemble", description="Average trained models into one .keras model.")
    parser.add_argument("--model", action="append", required=True, type=Path, help="a member's best.keras (repeat; one is enough with --flip)")
    parser.add_argument("--out", required=True, type=Path, help="the ensemble's run folder")
    parser.add_argument("--flip", action="store_true", help="also average each member on the mirrored face (flip TTA in the graph)")
    parser.add_argument("--data-dir", help="dataset root for the validation check (default: the first member's config, $FER_KERAS_DATA)")
    parser.add_argument("--budget-ms", type=float, help="treat the --model files as candidates: keep the subset most accurate on validation within this int8 ms/face")
    args = parser.parse_args(argv)
    if args.budget_ms is not None and args.budget_ms <= 0:
        parser.error("--budget-ms must be positive")
    build_ensemble(args.model, args.out, args.flip, args.data_dir, args.budget_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
