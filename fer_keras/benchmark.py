"""Benchmarks (not tests): ``python -m fer_keras.benchmark {train,latency,accuracy,robustness,detectors,pipeline}``.

Each writes a Markdown table and a JSON file under ``experiments/benchmarks/`` and prints the table.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from fer_keras.errors import ArgumentParser, UserError, at_least, cli_entry, file_stem, in_range
from fer_keras.files import write_atomic, write_json

DEFAULT_OUT = Path("experiments/benchmarks")


def cpu_name() -> str:
    """The CPU model name, for labelling measurements."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(rows: list[dict]) -> str:
    """Renders rows of equal keys as a Markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, rows: list[dict], header: str) -> Path:
    """Writes ``name.md`` (header + table) and ``name.json`` and prints the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    text = f"# {name}\n\n{header}\n\n{table}\n"
    write_atomic(out_dir / f"{name}.md", text)
    write_json(out_dir / f"{name}.json", {"header": header, "rows": rows})
    print(text)
    return out_dir / f"{name}.md"


def training_precisions() -> list[str]:
    """The precisions to time training in: float32, and mixed_bfloat16 where the CPU has AVX-512 BF16 or AMX."""
    from fer_keras import hardware

    return ["float32"] + (["mixed_bfloat16"] if hardware.cpu_supports_bf16() else [])


def training_batch(batch_size: int, num_classes: int = 7):
    """A seeded batch of random 48x48x1 faces (0-255) and one-hot targets, for timing training steps."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch_size, 48, 48, 1)).astype("float32")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    return x, y


def time_training_steps(model, x, y, steps: int, warm_up: int = 3) -> tuple[float, float]:
    """Seconds of ``warm_up`` untimed steps (compilation included) and mean seconds of each of ``steps`` timed steps."""
    start = time.perf_counter()
    for _ in range(warm_up):
        model.train_on_batch(x, y)
    warm_up_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return warm_up_seconds, (time.perf_counter() - start) / steps


def benchmark_train(models: list[str], batch_size: int, steps: int, out_dir: Path) -> list[dict]:
    """Training throughput of each model at ``batch_size``, float32 against mixed_bfloat16."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from fer_keras import hardware
    from fer_keras.models import build_model

    x, y = training_batch(batch_size)
    precisions = training_precisions()
    rows = []
    for name in models:
        row = {"model": name}
        for policy in precisions:
            previous = hardware.set_precision(policy)
            try:
                model = build_model(name, 7)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
                _, seconds = time_training_steps(model, x, y, steps)
            finally:
                hardware.set_precision(previous)
            row[f"{policy} img/s"] = round(batch_size / seconds, 1)
            row[f"{policy} ms/step"] = round(seconds * 1000, 1)
        row["params"] = build_model(name, 7).count_params()
        rows.append(row)
    header = (
        f"Training throughput at batch {batch_size}, 48x48x1 input, {steps} timed steps after 3 warm-up steps. "
        f"CPU: {cpu_name()}, {os.cpu_count()} cores. bf16 column only where the CPU has AVX-512 BF16 or AMX. "
        f"Command: python -m fer_keras.benchmark train --batch-size {batch_size} --steps {steps}"
    )
    write_results(out_dir, "train", rows, header)
    return rows


def time_classifier(path: Path, batch: int, threads: int, repeats: int, labels=None, value_range=None) -> float:
    """Median ms per face of a .tflite at a batch size and thread count."""
    import numpy as np

    from fer_keras.export import latency_ms
    from fer_keras.runtime import EmotionClassifier

    classifier = EmotionClassifier(path, num_threads=threads, labels=labels, value_range=value_range)
    face = np.random.default_rng(0).integers(0, 256, size=(*classifier.input_size, classifier.channels)).astype(np.float32)
    return latency_ms(classifier, face, batch=batch, repeats=repeats)


