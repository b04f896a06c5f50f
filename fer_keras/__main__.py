"""``python -m fer_keras <command> [args]``: the ``fer-keras`` console script without its entry point on PATH."""

from fer_keras.cli import main

raise SystemExit(main())
