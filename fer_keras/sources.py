"""Media sources as frame iterators: camera, video file, stream URL, image, folder. Imports no TensorFlow."""

from __future__ import annotations

import functools
import io
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from fer_keras.errors import UserError

# Formats OpenCV cannot read, which Pillow decodes: HEIF/HEIC (phone photos; pillow-heif's plugin) and AVIF.
HEIF_SUFFIXES = {".heic", ".heif"}
PILLOW_SUFFIXES = HEIF_SUFFIXES | {".avif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif"} | PILLOW_SUFFIXES
# Containers FFmpeg reads: also camcorders' MPEG transport streams (.mts, .m2ts) and older phones' 3GP.
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".asf", ".f4v", ".mjpeg", ".mjpg"}


@dataclass
class Frame:
    index: int
    time_s: float
    image: np.ndarray


class Video:
    """Frames of a video file, camera or stream.

    Files are read in order (every Nth frame decoded, the rest only grabbed). Live sources
    (cameras, live streams) are read on their own thread that keeps only the newest frame, so a
    slow consumer drops frames instead of falling behind.

    Args:
        source: A file path, stream URL or camera index.
        every: Analyze every Nth frame (live: at most every Nth, as the newest frame is taken).
        live: Whether the source is live; None decides from the container: a URL whose container
            counts its frames is a file served over the network, read in order like a local one.
        max_frames: Stop after this many frames (0 = all).
    """

    def __init__(self, source: str | int, every: int = 1, live: bool | None = False, max_frames: int = 0):
        import cv2

        self.source, self.every, self.max_frames = source, max(1, every), max_frames
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            if _is_camera(source):
                why = "camera (no such camera, no permission to use it, or another program holds it)"
            elif "://" in str(source):
                why = "stream (unreachable, not found, or not a video stream)"
            else:
                why = "video (missing, unreadable or not a video)"
            raise UserError(f"{source}: cannot open {why}")
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.live = count <= 0 if live is None else live
        self.frame_count = count if count > 0 and not self.live else None
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.decode_seconds = 0.0
        self._reader: threading.Thread | None = None

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        # Releasing the capture while a live reader is inside read() crashes OpenCV (SIGSEGV). The
        # reader is joined when the frames stop; one stuck on a stalled stream keeps its capture.
        if self._reader is None or not self._reader.is_alive():
            self._capture.release()

    def __iter__(self) -> Iterator[Frame]:
        return self._live_frames() if self.live else self._file_frames()

    def _file_frames(self) -> Iterator[Frame]:
        """Every frame in order, timed by the container; decoding runs ahead on its own thread (bounded queue) so it overlaps analysis."""
        import queue
        import time

        import cv2

        frames: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def offer(item) -> None:
            while not stop.is_set():
                try:
                    frames.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def decode() -> None:
            index, origin_ms = 0, math.nan
            while not stop.is_set():
                start = time.perf_counter()
                if index % self.every:
                    ok, image = self._capture.grab(), None
                else:
                    ok, image = self._capture.read()
                self.decode_seconds += time.perf_counter() - start
                if not ok:
                    break
                if image is not None:
                    stamp_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
                    origin_ms = stamp_ms if index == 0 else origin_ms
                    offer((index, presentation_time(stamp_ms, origin_ms, index, self.fps), image))
                index += 1
            offer(None)

        thread = threading.Thread(target=decode, daemon=True)
        thread.start()
        yielded = 0
        try:
            while True:
                item = frames.get()
                if item is None:
                    if yielded == 0:
                        raise UserError(f"{self.source}: no frame could be decoded")
                    return
                yield Frame(*item)
                yielded += 1
                if self.max_frames and yielded >= self.max_frames:
                    return
        finally:
            stop.set()
            thread.join()

    def _live_frames(self) -> Iterator[Frame]:
        import time

        latest: list = [None]  # (index, image) of the newest frame read
        ended = [False]
        stop = threading.Event()
        ready = threading.Condition()

        def reader():
            index = 0
            while not stop.is_set():
                ok, image = self._capture.read()
                with ready:
                    if ok:
                        latest[0] = (index, image)
                    else:
                        ended[0] = True  # the newest frame stays, so the end of a stream does not swallow it
                    ready.notify()
                if not ok:
                    return
                index += 1

        self._reader = threading.Thread(target=reader, daemon=True)
        self._reader.start()
        start, yielded, last = time.perf_counter(), 0, -self.every
        # The newest frame, at least `every` frames after the last one analyzed.
        fresh = lambda: latest[0] is not None and latest[0][0] >= last + self.every  # noqa: E731
        try:
            while True:
                with ready:
                    ready.wait_for(lambda: ended[0] or fresh())
                    item = latest[0] if fresh() else None
                if item is None:
                    if yielded == 0:  # opened, but not one picture: as a video file that decodes to nothing
                        raise UserError(f"{self.source}: no frame could be read (the stream ended, or the camera gives no picture)")
                    return
                last = item[0]
                yield Frame(item[0], time.perf_counter() - start, item[1])
                yielded += 1
                if self.max_frames and yielded >= self.max_frames:
                    return
        finally:
            stop.set()
            self._reader.join(timeout=5.0)  # one read: a frame's time on a camera


