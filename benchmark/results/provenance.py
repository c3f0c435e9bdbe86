"""Where and how a record was made: library versions, the git commit, the device, the date and
the process's environment (threads, launcher, SLURM). Never raises for a detail it cannot
read."""

from __future__ import annotations

import os
from pathlib import Path


def versions() -> dict:
    import importlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    # module versions carry the build (+cu130)
    for pkg in ("torch", "torchvision", "timm", "accelerate"):
        out[pkg] = getattr(importlib.import_module(pkg), "__version__", None)
    try:
        out["erasebench"] = version("erasebench")
    except PackageNotFoundError:
        out["erasebench"] = None
    return out


GENERATED = ("leaderboards", "results", "wandb")


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """HEAD of the erasebench checkout (with '-dirty' when tracked source files changed), or
    None."""
    import subprocess

    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        # Generated outputs (leaderboards a suite just rendered, results, W&B runs) do not make
        # the code that produced them dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){d}" for d in GENERATED)], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def utc_date() -> str:
    """Now, as ISO 8601 text in UTC to the second (a record's `date`)."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _launch_option(argv: list[str], option: str) -> str | None:
    """The value of `--option N` or `--option=N` in a command line (the last one wins)."""
    value = None
    for i, token in enumerate(argv):
        if token == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(option + "="):
            value = token.split("=", 1)[1]
    return value


def environment(command: str | None, process: tuple[int, int] = (0, 1)) -> dict:
    """How this process runs the suite: its torch CPU threads and how the suite was launched
    (see the module docstring's `environment`). Two records that differ only here may differ
    in their last digits on the CPU. Never raises: a detail it cannot read is None."""
    import shlex

    env = os.environ
    try:
        argv = shlex.split(command or "")
    except ValueError:
        argv = (command or "").split()
    if "--device" in argv or any(a.startswith("--device=") for a in argv):
        launcher = "runs-per-device worker"   # spawned by --runs-per-device, env cleaned
    elif env.get("TORCHELASTIC_RUN_ID"):
        launcher = "accelerate launch" if any(k.startswith("ACCELERATE_") for k in env) \
            else "torchrun"
    elif any(k.startswith("ACCELERATE_") for k in env):
        launcher = "accelerate launch"
    else:
        launcher = "plain"

    def number(text):
        try:
            return int(text)
        except (TypeError, ValueError):
            return None

    try:
        import torch

        threads, interop = torch.get_num_threads(), torch.get_num_interop_threads()
    except Exception:  # noqa: BLE001 - a record is never lost for a detail
        threads = interop = None
    slurm = None
    if env.get("SLURM_JOB_ID"):
        slurm = {"job": env.get("SLURM_JOB_ID"), "array_task": env.get("SLURM_ARRAY_TASK_ID")}
    return {"threads": threads, "interop_threads": interop,
            "threads_option": number(_launch_option(argv, "--threads")),
            "omp_num_threads": env.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
            "launcher": launcher, "processes": process[1],
            "runs_per_device": number(_launch_option(argv, "--runs-per-device")) or 1,
            "slurm": slurm}
