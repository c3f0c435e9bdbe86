"""Datasets -> uint8 image tensors (N,3,H,W) + labels (+ boxes), with a processed cache.

Sources: CIFAR-10/100 python-pickle archives (read with numpy: `data/cifar.py`), Fashion-MNIST's
idx files and SVHN's .mat files (`data/papers.py`), Hugging Face
datasets (`hf:<id>[:<config>]`, offline from the HF cache or local files: `data/hf.py`), and
the embedded `synthetic` set (`data/synthetic.py`); the processed cache is `data/cache.py`, the
checks `data/checks.py`. The training-time loader lives in `benchmark.data.augment`.

The processed cache is keyed by everything the data are read from: a CIFAR archive's or
folder's files, and for hf: datasets every local source (`data_files`, every file under
`data_dir`, a local dataset folder) by name, size and modification time, so adding or editing an
image rebuilds it. `identity` names the data a run trained on (sizes and a sha256 of the
arrays): records store it. `check_splits` refuses labels a classifier cannot learn from.

A damaged file never blocks a suite for long: a damaged cache file is deleted and rebuilt with a
warning; a damaged CIFAR archive or folder is one error line naming it, and with download=True it
is moved aside (`<name>.corrupt`) and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from benchmark.data import synthetic
from benchmark.data.cache import CACHE_VERSION, cached, file_identity_all, jsonable
from benchmark.data.checks import check, check_splits
from benchmark.data.cifar import CIFAR, CifarUnpickler, load_cifar
from benchmark.data.dataset import (
    SPLITS,
    Dataset,
    DataUnavailableError,
    channel_stats,
    default_data_dir,
)
from benchmark.data.hf import local_identity, read_hf
from benchmark.data.papers import PAPER_SETS, header_sizes, load_paper_set

__all__ = ["Dataset", "load", "load_checked", "default_data_dir", "channel_stats",
           "CACHE_VERSION", "DataUnavailableError", "check", "check_splits", "digest", "identity",
           "known_sizes", "CifarUnpickler", "FILE_DATASETS", "known_shape", "local_sizes"]

# The named datasets read from their published files under the data root (`--download` fetches).
FILE_DATASETS = (*CIFAR, *PAPER_SETS)


def load(name: str, split: str, root: str | os.PathLike | None = None, *,
         download: bool = False, **options) -> Dataset:
    """Load `split` ("train" / "test") of `name`: cifar10, cifar100, fashion_mnist, svhn,
    synthetic, hf:<id>[:<config>].

    Options: synthetic: n_train, n_test, seed, size. hf: image_column, label_column,
    split_names (e.g. {"test": "validation"}), anything else goes to datasets.load_dataset
    (data_files, cache_dir, revision, ...). All but synthetic: cache=True (processed cache in
    <root>/cache/). `root` is where our datasets live (default $ERASEBENCH_DATA or ./data); an
    option named data_dir is Hugging Face's own and goes to load_dataset.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: allowed {', '.join(SPLITS)}")
    data_dir = Path(root) if root is not None else default_data_dir()
    use_cache = options.pop("cache", True)
    if name == "synthetic":  # generated in about a second: not cached
        return synthetic.load(split, **options)
    if name in CIFAR:
        check(name, data_dir, download=True, **options)  # the options; presence: _load_cifar
        return load_cifar(name, split, data_dir, download, use_cache)
    if name in PAPER_SETS:
        check(name, data_dir, download=True, **options)  # the options; presence: load_paper_set
        return load_paper_set(name, split, data_dir, download, use_cache)
    check(name, root, **options)
    key = {"name": name, "split": split, "options": jsonable(options),
           "files": file_identity_all(options.get("data_files")),
           "local": local_identity(name, options)}
    return cached(data_dir, name, split, key, use_cache, lambda: read_hf(name, split, options))


def load_checked(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
                 **options) -> tuple[Dataset, Dataset]:
    """Both splits of `name` (as `load`), checked with `check_splits`; their `identity` is
    remembered for this process. What the runner does before any training."""
    train = load(name, "train", root, download=download, **options)
    test = load(name, "test", root, download=download, **options)
    check_splits(name, train, test)
    _IDENTITY[_identity_key(name, root, options)] = {
        "train": {"images": len(train), "sha256": digest(train)},
        "test": {"images": len(test), "sha256": digest(test)}}
    return train, test