def presentation_time(stamp_ms: float, origin_ms: float, index: int, fps: float) -> float:
    """A file's frame time in seconds from its first frame, by the container's timestamps.

    Phone videos and animated GIFs have variable frame rates, on which ``index / fps`` drifts from
    the real time by up to seconds; it is the time only where the container gives none (a stamp
    that is not a number or does not pass the first frame's).

    Args:
        stamp_ms: The frame's timestamp (OpenCV's ``CAP_PROP_POS_MSEC`` after reading it).
        origin_ms: The first frame's timestamp.
        index: The frame's number, from 0.
        fps: The container's average frame rate.
    """
    if math.isfinite(stamp_ms) and math.isfinite(origin_ms) and (stamp_ms > origin_ms or index == 0):
        return (stamp_ms - origin_ms) / 1000.0
    return index / fps


def read_image(path: str | Path) -> np.ndarray:
    """An image file, or an image's URL (read through OpenCV's FFmpeg), as a BGR uint8 (H, W, 3) array.

    Raises:
        UserError: When the file is missing or cannot be decoded (a corrupt file, or not an image),
            or the URL cannot be read.
    """
    if isinstance(path, str) and "://" in path:
        try:
            with open_video(path, max_frames=1) as picture:
                return next(iter(picture)).image
        except UserError as error:  # the stream's wording ("not a video") misleads for a photo
            raise UserError(f"{path}: cannot read an image from this URL (no network, not found, or not an image)") from error
    path = Path(path)
    if not path.is_file():  # before imread, which warns of it where cv2 was imported before fer_keras quietened OpenCV's log
        raise UserError(f"{path}: {'a folder, not an image' if path.is_dir() else 'no such file'}")
    frame = decode_image(path)
    if frame is None:
        problem = "a video, not an image" if path.suffix.lower() in VIDEO_SUFFIXES else "not a readable image"
        raise UserError(f"{path}: {problem}")
    return frame


@functools.cache
def register_pillow_formats() -> None:
    """Lets Pillow open HEIF/HEIC files, through pillow-heif's plugin (Pillow reads AVIF itself)."""
    from pillow_heif import register_heif_opener

    register_heif_opener()


def decode_image(path: str | Path) -> np.ndarray | None:
    """An image file as a BGR uint8 (H, W, 3) array, upright as its orientation says; None when it cannot be read."""
    import cv2

    path = Path(path)
    frame = None if path.suffix.lower() in PILLOW_SUFFIXES else cv2.imread(str(path), cv2.IMREAD_COLOR)
    # Pillow also reads what OpenCV cannot among its formats: 32-bit integer and float TIFFs.
    return _read_with_pillow(path) if frame is None else frame


