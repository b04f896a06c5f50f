"""The live window of ``fer_keras.detect --show``: OpenCV's own where its build has a GUI, else a Tk window.

The package depends on opencv-python-headless, so that servers and containers need no display
libraries; that build has no GUI, and ``cv2.imshow`` cannot open a window. Tk (Python's tkinter,
with Pillow's ImageTk) can, wherever there is a screen. Where neither can, detection goes on
without a window, after one message saying why.

Keys: q or Esc closes the window (a camera or stream stops there); on a still image any other
key moves on.
"""

from __future__ import annotations

import os
import re
import sys
import time

import numpy as np

TITLE = "fer_keras (q or Esc: stop, any key: next image)"
QUIT_KEYS = ("q", "Escape")
SCREEN_SHARE = 0.9  # a frame larger than this share of the screen is shrunk to fit
HOLD_POLL_S = 0.02  # how often a still image's window checks for a key


class WindowUnavailable(Exception):
    """No window can open here; the message says why."""


class OpenCVWindow:
    """``cv2.imshow``, for OpenCV builds with a GUI (opencv-python rather than the headless wheel)."""

    def __init__(self):
        import cv2

        cv2.namedWindow(TITLE, cv2.WINDOW_NORMAL)  # cv2.error where there is no screen

    def show(self, image: np.ndarray, hold: bool) -> bool:
        """Shows a BGR frame; with ``hold``, until a key. Returns False once the user closed the window."""
        import cv2

        cv2.imshow(TITLE, image)
        while True:
            key = cv2.waitKey(50 if hold else 1)  # -1: none; some builds add modifier bits above the low byte
            if (key != -1 and key & 0xFF in (ord("q"), 27)) or cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:
                return False
            if not hold or key != -1:
                return True

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class TkWindow:
    """A Tk window showing each frame as a Pillow image, shrunk to fit the screen.

    Raises:
        WindowUnavailable: Without tkinter or Pillow's ImageTk, or without a screen.
    """

    def __init__(self):
        try:
            import tkinter
            from PIL import ImageTk  # noqa: F401  (needs Pillow's Tk support; checked here, used in show)
        except ImportError as err:
            raise WindowUnavailable(f"Python's tkinter is missing ({err}; on Debian or Ubuntu: apt install python3-tk)") from None
        try:
            self._root = tkinter.Tk()
        except tkinter.TclError as err:
            raise WindowUnavailable(f"no screen to open a window on ({err})") from None
        self._root.title(TITLE)
        self._label = tkinter.Label(self._root)
        self._label.pack()
        self._key: str | None = None
        self._closed = False
        self._root.bind("<Key>", self._on_key)
        self._root.protocol("WM_DELETE_WINDOW", self.close)
        self._fit = (int(SCREEN_SHARE * self._root.winfo_screenwidth()), int(SCREEN_SHARE * self._root.winfo_screenheight()))

    def _on_key(self, event) -> None:
        self._key = event.keysym

    def show(self, image: np.ndarray, hold: bool) -> bool:
        """Shows a BGR frame; with ``hold``, until a key. Returns False once the user closed the window."""
        import cv2
        from PIL import Image, ImageTk

        if self._closed:
            return False
        height, width = image.shape[:2]
        scale = min(1.0, self._fit[0] / width, self._fit[1] / height)
        if scale < 1.0:
            image = cv2.resize(image, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)
        photo = ImageTk.PhotoImage(Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), master=self._root)
        self._label.configure(image=photo)
        self._label.image = photo  # Tk keeps no reference of its own: without this the image is freed
        self._key = None
        while True:
            self._root.update()
            if self._closed or self._key in QUIT_KEYS:
                return False
            if not hold or self._key is not None:
                return True
            time.sleep(HOLD_POLL_S)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._root.destroy()


def open_window() -> OpenCVWindow | TkWindow:
    """OpenCV's window where its build has a GUI, else a Tk window.

    Raises:
        WindowUnavailable: When neither can open, naming each reason.
    """
    import cv2

    if sys.platform not in ("darwin", "win32") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # Checked first: OpenCV's Qt build aborts the process, rather than raising, when it finds no screen.
        raise WindowUnavailable("no screen to open a window on (neither $DISPLAY nor $WAYLAND_DISPLAY is set)")
    reasons = []
    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        reasons.append("this OpenCV build has no GUI (opencv-python-headless)")
    else:
        try:
            return OpenCVWindow()
        except cv2.error as err:
            reasons.append(f"OpenCV cannot open a window ({str(err).strip().splitlines()[-1]})")
    try:
        return TkWindow()
    except WindowUnavailable as err:
        reasons.append(str(err))
    raise WindowUnavailable("; ".join(reasons))


class Display:
    """The ``--show`` window, opened at the first frame; where none can open, a one-time message and headless operation.

    Args:
        enabled: Whether to show frames at all.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.closed = False
        self._window: OpenCVWindow | TkWindow | None = None

    def show(self, image: np.ndarray, hold: bool = False) -> None:
        """Shows a BGR frame (with ``hold``, a still image, until a key); ``closed`` turns True when the user closes the window."""
        if not self.enabled or self.closed:
            return
        if self._window is None:
            try:
                self._window = open_window()
            except WindowUnavailable as err:
                print(f"--show: no window can open here: {err}; continuing without a window", file=sys.stderr)
                self.enabled = False
                return
        self.closed = not self._window.show(image, hold)

    def close(self) -> None:
        """Closes the window, if one opened."""
        if self._window is not None:
            self._window.close()
