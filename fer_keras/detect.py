"""Emotions of every face in a camera, video, image, folder or stream: ``python -m fer_keras.detect SRC``.

Writes to ``--out DIR``: detections.csv, detections.jsonl, summary.json, an emotion-timeline
PNG per video track, and with ``--annotate`` the annotated video or images; ``--json`` streams each
face to stdout as it is seen. Imports no TensorFlow (unless ``--detector mtcnn``).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_keras.api import FaceResult, FrameAnalyzer
from fer_keras.display import Display
from fer_keras.errors import ArgumentParser, UserError, at_least, check_at_least, cli_entry, in_range
from fer_keras.faces import DEFAULT_DETECTOR, DETECTORS, MAX_CROP_MARGIN
from fer_keras.files import write_atomic, write_json
from fer_keras.runtime import EmotionClassifier, parse_value_range
from fer_keras.sources import classify_source, folder_media, is_video_file, open_video, read_image

MIN_TIMELINE_FRAMES = 5  # tracks seen in fewer analyzed frames get no timeline plot
CONSOLE_TRACKS = 20  # a run without --out prints this many faces or tracks; --out's files hold them all


# Container → OpenCV FourCC of the annotated video. OpenCV's pip wheels carry no H.264 encoder, so
# MP4 holds MPEG-4 Part 2: fast, plays in VLC and desktop players but not in web browsers. WebM holds
# VP8, which browsers play, at about 20 times the encoding time per frame.
ANNOTATED_VIDEO_CODECS = {"mp4": "mp4v", "webm": "VP80"}


@dataclass
class DetectOptions:
    """Settings of one detect run (the CLI's flags)."""

    source: str
    out: Path | None = None
    detector: str = DEFAULT_DETECTOR
    detector_model: str | None = None
    model: str | None = None
    show: bool = False
    annotate: bool = False
    every: int = 1
    min_face: int = 0
    smooth: float = 0.5
    max_faces: int = 0
    margin: float | None = None
    threads: int | None = None
    max_frames: int = 0
    progress: bool = True
    video_format: str = "mp4"  # of annotated videos: a key of ANNOTATED_VIDEO_CODECS
    detect_size: int | None = None
    balance: float = 0.0
    labels: list[str] | None = None  # a third-party .tflite without our metadata: its labels, in output order
    value_range: tuple[float, float] | None = None  # and its input range (ours take raw 0-255 pixels)
    json_lines: bool = False  # also print each face as a JSON line on stdout, as its frame is analyzed


@dataclass
class RunRecord:
    """What a detect run accumulates for its outputs."""

    frames: int = 0
    faces: int = 0
    frames_without_faces: int = 0
    sources: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    tracks: list[dict] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)
    analysis_seconds: float = 0.0  # wall time of the frame loops, without start-up and post-processing


class Outputs:
    """The files in ``--out``: written to temporary names and renamed into place when the run ends."""

    TABLES = ("detections.csv", "detections.jsonl")

    def __init__(self, out: Path, labels: tuple[str, ...], root: Path | None = None):
        self.out = out
        self.root = root
        self._names: set[str] = set()
        out.mkdir(parents=True, exist_ok=True)
        self.labels = labels
        self._csv_file = open(out / "detections.csv.tmp", "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["source", "frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "score", *labels])
        self._jsonl = open(out / "detections.jsonl.tmp", "w", encoding="utf-8")

    def name_for(self, source: str) -> str:
        """The stem of one source's annotated media and timeline plots, unique within the run.

        A folder run names a source by its path inside the folder (``a/clip.mp4`` and ``b/clip.mp4``
        become ``a_clip`` and ``b_clip``); a stem already taken (``x.jpg`` beside ``x.png``) gets ``_2``.
        """
        path = Path(source)
        stem = _safe_name(str(path.relative_to(self.root).with_suffix(""))) if self.root else _safe_name(path.stem)
        name, count = stem, 1
        while name in self._names:
            count += 1
            name = f"{stem}_{count}"
        self._names.add(name)
        return name

    def write(self, source: str, frame: int, time_s: float, faces: list[FaceResult]) -> None:
        for face in faces:
            probabilities = [face.probabilities[label] for label in self.labels]
            self._csv.writerow([source, frame, f"{time_s:.3f}", face.track_id, *face.box, face.emotion, f"{face.score:.4f}", *(f"{p:.4f}" for p in probabilities)])
            self._jsonl.write(face_json(source, frame, time_s, face) + "\n")

    def close(self, summary: dict) -> None:
        self._csv_file.close()
        self._jsonl.close()
        for name in self.TABLES:
            (self.out / f"{name}.tmp").replace(self.out / name)
        write_json(self.out / "summary.json", summary)

    def discard(self) -> None:
        """Closes and deletes the unfinished tables of a failed run; an earlier run's files stay as they were."""
        self._csv_file.close()
        self._jsonl.close()
        for name in self.TABLES:
            (self.out / f"{name}.tmp").unlink(missing_ok=True)


