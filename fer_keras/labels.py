"""The emotion taxonomy: label sets and the aliases that map dataset folder names onto them."""

from __future__ import annotations

# Folder order of the Kaggle msambare/fer2013 layout (alphabetical), which is also the class index order.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# FERPlus vote-column order, spelled in the canonical vocabulary so both label sets share names.
FERPLUS_LABELS: tuple[str, ...] = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")

# FERPlus CSV column for each canonical FERPlus label.
FERPLUS_COLUMNS: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happiness",
    "surprise": "surprise",
    "sad": "sadness",
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
}

ALIASES: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neutral": "neutral",
    "calm": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "contempt": "contempt",
    "contemptuous": "contempt",
}


def canonical(name: str) -> str | None:
    """Maps a dataset's class name onto the canonical emotion vocabulary.

    Args:
        name: A class folder name such as ``"Happiness"`` or ``"anger"``.

    Returns:
        The canonical label (``"happy"``), or None when the name is not an emotion we know.
    """
    return ALIASES.get(name.strip().lower().replace("-", "_").replace(" ", "_"))


def match_classes(folder_names: list[str], model_labels: tuple[str, ...] | list[str]) -> tuple[dict[str, int], list[str]]:
    """Matches dataset class folders to a model's label indices through the aliases.

    Args:
        folder_names: Class folder names found in the data.
        model_labels: The model's labels, in output order.

    Returns:
        A mapping from folder name to model label index, and the sorted folder names that
        match no model label (to be excluded and reported).
    """
    index_by_label = {canonical(label) or label: i for i, label in enumerate(model_labels)}
    mapping: dict[str, int] = {}
    excluded: list[str] = []
    for folder in sorted(folder_names):
        label = canonical(folder) or folder  # custom class names match labels spelled the same
        if label in index_by_label:
            mapping[folder] = index_by_label[label]
        else:
            excluded.append(folder)
    return mapping, excluded
