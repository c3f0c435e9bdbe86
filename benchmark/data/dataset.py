"""One split of a dataset as uint8 tensors (`Dataset`), where datasets live, their channel
statistics, and the error for data that cannot be fetched (`DataUnavailableError`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

SPLITS = ("train", "test")


class DataUnavailableError(RuntimeError):
    """The data could not be fetched or opened (no network, a dataset id that does not resolve):
    a failure of the environment, one line, never a result of a run."""


@dataclass
class Dataset:
    """One split: uint8 images (N,3,H,W) and int64 labels on the CPU, class names, optional
    boxes (N,4) float pixels (x1, y1, x2, y2) with x2/y2 exclusive, per-channel mean/std in
    [0,1]."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    boxes: torch.Tensor | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label_column: str = "label"  # where the labels came from, for error messages
    # The files the split was read from, for error messages (set on loading, not cached): its
    # images' and its labels' (the same file for CIFAR's archive or folder and SVHN's .mat;
    # Fashion-MNIST's two idx files); "" where there is no file (synthetic, Hugging Face).
    image_file: str = ""
    label_file: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def default_data_dir() -> Path:
    """$ERASEBENCH_DATA, else ./data."""
    return Path(os.environ.get("ERASEBENCH_DATA") or "data")


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 images (N,C,H,W), in [0,1] units (float64 sums)."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += x.sum(dim=1)
        squares += (x * x).sum(dim=1)
    count = images.numel() // c
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())

def fetch_hint(name: str, data_dir: Path, it: str = "them") -> str:
    """How to fetch `name`'s published files into `data_dir`, whichever command failed: the
    `erasebench data download` command (`data check` and `evaluate` have no --download), `run`'s
    --download, and `download=True` in Python."""
    return (f"fetch {it} with `erasebench data download {name} --data-root {data_dir}` (or "
            "`erasebench run ... --download`; download=True in Python)")


def refetch_hint(name: str, data_dir: Path) -> str:
    """What to do with a damaged file of `name` under `data_dir` (a `DamagedFileError`'s hint)."""
    return (f"delete it and fetch it again with `erasebench data download {name} --data-root "
            f"{data_dir}` (`erasebench run ... --download` replaces it itself), or place a good "
            "copy there")


def download(name: str, files: list[tuple[str, Path, str | None]], by_hand: str) -> None:
    """Fetch `files` [(url, path, md5)] with torchvision's `download_url` (md5-checked). A failure
    (no network, a wrong md5) is one DataUnavailableError line naming the URL, the file and
    `by_hand` (where to place the published files without network); the folders this call
    created and that stayed empty are removed."""
    from torchvision.datasets import utils

    from benchmark.fileio import describe

    for url, path, md5 in files:
        created = []
        for parent in (path.parent, *path.parent.parents):
            if parent.exists():
                break
            created.append(parent)
        try:
            utils.download_url(url, str(path.parent), path.name, md5)
        except Exception as e:  # noqa: BLE001 - network and md5 errors name neither file nor url
            for folder in created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:  # not empty (a partial file kept for a look) or already gone
                    break
            raise DataUnavailableError(f"{name}: downloading {url} to {path} failed "
                                       f"({describe(e)}); without the network, {by_hand}") from None
