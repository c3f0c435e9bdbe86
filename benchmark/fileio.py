"""Safe writes and damaged-file handling shared by records, leaderboards, checkpoints and caches.

Every temp-file-plus-rename write goes through `atomic_write`, so a reader (or a crash) never
sees half a file and every written file gets the same mode. A file that exists but cannot be
read is `move_aside`d (`<name>.corrupt`) with a one-line `warn`ing, or raises `DamagedFileError`,
whose message names the file, what is wrong and what to do. A write that the filesystem refuses
(disk full, quota, read-only, permissions) raises `WriteError`, one line: `<path>: no space left
on device`; callers treat it as a failure of the environment, never as a result of a run.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["DamagedFileError", "WriteError", "atomic_write", "save_figure", "move_aside", "warn",
           "describe", "write_error", "remove_stale_temps", "pid_alive"]


class DamagedFileError(ValueError):
    """A file that exists but cannot be read (truncated, corrupt, wrong structure).

    `path` is the file (or folder) to replace, `reason` what is wrong; the message is one line:
    "<path>: <reason>; <hint>"."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path, self.reason, self.hint = Path(path), reason, hint
        super().__init__(f"{path}: {reason}" + (f"; {hint}" if hint else ""))


class WriteError(OSError):
    """A write the filesystem refused (ENOSPC, EDQUOT, EROFS, EACCES, EIO, ...).

    An OSError with the original `errno` and `filename`; its message is one line,
    `<path>: <reason>` with the reason in lower case, e.g. `out/x.json: no space left on device`.
    """

    def __init__(self, path: str | os.PathLike, err: OSError):
        reason = (err.strerror or describe(err)).rstrip(".")
        super().__init__(err.errno, reason[:1].lower() + reason[1:], str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def write_error(error: BaseException, path: str | os.PathLike | None = None) -> WriteError | None:
    """The filesystem failure behind `error`, as a WriteError naming `path` (or the file the
    OSError names), or None when `error` is not one. Looks through `__cause__`/`__context__`:
    torch.save on a full disk raises `RuntimeError: [enforce fail at inline_container.cc...]
    unexpected pos` whose context is the OSError(ENOSPC) of the write."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, WriteError):
            return e
        if isinstance(e, OSError) and e.errno is not None and not isinstance(
                e, FileNotFoundError | IsADirectoryError | NotADirectoryError | FileExistsError):
            where = path if path is not None else (e.filename or "?")
            return WriteError(where, e)
        e = e.__cause__ or e.__context__
    return None


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """`fig.savefig(path, **kwargs)` (a matplotlib Figure); a write the filesystem refuses
    raises WriteError naming `path` (matplotlib's own OSError often names no file)."""
    try:
        fig.savefig(path, **kwargs)
    except Exception as e:
        failed = write_error(e, path)
        if failed is None:
            raise
        raise failed from e


# atomic_write's temp files: `.<name>.<host>~<pid>~<random>.tmp` in the target's folder, so a
# worker can tell its own temp files from others' and those of dead writers from live ones.
_TMP_SEP = "~"


_OLD_TMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # mkstemp's, before the writer was named


def _tmp_prefix(name: str) -> str:
    host = socket.gethostname().replace(_TMP_SEP, "-").replace(os.sep, "-")
    return f".{name}.{host}{_TMP_SEP}{os.getpid()}{_TMP_SEP}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, *, max_age_s: float = 3600.0) -> list[Path]:
    """Delete `atomic_write` temp files left in `folder` by writers that died (SIGKILL, a lost
    node) mid-write; returns the deleted paths. Only files of atomic_write's own name pattern
    (`.<name>.<host>~<pid>~<random>.tmp`, or mkstemp's `.<name>.<8 random>.tmp` of earlier
    versions) are touched, and only when their writer is a dead process on this host, or (any
    host, or a temp name without a writer) they were last modified over `max_age_s` seconds ago:
    a live writer's file keeps changing while it writes."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host, removed = socket.gethostname().replace(_TMP_SEP, "-"), []
    for p in folder.glob(".*.tmp"):
        parts = p.name[:-len(".tmp")].split(_TMP_SEP)
        ours = len(parts) == 3 and parts[1].isdigit()
        if not p.is_file() or not (ours or _OLD_TMP.fullmatch(p.name)):
            continue
        dead = False
        if ours:
            pid = int(parts[1])
            dead = parts[0].endswith("." + host) and pid != os.getpid() and not pid_alive(pid)
        try:
            old = time.time() - p.stat().st_mtime > max_age_s
            if dead or old:
                p.unlink()
                removed.append(p)
        except OSError:  # gone meanwhile, or not ours to delete
            continue
    return removed


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], object], *,
                 mode: int = 0o644) -> Path:
    """Write `data` to `path` through a temp file in the same folder, fsync, chmod and rename.

    `data` is text (UTF-8), bytes, or a callable that writes to a binary file object, e.g.
    `atomic_write(p, lambda f: torch.save(obj, f))`. The temp file (mkstemp: mode 0600) gets
    `mode` before the rename; on any exception it is removed and `path` is left as it was.
    A write the filesystem refuses (disk full, ...) raises WriteError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise (write_error(e, path) or e) from e
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        failed = write_error(e, path) if isinstance(e, Exception) else None
        if failed is not None and failed is not e:
            raise failed from e
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
