"""Checks before any training: `check` gives the one-line error `load` would (an unknown name or
option, a missing local dataset) without reading data; `check_splits` refuses labels a
classifier cannot learn from."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmark.data import synthetic
from benchmark.data.cifar import CIFAR, cifar_source
from benchmark.data.dataset import Dataset, default_data_dir, fetch_hint
from benchmark.data.hf import check_hf
from benchmark.data.papers import PAPER_SETS, absent_error, missing


def _file(path: str) -> str:
    """", file PATH" for a split read from a file; "" otherwise (synthetic, Hugging Face)."""
    return f", file {path}" if path else ""


def _in(path: str) -> str:
    return f" (in {path})" if path else ""


def check_splits(name: str, train: Dataset, test: Dataset) -> None:
    """Raise a one-line ValueError naming the split and the label column when a classifier could
    not learn from (or be tested on) the data: an empty split, a label outside
    0..num_classes-1 (the training split's classes), one class only in a split, train and test
    images of different (C, H, W), or a channel constant over the training split (std 0: its
    normalisation would divide by 0 and train on NaN)."""
    c = len(train.classes)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"dataset {name!r}: the train images{_in(train.image_file)} are "
                         f"{tuple(train.images.shape[1:])} (C, H, W) but the test images"
                         f"{_in(test.image_file)} {tuple(test.images.shape[1:])}; both "
                         "splits must have the same channels and side")
    flat = [i for i, s in enumerate(train.std) if not s > 0]
    if flat and len(train):
        raise ValueError(f"dataset {name!r}: split 'train'{_file(train.image_file)}, channel "
                         f"{flat[0]}: every pixel is "
                         f"{round(train.mean[flat[0]] * 255)} (standard deviation 0), so "
                         "normalising by the training split's statistics divides by 0; "
                         "constant images cannot be trained on")
    for split, ds in (("train", train), ("test", test)):
        where = (f"dataset {name!r}: split {split!r}{_file(ds.label_file)}, column "
                 f"{ds.label_column!r}")
        if len(ds) == 0:
            raise ValueError(f"{where}: the split is empty")
        lo, hi = int(ds.labels.min()), int(ds.labels.max())
        if lo < 0 or hi >= c:
            outside = (ds.labels < 0) | (ds.labels >= c)
            raise ValueError(f"{where}: label {lo if lo < 0 else hi} ({int(outside.sum())} of "
                             f"{len(ds)} images) is outside 0..{c - 1}, the {c} classes of the "
                             "training split")
        if len(ds) > 1 and lo == hi:
            raise ValueError(f"{where}: all {len(ds)} labels are {lo}; a classifier needs at "
                             "least 2 classes to learn from and to be tested on")
        if split == "train" and name != "synthetic":  # the generator's 10 classes are fixed
            present = int(torch.unique(ds.labels).numel())
            if c > 2 * present:  # e.g. labels 0, 1, 2 and one 1000000: a 1000001-class head
                missing = next(i for i in range(c) if not bool((ds.labels == i).any()))
                raise ValueError(
                    f"{where}: labels are {present} distinct ids spread over 0..{c - 1} (largest "
                    f"{hi}); {c - present} of the {c} classes have no training image (e.g. "
                    f"{missing}), so the head and chance level would be wrong; number the "
                    f"classes 0..{present - 1} (datasets' class_encode_column)")


def check(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
          **options) -> None:
    """Raise the one-line error `load` would for an unknown name, unknown options or a missing
    local dataset, without reading any data (the runner checks this before any training)."""
    data_dir = Path(root) if root is not None else default_data_dir()
    options.pop("cache", None)
    if name == "synthetic":
        synthetic.check_options(options)
    elif name in CIFAR:
        if options:
            raise ValueError(f"dataset {name!r}: unknown options {sorted(options)}; allowed: cache")
        if cifar_source(name, data_dir) is None and not download:
            archive, folder = CIFAR[name][:2]
            raise FileNotFoundError(f"{name}: not found in {data_dir}/; put {archive} (or its "
                                    f"extracted folder {folder}/) there, or "
                                    f"{fetch_hint(name, data_dir, 'it')}")
    elif name in PAPER_SETS:
        if options:
            raise ValueError(f"dataset {name!r}: unknown options {sorted(options)}; allowed: cache")
        absent = missing(name, data_dir)
        if absent and not download:
            raise absent_error(name, data_dir, absent)
    elif name.startswith("hf:"):
        check_hf(name, root, options)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: synthetic, cifar10, cifar100, "
                         "fashion_mnist, svhn, hf:<dataset id>[:<config>]")
