"""The --show window: its headless fallback everywhere, its Tk window where Xvfb can give it a screen."""

import os
import select
import shutil
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fer_keras import display


def _frame(height=120, width=160):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = (255, 0, 0)  # BGR blue on the left
    return frame


def test_without_a_screen_detection_goes_on_after_one_message(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    shown = display.Display(True)
    for _ in range(3):
        shown.show(_frame())
    shown.close()
    assert capsys.readouterr().err == (
        "--show: no window can open here: no screen to open a window on (neither $DISPLAY nor $WAYLAND_DISPLAY is set); "
        "continuing without a window\n"
    )
    assert not shown.enabled and not shown.closed


def _read_line(fd: int, timeout_s: float) -> str:
    """A newline-terminated line from ``fd``, or what came of it within ``timeout_s``."""
    deadline, line = time.monotonic() + timeout_s, b""
    while not line.endswith(b"\n") and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 16)
        if not chunk:
            break
        line += chunk
    return line.decode().strip()


@pytest.fixture(scope="session")
def virtual_screen():
    """A 640x480 X screen from Xvfb, where it is installed (it is no dependency of the package).

    One per test process, for its whole session: Tk in a process keeps to the first X server it
    met, and a Tk update on a server that has gone ends the process at once (Xlib's "XIO: fatal IO
    error", an exit(1) that pytest-xdist reports as a crashed worker). Xvfb picks a free display
    number itself (-displayfd), so workers starting it at once cannot end up on one server that
    the first to finish then stops (the display number used to be chosen here, from the lock files).
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    pytest.importorskip("tkinter")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"], pass_fds=(write_end,), stderr=subprocess.DEVNULL
    )
    os.close(write_end)
    # Xvfb writes the number once it listens; the pipe stays open while it runs: it stops with
    # "Cannot write display number" when its reader has gone.
    number = _read_line(read_end, timeout_s=5)
    if not number.isdigit():
        server.kill()
        server.wait(10)
        os.close(read_end)
        pytest.skip("Xvfb did not start")
    before = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield
    if before is None:
        del os.environ["DISPLAY"]
    else:
        os.environ["DISPLAY"] = before
    server.terminate()
    server.wait(10)
    os.close(read_end)


def _after(window, ms, action):
    window._root.after(ms, action)


def test_tk_window_shows_frames_shrinks_large_ones_and_stops_on_q(virtual_screen):
    window = display.TkWindow()
    try:
        assert window.show(_frame(), hold=False)
        assert (window._label.image.width(), window._label.image.height()) == (160, 120)
        assert window.show(_frame(1080, 1920), hold=False)
        assert (window._label.image.width(), window._label.image.height()) == (576, 324)  # 90% of the 640-wide screen
        # A still waits for a key: any key moves on, q stops. The keys come as the window's key binding
        # receives them (X delivers real ones only to a focused window, which needs a window manager).
        _after(window, 100, lambda: window._on_key(SimpleNamespace(keysym="space")))
        assert window.show(_frame(), hold=True)
        _after(window, 100, lambda: window._on_key(SimpleNamespace(keysym="q")))
        assert not window.show(_frame(), hold=True)
    finally:
        window.close()


def test_closing_the_tk_window_ends_the_show(virtual_screen):
    window = display.TkWindow()
    _after(window, 100, window.close)  # as the window manager's close button does
    assert not window.show(_frame(), hold=True)
    assert not window.show(_frame(), hold=False)
    window.close()  # a second close is harmless
