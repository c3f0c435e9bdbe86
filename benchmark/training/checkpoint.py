"""Model checkpoints: what a run saves, what the CAM 'after' source and the figures load; and the
resume checkpoints a run writes between epochs.

Every write is atomic (benchmark.fileio.atomic_write). A damaged file is named in one line: a
final checkpoint raises DamagedFileError; a damaged resume checkpoint is moved aside and the run
restarts from scratch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from benchmark.fileio import DamagedFileError, atomic_write, describe, move_aside, warn

_HINT = "delete it and rerun the run that wrote it (delete its result record too)"


def save(path: str | os.PathLike, model: torch.nn.Module, *, model_name: str, num_classes: int,
         mean, std, extra: dict | None = None) -> Path:
    """Save weights plus what is needed to rebuild the model and normalise its input (atomic)."""
    state = {
        "model_name": model_name,
        "num_classes": int(num_classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **(extra or {}),
    }
    return atomic_write(path, lambda f: torch.save(state, f))


def read(path: str | os.PathLike, *, required: Iterable[str] = (), what: str = "checkpoint",
         hint: str = _HINT) -> dict:
    """torch.load `path` on the CPU (weights_only=False: our own files, with optimizer and RNG
    state) and check it is a dict with the `required` keys; anything else raises one
    DamagedFileError line naming the file, what is wrong and `hint`."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (MemoryError, PermissionError, IsADirectoryError):  # not the file's content
        raise
    except Exception as e:  # noqa: BLE001 - a damaged zip/pickle raises many types
        reason = describe(e, first_sentence=True)
        raise DamagedFileError(path, f"damaged or truncated {what} ({reason})", hint) from e
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
    model = models.create(ckpt["model_name"], num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def save_resume(path: str | os.PathLike, state: dict) -> Path:
    """Write a resume checkpoint (any picklable dict) atomically: an interrupted save never
    leaves half a file where the next run looks for one."""
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
        state = torch.load(path, map_location=map_location, weights_only=False)
    return state
