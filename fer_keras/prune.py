"""Narrow a trained network into a slimmer architecture of its family: ``python -m fer_keras.prune``.

The fast tier's VGG spends half its time in its first, full-resolution blocks, and ``vgg_slim``
halves their width. Trained from scratch a VGG needs a hundred epochs or more; this starts it
from the trained VGG instead (structured pruning, Li et al. 2017): in each layer the target makes
narrower it keeps the output channels that weigh most, by the L1 norm of their kernel times the
scale their batch norm gives them, and in the next layer the input channels that match. A short
fine-tune (``train.init_from`` on the new folder) then recovers what the dropped filters carried.

    python -m fer_keras.prune --run experiments/runs/VGG_RUN --to vgg_slim --out experiments/runs/pruned

Only chain networks (each layer feeding the next, as the VGGs do) can be narrowed this way: a
residual sum would need the same channels kept on both of its branches.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer_keras.config import load_run_config, save_config
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.records import recorded_labels, replace_model_folder

if TYPE_CHECKING:  # Keras loads with the models, so a bad argument is refused before TensorFlow starts
    import keras


def filter_importance(kernel: np.ndarray, batch_norm: keras.layers.BatchNormalization | None) -> np.ndarray:
    """How much each output channel of a kernel (..., in, out) weighs: its L1 norm, times its batch norm's scale."""
    importance = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    if batch_norm is not None:
        scale = np.abs(batch_norm.gamma.numpy()) / np.sqrt(batch_norm.moving_variance.numpy() + batch_norm.epsilon)
        importance = importance * scale
    return importance


def narrow_into(source: keras.Model, target: keras.Model) -> dict[str, tuple[int, int]]:
    """Copies a trained chain network's weights into ``target``, a same-named but narrower architecture.

    Args:
        source: The trained model.
        target: A freshly built model whose weighted layers have the source's names, each as wide as
            or narrower than the source's.

    Returns:
        For each layer made narrower: (output channels kept, output channels the source had).

    Raises:
        UserError: When the source has a merge (residual sum, concatenation), or the target has a
            layer the source lacks, of another kind, or wider than the source's.
    """
    import keras

    from fer_keras.models import weighted_layers

    merges = [layer.name for layer in source.layers if isinstance(layer.input, (list, tuple)) and len(layer.input) > 1]
    if merges:
        raise UserError(f"model {source.name!r} merges branches (layer {merges[0]!r}); only chain networks such as vgg can be narrowed")
    by_name = {layer.name: layer for layer in source.layers}
    batch_norm_after = {layer.name: batch_norm for layer, batch_norm in weighted_layers(source)}
    narrowed, kept = {}, None  # kept: which source channels the current feature map holds; None = all
    for layer in target.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None or type(other) is not type(layer):
            raise UserError(f"model {source.name!r} has no {type(layer).__name__} layer {layer.name!r} to narrow into {target.name!r}")
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = other.kernel.numpy()
            if kept is not None:
                kernel = kernel.take(kept, axis=-2)
            wanted = layer.kernel.shape[-1]
            if kernel.shape[-2] != layer.kernel.shape[-2] or wanted > kernel.shape[-1]:
                raise UserError(f"layer {layer.name!r}: kernel {tuple(layer.kernel.shape)} does not fit inside {source.name!r}'s {tuple(other.kernel.shape)}")
            if wanted == kernel.shape[-1]:
                kept = np.arange(wanted)
            else:
                kept = np.sort(np.argsort(-filter_importance(kernel, batch_norm_after[other.name]), kind="stable")[:wanted])
                narrowed[layer.name] = (wanted, kernel.shape[-1])
            layer.set_weights([kernel.take(kept, axis=-1)] + ([other.bias.numpy()[kept]] if layer.use_bias else []))
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([weights[kept] for weights in other.get_weights()])
        else:
            raise UserError(f"layer {layer.name!r}: a {type(layer).__name__} cannot be narrowed (convolutions, dense layers and batch norm can)")
    return narrowed


def prune(run_dir: Path, to: str, out_dir: Path) -> Path:
    """Writes the run folder of ``to``, made from the trained model in ``run_dir`` by ``narrow_into``.

    Args:
        run_dir: A run folder with best.keras, config.yaml and metrics.json (its labels).
        to: A registered model name: the narrower architecture, built with the run's model settings.
        out_dir: Gets ``<run folder name>_<to>/`` with best.keras, config.yaml (the run's, with
            ``model.name`` set to ``to``) and metrics.json (labels, source and what was narrowed).

    Returns:
        The new folder.

    Raises:
        UserError: For a missing file, an unknown model name, or an architecture that does not fit.
    """
    source_path = run_dir / "best.keras"
    for path in (source_path, run_dir / "config.yaml"):
        if not path.is_file():
            raise UserError(f"{path}: not found (--run takes a run folder with best.keras, config.yaml and metrics.json)")
    labels = recorded_labels(source_path)
    if labels is None:
        raise UserError(f"{run_dir}: no metrics.json with labels")
    config = load_run_config(run_dir)
    from fer_keras.models import build_from_config, check_model_name, load_saved_model  # Keras loads only once the arguments passed their checks

    check_model_name(to)
    source = load_saved_model(source_path)
    config.model.name = to
    target = build_from_config(config.model, len(labels))
    narrowed = narrow_into(source, target)
    metrics = {
        "model": target.name,
        "labels": list(labels),
        "label_set": config.data.label_set,
        "pruned_from": str(source_path),
        "parameters": {"source": source.count_params(), "pruned": target.count_params()},
        "narrowed": {name: {"kept": kept, "of": total} for name, (kept, total) in narrowed.items()},
    }
    folder = out_dir / f"{run_dir.name}_{to}"
    with tempfile.TemporaryDirectory() as scratch:
        save_config(config, Path(scratch) / "config.yaml")
        saved = replace_model_folder(folder, target, Path(scratch) / "config.yaml", metrics)
    layers = ", ".join(f"{name} {kept}/{total}" for name, (kept, total) in narrowed.items()) or "none"
    print(f"pruned {source.name} ({source.count_params():,} parameters) into {target.name} ({target.count_params():,}): filters kept {layers} -> {saved}")
    return folder


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fer_keras.prune", description="Narrow a trained VGG into vgg_slim (or another narrower chain network), keeping its strongest filters.")
    parser.add_argument("--run", required=True, type=Path, help="the trained model's run folder (best.keras, config.yaml, metrics.json)")
    parser.add_argument("--to", default="vgg_slim", help="the narrower registered model to build (default: vgg_slim)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the new run folder")
    args = parser.parse_args(argv)
    prune(args.run, args.to, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
