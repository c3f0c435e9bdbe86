"""Model checkpoints: what a run saves, what the CAM 'after' source and the figures load; and the
resume checkpoints a run writes between epochs.

Every write is atomic (benchmark.fileio.atomic_write). A damaged file is named in one line: a
final checkpoint raises DamagedFileError; a damaged resume checkpoint is moved aside and the run
restarts from scratch.

Every load is `torch.load(..., weights_only=True)`: a checkpoint holds only tensors, numbers,
strings and plain containers (the RNG states are uint8 tensors, the optimizer's momentum a list of
tensors, the LR schedule's milestones a `collections.Counter`, which torch allows). A results
folder may come from anyone (a shared SLURM folder, a copy, a download), so a file that pickles
any other Python object, e.g. a `__reduce__` payload, is refused in one line and never run.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path

import torch

from benchmark.fileio import DamagedFileError, atomic_write, describe, move_aside, warn

_HINT = "delete it and rerun the run that wrote it (delete its result record too)"


def save(path: str | os.PathLike, model: torch.nn.Module, *, model_name: str, num_classes: int,
         mean, std, extra: dict | None = None) -> Path:
    """Save weights plus what is needed to rebuild the model and normalise its input (atomic)."""
    from benchmark import models

    state = {
        "model_name": model_name,
        "num_classes": int(num_classes),
        "in_chans": models.in_channels(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **(extra or {}),
    }
    check_loadable(state, "checkpoint")
    return atomic_write(path, lambda f: torch.save(state, f))


_SCALARS = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device,
            torch.Size)
_MAPPINGS = (dict, OrderedDict, Counter)
_SEQUENCES = (list, tuple, set)


def check_loadable(obj, where: str = "state") -> None:
    """Raise TypeError (one line naming the key path) if `obj` holds anything but what
    `torch.load(weights_only=True)` reads back: tensors, numbers, strings, bytes, None, dtypes,
    devices, and lists, tuples, sets, dicts (also OrderedDict, Counter) of them. Types are
    matched exactly: a numpy float64 or a defaultdict would be refused on load, so here too."""
    if isinstance(obj, torch.Tensor) or type(obj) in _SCALARS:
        return
    if type(obj) in _MAPPINGS:
        for k, v in obj.items():
            check_loadable(k, f"{where} key")
            check_loadable(v, f"{where}[{k!r}]")
        return
    if type(obj) in _SEQUENCES:
        for i, v in enumerate(obj):
            check_loadable(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be "
                    "saved in a checkpoint (torch.load(weights_only=True) would refuse it); "
                    "store it as tensors, numbers, strings and plain containers")


def refused_object(error: BaseException) -> str | None:
    """The one-line reason of a `torch.load(weights_only=True)` that refused a pickled Python
    object (e.g. "unsupported GLOBAL posix.system"), or None when `error` is something else
    (a truncated or garbled file). torch's message is a paragraph of advice; this is its line
    naming the object."""
    if not isinstance(error, pickle.UnpicklingError) or "weights only load failed" not in \
            str(error).lower():
        return None
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    named = [line for line in lines if any(k in line for k in (
        "GLOBAL", "global", "Can only build", "Unsupported class"))]
    if not named:  # e.g. "Unsupported operand": a garbled pickle, not a refused object
        return None
    detail = named[0]
    for prefix in ("WeightsUnpickler error: ", "Trying to load "):
        detail = detail.split(prefix, 1)[-1]
    detail = detail.split(". ", 1)[0].rstrip(".")  # torch appends advice on allow-listing
    return detail if len(detail) <= 160 else detail[:157] + "..."


def _load(path: Path, map_location, what: str, hint: str):
    """torch.load with weights_only=True; a refused object or an unreadable file is one
    DamagedFileError line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (MemoryError, PermissionError, IsADirectoryError):  # not the file's content
        raise
    except Exception as e:  # noqa: BLE001 - a damaged zip/pickle raises many types
        refused = refused_object(e)
        if refused is not None:
            raise DamagedFileError(path, f"not loaded: this {what} holds a pickled Python object "
                                   f"that loading would run as code ({refused}); an erasebench "
                                   "checkpoint holds only tensors and plain containers",
                                   hint) from None
        reason = describe(e, first_sentence=True)
        raise DamagedFileError(path, f"damaged or truncated {what} ({reason})", hint) from e


def read(path: str | os.PathLike, *, required: Iterable[str] = (), what: str = "checkpoint",
         hint: str = _HINT) -> dict:
    """torch.load `path` on the CPU with weights_only=True (tensors and plain containers only:
    a pickled object is refused, never run) and check it is a dict with the `required` keys;
    anything else raises one DamagedFileError line naming the file, what is wrong and `hint`."""
    path = Path(path)
    obj = _load(path, "cpu", what, hint)
    if not isinstance(obj, dict):
        raise DamagedFileError(path, f"not an erasebench {what} (a {type(obj).__name__}, "
                                     "not a dict)", hint)
    for key in required:
        if key not in obj:
            raise DamagedFileError(path, f"key {key!r} missing; not an erasebench {what}", hint)
    return obj


def load(path: str | os.PathLike,
         device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode on `device`; returns (model, checkpoint dict).
    A missing file raises FileNotFoundError, a damaged one DamagedFileError (one line)."""
    from benchmark import models

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = read(path, required=("model_name", "num_classes", "state_dict"))
    # in_chans: 1 for grey data (fashion_mnist); checkpoints written before it was stored are RGB
    model = models.create(ckpt["model_name"], num_classes=ckpt["num_classes"],
                          in_chans=int(ckpt.get("in_chans", 3)))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def save_resume(path: str | os.PathLike, state: dict) -> Path:
    """Write a resume checkpoint atomically: an interrupted save never leaves half a file where
    the next run looks for one. `state` holds only what `torch.load(weights_only=True)` reads
    back: tensors, numbers, strings, None, lists/tuples/dicts of them (and the LR schedule's
    `collections.Counter`); anything else would be refused on resume, so it raises here."""
    check_loadable(state, "resume state")
    return atomic_write(path, lambda f: torch.save(state, f))


def load_resume(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                required: Iterable[str] = ()) -> dict | None:
    """The saved resume state, or None when there is none or it is damaged: a damaged file
    (unreadable, not a dict, a `required` key missing) is moved to `<name>.corrupt` with a
    one-line warning, and the caller starts the run from scratch.

    Loaded on the CPU (where RNG states must live; load_state_dict moves weights and optimizer
    state to their parameters' device). Another `map_location` loads it a second time there,
    so that a device error is never mistaken for a damaged file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = read(path, required=required, what="resume checkpoint")
    except DamagedFileError as e:
        try:
            moved = move_aside(path).name
        except OSError as err:  # it will be overwritten by the next save anyway
            moved = f"(not moved: {describe(err)})"
        warn(f"{path}: {e.reason}; moved to {moved}; the run restarts from scratch")
        return None
    if torch.device(map_location).type != "cpu":
        state = torch.load(path, map_location=map_location, weights_only=True)
    return state