def face_json(source: str, frame: int, time_s: float, face: FaceResult) -> str:
    """One face of one frame as a line of detections.jsonl (and of ``--json``'s stdout)."""
    return json.dumps({"source": source, "frame": frame, "time_s": round(time_s, 3), **face.to_json()})


def _deliver(source: str, frame: int, time_s: float, faces: list[FaceResult], outputs: Outputs | None, options: DetectOptions) -> None:
    """Hands one frame's faces to ``--out``'s tables and, with ``--json``, to stdout at once (a live consumer reads them as they come)."""
    if outputs is not None:
        outputs.write(source, frame, time_s, faces)
    if options.json_lines and faces:
        sys.stdout.write("".join(face_json(source, frame, time_s, face) + "\n" for face in faces))
        sys.stdout.flush()


def _safe_name(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path).strip("_") or "source"


def _track_summaries(analyzer: FrameAnalyzer, source: str, times: dict[int, float]) -> list[dict]:
    """Each track's frames, first and last time (``times``: each analyzed frame's time by its number) and emotions."""
    summaries = []
    for track in analyzer.tracker.all_tracks():
        counts = Counter(emotion for _, emotion in track.history)
        total = sum(counts.values())
        summaries.append({
            "source": source,
            "track_id": track.track_id,
            "frames": total,
            "first_time_s": round(times[track.history[0][0]], 3),
            "last_time_s": round(times[track.history[-1][0]], 3),
            "dominant_emotion": counts.most_common(1)[0][0],
            "time_share": {emotion: round(n / total, 4) for emotion, n in counts.most_common()},
        })
    return summaries


