"""Hugging Face datasets (`hf:<id>[:<config>]`): offline from the HF cache or local files,
converted to uint8 tensors in batches. A dataset's loading script is never run
(trust_remote_code is refused), and a packaged builder must be told its files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from benchmark.data.dataset import DataUnavailableError, default_data_dir
from benchmark.fileio import describe

_IMAGE_COLUMNS = ("img", "image", "images", "pixel_values")
_LABEL_COLUMNS = ("label", "labels", "fine_label", "coarse_label")


def check_hf(name: str, root, options: dict) -> None:
    """The one-line error `load` would give for an hf: dataset's name, options or missing local
    files, without reading any data."""
    parts = name[len("hf:"):].split(":")
    if not parts[0] or len(parts) > 2:
        raise ValueError(f"dataset {name!r}: expected hf:<dataset id>[:<config>]")
    if "trust_remote_code" in options:
        raise ValueError(f"dataset {name!r}: option 'trust_remote_code' is refused: a "
                         "dataset's loading script is code from a download, and erasebench "
                         "never runs it; use a dataset stored as parquet, csv or image files")
    check_hf_folders(name, parts[0], root, options)
    files = options.get("data_files")
    paths = [files] if isinstance(files, str) else list((files or {}).values()) \
        if isinstance(files, dict) else list(files or [])
    flat = [q for p in paths for q in ([p] if isinstance(p, str) else p)]
    missing = [f for f in flat if "://" not in f and not any(c in f for c in "*?[")
               and not Path(f).exists()]
    if missing:
        raise FileNotFoundError(f"dataset {name!r}: data_files not found: {', '.join(missing)}")


def packaged(builder: str) -> bool:
    """A Hugging Face packaged builder (imagefolder, parquet, csv, ...): it reads local files."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return builder in _PACKAGED_DATASETS_MODULES


def check_hf_folders(name: str, builder: str, root, options: dict) -> None:
    """A packaged builder must be told its files (else Hugging Face reads the working directory),
    its data_dir must exist, and erasebench's cache (in `root`) must not be inside it."""
    if not packaged(builder):
        return
    hint = (f"; --data-root (data.root) {root} is where erasebench keeps its processed cache, "
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
                         f"written inside data_dir={data_dir!r}; keep --data-root (data.root) "
                         "outside the image folder, or leave it out")


def local_identity(name: str, options: dict) -> str | None:
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


def read_hf(name: str, split: str, options: dict):
    """Load a split with datasets.load_dataset and convert its images to uint8 in batches:
    (images (N,3,H,W) uint8, labels (N,) int64, class names, None, the label column)."""
    import datasets

    options = dict(options)
    image_column = options.pop("image_column", None)
    label_column = options.pop("label_column", None)
    ds = _load_split(name, split, options, options.pop("split_names", None) or {})
    columns = list(ds.column_names)
    image_column = _pick_column(name, "image", image_column, _IMAGE_COLUMNS, columns, split)
    label_column = _pick_column(name, "label", label_column, _LABEL_COLUMNS, columns, split)
    feature = ds.features[label_column]
    if isinstance(ds.features[image_column], dict):  # {"bytes", "path"} without HF image metadata
        ds = ds.cast_column(image_column, datasets.Image())
    ds = ds.select_columns([image_column, label_column])
    tensor, label_tensor = _to_arrays(f"dataset {name!r}: split {split!r}", ds, image_column,
                                      label_column)
    names = getattr(feature, "names", None)
    classes = list(names) if names else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return tensor, label_tensor, classes, None, label_column


def _load_split(name: str, split: str, options: dict, split_names: dict):
    """datasets.load_dataset of one split; a failure to fetch or open is DataUnavailableError."""
    import datasets

    parts = name[len("hf:"):].split(":")
    if not parts[0] or len(parts) > 2:
        raise ValueError(f"dataset {name!r}: expected hf:<dataset id>[:<config>]")
    hf_split = split_names.get(split, split)
    # Local files (a packaged builder) load in moments: no progress bars around the runner's
    # one-line messages. A download from the Hub keeps them (it can take minutes).
    quiet = packaged(parts[0]) and not datasets.utils.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(parts[0], *parts[1:], split=hf_split, **options)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - offline, unknown id, bad split: many types
        raise DataUnavailableError(f"dataset {name!r}: Hugging Face could not load split "
                                   f"{hf_split!r} ({describe(e)})") from e
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _to_arrays(where: str, ds, image_column: str, label_column: str):
    """(images (N,3,H,W) uint8, labels (N,) int64) of a dataset's two columns, 1000 at a time."""
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
    return tensor, torch.from_numpy(np.concatenate(labels))


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
