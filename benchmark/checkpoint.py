"""Model checkpoints: what a run saves, what the CAM 'after' source and the figures load."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: str | os.PathLike, model: torch.nn.Module, *, model_name: str, num_classes: int,
         mean, std, extra: dict | None = None) -> Path:
    """Save weights plus what is needed to rebuild the model and normalise its input (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_name": model_name,
        "num_classes": int(num_classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode on `device`; returns (model, checkpoint dict)."""
    from benchmark import models

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("model_name", "num_classes", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path}: key {key!r} missing; not an erasebench checkpoint")
    model = models.create(ckpt["model_name"], num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def set_aside(path, why: str) -> None:
    """Move a resume/fork file that cannot be used aside, with a warning naming it."""
    import warnings

    from benchmark.fileio import move_aside

    new = move_aside(path)
    warnings.warn(f"{path}: {why}; moved to {new}; the run restarts from scratch", stacklevel=2)


def load_resume(path, map_location=None) -> dict | None:
    """A resume checkpoint, or None when it is damaged (then moved aside with a warning)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file: start over
        set_aside(path, f"damaged ({type(e).__name__}: {str(e).splitlines()[0]})")
        return None
