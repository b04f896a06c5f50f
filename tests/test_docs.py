"""The committed Markdown points only at files a clone has.

Results and records move between documents (README.md → experiments/RESULTS.md, run folders renamed), and a
link or a path quoted in backticks that no longer resolves sends a reader nowhere. Paths are checked against
the tracked files, not the working tree, because weights and resume state are git-ignored and a clone lacks them.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

FENCED_BLOCK = re.compile(r"```.*?```", re.S)  # code samples hold placeholders (RUN/, $R) and other languages' syntax
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A repository path in backticks: no globs, braces, variables or ellipses, which stand for several files.
QUOTED_PATH = re.compile(r"`((?:experiments|tflite|fer_keras|tests)/[^`\s*{}$<>\[\]…|,;:()]+)`")


def tracked_paths() -> set[str]:
    """Every tracked file and every folder above one, as POSIX paths relative to the repository."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    paths = {name for name in files if name}
    paths |= {parent.as_posix() for name in list(paths) for parent in Path(name).parents if str(parent) != "."}
    return paths


def broken_references(document: str, text: str, known: set[str]) -> list[str]:
    """Links and quoted paths in one Markdown document that name no tracked file or folder."""
    prose = FENCED_BLOCK.sub("", text)
    broken = []
    for target in MARKDOWN_LINK.findall(prose):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = os.path.normpath(Path(document).parent / target).replace(os.sep, "/")
        if resolved not in known:
            broken.append(f"{document}: link {target}")
    broken += [f"{document}: path {path}" for path in QUOTED_PATH.findall(prose) if path.rstrip("/") not in known]
    return broken


def test_reference_checker_finds_a_moved_file_and_ignores_code_samples():
    known = {"README.md", "experiments", "experiments/RESULTS.md", "tflite", "tflite/MODEL_CARD.md"}
    text = ("See [the log](RESULTS.md#latency), [the card](../tflite/MODEL_CARD.md), [gone](OLD.md),\n"
            "`experiments/RESULTS.md`, `experiments/runs/*/config.yaml`, `experiments/missing.yaml` and https://example.org.\n"
            "```bash\ncat [x](nowhere.md) `tflite/none.tflite`\n```\n")
    assert broken_references("experiments/README.md", text, known) == [
        "experiments/README.md: link OLD.md",
        "experiments/README.md: path experiments/missing.yaml",
    ]


def test_every_committed_document_points_at_tracked_files():
    known = tracked_paths()
    documents = sorted(name for name in known if name.endswith(".md"))
    broken = [problem for name in documents for problem in broken_references(name, (REPO / name).read_text(encoding="utf-8"), known)]
    assert broken == []
