"""Train on an accelerator without TensorFlow: ``KERAS_BACKEND=jax python -m fer_keras.train_accel --config CFG``.

The command line of `fer_keras.array_trainer` (see there for what the trainer does and records).
The config, overrides and data folder are checked before Keras loads, as in `fer_keras.train`:
under the TensorFlow backend that import prints TensorFlow's start-up lines and takes seconds, so
a bad argument is one error line at once.
"""

from __future__ import annotations

import logging
import os

from fer_keras.config import load_config
from fer_keras.data import locate_data_dir
from fer_keras.errors import ArgumentParser, UserError, cli_entry, missing_train_extra


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m fer_keras.train_accel",
        description="Train on an accelerator through Keras's JAX or PyTorch backend (no TensorFlow needed); set KERAS_BACKEND first.",
    )
    parser.add_argument("--config", help="experiment YAML (experiments/configs/NAME.yaml); defaults apply without it")
    parser.add_argument("--data-dir", help="dataset root, or a .csv label list with path and label columns (else $FER_KERAS_DATA, else kagglehub download)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5 model.name=vgg")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    config = load_config(args.config, overrides)
    if config.train.sam_rho:
        raise UserError(f"train.sam_rho={config.train.sam_rho:g}: sharpness-aware minimization is implemented by fer_keras.train only (set it to 0 here)")
    locate_data_dir(config.data.data_dir)
    try:
        import keras  # noqa: F401  (loads the backend that KERAS_BACKEND names)
    except (ImportError, ValueError) as err:
        if isinstance(err, ImportError) and missing_train_extra(err):
            raise  # cli_entry says how to install the train extra
        # KERAS_BACKEND names a backend that is not installed, or none Keras knows.
        raise UserError(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}: {err} "
                        "(install that backend, or set one that is installed: jax, torch or tensorflow)") from None
    from fer_keras.array_trainer import run_accelerated

    run_accelerated(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