def _timeline_plots(out: Path, name: str, source: str, series: dict[int, list[tuple[float, np.ndarray]]], labels: tuple[str, ...]) -> None:
    from fer_keras.plots import plt, save_figure

    for track_id, points in series.items():
        if len(points) < MIN_TIMELINE_FRAMES:
            continue
        times = [t for t, _ in points]
        values = np.array([p for _, p in points])
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.stackplot(times, values.T, labels=labels, alpha=0.85)
        ax.set_xlim(times[0], times[-1])
        ax.set_ylim(0, 1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.set_title(f"{Path(source).name}: track {track_id}")
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
        save_figure(fig, out / f"timeline_{name}_track{track_id}.png")


def _process_image(path: str | Path, analyzer: FrameAnalyzer, options: DetectOptions, outputs: Outputs | None, record: RunRecord, display: Display) -> None:
    import cv2

    from fer_keras.annotate import annotate

    started = time.perf_counter()
    frame = read_image(path)
    analyzer.reset()
    faces = analyzer(frame, 0)
    record.analysis_seconds += time.perf_counter() - started
    record.frames += 1
    record.faces += len(faces)
    record.frames_without_faces += not faces
    record.sources.append({"source": str(path), "kind": "image", "frames": 1, "faces": len(faces)})
    tracks = _track_summaries(analyzer, str(path), {0: 0.0})
    by_track = {face.track_id: face for face in faces}
    for track in tracks:  # a still's track is one face: its box and confidence say more than a time share
        face = by_track[track["track_id"]]
        track.update(box=list(face.box), score=round(face.score, 4))
    record.tracks += tracks
    _deliver(str(path), 0, 0.0, faces, outputs, options)
    if options.annotate or display.enabled:
        start = time.perf_counter()
        image = annotate(frame, faces)
        record.seconds["annotate"] += time.perf_counter() - start
        display.show(image, hold=True)  # a still stays up until a key
        if options.annotate and outputs is not None:
            start = time.perf_counter()
            (outputs.out / "annotated").mkdir(exist_ok=True)
            write_atomic(outputs.out / "annotated" / f"{outputs.name_for(str(path))}.jpg", cv2.imencode(".jpg", image)[1].tobytes())
            record.seconds["write"] += time.perf_counter() - start


def frames_to_write(time_s: float, fps: float, written: int) -> int:
    """How many copies of a live source's annotated frame keep a video written at ``fps`` in step with the frames' times.

    A live source analyzed slower than its camera delivers gets repeats, so the recording plays in
    real time rather than fast. (A file's analyzed frames are written once each.)
    """
    return max(1, round(time_s * fps) + 1 - written)


def _process_video(source: str, analyzer: FrameAnalyzer, options: DetectOptions, outputs: Outputs | None, record: RunRecord, display: Display) -> None:
    import cv2
    from tqdm import tqdm

    from fer_keras.annotate import annotate

    analyzer.reset()
    name = outputs.name_for(source) if outputs is not None else None
    writer, written = None, 0
    series: dict[int, list] = {}
    times: dict[int, float] = {}
    faces_here = frames_here = 0
    with open_video(source, options.every, options.max_frames) as video:
        writer_fps = video.fps / video.every
        total = video.frame_count and -(-video.frame_count // video.every)
        if options.max_frames and total:
            total = min(total, options.max_frames)
        bar = tqdm(total=total, unit="frame", disable=not options.progress or video.live, desc=Path(source).name, leave=False)
        started, fps = time.perf_counter(), None
        try:
            for frame in video:
                faces = analyzer(frame.image, frame.index)
                times[frame.index] = frame.time_s
                frames_here += 1
                faces_here += len(faces)
                record.frames_without_faces += not faces
                for face in faces:
                    series.setdefault(face.track_id, []).append((frame.time_s, np.array([face.probabilities[k] for k in analyzer.labels])))
                _deliver(source, frame.index, frame.time_s, faces, outputs, options)
                fps = frames_here / max(time.perf_counter() - started, 1e-9)
                if options.annotate or display.enabled:
                    start = time.perf_counter()
                    image = annotate(frame.image, faces, fps)
                    record.seconds["annotate"] += time.perf_counter() - start
                    display.show(image)
                    if display.closed:
                        break
                    if options.annotate and outputs is not None:
                        start = time.perf_counter()
                        if writer is None:
                            (outputs.out / "annotated").mkdir(exist_ok=True)
                            writer_path = outputs.out / "annotated" / f"{name}.{options.video_format}"
                            temporary_path = writer_path.with_suffix(f".tmp{writer_path.suffix}")
                            fourcc = cv2.VideoWriter_fourcc(*ANNOTATED_VIDEO_CODECS[options.video_format])
                            opened = cv2.VideoWriter(str(temporary_path), fourcc, writer_fps, image.shape[1::-1])
                            if not opened.isOpened():
                                raise UserError(f"{writer_path}: this OpenCV build cannot write {options.video_format} video")
                            writer = opened
                        copies = frames_to_write(frame.time_s, writer_fps, written) if video.live else 1
                        for _ in range(copies):
                            writer.write(image)
                        written += copies
                        record.seconds["write"] += time.perf_counter() - start
                if bar.total is not None and bar.n >= bar.total:
                    bar.total = None  # the container's frame count was short: count frames, not a wrong percentage
                bar.update()
        finally:
            record.analysis_seconds += time.perf_counter() - started
            bar.close()
            record.seconds["decode"] += video.decode_seconds
            if writer is not None:
                writer.release()
                temporary_path.replace(writer_path)
        record.frames += frames_here
        record.faces += faces_here
        record.sources.append({"source": source, "kind": "video", "frames": frames_here, "faces": faces_here, "video_fps": round(video.fps, 3)})
        record.tracks += _track_summaries(analyzer, source, times)
    if outputs is not None:
        _timeline_plots(outputs.out, name, source, series, analyzer.labels)


def run_detect(options: DetectOptions) -> dict:
    """Runs detection over a source and writes the outputs.

    Returns:
        The summary (also written to ``summary.json`` when ``options.out`` is set).

    Raises:
        UserError: For a bad source, detector or model. One unreadable file inside a folder is
            reported in the summary and skipped instead.
    """
    check_at_least("--every", options.every, 1)
    check_at_least("--max-frames", options.max_frames, 0)
    if options.video_format not in ANNOTATED_VIDEO_CODECS:
        raise UserError(f"--video-format must be one of {', '.join(ANNOTATED_VIDEO_CODECS)}, not {options.video_format!r}")
    kind = classify_source(options.source)
    started = time.perf_counter()
    model = options.model
    if options.labels or options.value_range:
        model = EmotionClassifier(options.model, options.threads, options.labels, options.value_range, options.balance)
    analyzer = FrameAnalyzer(
        options.detector, model, options.smooth, options.margin, options.min_face, options.max_faces,
        options.detector_model, options.threads, options.detect_size, options.balance,
    )
    outputs = Outputs(options.out, analyzer.labels, Path(options.source) if kind == "folder" else None) if options.out else None
    record = RunRecord()
    display = Display(options.show)
    ready = time.perf_counter()
    try:
        if kind == "folder":
            # An --out inside the source folder holds an earlier run's annotated images and plots: not input.
            media, others = folder_media(Path(options.source), exclude=options.out)
            record.skipped += [{"source": str(p), "error": "not an image or video"} for p in others]
            if not media:
                raise UserError(f"{options.source}: folder holds no images or videos")
            for path in media:
                try:
                    if is_video_file(path):
                        _process_video(str(path), analyzer, options, outputs, record, display)
                    else:
                        _process_image(path, analyzer, options, outputs, record, display)
                except UserError as err:
                    print(f"skipped: {err}", file=sys.stderr)
                    record.skipped.append({"source": str(path), "error": str(err)})
        elif kind == "image":
            _process_image(options.source, analyzer, options, outputs, record, display)
        else:
            _process_video(options.source, analyzer, options, outputs, record, display)
    except KeyboardInterrupt:
        print("interrupted: writing what was processed", file=sys.stderr)
    except BaseException:
        if outputs is not None:
            outputs.discard()
        raise
    finally:
        display.close()
    stages = {**{k: v for k, v in analyzer.timings.items()}, **record.seconds}
    summary = {
        "source": options.source,
        "kind": kind,
        "frames": record.frames,
        "faces": record.faces,
        "frames_without_faces": record.frames_without_faces,
        "fps": round(record.frames / record.analysis_seconds, 2) if record.analysis_seconds > 0 else None,
        "startup_s": round(ready - started, 3),
        "wall_s": round(time.perf_counter() - started, 3),
        "detector": analyzer.detector.name,
        "model": str(analyzer.classifier.path),
        "balance": analyzer.classifier.balance,
        "labels": list(analyzer.labels),
        "timings_ms_per_frame": {k: round(1000 * v / max(record.frames, 1), 3) for k, v in sorted(stages.items())},
        "sources": record.sources,
        "skipped": record.skipped,
        "tracks": record.tracks,
    }
    if record.faces == 0:
        summary["note"] = "no faces found"
    if outputs is not None:
        outputs.close(summary)
    return summary


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def console_lines(summary: dict, limit: int = CONSOLE_TRACKS) -> list[str]:
    """What a run prints: its totals, then a line per face of a still and per track of a video, at most ``limit``.

    Args:
        summary: The run's summary, as ``run_detect`` returns it.
        limit: The most faces and tracks listed; a last line counts the rest.

    Returns:
        The lines, without newlines.
    """
    speed = f", {summary['fps']} FPS" if summary["fps"] is not None else ""  # None: no frame was analyzed
    lines = [f"{_plural(summary['frames'], 'frame')}, {_plural(summary['faces'], 'face')}{speed} ({summary['detector']})"]
    tracks = summary["tracks"]
    for track in tracks[:limit]:
        name, emotion = Path(track["source"]).name, track["dominant_emotion"]
        if "box" in track:
            x, y, w, h = track["box"]
            lines.append(f"  {name} face {track['track_id']}: {emotion} {track['score']:.0%}, box x={x} y={y} {w}x{h}")
        else:
            share = track["time_share"][emotion]
            lines.append(f"  {name} track {track['track_id']}: {emotion} in {share:.0%} of {_plural(track['frames'], 'frame')}, "
                         f"{track['first_time_s']:.1f}-{track['last_time_s']:.1f} s")
    if len(tracks) > limit:
        lines.append(f"  ... and {len(tracks) - limit} more (--out DIR writes every face)")
    return lines


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fer_keras.detect", description="Emotions of every face in a camera, video, image, folder or stream.")
    parser.add_argument("source", nargs="?", help="camera index (0) or device (/dev/video0), video file, image file, folder, or stream URL")
    parser.add_argument("--source", dest="source_flag", metavar="SOURCE", help="the source as a flag, instead of first")
    parser.add_argument("--out", type=Path, help="output folder for detections.csv, detections.jsonl, summary.json, timelines")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS))
    parser.add_argument("--detector-model", help="model file for detectors that need one (yunet: its .onnx)")
    parser.add_argument("--detect-size", type=at_least(0), metavar="PX", help="shrink frames to this long side before detection (0 = full size; default 640 for yunet, haar, mtcnn)")
    parser.add_argument("--model", help="emotion .tflite or packaged name (default, fast, accurate)")
    parser.add_argument("--labels", help="comma-separated labels, in output order, of a third-party .tflite without our metadata")
    parser.add_argument("--value-range", metavar="LOW,HIGH", help="input range of such a model, e.g. --value-range -1,1 (ours take raw 0-255 pixels)")
    parser.add_argument("--balance", type=in_range(0, 1), default=0.0, metavar="B", help="class-prior correction, 0 (training frequencies, a third neutral) to 1 (all emotions equally likely); 0.5 for acted or posed faces")
    parser.add_argument("--annotate", action="store_true", help="also write the annotated video / images to --out")
    parser.add_argument("--video-format", choices=list(ANNOTATED_VIDEO_CODECS), default="mp4",
                        help="container of annotated videos: mp4 (MPEG-4 Part 2, fast; desktop players) or webm (VP8, plays in web browsers, slower to write)")
    parser.add_argument("--show", action="store_true", help="live window (q or Esc stops; a still waits for a key): OpenCV's where its build has a GUI, else Tk")
    parser.add_argument("--every", type=at_least(1), default=1, help="analyze every Nth frame")
    parser.add_argument("--min-face", type=at_least(0), default=0, metavar="PX", help="ignore faces smaller than PX on a side")
    parser.add_argument("--smooth", type=in_range(0, 1, low_open=True), default=0.5, metavar="ALPHA", help="weight of the newest frame in per-track smoothing (1 = off; stills are never smoothed)")
    parser.add_argument("--max-faces", type=at_least(0), default=0, help="at most N faces per frame, largest first (0 = all)")
    parser.add_argument("--margin", type=in_range(0, MAX_CROP_MARGIN), help=f"crop border as a fraction of the face box, 0 to {MAX_CROP_MARGIN} (default: measured per detector, 0.2 for BlazeFace)")
    parser.add_argument("--threads", type=at_least(1), help="LiteRT threads")
    parser.add_argument("--max-frames", type=at_least(0), default=0, help="stop after N analyzed frames per video (0 = all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print each face as a JSON line on stdout as its frame is analyzed (the totals go to stderr)")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.source is not None and args.source_flag is not None and args.source != args.source_flag:
        parser.error(f"two sources given: {args.source} and --source {args.source_flag}")
    source = args.source if args.source is not None else args.source_flag
    if source is None:
        parser.error("a source is required: a camera index, video, image, folder or stream URL, first or as --source")
    options = DetectOptions(
        source=source, out=args.out, detector=args.detector, detector_model=args.detector_model, model=args.model,
        show=args.show, annotate=args.annotate, every=args.every, min_face=args.min_face, smooth=args.smooth,
        max_faces=args.max_faces, margin=args.margin, threads=args.threads, max_frames=args.max_frames, progress=not args.no_progress,
        video_format=args.video_format, detect_size=args.detect_size, balance=args.balance, labels=args.labels.split(",") if args.labels else None,
        value_range=parse_value_range(args.value_range, "--value-range") if args.value_range else None, json_lines=args.json,
    )
    if options.annotate and options.out is None:
        raise UserError("--annotate needs --out DIR")
    summary = run_detect(options)
    report = sys.stderr if options.json_lines else sys.stdout  # --json keeps stdout to JSON lines
    if options.out is not None or options.json_lines:
        where = f"; results in {options.out}" if options.out is not None else ""
        print(f"{console_lines(summary)[0]}{where}", file=report)
    else:
        print("\n".join(console_lines(summary)), file=report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
