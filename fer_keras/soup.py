"""Average fine-tunes of one network in weight space: ``python -m fer_keras.soup --model A.keras --model B.keras --share 0.75 --share 0.25 --out DIR``.

Networks fine-tuned from one start, with its batch norm kept (``train.freeze_batch_norm``), stay in
one basin, and a weighted average of their weights is a network that can beat each of them
("WiSE-FT", Wortsman et al. 2022; "model soups", the same year). A weight average costs what one
network costs at inference, where ``fer_keras.ensemble`` (an average of outputs) costs the sum.
With ``--greedy`` the ingredients are chosen on validation by the "greedy soup" of Wortsman et al.:
ranked by their own accuracy, each is kept only if the equal-share soup with it scores at least as
well as the soup without it, so the result is never worse on validation than the best ingredient.
The soup is written as a run folder (best.keras, the first kept model's config.yaml, metrics.json with
its sources and validation metrics), so ``evaluate``, ``ensemble`` and ``export`` take it like a
trained run. ``experiments/benchmarks/weight_interpolation.py`` scores averages on a grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from fer_keras.config import load_run_config
from fer_keras.data import load_config_dataset, val_trained_on_entry, warn_members_trained_on_val
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.evaluate import load_keras_model
from fer_keras.metrics import classification_metrics
from fer_keras.records import shared_labels, write_model_folder


def average_weights(weight_sets: list[list[np.ndarray]], shares: list[float]) -> list[np.ndarray]:
    """The tensor-by-tensor weighted sum of ``weight_sets`` (each a ``get_weights()`` list), ``shares`` summing to 1."""
    return [sum(share * tensor for share, tensor in zip(shares, tensors)) for tensors in zip(*weight_sets)]


def check_shares(shares: list[float], count: int, sources: str = "--model files") -> None:
    """Raises UserError unless ``shares`` has one non-negative entry per model and sums to 1 (``sources`` names the models in it)."""
    if len(shares) != count:
        raise UserError(f"{len(shares)} --share values for {count} {sources}: give one per model")
    if min(shares) < 0 or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise UserError(f"--share values must be non-negative and sum to 1; got {shares} (sum {sum(shares):g})")


def check_architectures(weight_sets: list[list[np.ndarray]], names: list[str]) -> None:
    """Raises UserError when a weight set does not match the first's in number and shapes (another architecture)."""
    shapes = [tensor.shape for tensor in weight_sets[0]]
    for name, weights in zip(names[1:], weight_sets[1:]):
        if [tensor.shape for tensor in weights] != shapes:
            raise UserError(f"{name}: its weights do not fit {names[0]}'s architecture (a soup averages fine-tunes of one network)")


def greedy_selection(alone: list[float], soup_score: Callable[[list[int]], float]) -> tuple[list[int], list[dict]]:
    """Wortsman et al.'s greedy soup over ingredients scored ``alone`` (their validation accuracies).

    Ingredients are tried from the best alone down (ties keep their order); each joins when the
    equal-share soup with it scores at least the soup without it.

    Args:
        alone: Each ingredient's own validation accuracy.
        soup_score: The validation accuracy of the equal-share soup of the given ingredient indices.

    Returns:
        The kept indices, in the order tried, and one record per ingredient in that order: its index,
        ``alone``, ``with`` (the soup's score with it; absent for the first) and ``kept``.
    """
    order = sorted(range(len(alone)), key=lambda index: -alone[index])
    kept, best = [order[0]], alone[order[0]]
    trail = [{"index": order[0], "alone": alone[order[0]], "kept": True}]
    for index in order[1:]:
        score = soup_score([*kept, index])
        joins = score >= best
        trail.append({"index": index, "alone": alone[index], "with": score, "kept": joins})
        if joins:
            kept, best = [*kept, index], score
    return kept, trail