_IDENTITY: dict = {}


def _identity_key(name, root, options) -> str:
    opts = {k: v for k, v in options.items() if k != "cache"}
    return json.dumps([name, str(root), jsonable(opts)], sort_keys=True)


def identity(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
             load: bool = True, **options) -> dict | None:
    """What identifies the data a run trains on: {"train": {"images": N, "sha256": 16 hex
    digits}, "test": {...}}, the hash over the image, label (and box) arrays. Two records with
    different identities were trained or tested on different data, wherever the files lived.
    Computed once per process (by `load_checked`, which this calls if needed; with
    load=False, None when it has not been computed yet)."""
    key = _identity_key(name, root, options)
    if key not in _IDENTITY:
        if not load:
            return None
        load_checked(name, root, download=download, **options)
    return _IDENTITY[key]


def digest(ds: Dataset) -> str:
    """sha256 (16 hex digits) of a split's arrays: images, labels and boxes, with their shapes."""
    h = hashlib.sha256()
    for t in (ds.images, ds.labels, ds.boxes):
        if t is None:
            continue
        a = np.ascontiguousarray(t.numpy())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]



def known_shape(name: str, **options) -> tuple[int, int] | None:
    """(channels, image side in pixels) of a dataset known without reading it: CIFAR-10/100 and
    SVHN (3, 32), Fashion-MNIST (1, 28), synthetic (3, its `size` option); else None."""
    if name in CIFAR or name == "svhn":
        return 3, 32
    if name == "fashion_mnist":
        return 1, 28
    if name == "synthetic":
        size = options.get("size", synthetic.OPTIONS["size"])
        return (3, size) if isinstance(size, int) and not isinstance(size, bool) else None
    return None


def known_sizes(name: str, **options) -> tuple[int, int, int, bool] | None:
    """(train images, test images, classes, has boxes) of a dataset known without reading it
    (CIFAR's, Fashion-MNIST's and SVHN's published sizes; the synthetic set's from its
    options), else None."""
    if name in CIFAR:
        return 50_000, 10_000, 10 if name == "cifar10" else 100, False
    if name in PAPER_SETS:
        return (*PAPER_SETS[name][2], False)
    if name == "synthetic":
        options = {k: v for k, v in options.items() if k != "cache"}
        synthetic.check_options(options)
        opts = {**synthetic.OPTIONS, **options}
        return opts["n_train"], opts["n_test"], len(synthetic.CLASSES), True
    return None


def local_sizes(name: str, root: str | os.PathLike | None = None, **options
                ) -> tuple[int | None, int | None, str]:
    """(train images, test images, where from) of the local files of a named dataset, without
    loading its images where a header tells: any dataset this process has loaded already (the
    runner's data check: `identity`) from those arrays; Fashion-MNIST's and SVHN's from their
    headers (`papers.header_sizes`). (None, None, why not) otherwise: files absent, a header
    unreadable, a CIFAR archive not loaded (its pickled batches have no header to count from):
    then plan with `known_sizes`."""
    from benchmark.data.cifar import cifar_source
    from benchmark.data.papers import missing

    loaded = identity(name, root, load=False, **options)
    if loaded is not None:
        return loaded["train"]["images"], loaded["test"]["images"], "the local files, as loaded"
    data_dir = Path(root) if root is not None else default_data_dir()
    if name in PAPER_SETS:
        if missing(name, data_dir):
            return None, None, f"its files are not in {data_dir}"
        sizes = header_sizes(name, data_dir)
        if sizes is not None:
            return (*sizes, f"the headers of its files in {data_dir}")
        return None, None, f"a header of its files in {data_dir} is unreadable"
    if name in CIFAR:
        if cifar_source(name, data_dir) is None:
            return None, None, f"its files are not in {data_dir}"
        return None, None, (f"its files in {data_dir} have no header to count from without "
                            "unpickling them")
    return None, None, "no local files"
