"""The ``fer-keras`` console script: ``fer-keras <command> [args]`` runs ``python -m fer_keras.<command>``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train a model and record the run",
    "train_accel": "train without TensorFlow (Keras on JAX or PyTorch), as on a lent GPU",
    "ensemble": "average trained models (with flip views) into one, or pick members within a latency budget",
    "recover": "rebuild an exported int8 .tflite's members as .keras run folders",
    "soup": "average fine-tunes of one network in weight space into one .keras model",
    "evaluate": "metrics, plots and an HTML report for a model on a labelled folder",
    "explain": "Grad-CAM heatmaps for a face image",
    "export": "convert a .keras model to a quantized .tflite with a parity report",
    "detect": "emotions of every face in a camera, video, image or folder",
    "benchmark": "latency, accuracy, robustness, detector, pipeline and training-speed tables",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "usage: fer-keras <command> [args]\n\ncommands:\n" + "\n".join(f"  {k:<10} {v}" for k, v in COMMANDS.items())
        print(usage, file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        module = importlib.import_module(f"fer_keras.{argv[0]}")
    except ModuleNotFoundError:
        print(f"error: the {argv[0]} command is not available in this version", file=sys.stderr)
        return 2
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