def benchmark_latency(models: list[Path], peers: list[Path], data_dir: str | None, repeats: int, out_dir: Path, exported: list[Path] = (), result_name: str = "latency") -> list[dict]:
    """Classifier latency of every quantization of each .keras model (exported on the fly), beside exported and peer .tflite files."""
    import tempfile

    from fer_keras.data import load_dataset, run_data_settings
    from fer_keras.evaluate import load_keras_model
    from fer_keras.export import QUANTIZATIONS, export
    from fer_keras.runtime import read_metadata

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        files: list[tuple[str, str, Path]] = []
        for model_path in models:
            model, labels = load_keras_model(model_path)
            info = run_data_settings(model_path.parent)
            _, height, _, channels = model.input_shape
            calibration = load_dataset(info.get("label_set") or "fer2013", data_dir or info.get("data_dir"), int(height), int(channels), max_per_class=100,
                                       **info.get("holdout", {}))
            images = calibration.splits["train"].images
            for mode in QUANTIZATIONS:
                export(model, labels, Path(scratch) / mode, mode, "uint8", images, None, None, model_path.parent.name, "benchmark")
                files.append((model_path.parent.name, mode, Path(scratch) / mode / f"{model_path.parent.name}_{mode}.tflite"))
        for path in exported:
            files.append((str(path), read_metadata(path).get("quantization", "as shipped"), path))
        for peer in peers:
            files.append((f"peer: {peer.name}", "as shipped", peer))
        for name, mode, path in files:
            row = {"model": name, "quantization": mode, "size_kb": round(path.stat().st_size / 1024, 1)}
            for batch in (1, 16):
                for threads in (1, 2):
                    row[f"ms/face b{batch} t{threads}"] = round(time_classifier(path, batch, threads, repeats), 4)
            rows.append(row)
    header = (
        f"Median milliseconds per face through EmotionClassifier (LiteRT, XNNPACK), {repeats} timed invokes after one warm-up, "
        f"at batch 1 and 16 with 1 and 2 threads. CPU: {cpu_name()}. "
        "Command: python -m fer_keras.benchmark latency" + (" --models " + " ".join(map(str, models)) if models else "")
        + "".join(f" --tflite {p}" for p in exported) + "".join(f" --peer {p}" for p in peers) + f" --repeats {repeats} --name {result_name}"
    )
    write_results(out_dir, result_name, rows, header)
    return rows


# The test splits of the release table: (name, label set, argmax over the classes present only).
# FERPlus-trained models lack no FERPlus class; on FER2013's 7 labels their contempt output is set aside.
ACCURACY_SPLITS = (("FERPlus PrivateTest", "ferplus", False), ("FER2013 test", "fer2013", True))


def benchmark_accuracy(
    models: list[str], balances: list[float], peers: list[tuple[Path, str, tuple[float, float]]], data_dir: str | None, out_dir: Path,
    others: list[str] | None = None, crop_faces: str | None = None, name: str | None = None,
) -> list[dict]:
    """Test accuracy of our models (at each class-prior balance) and peer models, on both test splits, in one run.

    With ``others``, the models are scored on those datasets instead: faces none of them trained on,
    for generalization across datasets.

    Args:
        models: ``.tflite``, ``.onnx`` or ``.keras`` files, or packaged model names.
        balances: Class-prior correction strengths to report for each of ``models``.
        peers: Third-party ``.tflite`` (or NHWC ``.onnx``) files with their labels (comma-separated) and input value range.
        data_dir: The Kaggle FER2013 root (FERPlus labels come from the vendored vote tables), or
            FERPlus's own layout (its FERPlus row only).
        out_dir: Where the .md and .json results go.
        others: Folders of class folders or ``.csv`` label lists, each scored whole by its own
            classes, with the argmax over the classes present in it (as the FER2013 rows are).
        crop_faces: With ``others``, a detector that cuts the largest face out of each image (whole photos).
        name: The result files' stem (default: accuracy, or accuracy_other with ``others``).

    Returns:
        One row per model, balance and split.
    """
    import tempfile

    from fer_keras.evaluate import evaluate

    candidates = [(str(m), m, None, None, b) for m in models for b in balances]
    candidates += [(f"peer: {path.name}", path, labels, value_range, 0.0) for path, labels, value_range in peers]
    if others:
        splits = [(other, other, "folder", True) for other in others]
    else:
        from fer_keras.data import is_ferplus_layout, locate_data_dir

        # FERPlus's own layout holds FERPlus's votes and not FER2013's labels: its FER2013 row would have nothing to score.
        ferplus_only = is_ferplus_layout(locate_data_dir(data_dir))
        splits = [(split, data_dir, label_set, restrict) for split, label_set, restrict in ACCURACY_SPLITS if label_set == "ferplus" or not ferplus_only]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for split_name, data, label_set, restrict in splits:
            for model_name, model, labels, value_range, balance in candidates:
                metrics = evaluate(model, data, Path(scratch), label_set, restrict=restrict, labels_arg=labels, plots=False, value_range=value_range,
                                   balance=balance, crop_faces=crop_faces if others else None)
                rows.append({
                    "split": split_name, "model": model_name, "balance": balance, "n": metrics["n"],
                    "accuracy %": round(100 * metrics["accuracy"], 2), "balanced accuracy %": round(100 * metrics["balanced_accuracy"], 2),
                    "macro F1": round(metrics["macro_f1"], 3), "excluded classes": ", ".join(metrics["excluded_classes"]) or "none",
                })
    scored = (
        "Top-1 accuracy on datasets scored whole by their own classes, every model taking the argmax over the classes present in each"
        + (f", on the largest face the {crop_faces} detector finds in each image" if crop_faces else "")
        if others else
        "Top-1 accuracy on the test splits. FERPlus: PrivateTest, majority labels"
        + (". FER2013: the Kaggle test/ folder with its original labels; FERPlus-trained models take the argmax over the 7 labels present"
           if len(splits) == len(ACCURACY_SPLITS) else "")
    )
    header = (
        f"{scored}; every model evaluated by fer_keras.evaluate in this one run. balance: EmotionClassifier's class-prior correction (0 = as trained). "
        "Balanced accuracy is the mean per-class recall: the accuracy to expect where every emotion is equally common. "
        f"CPU: {cpu_name()}. Command: python -m fer_keras.benchmark accuracy --models {' '.join(map(str, models))} --balance {' '.join(map(str, balances))}"
        + "".join(f" --peer {path} --peer-labels {labels} --peer-value-range={value_range[0]:g},{value_range[1]:g}" for path, labels, value_range in peers)
        + (f" --data-dir {data_dir}" if data_dir else "")
        + "".join(f" --other {other}" for other in others or ())
        + (f" --crop-faces {crop_faces}" if crop_faces and others else "")
        + (f" --name {name}" if name else "")
    )
    write_results(out_dir, name or ("accuracy_other" if others else "accuracy"), rows, header)
    return rows


