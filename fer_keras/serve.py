"""HTTP service: ``fer-keras serve`` answers ``POST /analyze`` (a photo) with every face's emotion as JSON. Imports no TensorFlow.

For applications in any language that cannot import the Python API: the photo goes in as the
request body or as a form's file field, and the faces come back as ``fer_keras.analyze`` returns
them. Waitress serves it (a production WSGI server, pure Python, on every platform LiteRT has
wheels for); each of its worker threads loads its own models on its first request, as ``analyze``
does for any thread.

Example:
    fer-keras serve --port 8000
    curl --data-binary @group.jpg http://127.0.0.1:8000/analyze
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs

from fer_keras import __version__
from fer_keras.api import FrameAnalyzer, analyze, load_image
from fer_keras.errors import ArgumentParser, UserError, at_least, cli_entry, in_range
from fer_keras.faces import DEFAULT_DETECTOR, DETECTORS
from fer_keras.sources import register_pillow_formats

# A phone's full-resolution HEIC or JPEG is 2-8 MB; 20 MB leaves room without letting a client fill memory.
DEFAULT_MAX_MB = 20.0
# A 100-megapixel photo decodes to 300 MB (phones' main cameras: 12-50 MP, binned from sensors of up to
# 200); a few kilobytes of PNG can claim as many pixels (a decompression bomb), so the header is checked first.
DEFAULT_MAX_MEGAPIXELS = 100.0
# Per-request face selection (``analyze``'s keywords), read from the query string.
QUERY_OPTIONS = {"min_face": int, "max_faces": int, "margin": float}
# Only a multipart form carries a file. curl --data-binary and urllib label a raw body
# application/x-www-form-urlencoded unless told otherwise, so that type is read as the photo itself.
FILE_FORM_TYPE = "multipart/form-data"


class HttpError(Exception):
    """A request the service refuses, with its HTTP status line (``400 Bad Request``)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class EmotionService:
    """The WSGI application: ``GET /health`` describes the service, ``POST /analyze`` analyzes a photo.

    Args:
        model: ``.tflite`` path or packaged model name (None: the packaged default).
        detector: Face detector name.
        detector_model: Model file for detectors that need one (YuNet's ``.onnx``).
        balance: Class-prior correction, 0 to 1, for every request (``analyze``'s ``balance``).
        max_bytes: Largest request body accepted; a larger one is answered 413.
        allowed_origins: Web page origins (``https://app.example.com``, or ``*`` for any) whose scripts may
            call the service from a browser (CORS); none by default, as a browser then allows only same-origin pages.
        log_requests: Print a line per request on stdout (client, method, path, status, milliseconds).
        max_pixels: Largest photo accepted, in pixels, read from its header before it is decoded.

    Raises:
        UserError: When the model or the detector cannot be loaded (checked once, before serving).
    """

    def __init__(self, model: str | Path | None = None, detector: str = DEFAULT_DETECTOR, detector_model: str | Path | None = None,
                 balance: float = 0.0, max_bytes: int = int(DEFAULT_MAX_MB * 1e6), allowed_origins: tuple[str, ...] = (),
                 log_requests: bool = False, max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1e6)):
        # Loaded once here so that a wrong path fails at start, not at the first request.
        probe = FrameAnalyzer(detector, model, balance=balance, detector_model=detector_model)
        self.analyze_options = {"model": None if model is None else str(model), "detector": detector, "balance": balance,
                                "detector_model": None if detector_model is None else str(detector_model)}
        self.max_bytes = max_bytes
        self.allowed_origins = tuple(allowed_origins)
        self.log_requests = log_requests
        self.max_pixels = max_pixels
        self.info = {"status": "ok", "version": __version__, "model": probe.classifier.path.name, "labels": list(probe.labels),
                     "detector": detector, "balance": balance, "max_bytes": max_bytes, "max_pixels": max_pixels,
                     "endpoints": {"GET /health": "this description", "POST /analyze": "a photo as the body, a form file field 'image', or JSON with the photo in base64 as 'image'; "
                                   f"optional query {', '.join(QUERY_OPTIONS)}"}}
        self.routes = {"/": ("GET", self.describe), "/health": ("GET", self.describe), "/analyze": ("POST", self.analyze)}

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        start = time.perf_counter()
        status, payload = self.respond(environ, start_response)
        if self.log_requests:
            # An access log line, as production servers print one; Waitress itself prints none.
            print(f"{environ.get('REMOTE_ADDR', '-')} {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO') or '/'} "
                  f"{status.split()[0]} {(time.perf_counter() - start) * 1000:.1f} ms", flush=True)
        return payload

    def respond(self, environ: dict, start_response) -> tuple[str, list[bytes]]:
        """Routes one request; returns its status line and body."""
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        headers = [("Content-Type", "application/json")] + self.cors_headers(environ.get("HTTP_ORIGIN"))
        try:
            if path not in self.routes:
                raise HttpError("404 Not Found", f"{path}: no such endpoint; use GET /health or POST /analyze")
            allowed, handler = self.routes[path]
            if method == "OPTIONS" and self.allowed_origins:
                # A browser asks first before a script posts a body that is not a form (image/jpeg) to another origin.
                start_response("204 No Content", self.cors_headers(environ.get("HTTP_ORIGIN")) + [
                    ("Access-Control-Allow-Methods", allowed), ("Access-Control-Allow-Headers", "Content-Type"), ("Access-Control-Max-Age", "86400")])
                return "204 No Content", []
            if method != allowed:
                headers.append(("Allow", allowed))
                raise HttpError("405 Method Not Allowed", f"{path} takes {allowed}, not {method}")
            status, body = "200 OK", handler(environ)
        except HttpError as err:
            status, body = err.status, {"error": str(err)}
        except UserError as err:  # an image that does not decode, a query value out of range
            status, body = "400 Bad Request", {"error": str(err)}
        payload = json.dumps(body).encode()
        start_response(status, headers + [("Content-Length", str(len(payload)))])
        return status, [payload]

    def cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers for a request from ``origin``: allowed when it (or ``*``) is among ``allowed_origins``."""
        if not self.allowed_origins:
            return []
        if "*" in self.allowed_origins:
            return [("Access-Control-Allow-Origin", "*")]
        # The answer depends on the asking page, so a cache between must keep one copy per origin.
        return ([("Access-Control-Allow-Origin", origin)] if origin in self.allowed_origins else []) + [("Vary", "Origin")]

    def describe(self, environ: dict) -> dict:
        """The service's model, labels, detector and endpoints."""
        return self.info

    def analyze(self, environ: dict) -> dict:
        """Every face of the request's photo: ``faces`` (as detections.jsonl writes them), ``width``, ``height``, ``ms``."""
        options = query_options(environ.get("QUERY_STRING", ""))
        start = time.perf_counter()
        encoded = self.request_image(environ)
        self.check_pixel_count(encoded)
        frame = load_image(encoded)
        faces = analyze(frame, **self.analyze_options, **options)
        return {"faces": [face.to_json() for face in faces], "width": frame.shape[1], "height": frame.shape[0],
                "ms": round((time.perf_counter() - start) * 1000, 1)}

    def request_image(self, environ: dict) -> bytes:
        """The encoded photo: the body itself, a form's file field ``image`` (or its only file), or a JSON body's base64 ``image``."""
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise HttpError("413 Content Too Large", f"the body is {int(declared):,} bytes, over this service's {self.max_bytes:,} (serve --max-mb)")
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type == FILE_FORM_TYPE:
            return self.form_image(environ)
        body = environ["wsgi.input"].read(int(declared) if declared.isdigit() else self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise HttpError("413 Content Too Large", f"the body is over this service's {self.max_bytes:,} bytes (serve --max-mb)")
        if not body:
            raise HttpError("400 Bad Request", "empty body: send the photo as the body or as a form file field 'image'")
        return json_image(body) if content_type == "application/json" else body

    def check_pixel_count(self, encoded: bytes) -> None:
        """Refuses a photo whose header claims more than ``max_pixels``, before decoding it."""
        from PIL import Image

        register_pillow_formats()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is ours to apply
                with Image.open(io.BytesIO(encoded)) as image:  # reads the header only
                    width, height = image.size
        except Image.DecompressionBombError:  # over Pillow's own refusal (179 MP), where serve's main has not lifted it
            width = height = None
        except (OSError, ValueError, SyntaxError):  # not a format Pillow reads: the decoder says what it is
            return
        if width is None or width * height > self.max_pixels:
            size = "" if width is None else f" {width}x{height} pixels,"
            raise HttpError("413 Content Too Large", f"the photo is{size} over this service's {self.max_pixels / 1e6:g} megapixels (serve --max-megapixels)")

    def form_image(self, environ: dict) -> bytes:
        """The photo of a form submission (an HTML form's ``<input type=file name=image>``, ``curl -F image=@photo.jpg``)."""
        # multipart: the maintained successor of the standard library's removed cgi.FieldStorage.
        import multipart

        try:
            _, files = multipart.parse_form_data(environ, strict=True, memory_limit=self.max_bytes, disk_limit=self.max_bytes)
        except multipart.MultipartError as err:
            raise HttpError("400 Bad Request", f"the form could not be read: {err}") from err
        named = files.getall("image")
        if len(named) > 1:
            raise HttpError("400 Bad Request", f"the form has {len(named)} files named 'image': send one")
        parts = named or [part for _, part in files.iterallitems()]
        if len(parts) != 1:
            raise HttpError("400 Bad Request", f"the form has {len(parts)} files and none named 'image': send one file, or name it 'image'")
        return parts[0].raw


def json_image(body: bytes) -> bytes:
    """The photo of a JSON body ``{"image": "<base64>"}``, or a data URL as a browser's ``canvas.toDataURL()`` gives."""
    try:
        encoded = json.loads(body)["image"]
        if not isinstance(encoded, str):
            raise TypeError
        # A data URL ("data:image/jpeg;base64,/9j/...") carries the base64 after its comma.
        return base64.b64decode(encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded, validate=True)
    except (ValueError, KeyError, TypeError, IndexError):  # binascii.Error and JSON's errors are ValueErrors
        raise HttpError("400 Bad Request", 'a JSON body must be {"image": "<the photo in base64, or a data: URL>"}') from None


def query_options(query: str) -> dict:
    """``analyze``'s face selection from a query string (``?max_faces=1&min_face=40``); a bad one is a UserError naming it."""
    options = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in QUERY_OPTIONS:
            raise UserError(f"unknown query parameter {key!r}; valid: {', '.join(QUERY_OPTIONS)}")
        try:
            options[key] = QUERY_OPTIONS[key](values[-1])
        except ValueError:
            raise UserError(f"{key}={values[-1]!r} is not a number") from None
    return options


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fer_keras.serve", description="Serve emotion recognition over HTTP: POST a photo to /analyze, get every face's emotion as JSON.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every network)")
    parser.add_argument("--port", type=at_least(0), default=8000, help="port (default 8000; 0 picks a free one, printed)")
    parser.add_argument("--workers", type=at_least(1), default=2, help="requests analyzed at once, each thread with its own models (default 2)")
    parser.add_argument("--model", help="emotion .tflite or packaged name (default, fast, accurate)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS))
    parser.add_argument("--detector-model", help="model file for detectors that need one (yunet: its .onnx)")
    parser.add_argument("--balance", type=in_range(0, 1), default=0.0, metavar="B", help="class-prior correction for every request, 0 to 1 (see detect --help)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="let scripts of web pages from ORIGIN (https://app.example.com; * for any) call the service from a browser (repeat)")
    parser.add_argument("--quiet", action="store_true", help="no line per request on stdout")
    parser.add_argument("--max-megapixels", type=in_range(0, 1e4, low_open=True), default=DEFAULT_MAX_MEGAPIXELS,
                        help=f"largest photo accepted, in megapixels, read from its header before decoding (default {DEFAULT_MAX_MEGAPIXELS:g})")
    parser.add_argument("--max-mb", type=in_range(0, 1e4, low_open=True), default=DEFAULT_MAX_MB, help=f"largest photo accepted, in MB (default {DEFAULT_MAX_MB:g})")
    args = parser.parse_args(argv)
    if args.port > 65535:
        parser.error(f"argument --port: {args.port} must be at most 65535")  # the socket layer would wrap it silently
    from waitress.server import create_server

    max_bytes = int(args.max_mb * 1e6)
    from PIL import Image

    # This process's limit is --max-megapixels, checked from each photo's header; Pillow's own (179 MP) would cap it.
    Image.MAX_IMAGE_PIXELS = None
    # Waitress warns "Task queue depth is N" for every request that waits for a free worker: under a burst
    # that is a line per request on stderr, for queuing that is the intended behaviour.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = EmotionService(args.model, args.detector, args.detector_model, args.balance, max_bytes, args.allow_origin, not args.quiet,
                         int(args.max_megapixels * 1e6))
    try:
        # A form's boundaries and headers add a little to the photo: the server's own cap leaves room for them.
        server = create_server(app, host=args.host, port=args.port, threads=args.workers, max_request_body_size=max_bytes + 65536, ident="fer-keras")
    except OSError as err:
        raise UserError(f"{args.host}:{args.port}: cannot listen ({err.strerror or err})") from None
    except ValueError:  # waitress's word for a host name that does not resolve
        raise UserError(f"{args.host}: not an address or a host name this machine resolves") from None
    for host, port in getattr(server, "effective_listen", None) or [(server.effective_host, server.effective_port)]:
        print(f"serving {app.info['model']} on http://{host}:{port}/analyze (GET /health describes it; Ctrl-C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
