"""Datasets -> uint8 image tensors (N,3,H,W) + labels (+ boxes), with a processed cache.

Sources: CIFAR-10/100 python-pickle archives (read with numpy), Hugging Face datasets
(`hf:<id>[:<config>]`, offline from the HF cache or local files), and the embedded
`synthetic` set. The training-time loader lives in `benchmark.data.augment`.

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

import gzip
import hashlib
import json
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.fileio import DamagedFileError, atomic_write, describe, move_aside, slug, warn

__all__ = ["Dataset", "load", "default_data_dir", "channel_stats", "CACHE_VERSION",
           "DataUnavailableError", "check_splits", "digest", "identity"]

SPLITS = ("train", "test")
CACHE_VERSION = 1  # bump when the processed format changes: old cache files are then ignored

_CIFAR = {
    # name: (archive, folder, train members, test members, meta member, label key, names key)
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"], "meta",
                 "fine_labels", "fine_label_names"),
}
_CIFAR_HINT = "delete it and rerun with --download, or place a good copy there"
_IMAGE_COLUMNS = ("img", "image", "images", "pixel_values")
_LABEL_COLUMNS = ("label", "labels", "fine_label", "coarse_label")


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


def load(name: str, split: str, root: str | os.PathLike | None = None, *,
         download: bool = False, **options) -> Dataset:
    """Load `split` ("train" / "test") of `name`: cifar10, cifar100, synthetic, hf:<id>[:<config>].

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
        return _load_synthetic(split, **options)
    if name in _CIFAR:
        check(name, data_dir, download=True, **options)  # the options; presence: _load_cifar
        return _load_cifar(name, split, data_dir, download, use_cache)
    check(name, root, **options)
    key = {"name": name, "split": split, "options": _jsonable(options),
           "files": _file_identity_all(options.get("data_files")),
           "local": _local_identity(name, options)}
    return _cached(data_dir, name, split, key, use_cache, lambda: _read_hf(name, split, options))


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
    return json.dumps([name, str(root), _jsonable(opts)], sort_keys=True)


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


def check_splits(name: str, train: Dataset, test: Dataset) -> None:
    """Raise a one-line ValueError naming the split and the label column when a classifier could
    not learn from (or be tested on) the data: an empty split, a label outside
    0..num_classes-1 (the training split's classes), one class only in a split, or (data other
    than synthetic) training labels so sparse that more than half of the classes 0..C-1 have no
    training image (one stray id such as 1000000 would make a head of 1000001 classes)."""
    c = len(train.classes)
    for split, ds in (("train", train), ("test", test)):
        where = f"dataset {name!r}: split {split!r}, column {ds.label_column!r}"
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
    import inspect

    data_dir = Path(root) if root is not None else default_data_dir()
    options.pop("cache", None)
    if name == "synthetic":
        allowed = [p for p in inspect.signature(_load_synthetic).parameters if p not in
                   ("split", "unknown")]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"dataset 'synthetic': unknown options {unknown}; allowed: "
                             f"{', '.join(allowed)}")
        _check_synthetic_options(options)
    elif name in _CIFAR:
        if options:
            raise ValueError(f"dataset {name!r}: unknown options {sorted(options)}; allowed: cache")
        if _cifar_source(name, data_dir) is None and not download:
            archive, folder = _CIFAR[name][:2]
            raise FileNotFoundError(f"{name}: not found in {data_dir}/; put {archive} (or its "
                                    f"extracted folder {folder}/) there, or pass --download")
    elif name.startswith("hf:"):
        parts = name[len("hf:"):].split(":")
        if not parts[0] or len(parts) > 2:
            raise ValueError(f"dataset {name!r}: expected hf:<dataset id>[:<config>]")
        if "trust_remote_code" in options:
            raise ValueError(f"dataset {name!r}: option 'trust_remote_code' is refused: a "
                             "dataset's loading script is code from a download, and erasebench "
                             "never runs it; use a dataset stored as parquet, csv or image files")
        _check_hf_folders(name, parts[0], root, options)
        files = options.get("data_files")
        paths = [files] if isinstance(files, str) else list((files or {}).values()) \
            if isinstance(files, dict) else list(files or [])
        flat = [q for p in paths for q in ([p] if isinstance(p, str) else p)]
        missing = [f for f in flat if "://" not in f and not any(c in f for c in "*?[")
                   and not Path(f).exists()]
        if missing:
            raise FileNotFoundError(f"dataset {name!r}: data_files not found: {', '.join(missing)}")
    else:
        raise ValueError(f"unknown dataset {name!r}; known: synthetic, cifar10, cifar100, "
                         "hf:<dataset id>[:<config>]")