def eight_bit_upright(image):
    """A Pillow image in an 8-bit mode, turned upright as its EXIF orientation says (as imread turns files).

    16-bit images are scaled from 0-65535, as OpenCV and scikit-image read them; 32-bit integer
    and float images, whose range the file does not state, from 0 to their brightest pixel, or
    from 0-1 for floats none of which exceeds 1. Pillow's own conversion clips them to white.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return image
    wide = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        peak = 65535.0
    elif image.mode == "F" and wide.max() <= 1.0:
        peak = 1.0
    else:
        peak = wide.max() or 1.0
    return Image.fromarray(np.clip(np.rint(wide * (255.0 / peak)), 0, 255).astype(np.uint8))


def pillow_to_bgr(image) -> np.ndarray:
    """A Pillow image of any mode and bit depth as a BGR uint8 (H, W, 3) array, upright (``eight_bit_upright``)."""
    import cv2

    return cv2.cvtColor(np.asarray(eight_bit_upright(image).convert("RGB")), cv2.COLOR_RGB2BGR)


def decode_image_bytes(data: bytes) -> np.ndarray:
    """An encoded image held in memory (an upload or a download: JPEG, PNG, HEIC, ...) as a BGR uint8 (H, W, 3) array, upright.

    Raises:
        UserError: When neither OpenCV nor Pillow can decode it.
    """
    import cv2

    buffer = np.frombuffer(data, np.uint8)
    frame = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    frame = _read_with_pillow(io.BytesIO(data)) if frame is None else frame
    if frame is None:
        raise UserError(f"image bytes ({len(data)} bytes): not a readable image")
    return frame


def _read_with_pillow(source: Path | io.BytesIO) -> np.ndarray | None:
    """A file of ``PILLOW_SUFFIXES``, or an image OpenCV cannot decode, as BGR, upright; None when Pillow cannot either."""
    from PIL import Image

    register_pillow_formats()
    try:
        with Image.open(source) as image:
            return pillow_to_bgr(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # missing, undecodable or over 179 MP
        return None


def _is_camera(source: str | int) -> bool:
    """A camera index (0, "0") or a camera device file (Linux's /dev/video0)."""
    return isinstance(source, int) or source.isdigit() or Path(source).is_char_device()


def open_video(source: str, every: int = 1, max_frames: int = 0) -> Video:
    """Opens a video file, a camera (index "0" or a device such as /dev/video0) or a stream URL (live unless its container counts its frames)."""
    if _is_camera(source):
        return Video(int(source) if source.isdigit() else source, every, live=True, max_frames=max_frames)
    if "://" in source:
        return Video(source, every, live=None, max_frames=max_frames)
    if not Path(source).is_file():
        raise UserError(f"{source}: {'a folder, not a video' if Path(source).is_dir() else 'file not found'}")
    return Video(source, every, max_frames=max_frames)


def classify_source(source: str) -> str:
    """``camera``, ``url`` (a stream, or a video's URL), ``image`` (a file, or a photo's URL), ``video`` or ``folder``.

    Raises:
        UserError: When a path does not exist or is not media.
    """
    if _is_camera(source):
        return "camera"
    if "://" in source:
        # A photo's URL is an image (a GIF may be animated: FFmpeg reads it as a stream).
        still = Path(urlparse(source).path).suffix.lower() in IMAGE_SUFFIXES - {".gif"}
        return "image" if still else "url"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        return "video" if is_video_file(path) else "image"
    # An unknown extension, or none (a download saved without one): what the content decodes as.
    if decode_image(path) is not None:
        return "video" if _frames_in_image(path) > 1 else "image"
    if _decodes_as_video(path):
        return "video"
    raise UserError(f"{source}: not an image or video (extension {suffix or '(none)'}; OpenCV and Pillow cannot read it)")


def _frames_in_image(path: Path) -> int:
    """How many pictures an image file holds (an animated GIF: more than one); 0 where OpenCV cannot tell."""
    import cv2

    try:
        return cv2.imcount(str(path))
    except cv2.error:
        return 0


def _decodes_as_video(path: Path) -> bool:
    """Whether OpenCV's FFmpeg opens a file and decodes a frame from it."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return capture.isOpened() and capture.read()[0]
    finally:
        capture.release()


def is_video_file(path: Path) -> bool:
    """Whether a media file is read as a video: by its extension, or a GIF of more than one frame.

    OpenCV reads an animated GIF as a video, timed by its frame delays, and a still one as an image.
    """
    suffix = path.suffix.lower()
    if suffix != ".gif":
        return suffix in VIDEO_SUFFIXES
    return _frames_in_image(path) > 1  # 0 for a file that is not a GIF after all: read_image reports it


def folder_media(folder: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Image and video files of a folder (recursive, sorted), and the other files found, none under ``exclude``."""
    excluded = exclude.resolve() if exclude is not None else None
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not (excluded and p.resolve().is_relative_to(excluded))
    )
    media, others = [], []
    for path in files:
        (media if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES else others).append(path)
    return media, others