ROBUSTNESS_SPLITS = {("ferplus", "test"): "FERPlus PrivateTest (majority labels)", ("ferplus", "val"): "FERPlus PublicTest (majority labels; validation)"}


def benchmark_robustness(
    models: list[str], peers: list[tuple[Path, str, tuple[float, float]]], data_dir: str | None, out_dir: Path,
    label_set: str = "ferplus", split: str = "test", seed: int = 0,
) -> list[dict]:
    """Accuracy of each model under every shift of ``fer_keras.shifts.SHIFTS``, in one run.

    Every model sees the same shifted faces: each shift is applied once to the faces, loaded as
    48×48 gray (FER's format), then each model's input is made from them as the runtime makes it
    from a face crop.

    Args:
        models: ``.tflite``, ``.onnx`` or ``.keras`` files (a float candidate, scored before its export), or packaged model names.
        peers: Third-party ``.tflite`` (or NHWC ``.onnx``) files with their labels (comma-separated) and input value range.
        data_dir: The Kaggle FER2013 root (FERPlus labels come from the vendored vote tables), or a folder of class folders.
        out_dir: Where robustness.md and .json go (robustness_val.* for the val split).
        label_set: "ferplus" (majority labels) or "folder" (the folder's own classes).
        split: "test" (FERPlus: PrivateTest) or "val" (FERPlus: PublicTest), for choosing among candidates.
        seed: Seed of the random parts of the shifts (rotation and offset direction, noise).

    Returns:
        One row per shift: each model's accuracy and its change from the clean faces, in points.
    """
    import dataclasses

    from fer_keras.data import locate_data_dir
    from fer_keras.evaluate import load_evaluation_data, load_predictor, map_to_model_labels
    from fer_keras.runtime import to_model_input
    from fer_keras.shifts import SHIFTS, apply_shift

    predictors = [(str(m), load_predictor(m)) for m in models]
    predictors += [(f"peer: {path.name}", load_predictor(path, labels, value_range)) for path, labels, value_range in peers]
    root = locate_data_dir(data_dir)
    dataset, faces = load_evaluation_data(label_set, root, split, (48, 48, 1))
    rows, clean = [], {}
    for shift in SHIFTS:
        shifted = dataclasses.replace(faces, images=apply_shift(shift, faces.images, seed))
        row = {"shift": shift}
        for name, predictor in predictors:
            images, y, _, _ = map_to_model_labels(shifted, dataset.labels, predictor.labels)
            height, width, channels = predictor.input_shape
            accuracy = 100 * float((predictor.predict(to_model_input(images, (height, width), channels)).argmax(1) == y).mean())
            clean.setdefault(name, accuracy)
            row[f"{name} %"] = round(accuracy, 2)
            row[f"{name} Δ"] = round(accuracy - clean[name], 2)
        rows.append(row)
    header = (
        f"Top-1 accuracy on {ROBUSTNESS_SPLITS.get((label_set, split), f'{root} ({split})')} under everyday camera and framing shifts, each applied "
        "to the 48×48 faces at one fixed strength (fer_keras/shifts.py); Δ is the change from the clean faces in points. "
        "A proxy for faces from other sources, which no labelled set here holds. Peers without a class (fer: contempt) "
        f"are scored on the faces of the classes they have. Seed {seed}. CPU: {cpu_name()}. "
        f"Command: python -m fer_keras.benchmark robustness --models {' '.join(map(str, models))} --label-set {label_set} --split {split} --seed {seed}"
        + "".join(f" --peer {path} --peer-labels {labels} --peer-value-range={value_range[0]:g},{value_range[1]:g}" for path, labels, value_range in peers)
        + (f" --data-dir {data_dir}" if data_dir else "")
    )
    write_results(out_dir, f"robustness_{split}" if split != "test" else "robustness", rows, header)
    return rows


