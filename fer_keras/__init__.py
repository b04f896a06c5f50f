"""fer_keras: facial emotion recognition from training to a quantized TFLite runtime.

The inference API (`analyze`, `EmotionClassifier`) imports no TensorFlow; training,
evaluation and export modules do, and are imported only by their CLIs.
"""

import os

__version__ = "0.6.0"

# Quiet native-library chatter on stderr (users can still override): TensorFlow's C++ logs, and
# OpenCV/FFmpeg warnings that would otherwise precede our one-line errors for bad media.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def __getattr__(name):
    # Lazy so `import fer_keras` stays cheap and TensorFlow-free.
    if name == "analyze" or name == "analyze_video" or name == "FaceResult":
        from fer_keras import api

        return getattr(api, name)
    if name == "EmotionClassifier":
        from fer_keras.runtime import EmotionClassifier

        return EmotionClassifier
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")
