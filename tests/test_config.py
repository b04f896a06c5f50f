import os
import re

import pytest

from fer_keras.config import ExperimentConfig, apply_overrides, load_config
from fer_keras.errors import UserError


def test_overrides_are_typed_and_nested():
    config = apply_overrides(ExperimentConfig(), ["train.epochs=5", "data.augment.flip=false", "train.learning_rate=3e-4", "name=quick"])
    assert config.train.epochs == 5 and isinstance(config.train.epochs, int)
    assert config.data.augment.flip is False
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.name == "quick"


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(UserError, match=r"unknown config key 'train.epoch'; did you mean train.epochs\?"):
        apply_overrides(ExperimentConfig(), ["train.epoch=3"])


def test_a_section_given_a_value_names_its_keys():
    # It was "unknown config key 'data.augment'; did you mean data.augment?".
    with pytest.raises(UserError, match=r"^data\.augment is a section, not a value: set its keys \(data\.augment\.flip, data\.augment\.rotation, "):
        apply_overrides(ExperimentConfig(), ["data.augment=false"])


def test_bad_values_are_rejected():
    with pytest.raises(UserError, match="train.epochs='many' is not a valid int"):
        apply_overrides(ExperimentConfig(), ["train.epochs=many"])
    with pytest.raises(UserError, match="train.optimizer='rmsprop' is not one of adam, adamw, sgd"):
        apply_overrides(ExperimentConfig(), ["train.optimizer=rmsprop"])
    with pytest.raises(UserError, match="data.val_split='privatetest' is not one of holdout, public_test, public_test_refit"):
        apply_overrides(ExperimentConfig(), ["data.val_split=privatetest"])
    with pytest.raises(UserError, match=r"train.ema_momentum=1.0 must be in \[0, 1\)"):
        apply_overrides(ExperimentConfig(), ["train.ema_momentum=1"])
    with pytest.raises(UserError, match=r"model.dropout=1.5 must be in \[0, 1\)"):
        apply_overrides(ExperimentConfig(), ["model.dropout=1.5"])
    with pytest.raises(UserError, match="train.learning_rate=-0.1 must be positive"):
        apply_overrides(ExperimentConfig(), ["train.learning_rate=-0.1"])
    with pytest.raises(UserError, match="train.epochs=0 must be at least 1"):
        apply_overrides(ExperimentConfig(), ["train.epochs=0"])
    with pytest.raises(UserError, match="model.image_size=8 must be at least 16"):
        apply_overrides(ExperimentConfig(), ["model.image_size=8"])
    with pytest.raises(UserError, match="train.warmup_epochs=-1 must be at least 0"):
        apply_overrides(ExperimentConfig(), ["train.warmup_epochs=-1"])
    with pytest.raises(UserError, match=r"data.augment.blur=1.5 is a probability: it must be in \[0, 1\]"):
        apply_overrides(ExperimentConfig(), ["data.augment.blur=1.5"])
    with pytest.raises(UserError, match=r"data.augment.occlusion=-0.1 is a probability: it must be in \[0, 1\]"):
        apply_overrides(ExperimentConfig(), ["data.augment.occlusion=-0.1"])
    with pytest.raises(UserError, match="must look like key=value"):
        apply_overrides(ExperimentConfig(), ["epochs"])
    with pytest.raises(UserError, match=r"^data.val_fraction \+ data.test_fraction = 1 leaves nothing to train on$"):
        apply_overrides(ExperimentConfig(), ["data.val_fraction=0.5", "data.test_fraction=0.5"])
    with pytest.raises(UserError, match="soft_labels=true needs data.label_set=ferplus"):
        apply_overrides(ExperimentConfig(), ["data.soft_labels=true"])
    with pytest.raises(UserError, match=r"^data.crowd_vote_weight=1.5 must be in \[0, 1\]$"):
        apply_overrides(ExperimentConfig(), ["data.crowd_vote_weight=1.5"])
    with pytest.raises(UserError, match="^data.crowd_vote_weight=0.3 needs data.label_set=fer2013 "):
        apply_overrides(ExperimentConfig(), ["data.label_set=ferplus", "data.crowd_vote_weight=0.3"])
    # The name makes the run folder <time>-<name>: no folders inside it, no glob characters for the resume search.
    for bad in ("a/b", "", "*", "-x"):
        with pytest.raises(UserError, match=f"^name='{re.escape(bad)}' must start with a letter or digit"):
            apply_overrides(ExperimentConfig(), [f"name={bad}"])
    assert apply_overrides(ExperimentConfig(), ["name=ferplus_vgg-2.1"]).name == "ferplus_vgg-2.1"
    # "~" in a path is the home folder, as in a shell (which leaves it alone inside YAML or quotes).
    home = os.path.expanduser("~")
    config = apply_overrides(ExperimentConfig(), ["output_dir=~/runs", "train.init_from=~/m.keras", "model.weights=~/w.h5"])
    assert (config.output_dir, config.train.init_from, config.model.weights) == (f"{home}/runs", f"{home}/m.keras", f"{home}/w.h5")
    with pytest.raises(UserError, match=r"data.cv_folds=1 must be 0 \(no cross-validation\) or at least 2"):
        apply_overrides(ExperimentConfig(), ["data.cv_folds=1"])
    with pytest.raises(UserError, match=r"data.cv_fold=5 must be in \[0, 4\] for data.cv_folds=5"):
        apply_overrides(ExperimentConfig(), ["data.cv_folds=5", "data.cv_fold=5"])
    # A value YAML cannot parse is checked as text, not a YAML traceback.
    with pytest.raises(UserError, match=r"^train.epochs='\[' is not a valid int$"):
        apply_overrides(ExperimentConfig(), ["train.epochs=["])


def test_yaml_file_loads_and_rejects_unknown_sections(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nmodel:\n  name: vgg\ntrain:\n  epochs: 3\n")
    config = load_config(good, ["train.epochs=4"])
    assert (config.name, config.model.name, config.train.epochs) == ("x", "vgg", 4)
    # YAML's null (or nothing after the colon) is no value: it made a run folder named "None", and a traceback for a number.
    for text, message in (("output_dir: null", "output_dir is empty (null); it needs a value of type str"),
                          ("name:", "name is empty (null); it needs a value of type str"),
                          ("train:\n  epochs: ~", "train.epochs is empty (null); it needs a value of type int"),
                          ("output_dir: [a, b]", "output_dir=['a', 'b'] is not a valid str")):
        good.write_text(text + "\n")
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            load_config(good)
    good.write_text("train:\n  init_from: null\ndata:\n  teacher: ~\n")  # optional paths: null is none
    assert (load_config(good).train.init_from, load_config(good).data.teacher) == (None, None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle:\n  name: vgg\n")
    with pytest.raises(UserError, match="did you mean model"):
        load_config(bad)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_every_shipped_experiment_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "experiments" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert path.read_text().startswith("# "), f"{path.name} must open with a comment recording its result"
        load_config(path)
