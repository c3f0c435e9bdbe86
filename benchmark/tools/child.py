"""A step of the GPU check as a child process: its output echoed line by line and kept in its
log, SIGTERM to its process group at its deadline, SIGKILL after its grace; a SIGTERM to the
check itself stops the child the same way and is raised as `Terminated`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Terminated(Exception):
    """gpu_check itself got SIGTERM (e.g. the device tool's timeout): stop the running step,
    then still write the summary and the tarball of what exists, and exit 143."""


def raise_terminated(signum, frame):
    raise Terminated("SIGTERM")


@dataclass
class Step:
    name: str
    cmd: list[str] | None  # None: built when the step starts (the study's --epochs)
    cap: float | None  # at most this many seconds (None: whatever is left)
    grace: float  # seconds after SIGTERM before SIGKILL; reserved in the budget
    least: float  # skipped when fewer seconds than this are left for it


def _echo(pipe, log, name: str) -> None:
    """Copy a child's output line by line to its log and to this process's stdout, flushed."""
    for line in iter(pipe.readline, ""):
        log.write(line)
        log.flush()
        print(f"[{name}] {line}", end="", flush=True)
    pipe.close()


def run_child(step: Step, log: Path, seconds: float, env: dict) -> tuple[int | None, bool]:
    """Run a step with its output to log and stdout; SIGTERM to its process group at the
    deadline, SIGKILL `step.grace` s later. (exit code, stopped at the deadline)."""
    with log.open("w") as f:
        proc, echo, stopped, terminated = None, None, False, None
        try:  # a SIGTERM to this check from here on stops the child before it is passed on
            print(f"$ {' '.join(step.cmd)}  (up to {seconds:.0f} s + {step.grace:.0f} s grace)",
                  flush=True)
            # A session of its own: the signal reaches the whole group (`accelerate launch` does
            # not forward SIGTERM to the worker it starts), as SLURM signals every process of a
            # step.
            proc = subprocess.Popen(step.cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, text=True,
                                    start_new_session=True)
            echo = threading.Thread(target=_echo, args=(proc.stdout, f, step.name), daemon=True)
            echo.start()
            code = proc.wait(timeout=seconds)
        except (subprocess.TimeoutExpired, Terminated) as e:
            stopped = True
            terminated = e if isinstance(e, Terminated) else None
            if proc is None:
                raise Terminated(None) from None
            # Further SIGTERMs to this process must not cut the child's grace short.
            previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                code = _stop(proc, step.grace)
            finally:
                signal.signal(signal.SIGTERM, previous)
        if echo is not None:
            echo.join(timeout=5)
    if terminated is not None:
        raise Terminated(code)
    return code, stopped


def _stop(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM to the child's process group, SIGKILL `grace` s later; its exit code."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        code = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        code = None
    if not _group_gone(proc.pid, 1 if code is None else grace / 2):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait() if code is None else code


def _group_gone(pgid: int, seconds: float) -> bool:
    """Wait up to `seconds` for every process of the group to exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


