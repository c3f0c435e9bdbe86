"""Claim files: any number of workers share one results folder, and no run trains twice at once.

A worker claims a run by creating `<results>/claims/<run_id>.claim` exclusively (O_EXCL, which
is atomic on local filesystems and NFS v3+), holding its host, pid and a heartbeat it refreshes
while it trains. A claim whose heartbeat is older than the timeout belongs to a worker that
died (SIGKILL, a lost node): another worker takes it over and resumes the run from its last
checkpoint. No service is involved: the filesystem is the coordinator.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from benchmark.fileio import atomic_write

DEFAULT_TIMEOUT_S = 600.0


def _now() -> float:
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
    return _now() - max(mtime, float(beat) if isinstance(beat, (int, float)) else 0.0)


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
        self.info["heartbeat"] = _now()
        atomic_write(self.path, json.dumps(self.info))
        return True

    def release(self) -> None:
        if self.owned():
            self.path.unlink(missing_ok=True)


def _create(path: Path, info: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return True


def try_claim(claims_dir: str | os.PathLike, run_id: str, *,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> Claim | None:
    """Claim `run_id`, taking over a stale claim; None if a live worker holds it."""
    claims_dir = Path(claims_dir)
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / f"{run_id}.claim"
    info = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "token": uuid.uuid4().hex, "started": _now(), "heartbeat": _now()}
    if _create(path, info):
        return Claim(path, info)
    old = _read(path)
    if _age(path, old) < timeout_s:
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
    info["took_over"] = {k: (old or {}).get(k) for k in ("host", "pid", "heartbeat")}
    return Claim(path, info) if _create(path, info) else None


def holder(claims_dir: str | os.PathLike, run_id: str) -> dict | None:
    """Who holds `run_id` now (the claim's contents), or None."""
    return _read(Path(claims_dir) / f"{run_id}.claim")