# Faces visible in the shared photos, counted by eye (selfie-many-people is ambiguous: many cut-off faces).
PHOTO_FACES = {"couple.jpg": 2, "multiface.jpg": 6, "obama_and_biden.jpg": 3, "two_people.jpg": 2}


def benchmark_detectors(media: Path, detectors: list[str], yunet: Path | None, out_dir: Path) -> list[dict]:
    """Faces found and time per image/frame for each detector on the shared photos and clips."""
    import cv2
    import numpy as np

    from fer_keras.faces import make_detector
    from fer_keras.sources import open_video

    photos = sorted(media.glob("*.jpg"))
    clips = sorted(media.glob("*.mp4"))
    rows = []
    for name in detectors:
        detector = make_detector(name, yunet)
        row: dict = {"detector": name}
        found, expected, seconds = 0, 0, 0.0
        for photo in photos:
            frame = cv2.imread(str(photo))
            start = time.perf_counter()
            faces = detector(frame)
            seconds += time.perf_counter() - start
            row[photo.stem] = len(faces)
            if photo.name in PHOTO_FACES:
                found += min(len(faces), PHOTO_FACES[photo.name])
                expected += PHOTO_FACES[photo.name]
        row["extra faces (known photos)"] = sum(max(0, row[p.stem] - PHOTO_FACES.get(p.name, row[p.stem])) for p in photos)
        row["recall (known photos)"] = f"{found}/{expected}"
        row["ms/photo"] = round(1000 * seconds / len(photos), 1)
        for clip in clips:
            counts, seconds = [], 0.0
            with open_video(str(clip), every=5, max_frames=30) as video:
                for frame in video:
                    start = time.perf_counter()
                    counts.append(len(detector(frame.image)))
                    seconds += time.perf_counter() - start
            row[f"{clip.stem} faces/frame"] = round(float(np.mean(counts)), 2)
            row[f"{clip.stem} ms/frame"] = round(1000 * seconds / len(counts), 1)
        rows.append(row)
    header = (
        f"Faces found per photo and mean faces per frame (every 5th frame, 30 frames) on {media}; known counts: "
        + ", ".join(f"{k} {v}" for k, v in PHOTO_FACES.items())
        + ". Recall is count-based (min(found, known) per photo, so a false face can stand in for a missed one); "
        "'extra faces' counts detections beyond the known number"
        + f". Detector time only. CPU: {cpu_name()}. Command: python -m fer_keras.benchmark detectors"
        + (f" --yunet {yunet}" if yunet else "")
    )
    write_results(out_dir, "detectors", rows, header)
    return rows