def _packaged(builder: str) -> bool:
    """A Hugging Face packaged builder (imagefolder, parquet, csv, ...): it reads local files."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return builder in _PACKAGED_DATASETS_MODULES


def _check_hf_folders(name: str, builder: str, root, options: dict) -> None:
    """A packaged builder must be told its files (else Hugging Face reads the working directory),
    its data_dir must exist, and erasebench's cache (in `root`) must not be inside it."""
    if not _packaged(builder):
        return
    hint = (f"; --data-dir (data.data_dir) {root} is where erasebench keeps its processed cache, "
            f"not the images: name them with --data-option data_dir={root}"
            if root is not None else "")
    data_dir = options.get("data_dir")
    if not data_dir and not options.get("data_files"):
        raise ValueError(f"dataset {name!r}: Hugging Face's {builder} builder needs the option "
                         "data_dir= (its folder) or data_files=; without them it would read the "
                         f"working directory{hint}")
    if not data_dir:
        return
    folder = Path(data_dir).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {name!r}: data_dir={data_dir!r}: no such folder")
    cache = (Path(root) if root is not None else default_data_dir()).resolve() / "cache"
    if cache == folder or folder in cache.parents:
        raise ValueError(f"dataset {name!r}: erasebench's processed cache {cache} would be "
                         f"written inside data_dir={data_dir!r}; keep --data-dir (data.data_dir) "
                         "outside the image folder, or leave it out")


def _local_identity(name: str, options: dict) -> str | None:
    """sha256 over every local source file of an hf: dataset (relative name, size, mtime): the
    files under `data_dir` and under a dataset id that is a local folder. None if none."""
    builder = name[len("hf:"):].split(":")[0]
    folders = [Path(builder)] if Path(builder).is_dir() else []
    if options.get("data_dir") and Path(options["data_dir"]).is_dir():
        folders.append(Path(options["data_dir"]))
    if not folders:
        return None
    h = hashlib.sha256()
    for folder in folders:
        h.update(str(folder.resolve()).encode() + b"\0")
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for f in sorted(filenames):
                path = Path(dirpath) / f
                try:
                    st = path.stat()
                except OSError:  # a dangling link: Hugging Face cannot read it either
                    continue
                rel = path.relative_to(folder).as_posix()
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --- cache -------------------------------------------------------------------------------------


def _cached(data_dir: Path, name: str, split: str, key: dict, use_cache: bool, read) -> Dataset:
    """Return the processed split from <data_dir>/cache/ or read it and write the cache
    atomically."""
    key = {**key, "version": CACHE_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = data_dir / "cache" / f"{slug(name)}-{split}-{digest}.pt"
    if use_cache and path.is_file():
        ds = _read_cache(path, name)
        if ds is not None:
            return ds
    images, labels, classes, boxes, *column = read()
    mean, std = channel_stats(images)
    ds = Dataset(name, images, labels, classes, boxes, mean, std, *column)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"images": images, "labels": labels, "classes": classes, "mean": list(mean),
                 "std": list(std), "label_column": ds.label_column}
        if boxes is not None:
            state["boxes"] = boxes
        atomic_write(path, lambda f: torch.save(state, f))
    return ds


