"""Atomic file writes (temp file + rename) and moving damaged files aside."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, data, *, mode: int = 0o644) -> Path:
    """Write str, bytes or `data(fileobj)` to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def move_aside(path, suffix: str = ".corrupt") -> Path:
    """Rename a damaged file to <name><suffix> (.1, .2, ... if taken); return the new path."""
    path = Path(path)
    new = path.with_name(path.name + suffix)
    i = 0
    while new.exists():
        i += 1
        new = path.with_name(f"{path.name}{suffix}.{i}")
    os.replace(path, new)
    return new
