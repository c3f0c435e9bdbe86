"""Other papers' published numbers for a model and data a leaderboard also has, with their source,
so a leaderboard prints them beside ours (`—` where no paper reports that cell).

A leaf: the standard library only (no torch, nothing from benchmark/). The thesis's own numbers
live in `thesis.py`; these are the erasing papers the thesis builds on. Every number below was
checked against the source named in its row; a number that could not be checked is not here
(the papers' standard deviations, e.g., are not: the authors' READMEs give means only).

A row applies to a leaderboard cell only when the data, the model's architecture and the method
all match (`lookup`):
- the model is OUR model whose architecture the paper's own code builds: the Random Erasing
  code's ResNet-N is `resnetN_re` (option-B shortcuts, bottleneck blocks from depth 44), not the
  thesis's He et al. `resnetN` (option A); the Cutout code's ResNet18 (kuangliu's CIFAR
  ResNet-18: 3x3 stem, no max-pool, 11,173,962 parameters for 10 classes) is `timm/resnet18`
  with its CIFAR stem;
- the method is plain (the paper's baseline) or the paper's eraser erasing in place (mode
  replace) with the paper's settings wherever the record names them (`SETTINGS`).
The training recipe is not matched but named (`Recipe`), so a leaderboard can say where ours
differs (epochs above all).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NOTES", "Published", "RECIPES", "ROWS", "Recipe", "SETTINGS", "SOURCES", "lookup"]


@dataclass(frozen=True)
class Recipe:
    """How a paper trained: what a leaderboard compares with ours."""

    epochs: int
    text: str  # the rest of the recipe, one short line
    runs: int | None  # how many runs the published number is the mean of (None: not stated)
    selection: str = ""  # which epoch's error the paper's code reports, where it is not the last


@dataclass(frozen=True)
class Published:
    """One published top-1 test error (%), for our dataset, model and method names."""

    dataset: str       # benchmark.data name: cifar10, cifar100, fashion_mnist, svhn
    model: str         # benchmark.models name of the architecture the paper's code builds
    eraser: str | None  # plugins name; None: the paper's baseline without erasing
    error: float       # top-1 test error in percent (a mean over the paper's runs)
    source: str        # key of SOURCES
    settings: tuple = ()  # (key, value) pairs of the eraser's settings in this row


# source key: (short name for a table cell, the full citation with where the numbers were read)
SOURCES = {
    "zhong2017": ("Zhong et al. 2017",
                  "Zhong et al. 2017, Random Erasing Data Augmentation (arXiv:1708.04896, AAAI "
                  "2020): the test errors its authors list as the paper's in "
                  "github.com/zhunzhong07/Random-Erasing (README, the table after \"You can "
                  "reproduce the results in our paper:\")"),
    "devries2017": ("DeVries & Taylor 2017",
                    "DeVries & Taylor 2017, Improved Regularization of Convolutional Neural "
                    "Networks with Cutout (arXiv:1708.04552): the test errors its authors list "
                    "in github.com/uoguelph-mlrg/Cutout (README, \"ResNet18\")"),
}

RECIPES = {
    # zhunzhong07/Random-Erasing cifar.py / fashionmnist.py defaults and README commands
    "zhong2017": Recipe(300, "SGD lr 0.1 (x0.1 at epochs 150, 225), momentum 0.9, weight decay "
                             "5e-4, batch 128, crop (pad 4) and flip", None,
                        "its code prints the best test accuracy over the epochs (cifar.py and "
                        "fashionmnist.py: best_acc), and the README does not say whether the "
                        "paper's table is that or the last epoch's: see also the best-epoch "
                        "table"),
    # uoguelph-mlrg/Cutout train.py defaults and README commands ("mean of 5 runs"); the code
    # logs the test accuracy of every epoch and reports no best
    "devries2017": Recipe(200, "SGD lr 0.1 nesterov (x0.2 at epochs 60, 120, 160), momentum 0.9, "
                               "weight decay 5e-4, batch 128, crop (pad 4) and flip", 5),
}

# The papers' eraser settings in the plugins' argument names (random_erasing: the code's
# defaults with --p 0.5; cutout: one hole, always, the README's --length per dataset).
SETTINGS = {
    ("zhong2017", "random_erasing"): {"p": 0.5, "sl": 0.02, "sh": 0.4, "r1": 0.3, "min_count": 1,
                                     "max_count": 1},
    ("devries2017", "cutout", "cifar10"): {"size": 16, "holes": 1, "p": 1.0},
    ("devries2017", "cutout", "cifar100"): {"size": 8, "holes": 1, "p": 1.0},
}

# Random Erasing README, the table after "You can reproduce the results in our paper:":
# (baseline, +RE) per model and dataset; every ResNet depth is a model here (resnetN_re).
_ZHONG = {
    20: {"cifar10": (7.21, 6.73), "cifar100": (30.84, 29.97), "fashion_mnist": (4.39, 4.02)},
    32: {"cifar10": (6.41, 5.66), "cifar100": (28.50, 27.18), "fashion_mnist": (4.16, 3.80)},
    44: {"cifar10": (5.53, 5.13), "cifar100": (25.27, 24.29), "fashion_mnist": (4.41, 4.01)},
    56: {"cifar10": (5.31, 4.89), "cifar100": (24.82, 23.69), "fashion_mnist": (4.39, 4.13)},
    110: {"cifar10": (5.10, 4.61), "cifar100": (23.73, 22.10), "fashion_mnist": (4.40, 4.01)},
}
# Cutout README, "ResNet18": (baseline, + cutout) per dataset. Its WideResNet numbers (CIFAR,
# and SVHN with WRN-16-8) have no model here, so SVHN has no published cell.
_DEVRIES = {"cifar10": (4.72, 3.99), "cifar100": (22.46, 21.96)}


def _rows() -> tuple[Published, ...]:
    rows = []
    for depth, by_data in _ZHONG.items():
        for dataset, (base, erased) in by_data.items():
            model = f"resnet{depth}_re"
            rows.append(Published(dataset, model, None, base, "zhong2017"))
            rows.append(Published(dataset, model, "random_erasing", erased, "zhong2017",
                                  tuple(SETTINGS[("zhong2017", "random_erasing")].items())))
    for dataset, (base, erased) in _DEVRIES.items():
        rows.append(Published(dataset, "timm/resnet18", None, base, "devries2017"))
        rows.append(Published(dataset, "timm/resnet18", "cutout", erased, "devries2017",
                              tuple(SETTINGS[("devries2017", "cutout", dataset)].items())))
    return tuple(rows)


ROWS = _rows()

# Notes a leaderboard prints under the table when a row of that source and dataset is shown.
NOTES = {
    ("zhong2017", "fashion_mnist"): (
        "The Random Erasing authors note that on the latest release of Fashion-MNIST both the "
        "baseline and Random Erasing do slightly worse than their published numbers "
        "(zhunzhong07/Random-Erasing issue 9); their code also normalises with MNIST's mean "
        "and std (0.1307, 0.3081), ours with the training split's."),
}


def lookup(dataset: str, model: str, eraser: str | None, eraser_params: dict,
           mode: str | None = None) -> Published | None:
    """The published row for this cell, or None: same dataset, model and eraser; an eraser
    erasing in place (mode None or "replace"); no setting in `eraser_params` that contradicts
    the paper's. Plain (eraser None) matches the paper's baseline."""
    if eraser is not None and mode not in (None, "replace"):
        return None
    for row in ROWS:
        if (row.dataset, row.model, row.eraser) != (dataset, model, eraser):
            continue
        if all(eraser_params[k] == v for k, v in row.settings if k in eraser_params):
            return row
    return None
