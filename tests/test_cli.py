import pytest

from fer_keras import cli


def test_console_script_lists_commands_and_dispatches(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {command} " in listed for command in ("train", "train_accel", "ensemble", "recover", "prune", "soup", "evaluate", "export", "detect", "benchmark"))
    assert cli.main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'frobnicate'; choose one of train, train_accel, ")
    assert cli.main(["detect", "--source", "/no/such/file.mp4"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_version_and_python_dash_m():
    import subprocess
    import sys

    import fer_keras

    done = subprocess.run([sys.executable, "-m", "fer_keras", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"fer-keras {fer_keras.__version__}\n"
    done = subprocess.run([sys.executable, "-m", "fer_keras"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("usage: fer-keras <command> [args]")


def test_bad_arguments_give_one_error_line_and_exit_2(capsys):
    assert cli.main(["evaluate", "--tta", "bogus", "--out", "unused"]) == 2
    assert capsys.readouterr().err == (
        "error: python -m fer_keras.evaluate: argument --tta: invalid choice: 'bogus' (choose from 'flip', 'ten-crop') (see --help)\n"
    )
    assert cli.main(["benchmark", "latency", "--no-such-flag"]) == 2
    assert capsys.readouterr().err == "error: python -m fer_keras.benchmark: unrecognized arguments: --no-such-flag (see --help)\n"
    # A --name with folders would write outside --out (export failed on its temporary file, after writing parity.json).
    assert cli.main(["export", "--model", "m.keras", "--out", "unused", "--name", "a/b"]) == 2
    assert capsys.readouterr().err == (
        "error: python -m fer_keras.export: argument --name: 'a/b' must be a file name, without folders (outputs go under --out) (see --help)\n"
    )
    assert cli.main(["benchmark", "latency", "--tflite", "fast", "--name", ""]) == 2
    assert capsys.readouterr().err == "error: python -m fer_keras.benchmark latency: argument --name: must not be empty (see --help)\n"


def test_every_listed_command_has_a_main(capsys):
    import importlib

    for command in cli.COMMANDS:
        assert callable(importlib.import_module(f"fer_keras.{command}").main), command
    assert cli.main(["recover", "--tflite", "/no/such.tflite", "--run", "r", "--out", "o"]) == 2
    assert capsys.readouterr().err.startswith("error: /no/such.tflite")


def test_commands_load_keras_only_once_their_arguments_are_checked():
    # TensorFlow prints start-up lines on stderr at import whatever its log level, and takes seconds:
    # a command that imported it at the top could not answer a bad argument with one line at once.
    import subprocess
    import sys

    code = f"import sys\nfor c in {list(cli.COMMANDS)!r}: __import__('fer_keras.' + c)\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {{'keras', 'tensorflow'}}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "[]\n", done.stderr[-2000:]


def test_a_reader_that_leaves_early_is_not_an_error():
    import subprocess
    import sys
    from pathlib import Path

    photo = Path(__file__).parent / "data" / "multiface.jpg"
    # As `fer-keras detect ... | head -0`: the pipe is closed long before the command writes its first line.
    process = subprocess.Popen([sys.executable, "-m", "fer_keras.detect", "--source", str(photo), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    assert process.wait(timeout=60) == 1 and process.stderr.read() == b""


def test_recover_refuses_a_missing_file_before_keras_loads():
    import subprocess
    import sys

    # TensorFlow's start-up lines would precede the error if Keras loaded before the checks.
    done = subprocess.run([sys.executable, "-m", "fer_keras", "recover", "--tflite", "/no/such.tflite", "--run", "r", "--out", "o"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == "error: /no/such.tflite: model file not found\n"


def test_a_negative_number_list_is_a_flag_value_not_a_flag():
    from fer_keras.errors import ArgumentParser, UserError

    parser = ArgumentParser(prog="p")
    parser.add_argument("--value-range")
    parser.add_argument("--offset", type=float)
    parser.add_argument("--quiet", action="store_true")
    assert parser.parse_args(["--value-range", "-1,1"]).value_range == "-1,1"
    assert parser.parse_args(["--value-range", "-0.5,-0.25", "--offset", "-2"]).value_range == "-0.5,-0.25"
    assert parser.parse_args(["--value-range=-1,1"]).value_range == "-1,1"
    with_positional = ArgumentParser(prog="p")
    with_positional.add_argument("values", nargs="*")
    assert with_positional.parse_args(["--", "-1,1"]).values == ["-1,1"]  # after "--", a positional value as it is
    with pytest.raises(UserError, match="--quiet: ignored explicit argument '-1,1'"):
        parser.parse_args(["--quiet", "-1,1"])  # a flag that takes no value: still an error
