"""Claim files: any number of workers share one results folder, and no run trains twice at once.

A worker claims a run by creating `<results>/claims/<run_id>.claim` exclusively (O_EXCL, which
is atomic on local filesystems and NFS v3+), holding its host, pid and a heartbeat it refreshes
while it trains. A claim whose heartbeat is older than the timeout belongs to a worker that
died (SIGKILL, a lost node): another worker takes it over and resumes the run from its last
checkpoint. A claim of a process that no longer exists on this host is taken over at once, and
so is an empty or unreadable claim older than `UNREADABLE_STALE_S` (its writer died or the disk
was full while creating it). No service is involved: the filesystem is the coordinator.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from benchmark.fileio import atomic_write, pid_alive, write_error

DEFAULT_TIMEOUT_S = 600.0
UNREADABLE_STALE_S = 5.0  # an empty claim is younger while its creator writes it


def _epoch_seconds() -> float:
    return time.time()


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _age(path: Path, info: dict | None) -> float:
    """Seconds since the owner last showed life (its heartbeat, or the file's mtime)."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
    beat = info.get("heartbeat", 0.0) if isinstance(info, dict) else 0.0
    return _epoch_seconds() - max(mtime, float(beat) if isinstance(beat, (int, float)) else 0.0)


class Claim:
    """A run this worker owns; refresh it with `heartbeat()` and drop it with `release()`."""

    def __init__(self, path: Path, info: dict):
        self.path, self.info = path, info

    @property
    def token(self) -> str:
        return self.info["token"]

    def owned(self) -> bool:
        info = _read(self.path)
        return isinstance(info, dict) and info.get("token") == self.token

    def heartbeat(self) -> bool:
        """Refresh the heartbeat; False when another worker took the claim over (we were stale)."""
        if not self.owned():
            return False
        self.info["heartbeat"] = _epoch_seconds()
        atomic_write(self.path, json.dumps(self.info))
        return True

    def release(self) -> None:
        if self.owned():
            self.path.unlink(missing_ok=True)


def _create(path: Path, info: dict) -> bool:
    """Create the claim exclusively; False if it exists. A failed write (disk full) removes the
    half-made claim and raises WriteError."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise (write_error(e, path) or e) from e
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
    except BaseException as e:
        path.unlink(missing_ok=True)
        failed = write_error(e, path) if isinstance(e, Exception) else None
        if failed is not None:
            raise failed from e
        raise
    return True


def stale_reason(path: Path, info: dict | None, timeout_s: float) -> str | None:
    """Why the claim in `path` (contents `info`) may be taken over now, or None (its holder
    lives): its process is gone (same host), it is unreadable and older than a few seconds, or
    its heartbeat is older than `timeout_s`."""
    age = _age(path, info)
    if not isinstance(info, dict) or not info.get("token"):
        return f"an unreadable claim, {age:.0f} s old" if age > UNREADABLE_STALE_S else None
    pid = info.get("pid")
    if (info.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid()
            and not pid_alive(pid)):
        return f"its process {pid} on this host is gone"
    if age >= timeout_s:
        return f"no heartbeat for {age:.0f} s"
    return None


def describe_holder(claims_dir: str | os.PathLike, run_id: str,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """One phrase for a waiting worker: who holds `run_id`, its heartbeat's age and when the
    claim will be taken over if it stays silent."""
    path = Path(claims_dir) / f"{run_id}.claim"
    info = _read(path)
    age = _age(path, info)
    if not isinstance(info, dict):
        left = max(0.0, UNREADABLE_STALE_S - age)
        return f"an unreadable claim ({path}), taken over in {left:.0f} s"
    when = time.strftime("%H:%M:%S", time.localtime(_epoch_seconds() + max(0.0, timeout_s - age)))
    return (f"held by {info.get('host')} pid {info.get('pid')}, heartbeat {age:.0f} s ago; "
            f"taken over at {when} if it stays silent (--claim-timeout {timeout_s:g})")


def try_claim(claims_dir: str | os.PathLike, run_id: str, *,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> Claim | None:
    """Claim `run_id`, taking over a stale claim; None if a live worker holds it."""
    claims_dir = Path(claims_dir)
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / f"{run_id}.claim"
    info = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "token": uuid.uuid4().hex, "started": _epoch_seconds(), "heartbeat": _epoch_seconds()}
    if _create(path, info):
        return Claim(path, info)
    old = _read(path)
    why = stale_reason(path, old, timeout_s)
    if why is None:
        return None
    # Stale: move it away under a name only we use. If its token changed between our read and
    # the rename, its owner (or a faster worker) renewed it: put it back and stay out.
    moved = path.with_name(f"{path.name}.stale-{info['token']}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return None
    now_there = _read(moved)
    if (now_there or {}).get("token") != (old or {}).get("token"):
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
        moved.unlink(missing_ok=True)
        return None
    moved.unlink(missing_ok=True)
    info["took_over"] = {**{k: (old or {}).get(k) for k in ("host", "pid", "heartbeat")},
                         "why": why}
    return Claim(path, info) if _create(path, info) else None


def holder(claims_dir: str | os.PathLike, run_id: str) -> dict | None:
    """Who holds `run_id` now (the claim's contents), or None."""
    return _read(Path(claims_dir) / f"{run_id}.claim")
