"""Safe writes and damaged-file handling shared by records, leaderboards, checkpoints and caches.

Every temp-file-plus-rename write goes through `atomic_write`, so a reader (or a crash) never
sees half a file and every written file gets the same mode. A file that exists but cannot be
read is `move_aside`d (`<name>.corrupt`) with a one-line `warn`ing, or raises `DamagedFileError`,
whose message names the file, what is wrong and what to do.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["DamagedFileError", "atomic_write", "move_aside", "warn", "describe"]


class DamagedFileError(ValueError):
    """A file that exists but cannot be read (truncated, corrupt, wrong structure).

    `path` is the file (or folder) to replace, `reason` what is wrong; the message is one line:
    "<path>: <reason>; <hint>"."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path, self.reason, self.hint = Path(path), reason, hint
        super().__init__(f"{path}: {reason}" + (f"; {hint}" if hint else ""))


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], object], *,
                 mode: int = 0o644) -> Path:
    """Write `data` to `path` through a temp file in the same folder, fsync, chmod and rename.

    `data` is text (UTF-8), bytes, or a callable that writes to a binary file object, e.g.
    `atomic_write(p, lambda f: torch.save(obj, f))`. The temp file (mkstemp: mode 0600) gets
    `mode` before the rename; on any exception it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                f.write(data.encode("utf-8"))
            elif isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            elif callable(data):
                data(f)
            else:
                raise TypeError(f"atomic_write: data must be str, bytes or a callable writer, "
                                f"got {type(data).__name__}")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def move_aside(path: str | os.PathLike, suffix: str = ".corrupt") -> Path:
    """Rename a damaged file or folder to `<name><suffix>` (then `.1`, `.2`, ... if taken), so
    it is kept for inspection but no longer read; returns the new path."""
    path = Path(path)
    target = path.with_name(path.name + suffix)
    i = 0
    while target.exists():
        i += 1
        target = path.with_name(f"{path.name}{suffix}.{i}")
    os.replace(path, target)
    return target


def warn(message: str) -> None:
    """One line `warning: <message>` on stderr (the runner's style), flushed at once."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def describe(error: BaseException, limit: int = 200, *, first_sentence: bool = False) -> str:
    """`Type: message` of an exception on one line, cut to `limit` characters; `first_sentence`
    drops what follows the first ". " (torch appends a paragraph of advice about miniz)."""
    text = " ".join(str(error).split())
    if first_sentence:
        text = text.split(". ", 1)[0].rstrip(".")
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def slug(text: str) -> str:
    """A file-name-safe form of a label or model name: letters, digits and `._=` kept, anything
    else a dash, no dash at either end. Run ids are built from it, so it must never change."""
    return "".join(c if c.isalnum() or c in "._=" else "-" for c in str(text)).strip("-")
