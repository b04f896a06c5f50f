"""Does XLA (``jit_compile=True``) speed up CPU training? Keras turns it off on CPU-only machines by default.

    python experiments/benchmarks/xla_cpu.py      # writes experiments/benchmarks/xla_cpu.{md,json}

The protocol recipe's network (ResNet-SE width 32, 7 classes, 48x48 grayscale) and the fast tier's
VGG, each compiled with and without XLA, in float32 and (where the CPU has AVX-512 BF16 or AMX)
mixed_bfloat16, timed like ``python -m fer_keras.benchmark train``: batch 128, 3 warm-up steps
(which include XLA's compilation) and 8 timed ``train_on_batch`` steps on seeded random data.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from fer_keras import hardware  # noqa: E402
from fer_keras.benchmark import DEFAULT_OUT, cpu_name, time_training_steps, training_batch, training_precisions, write_results  # noqa: E402
from fer_keras.models import build_model  # noqa: E402

BATCH, WARM_UP, STEPS = 128, 3, 8
NETWORKS = {"resnet_se width 32": ("resnet_se", {"width": 32, "dropout": 0.3}), "vgg": ("vgg", {"dropout": 0.4})}


def seconds_per_step(name: str, options: dict, jit_compile: bool, x, y) -> tuple[float, float]:
    """Seconds of the warm-up (compilation included) and mean seconds of one timed training step."""
    keras.utils.set_random_seed(0)
    model = build_model(name, y.shape[1], **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", jit_compile=jit_compile)
    return time_training_steps(model, x, y, STEPS, WARM_UP)


def main() -> None:
    x, y = training_batch(BATCH)
    precisions = training_precisions()
    rows = []
    for label, (name, options) in NETWORKS.items():
        for policy in precisions:
            previous = hardware.set_precision(policy)
            try:
                timings = {jit: seconds_per_step(name, options, jit, x, y) for jit in (False, True)}
            finally:
                hardware.set_precision(previous)
            (_, plain), (xla_warm_up, xla) = timings[False], timings[True]
            rows.append({"model": label, "policy": policy, "img/s": round(BATCH / plain, 1), "XLA img/s": round(BATCH / xla, 1),
                         "XLA speed-up": round(plain / xla, 2), "XLA warm-up s": round(xla_warm_up, 1)})
    header = (f"Training throughput with and without XLA (`jit_compile`), batch {BATCH}, 48x48x1, {STEPS} timed steps after "
              f"{WARM_UP} warm-up steps. CPU: {cpu_name()}, {os.cpu_count()} cores. Command: python experiments/benchmarks/xla_cpu.py")
    write_results(DEFAULT_OUT, "xla_cpu", rows, header)


if __name__ == "__main__":
    main()
