"""``fer-keras serve``: the HTTP service's answers equal the Python API's, and bad requests get a status and one error line."""

import base64
import io
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from wsgiref.util import setup_testing_defaults

import pytest

import fer_keras
from conftest import REPO
from fer_keras import serve

PHOTO = REPO / "tests" / "data" / "two_people.jpg"


@pytest.fixture(scope="module")
def service():
    return serve.EmotionService(model="fast", max_bytes=200_000)


def _call(app, method, path, body=b"", content_type="image/jpeg", query="", origin=None):
    """Runs one request through the WSGI application; returns (status, headers, JSON body or None when empty)."""
    environ = {}
    setup_testing_defaults(environ)
    environ.update({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "CONTENT_TYPE": content_type,
                    "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)})
    if origin:
        environ["HTTP_ORIGIN"] = origin
    answer = {}
    payload = b"".join(app(environ, lambda status, headers: answer.update(status=status, headers=dict(headers))))
    if not payload:
        return answer["status"], answer["headers"], None
    assert answer["headers"]["Content-Type"] == "application/json"
    assert int(answer["headers"]["Content-Length"]) == len(payload)
    return answer["status"], answer["headers"], json.loads(payload)


def _form(field, filename, content, boundary="fer-keras-test"):
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    return head.encode() + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_posted_photo_gets_the_faces_the_python_api_finds(service):
    expected = [face.to_json() for face in fer_keras.analyze(PHOTO, model="fast")]
    assert len(expected) == 2
    status, _, answer = _call(service, "POST", "/analyze", PHOTO.read_bytes())
    assert status == "200 OK"
    assert answer["faces"] == expected
    assert (answer["width"], answer["height"]) == (800, 470)
    # The same photo as an HTML form's file field, and with the query's face selection.
    body, content_type = _form("image", "two_people.jpg", PHOTO.read_bytes())
    assert _call(service, "POST", "/analyze", body, content_type)[2]["faces"] == expected
    # As JSON, in base64 or as a browser's canvas gives it (a data URL).
    encoded = base64.b64encode(PHOTO.read_bytes()).decode()
    for image in (encoded, "data:image/jpeg;base64," + encoded):
        assert _call(service, "POST", "/analyze", json.dumps({"image": image}).encode(), "application/json")[2]["faces"] == expected
    largest = _call(service, "POST", "/analyze", PHOTO.read_bytes(), query="max_faces=1")[2]["faces"]
    assert largest == expected[:1]


def test_health_describes_the_model_it_serves(service):
    status, _, info = _call(service, "GET", "/health")
    assert status == "200 OK"
    assert info["labels"] == list(fer_keras.EmotionClassifier("fast").labels)
    assert (info["model"], info["detector"], info["version"]) == ("fast.tflite", "blazeface", fer_keras.__version__)


@pytest.mark.parametrize("method, path, body, content_type, query, status, error", [
    ("POST", "/analyze", b"not an image", "image/jpeg", "", "400 Bad Request", "image bytes (12 bytes): not a readable image"),
    ("POST", "/analyze", b"", "image/jpeg", "", "400 Bad Request", "empty body: send the photo as the body or as a form file field 'image'"),
    ("POST", "/analyze", b"x" * 200_001, "image/jpeg", "", "413 Content Too Large",
     "the body is 200,001 bytes, over this service's 200,000 (serve --max-mb)"),
    ("POST", "/analyze", b"--b\r\nbroken", "multipart/form-data; boundary=b", "", "400 Bad Request",
     "the form could not be read: Unexpected end of multipart stream (parser closed)"),
    ("POST", "/analyze", b'{"img": "aGk="}', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b'{"image": "not base64!"}', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b'{"image": 7}', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b'"data:image/png"', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b'{"image": "data:image/png"}', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b'not json', "application/json", "", "400 Bad Request", "a JSON body must be {\"image\": \"<the photo in base64, or a data: URL>\"}"),
    ("POST", "/analyze", b"", "image/jpeg", "max_face=1", "400 Bad Request", "unknown query parameter 'max_face'; valid: min_face, max_faces, margin"),
    ("POST", "/analyze", b"", "image/jpeg", "margin=wide", "400 Bad Request", "margin='wide' is not a number"),
    ("GET", "/analyze", b"", "", "", "405 Method Not Allowed", "/analyze takes POST, not GET"),
    ("GET", "/faces", b"", "", "", "404 Not Found", "/faces: no such endpoint; use GET /health or POST /analyze"),
])
def test_a_bad_request_gets_its_status_and_one_error_line(service, method, path, body, content_type, query, status, error):
    answer = _call(service, method, path, body, content_type, query)
    assert (answer[0], answer[2]) == (status, {"error": error})
    if status.startswith("405"):
        assert answer[1]["Allow"] == "POST"


def test_a_photo_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    small = serve.EmotionService(model="fast", max_pixels=300_000)
    status, _, answer = _call(small, "POST", "/analyze", PHOTO.read_bytes())
    assert (status, answer) == ("413 Content Too Large", {"error": "the photo is 800x470 pixels, over this service's 0.3 megapixels (serve --max-megapixels)"})
    # A bomb: a few hundred bytes of PNG that would decode to 400 megapixels (over Pillow's own limit too).
    from PIL import Image

    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    bomb = (tmp_path / "bomb.png").read_bytes()
    assert len(bomb) < 100_000
    status, _, answer = _call(serve.EmotionService(model="fast"), "POST", "/analyze", bomb)
    assert (status, answer) == ("413 Content Too Large", {"error": "the photo is over this service's 100 megapixels (serve --max-megapixels)"})


def test_a_query_value_out_of_range_is_refused_by_the_api_check(service):
    status, _, answer = _call(service, "POST", "/analyze", PHOTO.read_bytes(), query="max_faces=-1")
    assert (status, answer) == ("400 Bad Request", {"error": "max_faces=-1 must be at least 0"})


def test_a_form_without_an_image_field_must_hold_one_file(service):
    one, content_type = _form("photo", "a.jpg", PHOTO.read_bytes())
    assert len(_call(service, "POST", "/analyze", one, content_type)[2]["faces"]) == 2
    two = one[: -len(b"--\r\n")] + b'\r\nContent-Disposition: form-data; name="other"; filename="b.jpg"\r\n\r\nxx\r\n--fer-keras-test--\r\n'
    status, _, answer = _call(service, "POST", "/analyze", two, content_type)
    assert (status, answer) == ("400 Bad Request", {"error": "the form has 2 files and none named 'image': send one file, or name it 'image'"})
    both_named, _ = _form("image", "a.jpg", PHOTO.read_bytes())
    both_named = both_named[: -len(b"--\r\n")] + b'\r\nContent-Disposition: form-data; name="image"; filename="b.jpg"\r\n\r\nxx\r\n--fer-keras-test--\r\n'
    status, _, answer = _call(service, "POST", "/analyze", both_named, content_type)
    assert (status, answer) == ("400 Bad Request", {"error": "the form has 2 files named 'image': send one"})


def test_browser_pages_of_the_allowed_origins_may_call_it(service):
    assert "Access-Control-Allow-Origin" not in _call(service, "GET", "/health", origin="https://app.example")[1]
    app = serve.EmotionService(model="fast", allowed_origins=("https://app.example",))
    headers = _call(app, "POST", "/analyze", PHOTO.read_bytes(), origin="https://app.example")[1]
    assert (headers["Access-Control-Allow-Origin"], headers["Vary"]) == ("https://app.example", "Origin")
    assert "Access-Control-Allow-Origin" not in _call(app, "GET", "/health", origin="https://other.example")[1]
    # The browser's preflight before posting a raw image/jpeg body from that page.
    status, headers, body = _call(app, "OPTIONS", "/analyze", origin="https://app.example")
    assert (status, body) == ("204 No Content", None)
    assert (headers["Access-Control-Allow-Origin"], headers["Access-Control-Allow-Methods"], headers["Access-Control-Allow-Headers"]) == (
        "https://app.example", "POST", "Content-Type")
    anyone = serve.EmotionService(model="fast", allowed_origins=("*",))
    assert _call(anyone, "GET", "/health", origin="https://other.example")[1]["Access-Control-Allow-Origin"] == "*"


def test_the_command_serves_over_http_until_stopped():
    command = [sys.executable, "-m", "fer_keras.serve", "--port", "0", "--model", "fast", "--workers", "1"]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()
        assert banner.startswith("serving fast.tflite on http://127.0.0.1:"), server.stderr.read()
        url = banner.split()[3]
        # No Content-Type, as curl --data-binary sends it: urllib and curl then label the body a url-encoded form.
        request = urllib.request.Request(url, data=PHOTO.read_bytes())

        def face_count(_):
            with urllib.request.urlopen(request, timeout=60) as response:
                return len(json.loads(response.read())["faces"])

        # More requests at once than workers: they queue, and each gets its whole answer.
        with ThreadPoolExecutor(4) as clients:
            assert list(clients.map(face_count, range(4))) == [2, 2, 2, 2]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"junk"), timeout=60)
        assert refused.value.code == 400
        assert json.loads(refused.value.read()) == {"error": "image bytes (4 bytes): not a readable image"}
    finally:
        server.terminate()
    out, err = server.communicate(timeout=30)
    # Nothing on stderr (neither a traceback nor waitress's line per queued request); a line per request on stdout.
    assert err == ""
    assert [line.split()[:4] for line in out.splitlines()] == [["127.0.0.1", "POST", "/analyze", "200"]] * 4 + [["127.0.0.1", "POST", "/analyze", "400"]]
    assert all(line.endswith(" ms") for line in out.splitlines())


def test_a_port_in_use_is_one_error_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.main(["--port", str(port), "--model", "fast"]) == 2
    assert capsys.readouterr().err == f"error: 127.0.0.1:{port}: cannot listen (Address already in use)\n"


def test_a_missing_model_fails_before_serving(capsys, tmp_path):
    assert serve.main(["--port", "0", "--model", str(tmp_path / "missing.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.tflite" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, error", [
    (["--port", "70000"], "error: python -m fer_keras.serve: argument --port: 70000 must be at most 65535 (see --help)\n"),
    (["--host", "no-such-host.invalid"], "error: no-such-host.invalid: not an address or a host name this machine resolves\n"),
])
def test_an_address_it_cannot_listen_on_is_one_error_line(capsys, argv, error):
    assert serve.main([*argv, "--model", "fast"]) == 2
    assert capsys.readouterr().err == error
