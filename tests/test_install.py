"""The runtime install (no ``train`` extra): what works without TensorFlow, and what says to install it."""

import json
import re
import subprocess
import sys
import tomllib

from conftest import REPO
from fer_keras import cli
from fer_keras.errors import TRAIN_EXTRA_MODULES

# Distribution names of the train extra, as the import names the errors module knows them by.
IMPORT_NAMES = {"tensorflow-cpu": "tensorflow", "scikit-learn": "sklearn"}

# Makes every package of the train extra unimportable, as after `pip install fer_keras`.
WITHOUT_TRAIN_EXTRA = (
    "import importlib, runpy, sys\n"
    "from fer_keras.errors import TRAIN_EXTRA_MODULES\n"
    "sys.modules.update({name: None for name in TRAIN_EXTRA_MODULES})\n"
)


def _python_without_train_extra(code, *args):
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA + code, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120)


def _without_train_extra(module, *args):
    """Runs ``python -m module args``."""
    return _python_without_train_extra("sys.argv = sys.argv[1:]\nrunpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n", module, *args)


def _names(requirements):
    return {re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_the_train_extra_holds_everything_the_runtime_must_not_need():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = _names(project["optional-dependencies"]["train"])
    assert {IMPORT_NAMES.get(name, name) for name in extra} == TRAIN_EXTRA_MODULES
    assert not extra & _names(project["dependencies"])


def test_detect_and_the_api_run_without_the_train_extra(tmp_path):
    photo = REPO / "tests" / "data" / "two_people.jpg"
    done = _without_train_extra("fer_keras.detect", "--source", photo, "--out", tmp_path / "out", "--annotate", "--model", "fast")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["faces"] == 2
    done = _python_without_train_extra("import fer_keras; print(len(fer_keras.analyze(sys.argv[1])))\n", photo)
    assert done.returncode == 0 and done.stdout == "2\n", done.stderr


def test_explain_occludes_a_tflite_without_the_train_extra(tmp_path):
    photo = REPO / "tests" / "data" / "two_people.jpg"
    done = _without_train_extra("fer_keras.explain", "--model", "fast", "--image", photo, "--out", tmp_path / "cam")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["two_people_face1_occlusion.png", "two_people_face2_occlusion.png"]


def test_every_command_imports_without_the_train_extra():
    """So that each command's main() can say what to install."""
    done = _python_without_train_extra("".join(f"importlib.import_module('fer_keras.{name}')\n" for name in cli.COMMANDS))
    assert done.returncode == 0, done.stderr


def test_commands_that_need_the_train_extra_say_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_KERAS_DATA", raising=False)
    extra = "needs the train extra, which is not installed (no module '{}'): pip install 'fer_keras[train]'\n"
    done = _without_train_extra("fer_keras.train", f"--data-dir={tmp_path}")
    assert (done.returncode, done.stderr) == (2, "error: this command " + extra.format("keras"))
    done = _without_train_extra("fer_keras.train")
    assert (done.returncode, done.stderr) == (2, "error: no dataset found: pass --data-dir DIR or set $FER_KERAS_DATA=DIR; downloading msambare/fer2013 " + extra.format("kagglehub"))
    (tmp_path / "faces" / "happy").mkdir(parents=True)
    (tmp_path / "faces" / "happy" / "a.jpg").write_bytes((REPO / "tests" / "data" / "two_people.jpg").read_bytes())
    done = _without_train_extra("fer_keras.evaluate", "--model", "fast", "--data-dir", tmp_path / "faces", "--out", tmp_path / "eval")
    assert (done.returncode, done.stderr) == (2, "error: this command " + extra.format("sklearn"))
    done = _without_train_extra("fer_keras.train_accel", f"--data-dir={tmp_path}")
    assert (done.returncode, done.stderr) == (2, "error: this command " + extra.format("keras"))
