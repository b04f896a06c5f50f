"""Would a third VGG on the face pay in release 0.9.0's accurate-tier layout? Float FERPlus validation from layout_probe.py's cache.

    python experiments/runs/20261130-201648-ferplus_vgg_ema_robust_p10_cpu/third_vgg_probe.py /tmp/probe_cache

Run layout_probe.py first (the command is in this run's config, experiments/configs/ferplus_vgg_ema_robust_p10_cpu.yaml,
and in ../ferplus_accurate_robust_wd_candidate/README.md) with every network below, so the cache holds their probabilities.
The layout: 0.9.0's ResNet-SE on the face and its mirror at a share of 0.5, 0.4 or 0.25, three VGGs on the face sharing the rest;
a third VGG adds about 117 million multiply-adds per face to 0.9.0's 858 million.
"""

import itertools
import sys
from pathlib import Path

import numpy as np

RESNET = "20261130-173019-ferplus_resnet_se_wd_robust_p10_cpu"
VGGS = ["20261129-172031-ferplus_vgg_robust_p10_cpu", "20261130-155233-g_vgg_wd", "20261130-155233-g_vgg_ema",
        "20261130-201648-ferplus_vgg_ema_robust_p10_cpu", "ferplus_vgg_a_soup_robust25"]
SHIPPED = (0.5, ["20261129-172031-ferplus_vgg_robust_p10_cpu", "20261130-155233-g_vgg_wd"])


def main(cache: Path) -> None:
    labels = np.load(cache / "labels.npy")
    views = {name: dict(np.load(cache / f"{name}.npz")) for name in [RESNET, *VGGS]}

    def accuracy(resnet_share: float, vggs) -> float:
        mixed = resnet_share * views[RESNET]["both"] + sum((1 - resnet_share) / len(vggs) * views[v]["original"] for v in vggs)
        return float(np.mean(mixed.argmax(1) == labels))

    print(f"{100 * accuracy(*SHIPPED):.2f}  0.9.0: ResNet-SE 0.5 + {' + '.join(SHIPPED[1])}")
    rows = [(accuracy(share, trio), share, trio) for trio in itertools.combinations(VGGS, 3) for share in (0.5, 0.4, 0.25)]
    for score, share, trio in sorted(rows, reverse=True):
        print(f"{100 * score:.2f}  ResNet-SE {share} + {' + '.join(trio)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
