"""Average trained models in one network: ``python -m fer_keras.ensemble --model A.keras --model B.keras --out DIR``.

The ensemble is an ordinary functional Keras model: the members run side by side on the same
raw-pixel input and their probabilities are averaged, so evaluate, export and the runtime
handle it as one model with one ``.keras`` and one ``.tflite``. With ``--flip`` every member also
sees the mirrored face: flip test-time augmentation built into the graph. It is deterministic, so
unlike training augmentation it belongs in the deployed model, where every caller gets it. Choose
members on validation accuracy (the command prints each member's and the ensemble's) and mind the
accurate tier's latency budget: an ensemble costs the sum of its members, twice with ``--flip`` (for those on both views).
``--share`` (once per member) weighs the average, e.g. a strong member at half beside two weaker ones.
``--views`` (once per member, with ``--flip``) lets a member see the face only (``original``) rather
than the face and its mirror (``both``): on FERPlus validation the mirror lifted the ResNet-SE but
not the VGGs, so release 0.6.0's accurate tier gives the ResNet-SE both views and each of two VGGs
the face only, three networks for the time of release 0.5.0's two with flip.

With ``--budget-ms MS`` (or ``--budget-mb MB``, or both) the ``--model`` files are candidates rather
than members: each is exported to int8, timed (batch 1, one thread) and weighed, and the members
become the subset with the best validation accuracy whose summed latency, twice with ``--flip``,
fits MS and whose summed int8 file size fits MB. That is how a tier is chosen from a round of
trained models: ``--budget-ms 2.9 --budget-mb 6 --flip`` for the accurate tier (3 ms, and a file
that stays a few MB: without the size cap or flip, the 15 FERPlus candidates of 2026-11-29 gave a
9.9 MB ensemble of four), ``--budget-ms 0.4`` for the fast one. The latency estimate is
conservative (one pass over the stacked mirror views costs less than two), so time the exported
file with ``benchmark latency --tflite``. Times are this CPU's, and int8 speed varies ninefold between
x86 CPUs (AVX-512 VNNI against AVX2 only). ``--reference-tflite FILE --reference-ms MS`` puts them in
another machine's terms: FILE is timed here too, and every candidate's time is scaled by MS over
that. The fast tier's VGG took 0.295 ms on the AVX-512 machine the budgets were set on
(experiments/benchmarks/latency_shipped.md; later fast tiers are fine-tunes of the same network), so
``--reference-tflite tflite/fast/fer_keras_fast_int8.tflite --reference-ms 0.295`` lets selection for
either tier run on any x86 CPU. It assumes candidates slow down as the reference does: roughly true
of our VGGs and ResNet-SEs (release 0.5.0's accurate file, 20.5 ms beside the fast tier's 2.84 on
the AVX2-only EPYC, scales to 2.13 ms against the 2.246 measured on the AVX-512 one: 5% under, so
keep the accurate budget at 2.8), not of the peer's small separable network (2× slower, not 9×). Selecting on validation flatters the validation number;
the test split stays untouched.

The first ``--model`` sets the ensemble's input: a member trained on larger faces (``model.image_size=64``,
the 48-pixel faces upsampled by the loader) gets them upsampled bilinearly inside the graph.

DIR becomes a run folder: best.keras, the first member's config.yaml (data settings for export
and evaluate), and metrics.json with the labels, the members, the selection and the validation metrics.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer_keras.config import load_run_config
from fer_keras.data import load_config_dataset, val_trained_on_entry, warn_members_trained_on_val
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.evaluate import load_keras_model, predict_probabilities
from fer_keras.export import convert
from fer_keras.metrics import classification_metrics
from fer_keras.records import shared_labels, write_model_folder
from fer_keras.soup import check_shares

if TYPE_CHECKING:  # Keras loads with the models, so a bad argument is refused before TensorFlow starts
    import keras

# Every affordable subset is scored (a mean and an argmax over the validation set each, about 0.05 ms
# for three members on FERPlus PublicTest), so this bound is a few seconds; a latency budget keeps a
# tier's ensembles small, so a round of two dozen candidates stays far below it.
MAX_AFFORDABLE_SUBSETS = 2**16


VIEWS = ("both", "original")  # with flip, what a member sees: the face and its mirror, or the face only


def check_views(views: list[str], count: int, flip: bool, sources: str = "--model files") -> None:
    """Raises UserError unless ``views`` names one of ``VIEWS`` per model, with ``flip`` on and at least one ``both``."""
    if not flip:
        raise UserError("--views chooses which members also see the mirrored face: it needs an ensemble with flip views (--flip)")
    if len(views) != count:
        raise UserError(f"{len(views)} --views values for {count} {sources}: give one per model")
    if set(views) - set(VIEWS) or "both" not in views:
        raise UserError(f"--views values must be {' or '.join(VIEWS)}, at least one both; got {views}")


def fed_first_input(member: keras.Model, input_shape: tuple[int, ...], source: str | None = None) -> keras.Model:
    """``member`` as it is when it takes ``input_shape`` images, else behind a bilinear upsampling of them to its own input.

    A member trained on faces larger than the ensemble's (FER2013's 48-pixel faces upsampled by the
    loader, ``model.image_size=64``) sees them upsampled the same way inside the graph, so the
    ensemble keeps one input and the runtime one face size.

    Args:
        member: The member model.
        input_shape: The ensemble's input shape (the first member's), without the batch axis.
        source: Names the member in errors (its file); default its model name.

    Raises:
        UserError: When the member takes other channels, or smaller images, than ``input_shape``.
    """
    import keras

    own = tuple(member.input_shape[1:])
    if own == tuple(input_shape):
        return member
    if own[2] != input_shape[2] or own[0] < input_shape[0] or own[1] < input_shape[1]:
        # Only the order is wrong when the channels agree: the other member can take this one's input.
        hint = ": list a member with the smallest input first" if own[2] == input_shape[2] else ""
        raise UserError(
            f"{source or 'ensemble member ' + member.name} takes {own} images: members take the first member's {tuple(input_shape)}, or larger ones with its channels (upsampled in the graph){hint}"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    upsampled = keras.layers.Resizing(own[0], own[1], interpolation="bilinear", name="upsample")(inputs)
    return keras.Model(inputs, member(upsampled), name=f"{member.name}_from{input_shape[0]}")


def average_models(
    members: list[keras.Model], flip: bool = False, name: str = "ensemble", shares: list[float] | None = None, views: list[str] | None = None
) -> keras.Model:
    """One model whose output is the mean of the members' probabilities (on the input and, with ``flip``, its mirror).

    Args:
        members: Models with the same number of classes (renamed member0_..., so names never clash). The
            first one's input is the ensemble's; a member taking larger images gets them upsampled
            (``fed_first_input``).
        flip: Also average every member's output on the horizontally mirrored input.
        name: The ensemble's model name.
        shares: Each member's weight in the mean, summing to 1 (see ``soup.check_shares``); None: equal.
        views: With ``flip``, each member's views (see ``VIEWS`` and ``check_views``); None: both for every member.

    Raises:
        UserError: When the members' classes differ, a member cannot take the first one's input, or ``views`` does not fit them.
    """
    import keras

    from fer_keras.models.common import MirroredBatch, ViewMean, WeightedMean

    classes = {m.output_shape[-1] for m in members}
    if len(classes) != 1:
        raise UserError(f"ensemble members must share their classes; got {sorted(classes)}")
    input_shape = tuple(members[0].input_shape[1:])
    members = [fed_first_input(member, input_shape) for member in members]
    if views is not None:
        check_views(views, len(members), flip)
    # Members on the face only average their own views, so the graph of an ensemble whose members all see both is unchanged.
    per_member = views is not None and "original" in views
    inputs = keras.Input(shape=input_shape, name="image")
    # With flip, every member runs once on the batch and its mirror stacked (cheaper than two passes).
    stacked = MirroredBatch(name="mirror")(inputs) if flip else inputs
    outputs = []
    for index, member in enumerate(members):
        member.name = f"member{index}_{member.name}"
        if not per_member:
            outputs.append(member(stacked))
        elif views[index] == "both":
            outputs.append(ViewMean(2, name=f"member{index}_views")(member(stacked)))
        else:
            outputs.append(member(inputs))
    if len(outputs) == 1:
        averaged = outputs[0]
    elif shares is None or len(set(shares)) == 1:
        averaged = keras.layers.Average(name="member_mean")(outputs)
    else:
        averaged = WeightedMean(shares, name="member_mean")(outputs)
    stacked_views = flip and not per_member
    probabilities = ViewMean(2, name="probabilities")(averaged) if stacked_views else keras.layers.Identity(name="probabilities")(averaged)
    return keras.Model(inputs, probabilities, name=name)


def int8_cost(model: keras.Model, calibration_images: np.ndarray, repeats: int = 100) -> tuple[float, float]:
    """The model exported to full-integer int8: its median ms per face (batch 1, one thread) and its file size in MB."""
    from fer_keras.benchmark import time_classifier

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "candidate.tflite"
        path.write_bytes(convert(model, "int8", "uint8", calibration_images))
        return time_classifier(path, batch=1, threads=1, repeats=repeats), path.stat().st_size / 1e6


def _affordable_subsets(costs: list[tuple[float, ...]], budgets: tuple[float, ...], start: int = 0, chosen: tuple[int, ...] = (), spent: tuple[float, ...] | None = None):
    """Yields (subset, spent) for every non-empty subset of candidates from ``start`` on that fits every budget.

    Each candidate's cost is a tuple with one positive entry per budget (latency, size), so a branch
    stops as soon as one sum passes its budget: the search grows with the number of affordable
    ensembles, not with 2**candidates.
    """
    spent = spent or tuple(0.0 for _ in budgets)
    for index in range(start, len(costs)):
        total = tuple(a + b for a, b in zip(spent, costs[index]))
        if all(t <= b for t, b in zip(total, budgets)):
            subset = chosen + (index,)
            yield subset, total
            yield from _affordable_subsets(costs, budgets, index + 1, subset, total)


def select_members(
    probabilities: list[np.ndarray],
    y_true: np.ndarray,
    costs_ms: list[float],
    budget_ms: float = math.inf,
    sizes_mb: list[float] | None = None,
    budget_mb: float = math.inf,
) -> tuple[int, ...]:
    """The subset of candidates whose averaged probabilities are most accurate within a latency and a size budget.

    Args:
        probabilities: Each candidate's (N, C) probabilities on the validation images.
        y_true: Validation labels (N,).
        costs_ms: Each candidate's latency as a member (already doubled for flip views), positive.
        budget_ms: The most the members' summed latency may be.
        sizes_mb: Each candidate's int8 file size, positive; needed only with ``budget_mb``.
        budget_mb: The most the members' summed size may be.

    Returns:
        Candidate indices, ascending. Ties in accuracy go to the faster subset.

    Raises:
        UserError: When no candidate fits the budgets, or more than ``MAX_AFFORDABLE_SUBSETS`` subsets do.
    """
    sizes_mb = sizes_mb if sizes_mb is not None else [0.0] * len(costs_ms)
    budgets = (budget_ms, budget_mb)
    limits = " and ".join(f"{flag} {budget:g}" for flag, budget in (("--budget-ms", budget_ms), ("--budget-mb", budget_mb)) if budget != math.inf)
    best_key, best_subset = None, None
    subsets = _affordable_subsets(list(zip(costs_ms, sizes_mb)), budgets)
    for count, (subset, (cost, _size)) in enumerate(subsets, start=1):
        if count > MAX_AFFORDABLE_SUBSETS:
            raise UserError(f"more than {MAX_AFFORDABLE_SUBSETS} ensembles of the {len(costs_ms)} candidates fit {limits}: pass fewer --model files")
        accuracy = float((np.mean([probabilities[i] for i in subset], axis=0).argmax(axis=1) == y_true).mean())
        if best_key is None or (accuracy, -cost) > best_key:
            best_key, best_subset = (accuracy, -cost), subset
    if best_subset is None:
        smallest = "" if budget_mb == math.inf else f", the smallest is {min(sizes_mb):.3g} MB"
        # The tiers' budgets are an AVX-512 CPU's; an AVX2-only one runs int8 about 9x slower (experiments/benchmarks/README.md).
        raise UserError(
            f"no candidate fits {limits}: the fastest costs {min(costs_ms):.3f} ms{smallest} "
            "(times are this CPU's unless --reference-tflite and --reference-ms put them in the budget machine's terms)"
        )
    return best_subset


def build_ensemble(
    model_paths: list[Path],
    out_dir: Path,
    flip: bool = False,
    data_dir: str | None = None,
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    shares: list[float] | None = None,
    views: list[str] | None = None,
    reference: tuple[Path, float] | None = None,
) -> dict:
    """Averages the models in ``model_paths`` into ``out_dir`` and measures members and ensemble on validation.

    Args:
        model_paths: best.keras files in run folders (config.yaml and metrics.json beside each).
        out_dir: The ensemble's run folder.
        flip: Build flip test-time augmentation into the ensemble.
        data_dir: Dataset root for the validation check (default: the first member's config).
        budget_ms: If given (or ``budget_mb``), ``model_paths`` are candidates and the members are the
            subset chosen by ``select_members`` under this int8 latency budget (see the module docstring).
        budget_mb: The most the members' int8 files may weigh together, in MB.
        shares: Each member's weight in the average, in ``model_paths`` order, summing to 1; None: equal.
        views: With ``flip``, each member's views in ``model_paths`` order (``check_views``); None: both for all.
        reference: With a budget, a ``.tflite`` and its ms per face on the machine the budget is meant
            for; candidates' times here are scaled by that over its time here. None: this CPU's times.

    Returns:
        The metrics written to ``out_dir/metrics.json``.

    Raises:
        UserError: When a file is missing or unreadable, fewer than two are given without flip or a
            budget, members' labels differ, no candidate fits the budgets, or shares are given with a
            budget or do not fit the members, or views do not fit them or ``flip``, or a reference is
            given without ``budget_ms``, with a time that is not positive, or is not a readable ``.tflite``.
    """
    selecting = budget_ms is not None or budget_mb is not None
    if reference is not None:
        if budget_ms is None:
            raise UserError("--reference-tflite scales candidates' times to another machine's: it needs --budget-ms")
        if not reference[1] > 0:
            raise UserError(f"--reference-ms must be positive, not {reference[1]:g}")
        if not Path(reference[0]).is_file():
            raise UserError(f"{reference[0]}: no such file (--reference-tflite)")
    if len(model_paths) < 2 and not flip and not selecting:
        raise UserError("an ensemble needs at least two --model files (or one with --flip)")
    for flag, given in (("--share", shares), ("--views", views)):
        if given is not None and selecting:
            raise UserError(f"{flag} sets each chosen member's part; with --budget-ms or --budget-mb the members are not known in advance")
    if shares is not None:
        check_shares(shares, len(model_paths))
    if views is not None:
        check_views(views, len(model_paths), flip)
    labels = shared_labels(model_paths)
    # The evaluate loader turns an unreadable file into a one-line error; load before the slow data read.
    members = [load_keras_model(path)[0] for path in model_paths]
    # The first member's config describes the ensemble's input and data, whichever members a budget keeps.
    config_yaml = model_paths[0].parent / "config.yaml"
    members = [fed_first_input(member, tuple(members[0].input_shape[1:]), str(path)) for member, path in zip(members, model_paths)]
    config = load_run_config(model_paths[0].parent, data_dir)
    # Only the run's data settings matter here: its train.init_from may name a file long gone (a recovered member's start).
    dataset = load_config_dataset(config, with_test=False)
    train, val = dataset.splits["train"], dataset.splits["val"]
    trained_on_val = warn_members_trained_on_val(model_paths, config.data)
    member_views = views or ["both"] * len(members)
    member_probabilities = [
        predict_probabilities(lambda batch, member=member: member.predict(batch, batch_size=256, verbose=0), val.images, "flip" if flip and seen == "both" else None)
        for member, seen in zip(members, member_views)
    ]
    member_val = [float((p.argmax(axis=1) == val.labels).mean()) for p in member_probabilities]
    selection = None
    if selecting:
        calibration = train.images[np.random.default_rng(0).permutation(len(train))[:200]]
        measured = [int8_cost(member, calibration) for member in members]
        scale, reference_record = 1.0, None
        if reference is not None:
            from fer_keras.benchmark import time_classifier

            reference_here = time_classifier(Path(reference[0]), batch=1, threads=1, repeats=100)
            scale = reference[1] / reference_here
            reference_record = {"tflite": str(reference[0]), "ms": reference[1], "ms_here": round(reference_here, 4), "scale": float(f"{scale:.5g}")}
            print(f"reference {reference[0]}: {reference_here:.3f} ms here, {reference[1]:g} ms on the budget's machine: times scaled by {scale:.4f}")
        costs = [latency * scale * (2 if flip else 1) for latency, _ in measured]
        sizes = [size for _, size in measured]
        chosen = select_members(
            member_probabilities, val.labels, costs, math.inf if budget_ms is None else budget_ms, sizes, math.inf if budget_mb is None else budget_mb
        )
        selection = {
            "budget_ms": budget_ms,
            "budget_mb": budget_mb,
            **({"reference": reference_record} if reference_record else {}),
            "candidates": [
                {"model": str(path), "val_accuracy": acc, "cost_ms": round(cost, 4), "size_mb": round(size, 3)}
                for path, acc, cost, size in zip(model_paths, member_val, costs, sizes)
            ],
            "estimated_ms": round(sum(costs[i] for i in chosen), 4),
            "estimated_mb": round(sum(sizes[i] for i in chosen), 3),
        }
        for path, accuracy, cost, size in zip(model_paths, member_val, costs, sizes):
            print(f"candidate val accuracy {accuracy:.4f}  {cost:.3f} ms{' (with flip)' if flip else ''}  {size:.2f} MB  {path}")
        model_paths, members, member_val, member_probabilities = (
            [items[i] for i in chosen] for items in (model_paths, members, member_val, member_probabilities)
        )
    ensemble = average_models(members, flip, shares=shares, views=views)
    member_names = [str(path) for path in model_paths]
    metrics = {
        "model": "ensemble",
        "members": member_names,
        "flip": flip,
        **({"shares": shares} if shares else {}),
        **({"views": views} if views else {}),
        "member_val_accuracy": member_val,
        **({"selection": selection} if selection else {}),
        "parameters": int(ensemble.count_params()),
        "label_set": config.data.label_set,
        "labels": labels,
        # The ensemble's output is the mean of its members' (view-averaged) probabilities, already computed.
        "val": classification_metrics(val.labels, np.average(member_probabilities, axis=0, weights=shares), dataset.labels),
        **val_trained_on_entry(member_names, trained_on_val),
    }
    write_model_folder(out_dir, ensemble, config_yaml, metrics)
    for path, accuracy in zip(model_paths, member_val):
        print(f"val accuracy {accuracy:.4f}  {path}")
    estimate = f", estimated {selection['estimated_ms']:.3f} ms and {selection['estimated_mb']:.2f} MB int8" if selection else ""
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
    parser.add_argument("--budget-mb", type=float, help="as --budget-ms, for the members' summed int8 file size in MB (the two combine)")
    parser.add_argument("--reference-tflite", type=Path, metavar="FILE", help="with --budget-ms and --reference-ms: a .tflite timed here to put candidates' times in another machine's terms")
    parser.add_argument("--reference-ms", type=float, metavar="MS", help="the --reference-tflite file's ms per face (batch 1, one thread) on the machine --budget-ms is meant for")
    parser.add_argument("--share", action="append", type=float, help="the matching member's weight in the average (repeat, in --model order; default: equal)")
    parser.add_argument("--views", action="append", choices=VIEWS, help="with --flip, the matching member's views: both (face and mirror) or original (face only); repeat, in --model order")
    args = parser.parse_args(argv)
    for flag, value in (("--budget-ms", args.budget_ms), ("--budget-mb", args.budget_mb)):
        if value is not None and value <= 0:
            parser.error(f"{flag} must be positive")
    if (args.reference_tflite is None) != (args.reference_ms is None):
        parser.error("--reference-tflite and --reference-ms go together")
    reference = (args.reference_tflite, args.reference_ms) if args.reference_tflite else None
    build_ensemble(args.model, args.out, args.flip, args.data_dir, args.budget_ms, args.budget_mb, args.share, args.views, reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
