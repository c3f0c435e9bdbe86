"""Launching: the Accelerate process (or a --runs-per-device worker's own device), the mixed
precision, the torch threads on the CPU, and the --runs-per-device worker subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys


def device_of(args):
    """(Accelerator or None, torch.device, process index, process count)."""
    import torch

    if args.device:  # a worker spawned by --runs-per-device: no distributed group of its own
        return None, torch.device(args.device), 0, 1
    from accelerate import Accelerator

    # Without CUDA, ask for the CPU explicitly: then
    # `accelerate launch --multi_gpu --num_processes N` (or torchrun) gives N gloo-connected CPU
    # processes instead of N unaware copies.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if (acc.num_processes == 1 and os.environ.get("MASTER_ADDR")
            and os.environ.get("ACCELERATE_USE_CPU") == "True"):
        print("note: `accelerate launch --cpu --num_processes N` starts one process (Accelerate "
              "runs multi-CPU through mpirun); for N processes use `accelerate launch --multi_gpu "
              "--num_processes N`, which without CUDA starts N CPU processes", file=sys.stderr)
    return acc, acc.device, acc.process_index, acc.num_processes


def precision_of(acc, args=None) -> str:
    if args is not None and args.mixed_precision:
        return args.mixed_precision
    mp = str(getattr(acc, "mixed_precision", "no"))
    return "no" if mp in ("no", "None") else mp


def spawn_workers(args, argv, n: int, device, precision: str) -> list[subprocess.Popen]:
    """n - 1 more worker processes on this process's device (--runs-per-device n)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "TORCHELASTIC_")) and k not in
           ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE")}
    argv = [a for a in (sys.argv[1:] if argv is None else list(map(str, argv)))]
    cmd = [sys.executable, "-m", "benchmark", "run", *argv, "--device", str(device),
           "--mixed-precision", precision, "--no-progress"]
    return [subprocess.Popen(cmd, env=env) for _ in range(n - 1)]


def set_threads(args, device, count: int) -> None:
    if device.type == "cpu":
        import torch

        # `accelerate launch` exports OMP_NUM_THREADS=1 unless configured, which halves CPU speed
        # on 2 cores; default to the cores shared out between the processes instead.
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // (
            count * max(1, args.runs_per_device))))
