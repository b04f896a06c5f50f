"""fer_keras: facial emotion recognition from training to a quantized TFLite runtime.

The inference API (`analyze`, `EmotionClassifier`) imports no TensorFlow; training,
evaluation and export modules do, and are imported only by their CLIs.
"""

import importlib
import os

__version__ = "0.11.0"

# Quiet native-library chatter on stderr (users can still override): TensorFlow's C++ logs, and
# OpenCV/FFmpeg messages that would otherwise precede our one-line errors for bad media (OpenCV
# logs a broken GIF at its ERROR level; every failure it logs reaches the user as our own error).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


# The public API, imported lazily so `import fer_keras` stays cheap and TensorFlow-free.
_LAZY = {
    "analyze": "fer_keras.api",
    "analyze_video": "fer_keras.api",
    "FaceResult": "fer_keras.api",
    "FrameResult": "fer_keras.api",
    "FrameAnalyzer": "fer_keras.api",
    "EmotionClassifier": "fer_keras.runtime",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")


def __dir__():
    # dir(), help() and editors list the lazy names too, and not the modules imported above.
    return sorted({*(name for name in globals() if name.startswith("__")), *__all__})
