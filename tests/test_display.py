"""The --show window: its headless fallback everywhere, its Tk window where Xvfb can give it a screen."""

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fer_keras import display

# One worker runs them all: Tk in a process takes to one X server only, and workers starting
# Xvfb at once would race for the same display number.
pytestmark = pytest.mark.xdist_group("virtual_screen")


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


@pytest.fixture(scope="module")
def virtual_screen():
    """A 640x480 X screen from Xvfb, where it is installed (it is no dependency of the package).

    One for the module: Tk in one process does not take to a second X server after its first.
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    pytest.importorskip("tkinter")
    number = next(n for n in range(90, 190) if not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "640x480x24", "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{number}")
    for _ in range(100):  # up to 5 s for the server to listen
        if socket.exists() or server.poll() is not None:
            break
        time.sleep(0.05)
    if not socket.exists():
        server.kill()
        pytest.skip(f"Xvfb did not start on :{number}")
    before = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield
    if before is None:
        del os.environ["DISPLAY"]
    else:
        os.environ["DISPLAY"] = before
    server.terminate()
    server.wait(10)


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
