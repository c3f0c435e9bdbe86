"""Fashion-MNIST (the Random Erasing paper's third dataset) and SVHN (the Cutout paper's), from
their published files, fetched with torchvision when asked.

    fashion_mnist  <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
                   60,000 / 10,000 grey 28x28 images (N, 1, 28, 28), 10 classes
    svhn           <root>/train_32x32.mat, <root>/test_32x32.mat
                   73,257 / 26,032 colour 32x32 images (N, 3, 32, 32), digits 0-9

These are torchvision's own layouts (`torchvision.datasets.FashionMNIST(root)` and
`SVHN(root)` find the same files), and a download goes through torchvision's `download_url`
with its published md5 sums. Reading does not use torchvision's dataset classes: FashionMNIST
reads only extracted files (its download writes them beside the .gz), and SVHN checks every
file's md5 on each construction, which no file but the published one passes. Fashion-MNIST's
idx files are read with numpy (a 4-byte magic, the big-endian sizes, then uint8 pixels), SVHN's
.mat files with `scipy.io.loadmat`, as torchvision does (scipy is the optional extra
`erasebench[svhn]`); SVHN's label 10 is the digit 0, mapped to 0 as torchvision maps it.

A missing file is one line naming the folder and the files to put there; a damaged file is one
`DamagedFileError` line naming it; with download=True it is moved aside (`<name>.corrupt`) and
fetched again, once.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from benchmark.data.cache import cached, file_identity
from benchmark.data.dataset import download, fetch_hint, refetch_hint
from benchmark.fileio import DamagedFileError, describe, move_aside, warn

_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_SVHN_FILES = {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)}

# name: (folder under root, {split: files}, (train images, test images, classes))
PAPER_SETS = {
    "fashion_mnist": ("FashionMNIST/raw", _FASHION_FILES, (60_000, 10_000, 10)),
    "svhn": ("", _SVHN_FILES, (73_257, 26_032, 10)),
}
# torchvision.datasets.FashionMNIST.classes, written out so listing them needs no torchvision
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
_HINT = "place a good copy there"  # load_paper_set adds how to fetch one (refetch_hint)


def folder(name: str, data_dir: Path) -> Path:
    """Where `name`'s files live under `data_dir`."""
    sub = PAPER_SETS[name][0]
    return data_dir / sub if sub else data_dir


def _published(name: str) -> list[str]:
    """The file names as published (Fashion-MNIST's are gzipped)."""
    files = [f for split in ("train", "test") for f in PAPER_SETS[name][1][split]]
    return [f + ".gz" for f in files] if name == "fashion_mnist" else files


def _find(name: str, data_dir: Path, stem: str) -> Path | None:
    """The file `stem` of `name` (for Fashion-MNIST the extracted file, else its .gz), or None."""
    where = folder(name, data_dir)
    candidates = [where / stem] + ([where / (stem + ".gz")] if name == "fashion_mnist" else [])
    # a file first; a folder of that name is found too, and refused by name when read
    return next((p for p in candidates if p.is_file()),
                next((p for p in candidates if p.exists()), None))


def missing(name: str, data_dir: Path, split: str | None = None) -> list[str]:
    """The published names of the files of `split` (both splits if None) that are absent."""
    splits = ("train", "test") if split is None else (split,)
    stems = [f for s in splits for f in PAPER_SETS[name][1][s]]
    gz = ".gz" if name == "fashion_mnist" else ""
    return [f + gz for f in stems if _find(name, data_dir, f) is None]


def absent_error(name: str, data_dir: Path, absent: list[str]) -> FileNotFoundError:
    """The one-line error for missing files: which files to put in which folder."""
    where = folder(name, data_dir)
    files = ", ".join(_published(name)) + (" (or extracted, without .gz)"
                                           if name == "fashion_mnist" else "")
    if sorted(absent) == sorted(_published(name)):
        return FileNotFoundError(f"{name}: not found in {where}/; put the published files {files} "
                                 f"there, or {fetch_hint(name, data_dir)}")
    it = "it" if len(absent) == 1 else "them"
    return FileNotFoundError(f"{name}: {', '.join(absent)} not found in {where}/; put {it} there "
                             f"(the published files: {files}), or {fetch_hint(name, data_dir, it)}")


