from fer_keras import labels


def test_aliases_map_dataset_names_to_canonical_labels():
    assert labels.canonical("Happiness") == "happy"
    assert labels.canonical("anger") == "angry"
    assert labels.canonical("SADNESS") == "sad"
    assert labels.canonical("surprised") == "surprise"
    assert labels.canonical("pizza") is None


def test_match_classes_maps_through_aliases_and_lists_the_rest():
    mapping, excluded = labels.match_classes(["happiness", "anger", "contempt", "other"], labels.FER2013_LABELS)
    assert mapping == {"anger": 0, "happiness": 3}
    assert excluded == ["contempt", "other"]


def test_ferplus_labels_use_the_canonical_vocabulary():
    assert labels.FERPLUS_LABELS == ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
    assert all(labels.canonical(name) == name for name in labels.FERPLUS_LABELS + labels.FER2013_LABELS)
