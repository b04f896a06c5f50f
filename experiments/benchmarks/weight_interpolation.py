"""Weight-space averages of a tier's networks and their robust fine-tunes: clean and shifted validation.

    python experiments/benchmarks/weight_interpolation.py --data-dir ../shared/datasets/fer2013
    # writes experiments/benchmarks/weight_interpolation.{md,json}: the fast tier
    python experiments/benchmarks/weight_interpolation.py --tier accurate --data-dir ../shared/datasets/fer2013
    # writes experiments/benchmarks/weight_interpolation_accurate.{md,json}

Every robust fine-tune (experiments/configs/ferplus_*robust*.yaml) starts from a shipped network
rebuilt by ``fer_keras.recover`` and keeps its batch norm frozen, so it shares the original's
architecture and basin. Averaging such weights can beat each end ("WiSE-FT", Wortsman et al. 2022;
"model soups", the same year): here it would give a tier with the fine-tune's robustness and the
original's clean accuracy.

- ``fast``: the fast tier's VGG as release 0.3.0 shipped it and its three robust fine-tunes (the
  third, p = 0.1, is release 0.4.0's fast tier), without flip (the fast tier ships without it); a
  row is one weighted average of the four.
- ``accurate``: each member of the accurate tier (ResNet-SE ``r_resnet_b``, VGG ``f_vgg_a``) on
  the line to its robust fine-tune, with flip as the tier ships; a row is one pair of points on
  the two lines, its members' probabilities averaged as ``fer_keras.ensemble`` does.

Scored as float ``.keras`` on FERPlus PublicTest (validation), clean and under the shifts of
``fer_keras.shifts`` where the fine-tunes gained most. Needs the networks' ``best.keras`` files
(not committed; the recover and train commands in the configs rebuild them). To keep one
average as a run folder (to ensemble or export it), use ``python -m fer_keras.soup``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_keras.benchmark import write_results
from fer_keras.data import locate_data_dir
from fer_keras.errors import ArgumentParser, cli_entry
from fer_keras.evaluate import load_evaluation_data, load_keras_model, map_to_model_labels, predict_probabilities
from fer_keras.runtime import to_model_input
from fer_keras.shifts import apply_shift
from fer_keras.soup import average_weights

RUNS = Path("experiments/runs")
LINE = [(1, 0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0, 1)]


@dataclass(frozen=True)
class Member:
    """One network of a tier: the weight sets it may be averaged from, and the weights of each average scored."""

    sources: dict[str, Path]
    mixes: list[tuple[float, ...]]


def robust_line(shipped_run: str, robust_run: str) -> Member:
    """A member on the line from a shipped network (its run folder under RUNS) to its robust fine-tune, in quarters."""
    return Member({"shipped": RUNS / shipped_run / "best.keras", "robust": RUNS / robust_run / "best.keras"}, LINE)


@dataclass(frozen=True)
class Tier:
    """A tier as it ships (with or without flip) and the members whose averages are paired in its rows."""

    flip: bool
    members: dict[str, Member]
    description: str


TIERS = {
    "fast": Tier(
        flip=False,
        members={
            "vgg": Member(
                {
                    "0.3.0": RUNS / "recovered/20261128-173129-f_vgg_b/best.keras",
                    "robust": RUNS / "20261129-135249-ferplus_vgg_robust_cpu/best.keras",
                    "robust_distill": RUNS / "20261129-143551-ferplus_vgg_robust_distill_cpu/best.keras",
                    "robust_p10": RUNS / "20261129-172031-ferplus_vgg_robust_p10_cpu/best.keras",  # shipped since 0.4.0
                },
                # The interpolation line to the first robust fine-tune and soups with the distilled one,
                # then the shipped fine-tune (p = 0.1) on its line to 0.3.0's weights and in soups.
                [
                    (1, 0, 0, 0), (0.75, 0.25, 0, 0), (0.5, 0.5, 0, 0), (0.25, 0.75, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0),
                    (0.5, 0, 0.5, 0), (0, 0.5, 0.5, 0), (1 / 3, 1 / 3, 1 / 3, 0),
                    (0, 0, 0, 1), (0.25, 0, 0, 0.75), (0.5, 0, 0, 0.5), (0.75, 0, 0, 0.25),
                    (0, 0.25, 0, 0.75), (0, 0.5, 0, 0.5), (0, 0, 0.5, 0.5), (0, 1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0, 0.5),
                ],
            )
        },
        description="weighted averages of the fast tier's VGG as release 0.3.0 shipped it (recovered) and its three robust fine-tunes, robust_p10 shipped since release 0.4.0",
    ),
    "accurate": Tier(
        flip=True,
        members={
            "resnet": robust_line("recovered_0.3.0/20261128-213810-r_resnet_b", "20261129-193333-ferplus_resnet_se_robust_p10_cpu"),
            "vgg": robust_line("recovered_0.3.0/20261128-173129-f_vgg_a", "20261129-185900-ferplus_vgg_a_robust_p10_cpu"),
        },
        description=(
            "pairs of the accurate tier's members (recovered from release 0.3.0), each a weighted average of the "
            "member and its robust fine-tune, with flip, probabilities averaged"
        ),
    ),
}
SHIFTS = ["blur σ=4% of width", "noise σ=15", "low resolution ⅓", "JPEG quality 15", "dark ×0.35", "rotation ±20°"]


def member_probabilities(member: Member, inputs: dict[str, np.ndarray], flip: bool) -> dict[tuple, dict[str, np.ndarray]]:
    """Each mix's probabilities on every view, keyed by the mix; each source file is loaded once."""
    # load_keras_model names a missing file in one line (they are not committed; the configs rebuild them).
    models = [load_keras_model(path)[0] for path in member.sources.values()]
    weight_sets = [source.get_weights() for source in models]  # copies: set_weights below leaves them be
    model = models[0]
    probabilities = {}
    for mix in member.mixes:
        model.set_weights(average_weights(weight_sets, mix))
        probabilities[mix] = {
            view: predict_probabilities(lambda batch: model.predict(batch, batch_size=256, verbose=0), faces, "flip" if flip else None)
            for view, faces in inputs.items()
        }
    return probabilities


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python experiments/benchmarks/weight_interpolation.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=sorted(TIERS), default="fast")
    parser.add_argument("--data-dir", help="the Kaggle FER2013 root (else $FER_KERAS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmarks"))
    args = parser.parse_args(argv)

    tier = TIERS[args.tier]
    dataset, faces = load_evaluation_data("ferplus", locate_data_dir(args.data_dir), "val", (48, 48, 1))
    images, truth, _, _ = map_to_model_labels(faces, dataset.labels, dataset.labels)
    # Model inputs made once: every mix sees the same views.
    views = {"clean": images} | {shift: apply_shift(shift, images, 0) for shift in SHIFTS}
    inputs = {view: to_model_input(faces_of_view, (48, 48), 1) for view, faces_of_view in views.items()}
    probabilities = {name: member_probabilities(member, inputs, tier.flip) for name, member in tier.members.items()}
    rows = []
    for mixes in itertools.product(*(member.mixes for member in tier.members.values())):
        row = {}
        for (name, member), mix in zip(tier.members.items(), mixes):
            prefix = f"{name} " if len(tier.members) > 1 else ""
            row |= {prefix + source: round(share, 2) for source, share in zip(member.sources, mix)}
        for view in inputs:
            averaged = np.mean([probabilities[name][mix][view] for name, mix in zip(tier.members, mixes)], axis=0)
            row[f"{view} %"] = round(100 * float((averaged.argmax(1) == truth).mean()), 2)
        rows.append(row)
    header = (
        f"Float accuracy on FERPlus PublicTest (validation, {len(truth)} faces, majority labels) of {tier.description}, "
        f"clean and under six shifts of fer_keras/shifts.py (seed 0). Command: python experiments/benchmarks/weight_interpolation.py"
        + ("" if args.tier == "fast" else f" --tier {args.tier}")
        + (f" --data-dir {args.data_dir}" if args.data_dir else "")
    )
    write_results(args.out, "weight_interpolation" + ("" if args.tier == "fast" else f"_{args.tier}"), rows, header)


if __name__ == "__main__":
    raise SystemExit(main())
