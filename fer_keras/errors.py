"""User-facing errors and the CLI wrapper that turns them into one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """Bad input from the user (a missing file, a wrong key, a corrupt model): reported without a traceback."""


def cli_entry(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wraps a CLI ``main(argv)`` so a UserError prints one line on stderr and exits 2.

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
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
