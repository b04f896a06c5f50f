"""Weight-space averages of the fast tier's VGG and its two robust fine-tunes: clean and shifted validation.

    python experiments/benchmarks/weight_interpolation.py --data-dir ../shared/datasets/fer2013
    # writes experiments/benchmarks/weight_interpolation.{md,json}

The two fine-tunes (experiments/configs/ferplus_vgg_robust_cpu.yaml and its distilled twin) start
from the shipped fast tier's VGG rebuilt by ``fer_keras.recover`` and keep its batch norm frozen, so
all three share one architecture and one basin. Averaging such weights can beat each end ("WiSE-FT",
Wortsman et al. 2022; "model soups", the same year): here it would give a fast tier with the
fine-tune's robustness and the original's clean accuracy. Each row is a weighted average of the
three weight sets, scored as float ``.keras`` on FERPlus PublicTest (validation) clean and under
the shifts of ``fer_keras.shifts`` where the fine-tunes gained most. Needs the three ``best.keras``
files (not committed; the recover and train commands in the configs rebuild them). To keep one
average as a run folder (to ensemble or export it), use ``python -m fer_keras.soup``.
"""

from __future__ import annotations

from pathlib import Path

from fer_keras.benchmark import write_results
from fer_keras.data import locate_data_dir
from fer_keras.errors import ArgumentParser, cli_entry
from fer_keras.evaluate import load_evaluation_data, load_keras_model, map_to_model_labels
from fer_keras.runtime import to_model_input
from fer_keras.shifts import apply_shift
from fer_keras.soup import average_weights

RUNS = Path("experiments/runs")
SOURCES = {
    "shipped": RUNS / "recovered/20261128-173129-f_vgg_b/best.keras",
    "robust": RUNS / "20261129-135249-ferplus_vgg_robust_cpu/best.keras",
    "robust_distill": RUNS / "20261129-143551-ferplus_vgg_robust_distill_cpu/best.keras",
}
# Weights of (shipped, robust, robust_distill): the interpolation line to the robust fine-tune, then soups.
MIXES = [(1, 0, 0), (0.75, 0.25, 0), (0.5, 0.5, 0), (0.25, 0.75, 0), (0, 1, 0), (0, 0, 1), (0.5, 0, 0.5), (0, 0.5, 0.5), (1 / 3, 1 / 3, 1 / 3)]
SHIFTS = ["blur σ=4% of width", "noise σ=15", "low resolution ⅓", "JPEG quality 15", "dark ×0.35", "rotation ±20°"]


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python experiments/benchmarks/weight_interpolation.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the Kaggle FER2013 root (else $FER_KERAS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmarks"))
    args = parser.parse_args(argv)

    # load_keras_model names a missing file in one line (they are not committed; the configs rebuild them).
    models = {name: load_keras_model(path)[0] for name, path in SOURCES.items()}
    weight_sets = [source.get_weights() for source in models.values()]  # copies: set_weights below leaves them be
    model = models["shipped"]
    dataset, faces = load_evaluation_data("ferplus", locate_data_dir(args.data_dir), "val", (48, 48, 1))
    images, truth, _, _ = map_to_model_labels(faces, dataset.labels, dataset.labels)
    # Model inputs made once: every mix sees the same views.
    views = {"clean": images} | {shift: apply_shift(shift, images, 0) for shift in SHIFTS}
    inputs = {view: to_model_input(faces_of_view, (48, 48), 1) for view, faces_of_view in views.items()}
    rows = []
    for mix in MIXES:
        model.set_weights(average_weights(weight_sets, mix))
        row = {name: round(share, 2) for name, share in zip(SOURCES, mix)}
        for view, batch in inputs.items():
            predicted = model.predict(batch, batch_size=256, verbose=0).argmax(1)
            row[f"{view} %"] = round(100 * float((predicted == truth).mean()), 2)
        rows.append(row)
    header = (
        f"Float accuracy on FERPlus PublicTest (validation, {len(truth)} faces, majority labels) of weighted averages of the "
        "fast tier's VGG (recovered from release 0.3.0) and its two robust fine-tunes, clean and under six shifts of "
        "fer_keras/shifts.py (seed 0). Command: python experiments/benchmarks/weight_interpolation.py"
        + (f" --data-dir {args.data_dir}" if args.data_dir else "")
    )
    write_results(args.out, "weight_interpolation", rows, header)


if __name__ == "__main__":
    raise SystemExit(main())
