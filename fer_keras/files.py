"""Writing output files so that a reader never sees one half-written."""

from __future__ import annotations

import json
from pathlib import Path


def write_atomic(path: Path, content: bytes | str) -> Path:
    """Writes ``content`` to a temporary file beside ``path`` and renames it into place.

    Args:
        path: The destination; an existing file there stays intact until the rename.
        content: Bytes, or text (written as UTF-8).

    Returns:
        ``path``.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content if isinstance(content, bytes) else content.encode())
    tmp.replace(path)
    return path


def write_json(path: Path, payload) -> Path:
    """Writes indented JSON atomically."""
    return write_atomic(path, json.dumps(payload, indent=2))