def build_soup(model_paths: list[Path], shares: list[float] | None, out_dir: Path, data_dir: str | None = None, greedy: bool = False) -> dict:
    """Averages the weights of the models in ``model_paths`` into ``out_dir`` and measures it on validation.

    Args:
        model_paths: best.keras files of one architecture, in run folders (config.yaml and metrics.json beside each).
        shares: Each model's weight in the average: non-negative, summing to 1 (None: equal shares).
        out_dir: The soup's run folder.
        data_dir: Dataset root for the validation check (default: the first model's config).
        greedy: Choose the ingredients on validation (``greedy_selection``) and average those at equal
            shares; ``metrics.json`` lists every candidate under ``greedy``. Excludes ``shares``.

    Returns:
        The metrics written to ``out_dir/metrics.json``.

    Raises:
        UserError: When a file is missing or unreadable, the shares are off, the labels differ, or
            the architectures do.
    """
    if len(model_paths) < 2:
        raise UserError("a soup needs at least two --model files")
    if greedy and shares is not None:
        raise UserError("--greedy chooses the ingredients and gives them equal shares: leave out --share")
    shares = shares or [1 / len(model_paths)] * len(model_paths)
    check_shares(shares, len(model_paths))
    labels = shared_labels(model_paths)
    names = [str(path) for path in model_paths]
    models = [load_keras_model(path)[0] for path in model_paths]
    weight_sets = [model.get_weights() for model in models]
    check_architectures(weight_sets, names)
    config = load_run_config(model_paths[0].parent, data_dir)
    # Only the run's data settings matter here: its train.init_from may name a file long gone (a recovered member's start).
    dataset = load_config_dataset(config, with_test=False)
    val = dataset.splits["val"]
    trained_on_val = warn_members_trained_on_val(model_paths, config.data)
    soup = models[0]

    def val_metrics(indices: list[int], index_shares: list[float]) -> dict:
        soup.set_weights(average_weights([weight_sets[index] for index in indices], index_shares))
        return classification_metrics(val.labels, soup.predict(val.images, batch_size=256, verbose=0), dataset.labels)

    extra = {}
    if greedy:
        alone = [val_metrics([index], [1.0])["accuracy"] for index in range(len(models))]
        chosen, trail = greedy_selection(alone, lambda indices: val_metrics(indices, [1 / len(indices)] * len(indices))["accuracy"])
        extra["greedy"] = [{"source": names[step["index"]], **{key: value for key, value in step.items() if key != "index"}} for step in trail]
        shares = [1 / len(chosen)] * len(chosen)
    else:
        chosen = list(range(len(models)))
    chosen_names = [names[index] for index in chosen]
    metrics = {
        "model": "soup",
        "sources": chosen_names,
        "shares": shares,
        "parameters": int(soup.count_params()),
        "label_set": config.data.label_set,
        "labels": labels,
        "val": val_metrics(chosen, shares),
        **extra,
        **val_trained_on_entry(chosen_names, trained_on_val),
    }
    best = write_model_folder(out_dir, soup, model_paths[chosen[0]].parent / "config.yaml", metrics)
    print(f"val accuracy {metrics['val']['accuracy']:.4f}  soup of {len(chosen)} ({', '.join(f'{share:g}' for share in shares)}) -> {best}")
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fer_keras.soup", description="Average fine-tunes of one network in weight space into one .keras model.")
    parser.add_argument("--model", action="append", required=True, type=Path, help="a best.keras in its run folder (repeat; one architecture)")
    parser.add_argument("--share", action="append", type=float, help="the matching model's weight in the average (repeat, in --model order; default: equal)")
    parser.add_argument("--out", required=True, type=Path, help="the soup's run folder")
    parser.add_argument("--data-dir", help="dataset root for the validation check (default: the first model's config, $FER_KERAS_DATA)")
    parser.add_argument("--greedy", action="store_true", help="keep only the models that do not lower validation accuracy, best alone first (greedy soup), at equal shares")
    args = parser.parse_args(argv)
    build_soup(args.model, args.share, args.out, args.data_dir, greedy=args.greedy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
