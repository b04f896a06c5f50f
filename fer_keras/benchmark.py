"""Benchmarks (not tests): ``python -m fer_keras.benchmark {train,latency,pipeline}``.

Each writes a Markdown table and a JSON file under ``experiments/benchmarks/`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from fer_keras.errors import UserError, cli_entry

DEFAULT_OUT = Path("experiments/benchmarks")


def cpu_name() -> str:
    """The CPU model name, for labelling measurements."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(rows: list[dict]) -> str:
    """Renders rows of equal keys as a Markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, rows: list[dict], header: str) -> Path:
    """Writes ``name.md`` (header + table) and ``name.json`` and prints the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    text = f"# {name}\n\n{header}\n\n{table}\n"
    for path, content in ((out_dir / f"{name}.md", text), (out_dir / f"{name}.json", json.dumps({"header": header, "rows": rows}, indent=2))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)
    print(text)
    return out_dir / f"{name}.md"


def benchmark_train(models: list[str], batch_size: int, steps: int, out_dir: Path) -> list[dict]:
    """Training throughput of each model at ``batch_size``, float32 against mixed_bfloat16."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from fer_keras import hardware
    from fer_keras.models import build_model

    policies = ["float32"] + (["mixed_bfloat16"] if hardware.cpu_supports_bf16() else [])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch_size, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, batch_size)]
    rows = []
    for name in models:
        row = {"model": name}
        for policy in policies:
            previous = hardware.set_precision(policy)
            try:
                model = build_model(name, 7)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
                for _ in range(3):  # compile and warm up
                    model.train_on_batch(x, y)
                start = time.perf_counter()
                for _ in range(steps):
                    model.train_on_batch(x, y)
                seconds = (time.perf_counter() - start) / steps
            finally:
                hardware.set_precision(previous)
            row[f"{policy} img/s"] = round(batch_size / seconds, 1)
            row[f"{policy} ms/step"] = round(seconds * 1000, 1)
        row["params"] = build_model(name, 7).count_params()
        rows.append(row)
    header = (
        f"Training throughput at batch {batch_size}, 48x48x1 input, {steps} timed steps after 3 warm-up steps. "
        f"CPU: {cpu_name()}, {os.cpu_count()} cores. bf16 column only where the CPU has AVX-512 BF16 or AMX. "
        f"Command: python -m fer_keras.benchmark train --batch-size {batch_size} --steps {steps}"
    )
    write_results(out_dir, "train", rows, header)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_keras.benchmark", description="Throughput and latency benchmarks (not tests).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="training images/s per model, float32 vs bf16")
    p_train.add_argument("--models", nargs="*", help="models to time (default: all registered)")
    p_train.add_argument("--batch-size", type=int, default=128)
    p_train.add_argument("--steps", type=int, default=10)
    for p in (p_train,):
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the .md and .json results")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from fer_keras.models import list_models

        models = args.models or list_models()
        unknown = sorted(set(models) - set(list_models()))
        if unknown:
            raise UserError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(list_models())}")
        benchmark_train(models, args.batch_size, args.steps, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
