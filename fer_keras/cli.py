"""The ``fer-keras`` console script (also ``python -m fer_keras``): ``fer-keras <command> [args]`` runs ``python -m fer_keras.<command>``."""

from __future__ import annotations

import importlib
import sys

from fer_keras import __version__

COMMANDS = {
    "train": "train a model and record the run",
    "train_accel": "train without TensorFlow (Keras on JAX or PyTorch), as on a lent GPU",
    "ensemble": "average trained models (with flip views) into one, or pick members within a latency budget",
    "recover": "rebuild an exported int8 .tflite's members as .keras run folders",
    "prune": "narrow a trained VGG into vgg_slim, keeping its strongest filters, for a short fine-tune",
    "soup": "average fine-tunes of one network in weight space into one .keras model",
    "unpack": "write FER2013's pixel table (fer2013.csv) as image folders, with its FERPlus row map",
    "label_list": "write a .csv label list from a public dataset's own annotations (RAF-DB, AffectNet, ExpW, CK+, KDEF, JAFFE) or your own photos",
    "evaluate": "metrics, plots and an HTML report for a model on a labelled folder",
    "explain": "heatmaps of what a model looks at in each face: Grad-CAM (.keras) or occlusion (any model)",
    "export": "convert a .keras model to a quantized .tflite (or a float32 .onnx) with a parity report",
    "detect": "emotions of every face in a camera, video, image or folder",
    "serve": "an HTTP service: POST a photo to /analyze, get every face's emotion as JSON",
    "benchmark": "latency, accuracy, robustness, detector, pipeline and training-speed tables",
}


def usage() -> str:
    """The command list that ``fer-keras --help`` prints."""
    width = max(map(len, COMMANDS))
    return "usage: fer-keras <command> [args]   (or python -m fer_keras <command>)\n\ncommands:\n" + "\n".join(
        f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv and argv[0] == "--version":
        print(f"fer-keras {__version__}")
        return 0
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)} (see fer-keras --help)", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"fer_keras.{argv[0]}")
    except ModuleNotFoundError:
        print(f"error: the {argv[0]} command is not available in this version", file=sys.stderr)
        return 2
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