def benchmark_pipeline(clips: list[Path], detectors: list[str], yunet: Path | None, model: str | None, out_dir: Path) -> list[dict]:
    """End-to-end detect FPS and per-stage milliseconds for each detector and clip, with and without the annotated video."""
    import tempfile

    from fer_keras.detect import DetectOptions, run_detect

    rows = []
    for clip in clips:
        for name in detectors:
            for annotate in (False, True):
                with tempfile.TemporaryDirectory() as scratch:
                    options = DetectOptions(source=str(clip), out=Path(scratch), detector=name, detector_model=str(yunet) if yunet else None,
                                            model=model, annotate=annotate, progress=False)
                    summary = run_detect(options)
                row = {"clip": clip.name, "detector": name, "outputs": "csv+video" if annotate else "csv", "fps": summary["fps"],
                       "faces/frame": round(summary["faces"] / max(summary["frames"], 1), 2)}
                row.update({f"{stage} ms": summary["timings_ms_per_frame"].get(stage, 0.0) for stage in ("decode", "detect", "classify", "track", "annotate", "write")})
                rows.append(row)
    header = (
        "End-to-end `python -m fer_keras.detect` on each clip (every frame), FPS = analyzed frames / wall time of the frame loop "
        "(decode to CSV row and annotated frame; model loading and the timeline plots drawn after the loop are excluded); "
        "stage columns are milliseconds per frame (decode runs on its own thread, so stages overlap). "
        f"Model: {model or 'packaged default'}. CPU: {cpu_name()}, {os.cpu_count()} cores. "
        "Command: python -m fer_keras.benchmark pipeline " + " ".join(f"--source {c}" for c in clips)
    )
    write_results(out_dir, "pipeline", rows, header)
    return rows