def load_paper_set(name: str, split: str, data_dir: Path, download: bool,
                   use_cache: bool):
    """Read one split of fashion_mnist or svhn (through the cache) as a `Dataset`: uint8 images
    (N, 1, 28, 28) or (N, 3, 32, 32) and int64 labels 0..9. Missing files: FileNotFoundError
    (one line), or fetched with `download`. A damaged file: DamagedFileError (one line), or with
    `download` moved aside and fetched again, once."""
    fetched = False
    while True:
        absent = missing(name, data_dir, split)
        if absent:
            if not download:
                raise absent_error(name, data_dir, absent)
            _fetch(name, data_dir, split)
            fetched = True
        paths = [_find(name, data_dir, f) for f in PAPER_SETS[name][1][split]]
        key = {"name": name, "split": split, "source": [file_identity(p) for p in paths]}
        try:
            ds = cached(data_dir, name, split, key, use_cache,
                        lambda paths=paths: _read(name, paths))
            ds.image_file, ds.label_file = str(paths[0]), str(paths[-1])
            return ds
        except DamagedFileError as e:
            if not download or fetched:
                raise DamagedFileError(e.path, e.reason, refetch_hint(name, data_dir)) from e
            moved = move_aside(e.path)
            warn(f"{e.path}: {e.reason}; moved to {moved.name}; downloading it again")


def _fetch(name: str, data_dir: Path, split: str) -> None:
    """Download the split's missing files with torchvision (md5-checked), as published; a
    failure is one DataUnavailableError line saying where to place the files by hand."""
    from torchvision.datasets import SVHN, FashionMNIST

    if name == "fashion_mnist":
        md5 = dict(FashionMNIST.resources)
        urls = {f: (FashionMNIST.mirrors[0] + f, md5[f]) for f in missing(name, data_dir, split)}
    else:
        url, filename, checksum = SVHN.split_list[split]
        urls = {filename: (url, checksum)} if missing(name, data_dir, split) else {}
    where = folder(name, data_dir)
    download(name, [(url, where / f, checksum) for f, (url, checksum) in urls.items()],
             f"place the published files {', '.join(_published(name))} in {where}/ by hand")


