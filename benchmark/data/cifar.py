"""CIFAR-10/100 from their python-pickle archives (or extracted folders), read with numpy
through a restricted unpickler (`CifarUnpickler`: an archive is a download and never runs
code), fetched with torchvision when asked. A damaged archive or folder is one error line naming
it; with download=True it is moved aside (`<name>.corrupt`) and fetched again."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from benchmark.data.cache import cached, file_identity
from benchmark.data.dataset import Dataset, download, fetch_hint, refetch_hint
from benchmark.fileio import DamagedFileError, describe, move_aside, warn

CIFAR = {
    # name: (archive, folder, train members, test members, meta member, label key, names key)
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"], "meta",
                 "fine_labels", "fine_label_names"),
}
_CIFAR_HINT = "place a good copy there"  # load_cifar adds how to fetch one (refetch_hint)


def load_cifar(name: str, split: str, data_dir: Path, download: bool, use_cache: bool) -> Dataset:
    """Read a CIFAR split (through the cache); with `download`, a damaged archive or folder is
    moved aside and fetched (or read from the archive) again, once."""
    archive = data_dir / CIFAR[name][0]
    fetched = False
    while True:
        source = cifar_source(name, data_dir)
        if source is None:
            if not download:
                raise FileNotFoundError(
                    f"{name}: not found in {data_dir}/; put {archive.name} (or its extracted "
                    f"folder {CIFAR[name][1]}/) there, or {fetch_hint(name, data_dir, 'it')}")
            source, fetched = _fetch_cifar(name, data_dir), True
        key = {"name": name, "split": split, "source": file_identity(source)}
        try:
            ds = cached(data_dir, name, split, key, use_cache,
                        lambda source=source: _read_cifar(name, source, split))
            ds.image_file = ds.label_file = str(source)
            return ds
        except DamagedFileError as e:
            if not download or fetched:
                raise DamagedFileError(e.path, e.reason, refetch_hint(name, data_dir)) from e
            then = (f"reading {archive.name} instead" if source.is_dir() and archive.is_file()
                    else "downloading it again")
            moved = move_aside(e.path)
            warn(f"{e.path}: {e.reason}; moved to {moved.name}; {then}")


def cifar_source(name: str, data_dir: Path) -> Path | None:
    """The extracted folder if present, else the archive, else None."""
    archive, folder = CIFAR[name][:2]
    for candidate in (data_dir / folder, data_dir / archive):
        if candidate.exists():
            return candidate
    return None


def _fetch_cifar(name: str, data_dir: Path) -> Path:
    """Download the archive with torchvision (md5-checked; not extracted: it is read as is); a
    failure is one DataUnavailableError line saying where to place the archive by hand."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    path = data_dir / cls.filename
    download(name, [(cls.url, path, cls.tgz_md5)],
             f"place {cls.filename} (from {cls.url}) in {data_dir}/ by hand")
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
    _, folder, train, test, meta, label_key, names_key = CIFAR[name]
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
