"""User-facing errors and the CLI wrapper that turns them into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from typing import Callable


class UserError(Exception):
    """Bad input from the user (a missing file, a wrong key, a corrupt model): reported without a traceback."""


# Import names of the packages that only the ``train`` extra installs (pyproject.toml).
TRAIN_EXTRA_MODULES = frozenset({"keras", "tensorflow", "tensorboard", "kagglehub", "sklearn", "pandas", "seaborn", "mtcnn", "tf2onnx", "onnx", "onnxruntime"})


def missing_train_extra(err: ImportError) -> str | None:
    """``needs the train extra ...: pip install ...`` when ``err`` is an import of a package only that extra installs; else None."""
    top = (err.name or "").split(".")[0]
    if top not in TRAIN_EXTRA_MODULES:
        return None
    return f"needs the train extra, which is not installed (no module {top!r}): pip install 'fer_keras[train]'"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument raises UserError: one line and exit 2 under ``cli_entry``.

    argparse itself prints the whole usage block before its error; the error line alone names the
    problem, and ``--help`` still prints the usage.
    """

    # argparse takes only a plain negative number for a value; "-1,1" it reads as an unknown flag,
    # so "--value-range -1,1" failed with "expected one argument". Such a token is joined to its flag.
    NEGATIVE_NUMBER_LIST = re.compile(r"-\d[\d.]*(,-?\d[\d.]*)+")

    def parse_known_args(self, args=None, namespace=None):
        joined: list[str] = []
        for token in sys.argv[1:] if args is None else args:
            flag = joined[-1] if joined else ""
            if self.NEGATIVE_NUMBER_LIST.fullmatch(token) and flag.startswith("--") and flag != "--" and "=" not in flag:
                joined[-1] = f"{joined[-1]}={token}"
            else:
                joined.append(token)
        return super().parse_known_args(joined, namespace)

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see --help)")


def check_at_least(what: str, value: float | None, least: float) -> None:
    """Raises a UserError ``what=value must be at least least`` unless it is; None means unset and passes.

    Args:
        what: The name the user wrote: a flag (``--every``), a keyword (``max_faces``) or a config key.
        value: The value given.
        least: The smallest allowed value.
    """
    if value is not None and value < least:
        raise UserError(f"{what}={value} must be at least {least}")


def at_least(least: float, cast: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse ``type`` for a number of at least ``least``, so a bad value names its flag.

    The library's own checks (``check_at_least``) name its keywords; a CLI flag checked here reads
    ``argument --min-face: -1 must be at least 0`` instead.

    Args:
        least: The smallest allowed value.
        cast: ``int`` or ``float``.
    """

    def parse(text: str) -> float:
        value = cast(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
        return value

    parse.__name__ = cast.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def in_range(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a float in [low, high], or (low, high] with ``low_open``.

    Args:
        low: The smallest allowed value (excluded when ``low_open``).
        high: The largest allowed value.
        low_open: Whether ``low`` itself is refused.
    """

    def parse(text: str) -> float:
        value = float(text)
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{value} must be in {'(' if low_open else '['}{low}, {high}]")
        return value

    parse.__name__ = "float"
    return parse


def file_stem(text: str) -> str:
    """An argparse ``type`` for a file name without folders (``--name``): outputs go under ``--out``."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    if text in (".", "..") or "/" in text or os.sep in text:
        raise argparse.ArgumentTypeError(f"{text!r} must be a file name, without folders (outputs go under --out)")
    return text


def cli_entry(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wraps a CLI ``main(argv)`` so a UserError or OSError prints one line on stderr and exits 2.

    Args:
        main: The command's main function.

    Returns:
        A function returning the process exit code.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except ImportError as err:
            # The runtime install has no TensorFlow: a command that needs it says how to get it.
            missing = missing_train_extra(err)
            if missing is None:
                raise
            print(f"error: this command {missing}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # The reader of our output left (``| head``): not an error to report. Python's own recipe:
            # point stdout at devnull so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except OSError as err:
            # A path the user named cannot be used (a file where an output folder should go, no
            # permission, a full disk): the environment's fault, not the program's, so no traceback.
            where = f"{err.filename}: " if err.filename else ""
            reason = err.strerror or err
            if isinstance(err, FileExistsError) and not os.path.isdir(err.filename or ""):
                reason = "a file is there, where an output folder should go"  # errno's words: "File exists"
            print(f"error: {where}{reason}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