def _read_cache(path: Path, name: str) -> Dataset | None:
    """The cached split, or None when the file is damaged (unreadable or the wrong structure):
    then it is deleted with a one-line warning, and the caller rebuilds it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"a {type(state).__name__}, not a dict")
        images, labels, boxes = state["images"], state["labels"], state.get("boxes")
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
                and images.dim() == 4):
            raise ValueError("'images' is not a uint8 (N, C, H, W) tensor")
        n, c = images.shape[:2]
        if not (isinstance(labels, torch.Tensor) and labels.shape == (n,)):
            raise ValueError(f"'labels' is not a tensor of {n} labels")
        if boxes is not None and not (isinstance(boxes, torch.Tensor) and boxes.shape == (n, 4)):
            raise ValueError(f"'boxes' is not an ({n}, 4) tensor")
        mean, std = tuple(map(float, state["mean"])), tuple(map(float, state["std"]))
        if len(mean) != c or len(std) != c:
            raise ValueError(f"'mean'/'std' do not have {c} channels")
        return Dataset(name=name, images=images, labels=labels, classes=list(state["classes"]),
                       boxes=boxes, mean=mean, std=std,
                       label_column=str(state.get("label_column", "label")))
    except (MemoryError, PermissionError):  # not the file's content
        raise
    except Exception as e:  # noqa: BLE001 - a damaged zip/pickle raises many types
        reason = describe(e, first_sentence=True)
    path.unlink(missing_ok=True)
    warn(f"{path}: damaged data cache ({reason}); deleted it, rebuilding it")
    return None


def _file_identity(path: Path) -> dict:
    st = path.stat()
    if path.is_dir():  # an extracted folder: identify it by its files
        return {"dir": str(path.resolve()),
                "files": sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                for p in path.iterdir() if p.is_file())}
    return {"file": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}


def _file_identity_all(data_files) -> list:
    if data_files is None:
        return []
    if isinstance(data_files, dict):
        files = [f for v in data_files.values()
                 for f in ([v] if isinstance(v, str | os.PathLike) else v)]
    else:
        files = [data_files] if isinstance(data_files, str | os.PathLike) else list(data_files)
    return [_file_identity(Path(f)) if Path(f).exists() else str(f) for f in files]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj if isinstance(obj, int | float | str | bool | type(None)) else str(obj)


# --- CIFAR -------------------------------------------------------------------------------------


def _load_cifar(name: str, split: str, data_dir: Path, download: bool, use_cache: bool) -> Dataset:
    """Read a CIFAR split (through the cache); with `download`, a damaged archive or folder is
    moved aside and fetched (or read from the archive) again, once."""
    archive = data_dir / _CIFAR[name][0]
    fetched = False
    while True:
        source = _cifar_source(name, data_dir)
        if source is None:
            if not download:
                raise FileNotFoundError(
                    f"{name}: not found in {data_dir}/; put {archive.name} (or its extracted "
                    f"folder {_CIFAR[name][1]}/) there, or pass --download / download=True to "
                    "fetch it")
            source, fetched = _fetch_cifar(name, data_dir), True
        key = {"name": name, "split": split, "source": _file_identity(source)}
        try:
            return _cached(data_dir, name, split, key, use_cache,
                           lambda source=source: _read_cifar(name, source, split))
        except DamagedFileError as e:
            if not download or fetched:
                raise
            then = (f"reading {archive.name} instead" if source.is_dir() and archive.is_file()
                    else "downloading it again")
            moved = move_aside(e.path)
            warn(f"{e.path}: {e.reason}; moved to {moved.name}; {then}")


def _cifar_source(name: str, data_dir: Path) -> Path | None:
    """The extracted folder if present, else the archive, else None."""
    archive, folder = _CIFAR[name][:2]
    for candidate in (data_dir / folder, data_dir / archive):
        if candidate.exists():
            return candidate
    return None


def _fetch_cifar(name: str, data_dir: Path) -> Path:
    """Download the archive with torchvision (md5-checked; not extracted: it is read as is)."""
    import torchvision
    from torchvision.datasets import utils

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    path = data_dir / cls.filename
    try:
        utils.download_url(cls.url, str(data_dir), cls.filename, cls.tgz_md5)
    except Exception as e:  # noqa: BLE001 - network and md5 errors name neither file nor url
        raise DataUnavailableError(f"{name}: downloading {cls.url} to {path} failed "
                                   f"({describe(e)})") from e
    return path


def _read_cifar(name: str, source: Path, split: str):
    """Read the pickled batches of a CIFAR archive or folder with numpy (no per-image objects).
    Anything wrong with the files is one DamagedFileError naming the archive or folder."""
    what = f"{name} folder" if source.is_dir() else f"{name} archive"
    try:
        return _read_cifar_files(name, source, split)
    except (MemoryError, PermissionError):  # not the files' content
        raise
    except _MemberError as e:
        raise DamagedFileError(source, f"damaged {what}: {e}", _CIFAR_HINT) from e
    except Exception as e:  # noqa: BLE001 - gzip, tar and pickle raise many types
        raise DamagedFileError(source, f"damaged or truncated {what} ({describe(e)})",
                               _CIFAR_HINT) from e


class _MemberError(Exception):
    """One file of a CIFAR archive or folder is missing or unreadable (the message names it)."""


def _numpy_globals() -> dict:
    """The only callables a CIFAR batch's pickle names: numpy's array and dtype reconstruction,
    under their NumPy 1 (`numpy.core`, as the published archives were written) and NumPy 2
    (`numpy._core`) module names, and `_codecs.encode` (how Python 3 pickles bytes at
    protocol 2)."""
    import codecs

    core = getattr(np, "_core", None) or np.core
    out = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
           ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core", "numpy._core"):
        out[(f"{mod}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        out[(f"{mod}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return out


class CifarUnpickler(pickle.Unpickler):
    """A pickle reader for CIFAR batches that builds only what they contain: dicts, lists,
    strings, bytes, numbers and numpy arrays. Any other global (a `__reduce__` payload naming
    os.system, eval, ...) raises `pickle.UnpicklingError` naming it, before anything is called:
    an archive is a download and must never run code.

    `CifarUnpickler.loads(blob)` reads a batch as the standard unpickler would with
    encoding="latin1" (the archives were written by Python 2)."""

    _ALLOWED: dict | None = None

    def find_class(self, module: str, name: str):
        allowed = type(self)._ALLOWED
        if allowed is None:
            allowed = type(self)._ALLOWED = _numpy_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR batch holds only "
                                     "dicts, lists, strings, numbers and numpy arrays")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id: a CIFAR batch has none")

    @classmethod
    def loads(cls, blob: bytes):
        import io

        return cls(io.BytesIO(blob), encoding="latin1").load()


def _read_cifar_files(name: str, source: Path, split: str):
    _, folder, train, test, meta, label_key, names_key = _CIFAR[name]
    members = train if split == "train" else test

    def unpickle(member: str, blob: bytes):
        try:
            return CifarUnpickler.loads(blob)
        except Exception as e:  # noqa: BLE001
            raise _MemberError(f"{member} cannot be unpickled ({describe(e)})") from e

    if source.is_dir():
        def read(member: str):
            path = source / member
            if not path.is_file():
                raise _MemberError(f"{member} is missing")
            return unpickle(member, path.read_bytes())
        batches, meta_dict = [read(m) for m in members], read(meta)
    else:
        with tarfile.open(source, "r:gz") as tar:
            def read(member: str):
                try:
                    f = tar.extractfile(f"{folder}/{member}")
                except KeyError:
                    raise _MemberError(f"member {folder}/{member} is missing") from None
                return unpickle(member, f.read())
            batches, meta_dict = [read(m) for m in members], read(meta)
        with gzip.open(source) as stream:  # read to the end: a truncated or bit-flipped archive
            while stream.read(1 << 24):    # fails its length/CRC check here, not silently
                pass
    for m, b in zip(members, batches, strict=True):
        if not isinstance(b, dict) or "data" not in b or label_key not in b:
            raise _MemberError(f"{m} is not a CIFAR batch (no 'data' and {label_key!r})")
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3072)
                           for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    if len(labels) != len(data):
        raise _MemberError(f"{len(data)} images but {len(labels)} labels")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels), list(meta_dict[names_key]), None, label_key


# --- Hugging Face ------------------------------------------------------------------------------


def _read_hf(name: str, split: str, options: dict):
    """Load a split with datasets.load_dataset and convert its images to uint8 in batches."""
    import datasets

    options = dict(options)
    image_column = options.pop("image_column", None)
    label_column = options.pop("label_column", None)
    split_names = options.pop("split_names", None) or {}
    parts = name[len("hf:"):].split(":")
    if not parts[0] or len(parts) > 2:
        raise ValueError(f"dataset {name!r}: expected hf:<dataset id>[:<config>]")
    hf_split = split_names.get(split, split)
    # Local files (a packaged builder) load in moments: no progress bars around the runner's
    # one-line messages. A download from the Hub keeps them (it can take minutes).
    quiet = _packaged(parts[0]) and not datasets.utils.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(parts[0], *parts[1:], split=hf_split, **options)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - offline, unknown id, bad split: many types
        raise DataUnavailableError(f"dataset {name!r}: Hugging Face could not load split "
                                   f"{hf_split!r} ({describe(e)})") from e
    finally:
        if quiet:
            datasets.enable_progress_bars()
    columns = list(ds.column_names)
    image_column = _pick_column(name, "image", image_column, _IMAGE_COLUMNS, columns, split)
    label_column = _pick_column(name, "label", label_column, _LABEL_COLUMNS, columns, split)
    where = f"dataset {name!r}: split {split!r}"
    feature = ds.features[label_column]
    if isinstance(ds.features[image_column], dict):  # {"bytes", "path"} without HF image metadata
        ds = ds.cast_column(image_column, datasets.Image())
    ds = ds.select_columns([image_column, label_column])
    images, labels = [], []
    for batch in ds.iter(batch_size=1000):
        arrays = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8)
                  for im in batch[image_column]]
        shapes = {a.shape for a in arrays} | ({images[0].shape[1:]} if images else set())
        if len(shapes) > 1:
            raise ValueError(f"{where}, column {image_column!r}: images differ in size "
                             f"{sorted(shapes)}; resize them to one size first")
        images.append(np.stack(arrays))
        labels.append(_int_labels(f"{where}, column {label_column!r}", batch[label_column]))
    if not images:
        raise ValueError(f"{where} is empty")
    image_array = np.concatenate(images)
    if image_array.ndim == 3:  # greyscale stored as (N,H,W)
        image_array = np.repeat(image_array[..., None], 3, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(image_array.transpose(0, 3, 1, 2)))
    label_tensor = torch.from_numpy(np.concatenate(labels))
    names = getattr(feature, "names", None)
    classes = list(names) if names else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return tensor, label_tensor, classes, None, label_column


def _int_labels(where: str, values) -> np.ndarray:
    """Labels as int64, or a one-line ValueError when they are not integer class ids (strings,
    missing values, fractions)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
        return arr.astype(np.int64)
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, int | np.integer)),
               values[0] if len(values) else None)
    kind = ("strings" if isinstance(bad, str) else "missing" if bad is None
            else f"{type(bad).__name__} values")
    raise ValueError(f"{where}: labels are {kind} (e.g. {bad!r}), not integer class ids "
                     "0..C-1; map them to integers (datasets' class_encode_column) or name "
                     "another column with label_column=")


