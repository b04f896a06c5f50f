"""Export a Keras model to TFLite: ``python -m fer_keras.export --model M.keras --quantize int8 --out DIR``.

Writes ``DIR/<name>_<quantize>.tflite`` (labels and input format embedded in its metadata),
``labels.txt``, ``model.json`` and ``parity.json`` (agreement with the Keras model on the test split,
or with ``--parity-split val`` on validation: that is how candidates are exported while a tier is
still being chosen, so the test split is touched only by the one that ships). ``--format onnx``
writes ``DIR/<name>_float32.onnx`` instead, for ONNX Runtime, with the same metadata and reports.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from fer_keras import __version__  # noqa: E402
from fer_keras.errors import ArgumentParser, UserError, check_at_least, cli_entry, file_stem  # noqa: E402
from fer_keras.files import write_atomic, write_json  # noqa: E402
from fer_keras.onnx_model import OnnxClassifier  # noqa: E402
from fer_keras.runtime import METADATA_NAME, EmotionClassifier, read_metadata  # noqa: E402

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")
# ONNX, for ONNX Runtime's platforms (C#, C++, Java, the browser); written in float32 only.
FORMATS = ("tflite", "onnx")
MIN_INT8_AGREEMENT = 0.98


def as_float32(model):
    """The same network with every layer in float32 (mixed-precision layers keep their policy when loaded).

    The TFLite converter cannot quantize bfloat16 graphs, so models trained under
    ``mixed_bfloat16`` are rebuilt from their config with float32 policies and given the weights.
    """

    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: to_float32(value) for key, value in node.items()}
        if isinstance(node, list):
            return [to_float32(value) for value in node]
        return node

    rebuilt = model.__class__.from_config(to_float32(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def with_rgb_input(model):
    """The model behind an RGB input that it turns gray itself; a model that takes RGB as it is.

    For tools that feed only RGB, such as the TFLite Task Library's and MediaPipe's ImageClassifier.
    A frozen 1x1 convolution computes ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), the
    grayscale conversion of OpenCV and of the integration notes, so an RGB face gives the network
    the pixels our runtime would: a plain Conv2D, so the graph needs no custom layer. Its weights
    are 65, 127 and 25 217ths (within 0.002 of those), which int8 stores exactly and which sum to
    1, so a gray face passes unchanged and the int8 file answers as the grayscale one does.
    """
    import keras

    _, height, width, channels = model.input_shape
    if channels == 3:
        return model
    image = keras.Input(shape=(height, width, 3), name="image")
    luma = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    gray = luma(image)
    luma.set_weights([(np.array([65, 127, 25], dtype=np.float32) / 217).reshape(1, 1, 3, 1)])
    return keras.Model(image, model(gray), name=model.name)


def convert(model, quantize: str, io_type: str = "float32", representative_images: np.ndarray | None = None) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: A keras.Model taking raw 0-255 pixels.
        quantize: ``float32``, ``float16`` (float16 weights), ``dynamic`` (int8 weights, float
            activations) or ``int8`` (full-integer, calibrated on ``representative_images``).
        io_type: Input/output tensor type for ``int8``: ``uint8`` (raw camera pixels), ``int8`` or
            ``float32``. Ignored for the other modes, whose I/O is float32.
        representative_images: (N, H, W, C) raw-pixel calibration images, required for ``int8``.

    Returns:
        The ``.tflite`` bytes.
    """
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize {quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    model = as_float32(model)
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantize != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            if representative_images is None or len(representative_images) == 0:
                raise UserError("int8 quantization needs representative images (the training split)")

            def representative():
                # A 0-255 ramp first pins the input quantization to scale 1, zero point 0 (uint8),
                # so a phone feeds camera pixels unchanged whatever range the calibration faces span.
                shape = representative_images.shape[1:]
                yield [np.linspace(0, 255, int(np.prod(shape)), dtype=np.float32).reshape(1, *shape)]
                for image in representative_images:
                    yield [image[None].astype(np.float32)]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            dtype = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[io_type]
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        return converter.convert()


def embed_metadata(tflite_model: bytes, metadata: dict) -> bytes:
    """Stores ``metadata`` in the model: our JSON entry ``fer_keras``, and the TFLite Metadata standard's record.

    Existing entries' buffers are overwritten, so re-stamping a model leaves neither old record behind.
    The standard record's labels file is appended as a zip archive (``fer_keras.tflite_metadata``).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from fer_keras.tflite_metadata import STANDARD_METADATA_NAME, append_labels, model_metadata

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_model, 0))
    records = {
        METADATA_NAME: json.dumps(metadata, sort_keys=True).encode(),
        STANDARD_METADATA_NAME: model_metadata(metadata),
    }
    for name, content in records.items():
        data = np.frombuffer(content, dtype=np.uint8)
        existing = [m for m in (model.metadata or []) if m.name in (name, name.encode())]
        if existing:
            model.buffers[existing[0].buffer].data = data
            continue
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(tflite_model) + 8192)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return append_labels(bytes(builder.Output()), metadata["labels"])


def training_class_prior(train) -> list[float]:
    """The mean training target per class (vote shares for soft labels, frequencies otherwise), rounded to 6 places.

    That is the class prior the trained model's probabilities reflect; ``EmotionClassifier(balance=...)``
    divides it out (``fer_keras.runtime.rebalance``).
    """
    prior = np.asarray(train.targets, dtype=np.float64).mean(axis=0)
    return [round(float(v), 6) for v in prior / prior.sum()]


def class_prior_metadata(class_prior: list[float]) -> dict:
    """The metadata entries that carry the class prior and say how to use it."""
    return {
        "class_prior": class_prior,
        "class_prior_meaning": "mean training target per label; multiply the output by class_prior ** -b and renormalise (0 < b <= 1) where emotions are more evenly spread than in the training data",
    }


def check_format(file_format: str, quantize: str) -> None:
    """Raises a UserError unless ``quantize`` can be written as ``file_format`` (ONNX: float32 only).

    Int8 belongs to the TFLite path, whose runtime reads its quantization parameters.
    """
    if file_format == "onnx" and quantize != "float32":
        raise UserError(f"ONNX is exported in float32 only, not {quantize} (--format onnx --quantize float32)")


def to_onnx(model, metadata: dict) -> bytes:
    """Converts a Keras model to a float32 ONNX model (Keras's own export, through tf2onnx) with ``metadata`` in its properties.

    The metadata is the ``.tflite``'s JSON, under the model property ``fer_keras``; ``labels`` holds
    the labels comma-separated for readers that look only there.
    """
    import onnx

    model = as_float32(model)
    _, height, width, channels = model.input_shape
    model(np.zeros((1, height, width, channels), np.float32))  # Keras exports to ONNX only a model that has been called
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        model.export(str(path), format="onnx", verbose=False)
        proto = onnx.load(str(path))
    # tf2onnx names the free batch dimension unk__N and the output Identity:0; "batch" and "probabilities" say what they are.
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    tf_name = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = ["probabilities" if name == tf_name else name for name in node.output]
    proto.graph.output[0].name = "probabilities"
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, {METADATA_NAME: json.dumps(metadata), "labels": ",".join(metadata["labels"])})
    return proto.SerializeToString()


def make_metadata(model, labels: tuple[str, ...], quantize: str, io_type: str, training_data: str, name: str, class_prior: list[float] | None = None) -> dict:
    """What a mobile developer needs to use the model, embedded in the file."""
    _, height, width, channels = model.input_shape
    return {
        "name": name,
        "version": __version__,
        "exported": date.today().isoformat(),
        "labels": list(labels),
        "input": {
            "height": int(height),
            "width": int(width),
            "channels": int(channels),
            "color": "grayscale" if channels == 1 else "rgb",
            "value_range": [0, 255],
            "layout": "NHWC",
            "dtype": io_type if quantize == "int8" else "float32",
            "preprocessing": "none: the model rescales internally; feed raw pixels of a face crop resized to height x width",
        },
        "output": {"meaning": "softmax probabilities, one per label", "dtype": io_type if quantize == "int8" else "float32"},
        "quantization": quantize,
        "training_data": training_data,
        "source": "fer_keras",
        **(class_prior_metadata(class_prior) if class_prior is not None else {}),
    }


def restamp(tflite_path: Path, class_prior: list[float], labels: tuple[str, ...]) -> dict:
    """Adds (or replaces) the class prior in an exported ``.tflite``'s metadata, and in ``model.json`` beside it.

    For models exported before the prior was embedded; the network itself is untouched. The TFLite
    Metadata standard record is written again too (``embed_metadata``), so this also adds it to
    files exported before it was. Both files are replaced atomically.

    Args:
        tflite_path: The exported model.
        class_prior: The training data's prior (``training_class_prior``).
        labels: The training data's class names, which must be the model's, in its order.

    Returns:
        The new metadata.

    Raises:
        UserError: When the file carries no fer_keras metadata or its labels differ from ``labels``.
    """
    flatbuffer = tflite_path.read_bytes()
    metadata = read_metadata(flatbuffer)
    if not metadata.get("labels"):
        raise UserError(f"{tflite_path}: no fer_keras metadata to update (export it with python -m fer_keras.export)")
    if tuple(metadata["labels"]) != tuple(labels):
        raise UserError(f"{tflite_path}: its labels {','.join(metadata['labels'])} differ from the data's {','.join(labels)}")
    metadata.update(class_prior_metadata(class_prior))
    write_atomic(tflite_path, embed_metadata(flatbuffer, metadata))
    sidecar = tflite_path.parent / "model.json"
    if sidecar.is_file():
        described = json.loads(sidecar.read_text(encoding="utf-8"))
        if described.get("file") == tflite_path.name:
            write_json(sidecar, {**described, **class_prior_metadata(class_prior)})
    return metadata


def latency_ms(classifier: EmotionClassifier, image: np.ndarray, batch: int = 1, repeats: int = 50) -> float:
    """Median milliseconds per face for ``batch`` faces per invoke."""
    faces = np.repeat(image[None], batch, axis=0).astype(np.float32)
    classifier.predict_preprocessed(faces)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict_preprocessed(faces)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000 / batch)


def parity_report(keras_model, exported_path: Path, images: np.ndarray, labels_true: np.ndarray) -> dict:
    """Compares the exported file (``.tflite`` or ``.onnx``) with its Keras model on labelled images: agreement, accuracies, drift, size, latency."""
    keras_probs = keras_model.predict(images, batch_size=256, verbose=0)
    onnx = exported_path.suffix == ".onnx"
    classifier = OnnxClassifier(exported_path) if onnx else EmotionClassifier(exported_path, num_threads=1)
    exported_probs = classifier.predict_many(images)
    return {
        "n": int(len(images)),
        "top1_agreement": round(float((keras_probs.argmax(1) == exported_probs.argmax(1)).mean()), 5),
        "keras_accuracy": round(float((keras_probs.argmax(1) == labels_true).mean()), 5),
        f"{'onnx' if onnx else 'tflite'}_accuracy": round(float((exported_probs.argmax(1) == labels_true).mean()), 5),
        "max_probability_difference": round(float(np.abs(keras_probs - exported_probs).max()), 5),
        "size_kb": round(exported_path.stat().st_size / 1024, 1),
        "latency_ms_batch1_1thread": round(latency_ms(classifier, images[0]), 4),
    }


def export(
    keras_model,
    labels: tuple[str, ...],
    out_dir: Path,
    quantize: str,
    io_type: str,
    representative_images: np.ndarray | None,
    parity_images: np.ndarray | None,
    parity_labels: np.ndarray | None,
    name: str,
    training_data: str,
    allow_drift: bool = False,
    class_prior: list[float] | None = None,
    parity_split: str = "test",
    file_format: str = "tflite",
) -> dict:
    """Converts, embeds metadata, checks parity and writes the hand-off files.

    ``file_format`` ``onnx`` writes a float32 ``.onnx`` (``quantize`` must be ``float32``) instead of a ``.tflite``.

    ``class_prior`` (see ``training_class_prior``) is embedded so runtimes can rebalance the output.
    ``parity_images`` and ``parity_labels`` come from the split named by ``parity_split``, which the
    report records.

    Returns:
        The parity report (also written to ``parity.json``).

    Raises:
        UserError: When int8 top-1 agreement is under 98% and ``allow_drift`` is False; the
            ``.tflite`` is then not written (the report is).
    """
    if len(labels) != keras_model.output_shape[-1]:
        raise UserError(f"{len(labels)} labels given but the model outputs {keras_model.output_shape[-1]} classes")
    check_format(file_format, quantize)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = make_metadata(keras_model, labels, quantize, io_type, training_data, name, class_prior)
    if file_format == "onnx":
        exported = to_onnx(keras_model, metadata)
    else:
        exported = embed_metadata(convert(keras_model, quantize, io_type, representative_images), metadata)
    target = out_dir / f"{name}_{quantize}.{file_format}"
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / target.name
        candidate.write_bytes(exported)
        report = {"model": target.name, "quantization": quantize, "io": metadata["input"]["dtype"]}
        if parity_images is not None and len(parity_images):
            report.update({"split": parity_split, **parity_report(keras_model, candidate, parity_images, parity_labels)})
        write_json(out_dir / "parity.json", report)
        drift = quantize == "int8" and report.get("top1_agreement", 1.0) < MIN_INT8_AGREEMENT
        if drift and not allow_drift:
            raise UserError(
                f"{target}: int8 top-1 agreement {report['top1_agreement']:.2%} is under {MIN_INT8_AGREEMENT:.0%}; "
                "not written (see parity.json; --allow-drift writes it anyway)"
            )
        write_atomic(target, exported)
    write_atomic(out_dir / "labels.txt", "".join(label + "\n" for label in labels))
    write_json(out_dir / "model.json", {**metadata, "file": target.name, "parity": report})
    return report


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.export", description="Export a .keras model to a quantized, self-describing .tflite (or a float32 .onnx).")
    parser.add_argument("--model", required=True, type=Path, help="a .keras file (labels are read from its run folder's metrics.json); with --restamp, an exported .tflite")
    parser.add_argument("--restamp", action="store_true", help="only re-stamp an exported .tflite's metadata (the network is untouched): the training data's class prior (also in its model.json) and the TFLite Metadata standard record")
    parser.add_argument("--format", default="tflite", choices=FORMATS, help="tflite (default) or onnx, float32, for ONNX Runtime (C#, C++, Java, the browser)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="default int8 (tflite), float32 (onnx)")
    parser.add_argument("--io", default="uint8", choices=IO_TYPES, help="int8 models' input/output type (default uint8: raw pixels)")
    parser.add_argument("--out", type=Path, help="output folder (required unless --restamp)")
    parser.add_argument("--name", type=file_stem, help="file stem (default: the model file's folder name)")
    parser.add_argument("--labels", help="comma-separated labels, when the model has no run folder")
    parser.add_argument("--data-dir", help="dataset root for calibration and parity (default: the run's, $FER_KERAS_DATA, kagglehub)")
    parser.add_argument("--label-set", choices=("fer2013", "ferplus", "folder"), help="default: the run's")
    parser.add_argument("--run-dir", type=Path, help="training run folder whose config.yaml describes the data (default: the model's folder)")
    parser.add_argument("--calibration-images", type=int, default=500, help="representative images from the training split (>= 300 advised)")
    parser.add_argument("--allow-drift", action="store_true", help="write an int8 model even under 98%% top-1 agreement")
    parser.add_argument("--rgb-input", action="store_true", help="give a grayscale model an RGB input it turns gray itself, for the Task Library's and MediaPipe's ImageClassifier (which take only RGB)")
    parser.add_argument(
        "--parity-split", choices=("test", "val"), default="test",
        help="labelled split of the parity check (default test; val while candidates are compared, so test stays untouched)",
    )
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.data import load_dataset, run_data_settings

    if args.restamp != (args.model.suffix == ".tflite"):
        raise UserError(f"{args.model}: --restamp takes an exported .tflite; export takes a .keras model")
    if not args.model.is_file():
        raise UserError(f"{args.model}: model file not found")
    info = run_data_settings(args.run_dir or args.model.parent)
    label_set = args.label_set or info.get("label_set") or "folder"
    data_dir = args.data_dir or info.get("data_dir")
    soft_labels = info.get("soft_labels", False) and label_set == "ferplus"
    # The run's own hold-outs, so that --parity-split val scores the images it was validated on and a
    # plain folder it trained on splits as it did.
    holdout = info.get("holdout", {})
    if args.restamp:
        dataset = load_dataset(label_set, data_dir, soft_labels=soft_labels, **holdout)
        metadata = restamp(args.model, training_class_prior(dataset.splits["train"]), dataset.labels)
        print(f"{args.model}: class_prior " + " ".join(f"{k}={v:.4f}" for k, v in zip(metadata["labels"], metadata["class_prior"])))
        return 0
    if args.out is None:
        raise UserError("--out DIR is required")
    quantize = args.quantize or ("float32" if args.format == "onnx" else "int8")
    check_format(args.format, quantize)
    # Checked before the data loads; only int8 calibrates, so other quantizations may take none.
    check_at_least("--calibration-images", args.calibration_images, 1 if quantize == "int8" else 0)
    from fer_keras.evaluate import load_keras_model

    model, labels = load_keras_model(args.model, args.labels)
    if args.rgb_input:
        model = with_rgb_input(model)
    _, height, _, channels = model.input_shape
    dataset = load_dataset(label_set, data_dir, int(height), int(channels), soft_labels=soft_labels, with_test=args.parity_split == "test", **holdout)
    rng = np.random.default_rng(0)
    train = dataset.splits.get("train") or dataset.splits["test"]
    calibration = train.images[rng.choice(len(train), size=min(args.calibration_images, len(train)), replace=False)]
    parity = dataset.splits.get(args.parity_split)
    if parity is None:
        raise UserError(
            f"{args.model}: its {label_set} data has no {args.parity_split} split for the parity check "
            "(val needs a train/ folder and data.val_fraction > 0; test needs a test/ folder or a plain folder of classes)"
        )
    name = args.name or args.model.parent.name
    report = export(
        model, labels, args.out, quantize, args.io, calibration, parity.images, parity.labels, name,
        training_data=f"{label_set} ({len(train)} training images)", allow_drift=args.allow_drift,
        class_prior=training_class_prior(train), parity_split=args.parity_split, file_format=args.format,
    )
    from fer_keras.benchmark import markdown_table

    print(markdown_table([report]))
    print(f"wrote {args.out / report['model']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
