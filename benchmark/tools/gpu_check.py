"""The prepared GPU check: one command, a time budget, everything a GPU must confirm.

    python -m benchmark.tools.gpu_check --budget 470 --out $OUT

In order, each step given what is left of the budget:
1. the gpu-marked tests (graphed vs eager for every step kind and eraser, stacked vs separate,
   no host sync inside a step);
2. `erasebench speed train` -> leaderboards/speed.md;
3. `--suite smoke` on the GPU (bf16);
4. as much of `--suite synthetic_study --epochs 300` as the time allows, packed: at the
   deadline the runner gets SIGTERM, finishes its epoch, checkpoints and renders what is done.
Logs and leaderboards are packed into one tarball under --out (the device tool brings back
at most 8 files). W&B is off: the GPU machine has no wandb and no network.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 90  # after SIGTERM: the current epoch, the checkpoints and the leaderboard


def _run(cmd: list[str], log: Path, seconds: float, env: dict) -> int | None:
    """Run cmd with output to log; SIGTERM at the deadline, SIGKILL 60 s later. None: no time."""
    if seconds < 20:
        log.write_text(f"skipped: {seconds:.0f} s left\n")
        return None
    print(f"$ {' '.join(cmd)}  (up to {seconds:.0f} s)", flush=True)
    with log.open("w") as f:
        # A session of its own: the signal reaches the whole group (`accelerate launch` does not
        # forward SIGTERM to the worker it starts), as SLURM signals every process of a step.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait()
            if not _group_gone(proc.pid, GRACE_S):  # the worker finishes its epoch and renders
                os.killpg(proc.pid, signal.SIGKILL)
            return code


def _group_gone(pgid: int, seconds: float) -> bool:
    """Wait up to `seconds` for every process of the group to exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.tools.gpu_check",
                                description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=470, help="seconds for the whole check")
    p.add_argument("--out", default="gpu_check", help="where the logs and the tarball go")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "erasebench-gpu-check"
    # The GPU machine runs a copy of the working tree without `pip install`: put it on the path.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    def left(reserve: float = 0) -> float:
        return args.budget - (time.monotonic() - t0) - reserve

    py = sys.executable
    launch = [py, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "bf16", "--dynamo_backend", "no", "benchmark/run.py"]
    steps = [
        ("gpu_tests", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], 150),
        ("speed", [py, "-m", "benchmark", "speed", "train", "--out", "leaderboards/speed.md"],
         120),
        ("smoke", [*launch, "--suite", "smoke", "--no-wandb", "--no-progress", "--out",
                   str(work / "smoke")], 60),
        ("synthetic_study", [*launch, "--suite", "synthetic_study", "--epochs", "300",
                             "--no-wandb", "--no-progress", "--out", str(work / "study")], None),
    ]
    codes = {}
    for name, cmd, cap in steps:
        seconds = left(GRACE_S) if cap is None else min(cap, left(GRACE_S))
        codes[name] = _run(cmd, out / f"{name}.log", seconds, env)
        print(f"{name}: exit {codes[name]} after {time.monotonic() - t0:.0f} s", flush=True)
    with tarfile.open(out / "gpu_check.tar.gz", "w:gz") as tar:
        for f in sorted(out.glob("*.log")):
            tar.add(f, arcname=f"logs/{f.name}")
        speed = ROOT / "leaderboards" / "speed.md"
        if speed.is_file():
            tar.add(speed, arcname="leaderboards/speed.md")
        for name in ("smoke", "study"):
            lb = work / name / "leaderboards"
            if lb.is_dir():
                tar.add(lb, arcname=f"leaderboards-{name}")
    print(f"codes: {codes}; wrote {out / 'gpu_check.tar.gz'} in {time.monotonic() - t0:.0f} s")
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
