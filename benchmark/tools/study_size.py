"""How long gpu_check's study may train: its cost per epoch timed on this device
(`size_study`, run as `gpu_check --size-study`), and the epochs that finish inside the time
left (`study_epochs`), with the GPU's planned start-up and safety or, under `--dry`, this
machine's measured start-up (`dry_startup`)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

STUDY_SAFETY = 0.5  # plan the study to take half its time: launch, data, captures, noise
STARTUP_S = 30  # a runner's launch, imports and data before its first step (planned, not timed)
# --dry: the CPU rehearsal's epochs are timed on this loaded CPU by the sizing step itself (no
# capture, no first-time cuDNN search to allow for); its start-up is measured: the smoke step's
# wall time, the same launcher and runner on a tiny suite (`dry_startup`).
DRY_STUDY_SAFETY = 0.8


def size_study(argv: list[str]) -> dict:
    """`--size-study SUITE_ARGS...`: the study's cost per epoch from its real steps timed on
    this device (cost.estimate, as --dry-run), and the fewest epochs its schedule allows.
    Printed as JSON lines: first {"min_epochs"} (before any timing, so a sizing stopped at its
    deadline still lets the study run at its fewest epochs), then
    {"per_epoch_s", "fixed_s", "min_epochs", "clock"}."""
    import torch

    from benchmark.runner.cli import build_suite, parse_args
    from benchmark.suites import plan
    from benchmark.suites.config import ConfigError
    from benchmark.suites.expand import expand
    from benchmark.tools import cost

    args = parse_args(argv)
    suite = build_suite(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = args.mixed_precision or ("bf16" if device.type == "cuda" else "no")
    least = suite.train.epochs
    for e in range(1, suite.train.epochs + 1):
        try:
            build_suite(parse_args([*argv, "--epochs", str(e)]))
        except ConfigError:
            continue
        least = e
        break
    print(json.dumps({"min_epochs": least}), flush=True)
    runs = expand(suite)
    packs = plan.make_packs(runs, suite.train.pack, device.type)
    est = cost.estimate(packs, device, precision=precision,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    total = sum(e["seconds"] for e in est.values())
    fixed = sum(e["fixed_seconds"] for e in est.values())
    return {"per_epoch_s": (total - fixed) / suite.train.epochs, "fixed_s": fixed,
            "min_epochs": least, "clock": cost.clock_of(device)}


def study_usable(sized: dict, seconds: float, *, startup: float = STARTUP_S,
                 safety: float = STUDY_SAFETY) -> float:
    """Seconds of `seconds` left for the study's epochs: `safety` of them, less the runner's
    `startup` and the sizing's fixed cost (evaluation, CAM models)."""
    return seconds * safety - startup - sized["fixed_s"]


def study_epochs(sized: dict | None, seconds: float, cap: int, *, startup: float = STARTUP_S,
                 safety: float = STUDY_SAFETY) -> int | None:
    """The epochs whose runs finish in `seconds` with room to spare (`study_usable`: the GPU's
    STUDY_SAFETY and STARTUP_S by default; `--dry` passes its measured start-up): None when
    not even the fewest allowed epochs fit or the sizing gave nothing."""
    if not sized or sized["per_epoch_s"] <= 0:
        return None
    usable = study_usable(sized, seconds, startup=startup, safety=safety)
    epochs = min(cap, math.floor(usable / sized["per_epoch_s"]))
    return epochs if epochs >= sized["min_epochs"] else None


def dry_startup(took: dict[str, float]) -> float:
    """--dry: the start-up the study's runner will need, measured on this machine now: the
    smoke step's wall time (the same launcher and runner, a tiny suite: its start-up, data,
    training and rendering), else the sizing step's (a process that imports torch and times
    steps), else STARTUP_S."""
    for name in ("smoke", "size_study"):
        if name in took:
            return took[name]
    return STARTUP_S


def sizing_lines(log: Path) -> list[dict]:
    """The JSON lines the sizing step printed (its fewest epochs first, then its sizing)."""
    found = []
    for line in (log.read_text(errors="replace").splitlines() if log.is_file() else []):
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found
