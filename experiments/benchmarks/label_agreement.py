"""How often FERPlus's crowd agrees with FER2013's original labels: the ceiling of a FERPlus model scored on FER2013.

    python experiments/benchmarks/label_agreement.py      # writes experiments/benchmarks/label_agreement.{md,json}
    python experiments/benchmarks/label_agreement.py --predictions eval/predictions.csv   # and a model on the same faces

Reads only the vendored FERPlus tables (fer_keras/resources/ferplus), through the same
``fer_keras.data.ferplus_targets`` that makes the training targets: the faces FERPlus labels (one
FERPlus image per Kaggle file, the top vote an emotion and not tied), their ten votes, and the
original FER2013 label, which is the Kaggle file's folder. A FERPlus-trained model is scored on
FER2013's labels with the argmax over the 7 labels the two share (``--restrict-to-present``), so
its ceiling is how often the crowd's most-voted of those 7 is the original label; ties between
them count as the share of tied labels that is right (a fair coin among them). ``--predictions``
takes the predictions.csv of ``python -m fer_keras.evaluate --label-set fer2013
--restrict-to-present`` on the Kaggle folder and adds that model's accuracy on the same faces.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from fer_keras import labels as taxonomy
from fer_keras.benchmark import write_results
from fer_keras.data import ferplus_targets

SPLITS = {"Training": ("Training",), "PublicTest": ("PublicTest",), "PrivateTest": ("PrivateTest",), "test/ (both)": ("PublicTest", "PrivateTest")}


def agreement(votes: np.ndarray, original: np.ndarray, shared: list[int]) -> tuple[float, float]:
    """The share of faces whose crowd majority is the original label: over all 8 FERPlus labels, and over the shared 7 (ties split)."""
    majority_8 = (votes.argmax(axis=1) == original).mean()
    restricted = votes[:, shared]
    tied = restricted == restricted.max(axis=1, keepdims=True)
    right = tied[np.arange(len(original)), [shared.index(k) for k in original]]
    return float(majority_8), float((right / tied.sum(axis=1)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--predictions", type=Path, help="predictions.csv of evaluate --label-set fer2013 --restrict-to-present")
    args = parser.parse_args()
    predicted, scored_by = {}, ""
    if args.predictions:
        with args.predictions.open(newline="") as rows:
            predicted = {row["file"]: row["predicted"] == row["label"] for row in csv.DictReader(rows)}
        # evaluate writes metrics.json beside predictions.csv: it names the model and how it was scored.
        run = json.loads((args.predictions.parent / "metrics.json").read_text())
        scored_by = (f" The model columns: {Path(run['model']).name}, scored by evaluate (label set {run['label_set']}, "
                     f"restrict_to_present {run['restrict_to_present']}, tta {run['tta']}, balance {run['balance']}; "
                     f"{100 * run['accuracy']:.2f}% on all {run['n']} faces of its split).")
    table = ferplus_targets(soft=True)
    ferplus = list(taxonomy.FERPLUS_LABELS)
    shared = [ferplus.index(label) for label in taxonomy.FER2013_LABELS]
    original = np.array([ferplus.index(path.split("/")[1]) for path in table["file"]])
    votes = table[ferplus].to_numpy()
    rows = []
    for name, usages in SPLITS.items():
        rows_of_split = table["usage"].isin(usages).to_numpy()
        by_8, by_7 = agreement(votes[rows_of_split], original[rows_of_split], shared)
        row = {"split": name, "faces": int(rows_of_split.sum()), "crowd majority (8 labels) = original %": round(100 * by_8, 2),
               "crowd majority among the 7 shared = original %": round(100 * by_7, 2)}
        for label in taxonomy.FER2013_LABELS:
            of_label = rows_of_split & (original == ferplus.index(label))
            row[f"{label} %"] = round(100 * agreement(votes[of_label], original[of_label], shared)[1], 1)
        if args.predictions:  # the model's accuracy where it scored these faces (the test folder's)
            scored = [predicted[f] for f in table["file"][rows_of_split] if f in predicted]
            row["model on these faces %"] = round(100 * float(np.mean(scored)), 2) if scored else None
            row["faces it scored"] = len(scored)
        rows.append(row)
    header = (
        "Faces with a FERPlus label (one FERPlus image per Kaggle file, top vote an emotion and not tied): how often the "
        "crowd's majority is FER2013's original label. The per-label columns are over the 7 shared labels, by original "
        f"label.{scored_by} Command: python experiments/benchmarks/label_agreement.py{f' --predictions {args.predictions}' if args.predictions else ''}"
    )
    write_results(Path(__file__).parent, "label_agreement", rows, header)


if __name__ == "__main__":
    main()
