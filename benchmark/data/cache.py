"""The processed cache: a split read once is kept as a tensor file in <root>/cache/, keyed by
everything it was read from (a CIFAR archive's or folder's files, an hf: dataset's options and
local files by name, size and modification time), so editing a source rebuilds it. A damaged
cache file is deleted and rebuilt with a one-line warning; it is read with weights_only=True."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from benchmark.data.dataset import Dataset, channel_stats
from benchmark.fileio import atomic_write, describe, slug, warn

CACHE_VERSION = 1  # bump when the processed format changes: old cache files are then ignored


def cached(data_dir: Path, name: str, split: str, key: dict, use_cache: bool, read) -> Dataset:
    """Return the processed split from <data_dir>/cache/ or read it and write the cache
    atomically."""
    key = {**key, "version": CACHE_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = data_dir / "cache" / f"{slug(name)}-{split}-{digest}.pt"
    if use_cache and path.is_file():
        ds = read_cache(path, name)
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


def read_cache(path: Path, name: str) -> Dataset | None:
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


def file_identity(path: Path) -> dict:
    st = path.stat()
    if path.is_dir():  # an extracted folder: identify it by its files
        return {"dir": str(path.resolve()),
                "files": sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                for p in path.iterdir() if p.is_file())}
    return {"file": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}


def file_identity_all(data_files) -> list:
    if data_files is None:
        return []
    if isinstance(data_files, dict):
        files = [f for v in data_files.values()
                 for f in ([v] if isinstance(v, str | os.PathLike) else v)]
    else:
        files = [data_files] if isinstance(data_files, str | os.PathLike) else list(data_files)
    return [file_identity(Path(f)) if Path(f).exists() else str(f) for f in files]


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj if isinstance(obj, int | float | str | bool | type(None)) else str(obj)


# --- CIFAR -------------------------------------------------------------------------------------
