"""Datasets -> uint8 image tensors (N,3,H,W) + labels (+ boxes), with a processed cache.

Sources: CIFAR-10/100 python-pickle archives (read with numpy), Hugging Face datasets
(`hf:<id>[:<config>]`, offline from the HF cache or local files), and the embedded
`synthetic` set. The training-time loader lives in `benchmark.augment`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Dataset", "load", "default_data_dir", "channel_stats", "CACHE_VERSION"]

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
_IMAGE_COLUMNS = ("img", "image", "images", "pixel_values")
_LABEL_COLUMNS = ("label", "labels", "fine_label", "coarse_label")


@dataclass
class Dataset:
    """One split: uint8 images (N,3,H,W) and int64 labels on the CPU, class names, optional
    boxes (N,4) float pixels (x1, y1, x2, y2) with x2/y2 exclusive, per-channel mean/std in [0,1]."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    boxes: torch.Tensor | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

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


def load(name: str, split: str, data_dir: str | os.PathLike | None = None, *,
         download: bool = False, **options) -> Dataset:
    """Load `split` ("train" / "test") of `name`: cifar10, cifar100, synthetic, hf:<id>[:<config>].

    Options: synthetic: n_train, n_test, seed, size. hf: image_column, label_column,
    split_names (e.g. {"test": "validation"}), anything else goes to datasets.load_dataset
    (data_files, cache_dir, revision, ...). All but synthetic: cache=True (processed cache in
    <data_dir>/cache/).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: allowed {', '.join(SPLITS)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    use_cache = options.pop("cache", True)
    if name == "synthetic":  # generated in about a second: not cached
        return _load_synthetic(split, **options)
    if name in _CIFAR:
        if options:
            raise ValueError(f"dataset {name!r}: unknown options {sorted(options)}; allowed: cache")
        source = _cifar_source(name, data_dir, download)
        key = {"name": name, "split": split, "source": _file_identity(source)}
        return _cached(data_dir, name, split, key, use_cache, lambda: _read_cifar(name, source, split))
    if name.startswith("hf:"):
        key = {"name": name, "split": split, "options": _jsonable(options),
               "files": _file_identity_all(options.get("data_files"))}
        return _cached(data_dir, name, split, key, use_cache, lambda: _read_hf(name, split, options))
    raise ValueError(f"unknown dataset {name!r}; known: synthetic, cifar10, cifar100, "
                     "hf:<dataset id>[:<config>]")


# --- cache -------------------------------------------------------------------------------------


def _cached(data_dir: Path, name: str, split: str, key: dict, use_cache: bool, read) -> Dataset:
    """Return the processed split from <data_dir>/cache/ or read it and write the cache atomically."""
    key = {**key, "version": CACHE_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    slug = name.replace(":", "_").replace("/", "_")
    path = data_dir / "cache" / f"{slug}-{split}-{digest}.pt"
    if use_cache and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        return Dataset(name=name, images=state["images"], labels=state["labels"],
                       classes=list(state["classes"]), boxes=state.get("boxes"),
                       mean=tuple(state["mean"]), std=tuple(state["std"]))
    images, labels, classes, boxes = read()
    mean, std = channel_stats(images)
    ds = Dataset(name, images, labels, classes, boxes, mean, std)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"images": images, "labels": labels, "classes": classes, "mean": list(mean),
                 "std": list(std)}
        if boxes is not None:
            state["boxes"] = boxes
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    return ds


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
        files = [f for v in data_files.values() for f in ([v] if isinstance(v, str | os.PathLike) else v)]
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


def _cifar_source(name: str, data_dir: Path, download: bool) -> Path:
    archive, folder = _CIFAR[name][:2]
    for candidate in (data_dir / folder, data_dir / archive):
        if candidate.exists():
            return candidate
    if download:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cls(root=str(data_dir), train=True, download=True)  # downloads and extracts the archive
        return data_dir / folder
    raise FileNotFoundError(
        f"{name}: not found in {data_dir}/; put {archive} (or its extracted folder {folder}/) "
        f"there, or pass --download / download=True to fetch it")


def _read_cifar(name: str, source: Path, split: str):
    """Read the pickled batches of a CIFAR archive or folder with numpy (no per-image objects)."""
    _, folder, train, test, meta, label_key, names_key = _CIFAR[name]
    members = train if split == "train" else test
    if source.is_dir():
        def read(member: str):
            path = source / member
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing from the {name} folder")
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        batches, meta_dict = [read(m) for m in members], read(meta)
    else:
        with tarfile.open(source, "r:gz") as tar:
            def read(member: str):
                try:
                    f = tar.extractfile(f"{folder}/{member}")
                except KeyError:
                    raise FileNotFoundError(f"{source}: member {folder}/{member} missing") from None
                return pickle.load(io.BytesIO(f.read()), encoding="latin1")
            batches, meta_dict = [read(m) for m in members], read(meta)
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels), list(meta_dict[names_key]), None


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
    ds = datasets.load_dataset(parts[0], *parts[1:], split=split_names.get(split, split), **options)
    columns = list(ds.column_names)
    image_column = _pick_column(name, "image", image_column, _IMAGE_COLUMNS, columns)
    label_column = _pick_column(name, "label", label_column, _LABEL_COLUMNS, columns)
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
            raise ValueError(f"dataset {name!r}: images differ in size {sorted(shapes)}; "
                             "resize them to one size first")
        images.append(np.stack(arrays))
        labels.append(np.asarray(batch[label_column], dtype=np.int64))
    if not images:
        raise ValueError(f"dataset {name!r}: split {split!r} is empty")
    image_array = np.concatenate(images)
    if image_array.ndim == 3:  # greyscale stored as (N,H,W)
        image_array = np.repeat(image_array[..., None], 3, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(image_array.transpose(0, 3, 1, 2)))
    label_tensor = torch.from_numpy(np.concatenate(labels))
    names = getattr(feature, "names", None)
    classes = list(names) if names else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return tensor, label_tensor, classes, None


def _pick_column(name: str, what: str, given: str | None, candidates, columns: list[str]) -> str:
    if given is not None:
        if given not in columns:
            raise ValueError(f"dataset {name!r}: {what}_column={given!r} not found; "
                             f"available columns: {', '.join(columns)}")
        return given
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(f"dataset {name!r}: no {what} column (tried {', '.join(candidates)}); "
                     f"available columns: {', '.join(columns)}; name it with {what}_column=")


# --- synthetic ---------------------------------------------------------------------------------


def _load_synthetic(split: str, *, n_train: int = 10000, n_test: int = 2000, seed: int = 0,
                    size: int = 32, **unknown) -> Dataset:
    from benchmark import synthetic

    if unknown:
        raise ValueError(f"dataset 'synthetic': unknown options {sorted(unknown)}; "
                         "allowed: n_train, n_test, seed, size")
    n = n_train if split == "train" else n_test
    data = synthetic.generate(n, seed=synthetic.split_seed(seed, split), size=size)
    mean, std = channel_stats(data.images)
    return Dataset("synthetic", data.images, data.labels, list(synthetic.CLASSES), data.boxes,
                   mean, std)