def _read(name: str, paths: list[Path]):
    for path in paths:
        if path.is_dir():
            raise DamagedFileError(path, "is a folder, expected a file", _HINT)
    if name == "fashion_mnist":
        images = _read_idx(paths[0], 3)
        if images.shape[1:] != (28, 28):
            raise DamagedFileError(paths[0], f"images of {images.shape[1]}x{images.shape[2]} "
                                   "pixels in its header; Fashion-MNIST's are 28x28", _HINT)
        labels = _read_idx(paths[1], 1)
        if len(images) != len(labels):
            raise DamagedFileError(paths[1], f"{len(labels)} labels for the {len(images)} images "
                                   f"of {paths[0].name}", _HINT)
        return (torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)), list(FASHION_CLASSES), None)
    return _read_svhn(paths[0])


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx-ubyte file (LeCun's MNIST format, gzipped or not) as a uint8 array of `ndim`
    dimensions; anything else is a DamagedFileError naming the file."""
    try:
        raw = path.read_bytes()
        empty = not raw
        raw = gzip.decompress(raw) if path.suffix == ".gz" and raw else raw
    except (MemoryError, PermissionError):
        raise
    except Exception as e:  # noqa: BLE001 - gzip raises several types
        raise DamagedFileError(path, f"damaged or truncated gzip file ({describe(e)})",
                               _HINT) from e
    if empty or not raw:
        raise DamagedFileError(path, "empty file" + ("" if empty else " (inside the gzip)"),
                               _HINT)
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise DamagedFileError(path, f"not an idx{ndim}-ubyte file (starts {raw[:4].hex()}, "
                               f"expected 000008{ndim:02x})", _HINT)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    extra = len(raw) - header - math.prod(dims)
    if extra > 0:
        raise DamagedFileError(path, f"{extra} bytes more than the header's sizes {dims} "
                               "(too long)", _HINT)
    if extra < 0:
        raise DamagedFileError(path, f"{-extra} bytes fewer than the header's sizes {dims} "
                               "(truncated)", _HINT)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_svhn(path: Path):
    """SVHN's .mat: 'X' uint8 (32, 32, 3, N), 'y' N integer labels 1..10 (10 = the digit 0)."""
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError(f"svhn: reading {path} needs scipy; pip install scipy (or "
                          "pip install 'erasebench[svhn]')") from e
    try:
        mat = loadmat(str(path), variable_names=("X", "y"))
        x, y_raw = np.asarray(mat["X"]), np.asarray(mat["y"])
        n = x.shape[-1] if x.ndim else 0
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or \
                y_raw.shape not in ((n,), (n, 1), (1, n)):
            raise ValueError(f"'X' is {x.dtype} {x.shape}, 'y' {y_raw.shape}; expected uint8 "
                             "(H, W, 3, N) and N labels")
    except (MemoryError, PermissionError):
        raise
    except Exception as e:  # noqa: BLE001 - scipy raises many types for a damaged .mat
        raise DamagedFileError(path, f"damaged svhn file ({describe(e)})", _HINT) from e
    if x.shape[:2] != (32, 32):
        raise DamagedFileError(path, f"'X' holds {x.shape[0]}x{x.shape[1]} images; SVHN's are "
                               "32x32x3 ('X' of shape (32, 32, 3, N))", _HINT)
    y = y_raw.reshape(-1)
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(y == np.round(y))):
        bad = y[np.flatnonzero(y != np.round(y))[0]] if y.dtype.kind == "f" else y.dtype
        raise DamagedFileError(path, f"'y' holds non-integer labels (e.g. {bad}); SVHN's are "
                               "integers 1..10 (10 means the digit 0)", _HINT)
    outside = (y < 1) | (y > 10)
    if outside.any():
        raise DamagedFileError(path, f"'y' holds label {y[outside][0]:g} ({int(outside.sum())} "
                               f"of {len(y)}); SVHN's labels are 1..10 (10 means the digit 0; "
                               "0 is not a label in the published files)", _HINT)
    labels = y.astype(np.int64)
    labels[labels == 10] = 0  # SVHN writes the digit 0 as 10 (torchvision maps it the same way)
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return (torch.from_numpy(images), torch.from_numpy(labels), [str(d) for d in range(10)],
            None)


def header_sizes(name: str, data_dir: Path) -> tuple[int, int] | None:
    """(train images, test images) of the local files of fashion_mnist or svhn, read from their
    headers only, without loading the images: an idx file's first 16 bytes (through gzip for a
    .gz, which decompresses only those), a .mat file's table of variables
    (`scipy.io.whosmat`). None when a file is absent, or its header unreadable (a damaged file,
    no scipy for svhn): the caller then plans with the published sizes and says so."""
    if missing(name, data_dir):
        return None
    counts = []
    try:
        for split in ("train", "test"):
            path = _find(name, data_dir, PAPER_SETS[name][1][split][0])
            if name == "fashion_mnist":
                opener = gzip.open if path.suffix == ".gz" else open
                with opener(path, "rb") as f:
                    head = f.read(16)
                if len(head) < 16 or head[:4] != bytes([0, 0, 0x08, 3]):
                    return None
                counts.append(struct.unpack(">I", head[4:8])[0])
            else:
                from scipy.io import whosmat

                shapes = {v[0]: v[1] for v in whosmat(str(path))}
                x = shapes.get("X")
                if x is None or len(x) != 4:
                    return None
                counts.append(int(x[3]))
    except (ImportError, OSError, ValueError, EOFError, TypeError):
        return None
    return counts[0], counts[1]
