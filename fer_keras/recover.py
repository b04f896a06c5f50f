"""Rebuild float Keras members from an int8 ``.tflite`` this package exported: ``python -m fer_keras.recover``.

The ``.keras`` files behind a shipped tier are large and not committed, so they are lost with the
machine that trained them. The int8 file still holds every weight: per-channel int8 kernels and
int32 biases, with batch norm folded into the convolution before it and the input rescaling folded
into the first one. This module dequantizes them into the members' architectures (built from
their run folders' config.yaml), with each folded batch norm set to the identity plus the folded
bias. The members come back as run folders that ``fer_keras.ensemble``, ``evaluate`` and ``export``
take, so a tier can be rebuilt in a new graph layout or with more members, and a teacher used
again. They are inference-equivalent, not the training checkpoints: the batch-norm statistics are
folded away, so fine-tune them with ``train.freeze_batch_norm=true`` beside ``train.init_from``.

    python -m fer_keras.recover --tflite tflite/accurate/fer_keras_accurate_int8.tflite \\
        --run experiments/runs/RESNET_RUN --run experiments/runs/VGG_RUN --out experiments/runs/recovered

``--run`` folders come in the ensemble's member order (its metrics.json lists them, with its
``shares`` when the members were weighed: pass them as ``--share``, in the same order, and its
``views`` when some members see the face only: pass them as ``--views``). The rebuilt
average (with flip views when the file mirrors its input) is checked against the ``.tflite`` on
validation faces, and nothing is written unless their top-1 predictions agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer_keras.config import load_run_config
from fer_keras.data import load_config_dataset
from fer_keras.ensemble import VIEWS, average_models, check_views
from fer_keras.errors import ArgumentParser, UserError, cli_entry
from fer_keras.records import replace_model_folder
from fer_keras.runtime import EmotionClassifier, open_interpreter
from fer_keras.soup import check_shares

if TYPE_CHECKING:  # Keras loads with the models, so a bad argument is refused before TensorFlow starts
    import keras

# Below this top-1 agreement between the rebuilt members and the .tflite, the weights went to the wrong layers.
MIN_AGREEMENT = 0.97
CHECK_PER_CLASS = 60  # validation faces per class for that check
# The converter names a tensor by its Keras path: an ensemble member's start with "<ensemble>_1/member<index>_".
MEMBER_TENSOR_NAME = re.compile(r"^[^/;]+/member(\d+)_")


@dataclass
class WeightedOp:
    """A CONV_2D or FULLY_CONNECTED op's dequantized constants, in the .tflite's layout.

    Attributes:
        kernel: (out, height, width, in) for a convolution, (out, in) for a dense layer.
        bias: (out,), or None when the op adds none.
    """

    kernel: np.ndarray
    bias: np.ndarray | None


def _dequantize(interpreter, details: dict) -> np.ndarray:
    values = interpreter.get_tensor(details["index"]).astype(np.float64)
    quantization = details["quantization_parameters"]
    scales, zero_points = quantization["scales"], quantization["zero_points"]
    if len(scales) == 0:
        return values
    shape = [1] * values.ndim
    if len(scales) > 1:
        shape[quantization["quantized_dimension"]] = -1
    return (values - zero_points.reshape(shape)) * scales.reshape(shape)


def read_weighted_ops(tflite_path: Path) -> tuple[list[WeightedOp], bool]:
    """The weighted ops of a .tflite, each weight tensor once, and whether it mirrors its input.

    The ops come member by member (by the member index in their tensors' names), each member's in
    execution order: the converter may interleave members that run on different views. A dense
    layer applied to a (1, 1, C) map is converted to FULLY_CONNECTED without a bias followed
    (through a RESHAPE) by an ADD of a constant: that constant is its bias.

    Raises:
        UserError: When the file cannot be read as a TFLite model.
    """
    from ai_edge_litert.interpreter import OpResolverType

    # Without the XNNPACK delegate, which repacks constant tensors out of get_tensor's reach.
    interpreter = open_interpreter(tflite_path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the public API lists tensors, not the graph
    consumers: dict[int, list[dict]] = {}
    for op in ops:
        for index in op["inputs"]:
            consumers.setdefault(int(index), []).append(op)
    # Everything else is a constant: only these tensors have no data until the graph runs.
    computed = {int(i) for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}

    def added_constant(tensor: int) -> np.ndarray | None:
        for _ in range(3):  # FULLY_CONNECTED -> RESHAPE -> ADD(constant)
            following = consumers.get(tensor, [])
            if len(following) != 1:
                return None
            op = following[0]
            if op["op_name"] == "ADD":
                # A dense layer whose bias is all zeros has none in the file; its output may then meet another
                # computed tensor (an ensemble's average, a residual sum), which is no bias.
                other = [int(i) for i in op["inputs"] if int(i) != tensor]
                constant = other and other[0] in tensors and other[0] not in computed
                return _dequantize(interpreter, tensors[other[0]]) if constant else None
            tensor = int(op["outputs"][0])
        return None

    def member_index(op: dict) -> int:
        match = MEMBER_TENSOR_NAME.match(tensors[int(op["inputs"][1])]["name"])
        return int(match.group(1)) if match else 0

    seen: set[int] = set()
    weighted = []  # (member index, op)
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED") or int(op["inputs"][1]) in seen:
            continue
        seen.add(int(op["inputs"][1]))
        kernel = _dequantize(interpreter, tensors[int(op["inputs"][1])])
        has_bias = len(op["inputs"]) > 2 and op["inputs"][2] >= 0
        bias = _dequantize(interpreter, tensors[int(op["inputs"][2])]) if has_bias else added_constant(int(op["outputs"][0]))
        weighted.append((member_index(op), WeightedOp(kernel, None if bias is None else bias.reshape(-1))))
    mirrors = any(op["op_name"] == "REVERSE_V2" for op in ops)
    # sorted is stable: within a member the ops keep their execution order.
    return [op for _, op in sorted(weighted, key=lambda pair: pair[0])], mirrors


def load_folded_weights(model: keras.Model, ops: list[WeightedOp], source: str) -> None:
    """Puts dequantized ``ops`` into ``model``'s layers, matching each layer to the next op of its kernel shape.

    Args:
        model: A freshly built member whose architecture produced the ops.
        ops: Exactly that member's weighted ops, in execution order.
        source: Names the member in errors.

    Raises:
        UserError: When a layer has no op of its shape, an op is left over, or a bias has no layer to go to.
    """
    import keras

    from fer_keras.models import weighted_layers

    unused = list(range(len(ops)))
    for layer, batch_norm in weighted_layers(model):
        shape = tuple(layer.kernel.shape)
        for position in unused:
            kernel = ops[position].kernel
            kernel = kernel.transpose(1, 2, 3, 0) if kernel.ndim == 4 else kernel.T
            if kernel.shape == shape:
                break
        else:
            raise UserError(f"{source}: the .tflite has no weights of shape {shape} for layer {layer.name!r} (wrong --run order, architecture or width?)")
        unused.remove(position)
        producer = layer.input._keras_history.operation
        if isinstance(producer, keras.layers.Rescaling):
            kernel = kernel / producer.scale  # the converter folds the input rescaling into the first kernel
        layer.kernel.assign(kernel.astype(np.float32))
        bias = ops[position].bias
        bias = np.zeros(shape[-1]) if bias is None else bias
        if layer.use_bias:
            layer.bias.assign(bias.astype(np.float32))
        elif batch_norm is not None:
            batch_norm.gamma.assign(np.ones(shape[-1], np.float32))
            batch_norm.beta.assign(bias.astype(np.float32))
            batch_norm.moving_mean.assign(np.zeros(shape[-1], np.float32))
            batch_norm.moving_variance.assign(np.full(shape[-1], 1 - batch_norm.epsilon, np.float32))
        elif np.any(bias):
            raise UserError(f"{source}: layer {layer.name!r} has no bias and no batch norm for the folded bias")
    if unused:
        raise UserError(f"{source}: {len(unused)} weighted ops of the .tflite are left over (wrong --run order or architecture?)")


def recover(
    tflite_path: Path, run_dirs: list[Path], out_dir: Path, data_dir: str | None = None, shares: list[float] | None = None, views: list[str] | None = None
) -> dict:
    """Rebuilds the members of an exported model as run folders under ``out_dir``, checked against the file.

    Args:
        tflite_path: An int8 (or float) .tflite exported by fer_keras: one model or an ensemble.
        run_dirs: Each member's training run folder (its config.yaml), in member order.
        out_dir: Gets one run folder per member, named after its run (best.keras, config.yaml, metrics.json).
        data_dir: Dataset root for the check (default: the first run's config).
        shares: The ensemble's member weights (its metrics.json ``shares``), for the check; None: equal.
        views: The ensemble's member views (its metrics.json ``views``), for the check; None: both, with flip.

    Returns:
        The check: ``agreement`` (top-1, rebuilt against .tflite), ``val_accuracy_tflite``,
        ``val_accuracy_keras``, ``images``, ``flip``.

    Raises:
        UserError: For a missing file or config, weights that do not fit, or an agreement below ``MIN_AGREEMENT``.
    """
    if not tflite_path.is_file():
        raise UserError(f"{tflite_path}: model file not found")
    if shares is not None:
        check_shares(shares, len(run_dirs), "--run folders")
    classifier = EmotionClassifier(tflite_path)
    ops, flip = read_weighted_ops(tflite_path)
    if views is not None:
        check_views(views, len(run_dirs), flip, "--run folders")
    for run_dir in run_dirs:
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: no config.yaml, so the member's architecture is unknown")
    from fer_keras.models import build_from_config, weighted_layers  # Keras loads only once the arguments passed their checks

    configs, members, start = [], [], 0
    for run_dir in run_dirs:
        config = load_run_config(run_dir, data_dir)
        member = build_from_config(config.model, len(classifier.labels))
        count = len(weighted_layers(member))
        load_folded_weights(member, ops[start : start + count], str(run_dir))
        start += count
        configs.append(config)
        members.append(member)
    if start != len(ops):
        raise UserError(f"{tflite_path}: {len(ops) - start} weighted ops are left after the {len(run_dirs)} --run members (one missing?)")

    data = configs[0].data
    check_set = load_config_dataset(configs[0], with_test=False, max_per_class=CHECK_PER_CLASS).splits["val"]
    rebuilt = average_models(members, flip, shares=shares, views=views) if len(members) > 1 or flip else members[0]
    expected = classifier.predict(check_set.images)
    got = rebuilt.predict(check_set.images, batch_size=256, verbose=0)
    check = {
        "tflite": str(tflite_path),
        "flip": flip,
        "images": len(check_set),
        "agreement": float((expected.argmax(1) == got.argmax(1)).mean()),
        "val_accuracy_tflite": float((expected.argmax(1) == check_set.labels).mean()),
        "val_accuracy_keras": float((got.argmax(1) == check_set.labels).mean()),
    }
    if check["agreement"] < MIN_AGREEMENT:
        raise UserError(f"{tflite_path}: the rebuilt members agree with it on only {check['agreement']:.1%} of {len(check_set)} faces (wrong --run folders?)")

    for run_dir, member in zip(run_dirs, members):
        saved = replace_model_folder(out_dir / run_dir.name, member, run_dir / "config.yaml", {"model": member.name, "labels": list(classifier.labels), "label_set": data.label_set,
                                                                                              "recovered_from": str(tflite_path), "source_run": str(run_dir), "check": check})
        print(f"rebuilt {run_dir.name} -> {saved}")
    # The sample is capped per class, so its accuracy is near the balanced accuracy, not the split's.
    print(f"top-1 agreement with {tflite_path.name}: {check['agreement']:.2%} on {check['images']} validation faces, "
          f"at most {CHECK_PER_CLASS} per class (accuracy on them {check['val_accuracy_tflite']:.4f} .tflite, "
          f"{check['val_accuracy_keras']:.4f} rebuilt{', flip views' if flip else ''})")
    return check


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fer_keras.recover", description="Rebuild float Keras members from a .tflite exported by fer_keras.")
    parser.add_argument("--tflite", required=True, type=Path, help="the exported model")
    parser.add_argument("--run", action="append", required=True, type=Path, help="a member's training run folder (repeat, in member order)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the rebuilt members' run folders")
    parser.add_argument("--data-dir", help="dataset root for the check (default: the first run's config, $FER_KERAS_DATA)")
    parser.add_argument("--share", action="append", type=float, help="a member's weight in the ensemble's average (repeat, in --run order; its metrics.json shares)")
    parser.add_argument("--views", action="append", choices=VIEWS, help="a member's views in the ensemble (repeat, in --run order; its metrics.json views)")
    args = parser.parse_args(argv)
    recover(args.tflite, args.run, args.out, args.data_dir, args.share, args.views)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