def _pick_column(name: str, what: str, given: str | None, candidates, columns: list[str],
                 split: str = "train") -> str:
    if given is not None:
        if given not in columns:
            raise ValueError(f"dataset {name!r}: split {split!r}: {what}_column={given!r} not "
                             f"found; available columns: {', '.join(columns)}")
        return given
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(f"dataset {name!r}: split {split!r}: no {what} column (tried "
                     f"{', '.join(candidates)}); available columns: {', '.join(columns)}; name "
                     f"it with {what}_column=")


# --- synthetic ---------------------------------------------------------------------------------


def _check_synthetic_options(options: dict) -> None:
    """The synthetic set's option values, as `load` would reject them (one line each): sizes
    of at least one image, an image side of synthetic.MIN_SIZE..MAX_SIZE pixels, a split of at
    most synthetic.MAX_BYTES bytes (n * 3 * size^2), an integer seed."""
    from benchmark.data import synthetic

    for key, low, why in (("n_train", 1, "images in the training split"),
                          ("n_test", 1, "images in the test split"),
                          ("size", synthetic.MIN_SIZE, "pixels per image side"),
                          ("seed", None, "the generator's seed")):
        if key not in options:
            continue
        v = options[key]
        if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
            bound = f" >= {low}" if low is not None else ""
            raise ValueError(f"dataset 'synthetic': option {key!r} is {v!r}; allowed: an "
                             f"integer{bound} ({why})")
    # Upper bounds, before anything is allocated: the generator draws whole chunks of
    # synthetic.CHUNK images as float32 (~ a dozen tensors of CHUNK*3*size^2 floats), and a split
    # is held in memory as uint8 and copied to float32 for training.
    size = options.get("size", 32)
    if size > synthetic.MAX_SIZE:
        raise ValueError(f"dataset 'synthetic': option 'size' is {size!r}; allowed: an integer "
                         f"in {synthetic.MIN_SIZE}..{synthetic.MAX_SIZE} (pixels per image side)")
    for key in ("n_train", "n_test"):
        n = options.get(key, 1)
        if n * 3 * size * size > synthetic.MAX_BYTES:
            raise ValueError(
                f"dataset 'synthetic': option {key!r} is {n!r}: {n} images of {size}x{size} "
                f"take {n * 3 * size * size / 2**30:.1f} GiB as bytes (4x that as float32); "
                f"allowed: at most {synthetic.MAX_BYTES // (3 * size * size)} at size {size}")


def _load_synthetic(split: str, *, n_train: int = 10000, n_test: int = 2000, seed: int = 0,
                    size: int = 32, **unknown) -> Dataset:
    from benchmark.data import synthetic

    if unknown:
        raise ValueError(f"dataset 'synthetic': unknown options {sorted(unknown)}; "
                         "allowed: n_train, n_test, seed, size")
    _check_synthetic_options({"n_train": n_train, "n_test": n_test, "seed": seed, "size": size})
    n = n_train if split == "train" else n_test
    data = synthetic.generate(n, seed=synthetic.split_seed(seed, split), size=size)
    mean, std = channel_stats(data.images)
    return Dataset("synthetic", data.images, data.labels, list(synthetic.CLASSES), data.boxes,
                   mean, std)
