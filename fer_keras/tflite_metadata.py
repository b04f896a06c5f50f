"""The TFLite Metadata standard's record of a classifier: what Android Studio, Netron and the TFLite Task Library read.

Our own JSON entry (``fer_keras``) carries everything our runtime needs; this writes the same facts
in the schema those tools know (``metadata_schema.fbs`` of tflite-support, file identifier
``M001``), under the model's ``TFLITE_METADATA`` entry, with the labels as an associated file
(``labels.txt``, of type TENSOR_AXIS_LABELS) packed in a zip archive appended to the model, as
tflite-support's MetadataPopulator does. tflite-support itself pins protobuf below 4, which
TensorFlow 2.21 cannot share an environment with, so the few tables needed are written here with
``flatbuffers``; the slot numbers below are that schema's (checked with tflite-support 0.4.4's
MetadataDisplayer and Task Library, see tests/test_export_runtime.py).
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers

STANDARD_METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"  # no field newer than the schema's first release is written

# Enum values and union tags of metadata_schema.fbs.
COLOR_SPACE = {"rgb": 1, "grayscale": 2}
TENSOR_AXIS_LABELS = 2
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2
NORMALIZATION_OPTIONS = 1
VALUE_RANGE = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0), "float32": (0.0, 1.0)}


def _table(builder: flatbuffers.Builder, fields: dict[int, tuple[str, object]]) -> int:
    """Writes one table from {slot: (kind, value)}, kind ``offset`` (already written), ``int8`` or ``uint8``."""
    builder.StartObject(max(fields, default=-1) + 1)
    for slot, (kind, value) in fields.items():
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "int8":
            builder.PrependInt8Slot(slot, value, 0)
        else:
            builder.PrependUint8Slot(slot, value, 0)
    return builder.EndObject()


def _vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder: flatbuffers.Builder, values: list[float]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()


def _stats(builder: flatbuffers.Builder, low: float, high: float) -> int:
    high_offset, low_offset = _floats(builder, [high]), _floats(builder, [low])
    return _table(builder, {0: ("offset", high_offset), 1: ("offset", low_offset)})


def model_metadata(metadata: dict) -> bytes:
    """The ModelMetadata flatbuffer for one of our classifiers, from its ``fer_keras`` JSON metadata.

    Args:
        metadata: The dict ``fer_keras.export.make_metadata`` builds (name, version, labels, input, output).

    Returns:
        The buffer to store under the model's ``TFLITE_METADATA`` entry.
    """
    builder = flatbuffers.Builder(1024)
    text = builder.CreateString
    source = metadata["input"]
    height, width = source["height"], source["width"]

    # Input: raw pixels of a face crop; the normalisation (x - 0) / 1 says the model rescales itself.
    properties = _table(builder, {0: ("int8", COLOR_SPACE[source["color"]])})
    image_content = _table(builder, {0: ("uint8", IMAGE_PROPERTIES), 1: ("offset", properties)})
    mean, std = _floats(builder, [0.0]), _floats(builder, [1.0])
    normalization = _table(builder, {0: ("offset", mean), 1: ("offset", std)})
    process_unit = _table(builder, {0: ("uint8", NORMALIZATION_OPTIONS), 1: ("offset", normalization)})
    input_fields = {
        0: ("offset", text("image")),
        1: ("offset", text(f"A face crop, {height}x{width} {source['color']}, raw 0-255 pixels (the model rescales them); crop it square around the face with the framing in the integration notes.")),
        3: ("offset", image_content),
        4: ("offset", _vector(builder, [process_unit])),
        5: ("offset", _stats(builder, *VALUE_RANGE["uint8"])),
    }
    image = _table(builder, input_fields)

    # Output: one probability per label, the labels in the appended labels.txt.
    labels_file = _table(builder, {
        0: ("offset", text(LABELS_FILE)),
        1: ("offset", text("The emotion labels, in output order.")),
        2: ("int8", TENSOR_AXIS_LABELS),
    })
    features = _table(builder, {})
    output_content = _table(builder, {0: ("uint8", FEATURE_PROPERTIES), 1: ("offset", features)})
    output_fields = {
        0: ("offset", text("probability")),
        1: ("offset", text(f"Probabilities of {', '.join(metadata['labels'])}, in that order.")),
        3: ("offset", output_content),
        5: ("offset", _stats(builder, *VALUE_RANGE.get(metadata["output"]["dtype"], VALUE_RANGE["float32"]))),
        6: ("offset", _vector(builder, [labels_file])),
    }
    probability = _table(builder, output_fields)

    subgraph = _table(builder, {2: ("offset", _vector(builder, [image])), 3: ("offset", _vector(builder, [probability]))})
    root = _table(builder, {
        0: ("offset", text(metadata["name"])),
        1: ("offset", text(f"Facial emotion recognition ({len(metadata['labels'])} classes, trained on {metadata.get('training_data', 'FER2013 / FERPlus')}).")),
        2: ("offset", text(str(metadata["version"]))),
        3: ("offset", _vector(builder, [subgraph])),
        4: ("offset", text("fer_keras")),
        7: ("offset", text(MIN_PARSER_VERSION)),
    })
    builder.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def append_labels(tflite_model: bytes, labels: list[str]) -> bytes:
    """The model with ``labels.txt`` packed in a zip archive appended to it (TFLite ignores trailing bytes)."""
    archive = io.BytesIO(tflite_model)
    archive.seek(0, io.SEEK_END)
    with zipfile.ZipFile(archive, "a") as packed:
        packed.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return archive.getvalue()