def parse_peers(paths: list[Path], labels: list[str], value_ranges: list[str]) -> list[tuple[Path, str, tuple[float, float]]]:
    """Pairs each --peer file with its --peer-labels and --peer-value-range, in order.

    Raises:
        UserError: When the counts differ, a file is missing, or a range is not LOW,HIGH.
    """
    from fer_keras.runtime import parse_value_range

    if not len(paths) == len(labels) == len(value_ranges):
        raise UserError("each --peer needs its own --peer-labels and --peer-value-range")
    peers = []
    for path, names, text in zip(paths, labels, value_ranges):
        if not path.is_file():
            raise UserError(f"{path}: model file not found")
        peers.append((path, names, parse_value_range(text, "--peer-value-range")))
    return peers


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.benchmark", description="Throughput and latency benchmarks (not tests).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="training images/s per model, float32 vs bf16")
    p_train.add_argument("--models", nargs="*", help="models to time (default: all registered)")
    p_train.add_argument("--batch-size", type=at_least(1), default=128)
    p_train.add_argument("--steps", type=at_least(1), default=10)
    p_latency = sub.add_parser("latency", help="ms/face of each quantization of .keras models, beside peer .tflite files")
    p_latency.add_argument("--models", nargs="+", type=Path, default=[], help=".keras files, exported in every quantization (labels and data from their run folders)")
    p_latency.add_argument("--tflite", action="append", default=[], help="an exported .tflite of ours, or a packaged name (accurate, fast), timed as it is (repeatable)")
    p_latency.add_argument("--peer", action="append", type=Path, default=[], help="a third-party .tflite to time side by side")
    p_latency.add_argument("--data-dir", help="calibration data for int8 (default: the run's)")
    p_latency.add_argument("--repeats", type=at_least(1), default=200)
    p_latency.add_argument("--name", type=file_stem, default="latency", help="result file stem under --out (default latency)")
    p_accuracy = sub.add_parser("accuracy", help="test accuracy of our models and peers on FERPlus and FER2013, in one run")
    p_accuracy.add_argument("--balance", nargs="+", type=in_range(0, 1), default=[0.0], help="class-prior corrections to report per model (default: 0)")
    p_accuracy.add_argument("--other", action="append", default=[], metavar="DATA",
                            help="instead of FERPlus and FER2013, a dataset none of the models trained on: a folder of class folders or a .csv label list, "
                                 "scored whole by its own classes (repeatable)")
    p_accuracy.add_argument("--crop-faces", nargs="?", const="blazeface", metavar="DETECTOR", help="with --other: cut the largest face out of each image (whole photos; default detector blazeface)")
    p_accuracy.add_argument("--name", type=file_stem, help="result file stem under --out (default: accuracy, or accuracy_other with --other)")
    p_robustness = sub.add_parser("robustness", help="FERPlus test accuracy of our models and peers under blur, noise, dark, JPEG, tilt, masks ...")
    for p in (p_accuracy, p_robustness):
        p.add_argument("--models", nargs="+", default=["accurate", "fast"], help=".tflite, .onnx or .keras files, or packaged names (default: accurate fast)")
        p.add_argument("--peer", action="append", type=Path, default=[], help="a third-party .tflite or NHWC .onnx (repeatable; each with --peer-labels and --peer-value-range)")
        p.add_argument("--peer-labels", action="append", default=[], help="the peer's comma-separated labels in output order")
        p.add_argument("--peer-value-range", action="append", default=[], metavar="LOW,HIGH", help="the peer's input range, e.g. --peer-value-range -1,1")
        p.add_argument("--data-dir", help="the Kaggle FER2013 root (else $FER_KERAS_DATA); robustness --label-set folder: a folder of class folders or a .csv label list")
    p_robustness.add_argument("--label-set", choices=["ferplus", "folder"], default="ferplus", help="ferplus (majority labels) or folder (a folder of class folders)")
    p_robustness.add_argument("--split", choices=["test", "val"], default="test", help="test, or val for choosing among candidates (writes robustness_val.md)")
    p_robustness.add_argument("--seed", type=int, default=0, help="seed of the shifts' random parts")
    p_detectors = sub.add_parser("detectors", help="faces found and ms per image for each face detector")
    p_detectors.add_argument("--media", type=Path, default=Path("../shared/media"))
    p_detectors.add_argument("--detectors", nargs="*")
    p_pipeline = sub.add_parser("pipeline", help="end-to-end detect FPS and per-stage ms")
    p_pipeline.add_argument("--source", action="append", type=Path, required=True, help="a clip (repeatable)")
    p_pipeline.add_argument("--detectors", nargs="*")
    for p in (p_detectors, p_pipeline):
        # --detector-model is detect's name for the same file, which the detectors' errors name.
        p.add_argument("--yunet", "--detector-model", dest="yunet", type=Path, help="YuNet .onnx, to include the yunet detector")
    p_pipeline.add_argument("--model", help="emotion .tflite (default: packaged)")
    for p in (p_train, p_latency, p_accuracy, p_robustness, p_detectors, p_pipeline):
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the .md and .json results")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from fer_keras.models import list_models

        models = args.models or list_models()
        unknown = sorted(set(models) - set(list_models()))
        if unknown:
            raise UserError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(list_models())}")
        benchmark_train(models, args.batch_size, args.steps, args.out)
    elif args.command == "latency":
        from fer_keras.runtime import resolve_model

        if not (args.models or args.tflite or args.peer):
            raise UserError("nothing to time: give --models, --tflite or --peer")
        for path in [*args.models, *args.peer]:
            if not path.is_file():
                raise UserError(f"{path}: model file not found")
        exported = [resolve_model(model) for model in args.tflite]
        benchmark_latency(args.models, args.peer, args.data_dir, args.repeats, args.out, exported, args.name)
    elif args.command == "accuracy":
        from fer_keras.data import locate_data_dir

        if args.crop_faces and not args.other:
            raise UserError("--crop-faces cuts faces out of the --other datasets' photos: give --other too")
        for other in args.other:  # all checked before the first model is scored
            locate_data_dir(other, "--other")
        benchmark_accuracy(args.models, args.balance, parse_peers(args.peer, args.peer_labels, args.peer_value_range), args.data_dir, args.out,
                           args.other, args.crop_faces, args.name)
    elif args.command == "robustness":
        benchmark_robustness(args.models, parse_peers(args.peer, args.peer_labels, args.peer_value_range), args.data_dir, args.out, args.label_set, args.split, args.seed)
    else:
        from fer_keras.faces import DETECTORS

        detectors = args.detectors or [d for d in DETECTORS if d != "none" and (d != "yunet" or args.yunet)]
        unknown = sorted(set(detectors) - set(DETECTORS))
        if unknown:
            raise UserError(f"unknown detector(s) {', '.join(unknown)}; choose from {', '.join(DETECTORS)}")
        if args.command == "detectors":
            if not args.media.is_dir():
                raise UserError(f"{args.media}: media folder not found")
            benchmark_detectors(args.media, detectors, args.yunet, args.out)
        else:
            for clip in args.source:
                if not clip.is_file():
                    raise UserError(f"{clip}: clip not found")
            benchmark_pipeline(args.source, detectors, args.yunet, args.model, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
