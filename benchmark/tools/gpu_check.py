"""The prepared GPU check: one command, a time budget, numbers back even when cut short.

    python -m benchmark.tools.gpu_check --budget 470 --out $OUT
    python -m benchmark.tools.gpu_check --dry --out /tmp/check   # the same, on the CPU, tiny

In order, each step given what is left of the budget after reserving every later step's
minimum and every step's grace (the seconds a stopped step gets after SIGTERM to finish its
epoch, write its checkpoint and render):
1. the gpu-marked tests (graphed vs eager for every step kind and eraser, stacked vs separate,
   no host sync inside a step);
2. `erasebench speed train`, its rows printed and its table written as each is measured;
3. `--suite smoke` on the GPU (bf16);
4. the study's size: its real steps timed (`--dry-run`'s estimate) to choose `--epochs` so that
   its runs finish inside what is left (records and a leaderboard come back);
5. `--suite synthetic_study` at that many epochs, packed.
Every child's output is echoed here line by line as it comes (and kept in its log); each step
ends with one summary line. The tarball under --out holds only files this check wrote: the
logs, summary.txt, its own speed table (never the committed leaderboards/speed.md), the
records and leaderboards of its own runs. W&B is off: the GPU machine has no network.
`--dry` runs the same orchestration on the CPU at tiny sizes (suites written from
configs/smoke.yaml and synthetic_study.yaml with 16-image batches) within --budget (115 s by
default); its speed step makes no op counts (`--op-count-k 0`: on a busy 2-core CPU they took
longer than the step's share, before its first row) and its tarball reserves 3 s, not 10.
Its study is sized for the CPU rehearsal: the epochs timed by the sizing step on this machine
as it is loaded now, its runner's start-up measured (the smoke step's wall time, not the
GPU's STARTUP_S) and DRY_STUDY_SAFETY, so a busy machine still brings back study records and
a leaderboard. A study that does not fit says which seconds did not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.tools.child import ROOT, Step, Terminated, raise_terminated, run_child
from benchmark.tools.study_size import (
    DRY_STUDY_SAFETY,
    STARTUP_S,
    STUDY_SAFETY,
    dry_startup,
    size_study,
    sizing_lines,
    study_epochs,
    study_usable,
)

RUNNER_GRACE_S = 90  # after SIGTERM, a runner finishes its epoch, checkpoints and renders
TAR_RESERVE_S = 10  # the summary and the tarball
DRY_TAR_RESERVE_S = 3  # --dry: a few small files (packed in well under a second)
MAX_STUDY_EPOCHS = 300  # the thesis's schedule


def step_seconds(steps: list[Step], i: int, left: float) -> float:
    """Seconds step i may run before its SIGTERM, given `left` in the budget: its cap, after
    reserving its own grace and every later step's least time and grace (so a stopped step's
    grace never eats the steps after it, and the budget holds even when every step is
    stopped)."""
    later = sum(s.least + s.grace for s in steps[i + 1:])
    seconds = left - later - steps[i].grace
    return seconds if steps[i].cap is None else min(steps[i].cap, seconds)


def _gpu_test_files() -> list[str]:
    """The test files that hold gpu-marked tests (collecting only them is seconds, not minutes)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.gpu" in p.read_text(encoding="utf-8"))


def _dry_suites(work: Path) -> dict[str, str]:
    """The smoke and study suites at tiny sizes for `--dry`: same files, 16-image batches."""
    import yaml

    out = {}
    for name, methods in (("smoke", ["plain", "cutout", {"name": "cam_erasing",
                                                          "params": {"b_h": 2}}]),
                          ("synthetic_study", ["plain", "cutout"])):
        suite = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        suite["data"]["options"].update(n_train=64, n_test=32)
        suite["train"].update(epochs=2, batch_size=16, milestones=[1], checkpoint_every=1)
        suite.update(seeds=[0], methods=methods)
        path = work / f"{name}-dry.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        out[name] = str(path)
    return out


def finished_work(name: str, log: Path) -> bool | None:
    """Whether a step stopped at its deadline had already done its work (its process was only
    slow to exit): True when done and good, False when done with failures (pytest's summary
    counts failures or errors), None when not done."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    if name == "gpu_tests":
        summary = r"\d+ (passed|failed|skipped|deselected|errors?)\b.* in [\d.]+s"
        done = [ln for ln in text.splitlines() if re.search(summary, ln)]
        if not done:
            return None
        return not re.search(r"\d+ (failed|errors?)\b", done[-1])
    if name == "speed":
        whole = re.search(r"^wrote ", text, re.M) and "Stopped by SIGTERM" not in text
        return True if whole else None
    if name == "size_study":
        return True if any("per_epoch_s" in d for d in sizing_lines(log)) else None
    return True if "SIGTERM arrived after every run of" in text else None


def _records(folder: Path) -> dict[str, int]:
    counts = {"finished": 0, "failed": 0}
    for p in folder.glob("results/*/*.json"):
        try:
            status = json.loads(p.read_text()).get("status")
        except (OSError, ValueError):
            continue
        if status in counts:
            counts[status] += 1
    return counts


def _yield_of(name: str, log: Path, work: Path) -> str:
    """What a step brought back, in a few words (for its summary line)."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    if name == "gpu_tests":
        last = [ln for ln in text.splitlines()
                if re.search(r"\d+ (passed|failed|skipped|deselected|error)", ln)]
        return last[-1].strip("= ") if last else "no pytest summary"
    if name == "speed":
        table = work / "speed.md"
        rows = table.read_text().splitlines() if table.is_file() else []
        measured = sum(1 for r in rows if re.match(r"\| \w+ \| [\w-]+ \| \(.\) .* \| [\d.]+ \|", r))
        failed = sum(1 for r in rows if "| failed: " in r)
        return f"{measured} rows measured, {failed} failed"
    if name == "size_study":
        return text.strip().splitlines()[-1] if text.strip() else "no output"
    if name == "synthetic_study" and text.startswith("skipped"):
        return "no records"
    c = _records(work / name)
    boards = sorted(p.name for p in (work / name / "leaderboards").glob("*"))
    return (f"{c['finished']} records finished, {c['failed']} failed; leaderboards: "
            f"{', '.join(boards) or 'none'}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.tools.gpu_check",
                                description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole check (default: 470; --dry: 115)")
    p.add_argument("--out", default="runs/gpu_check",
                   help="where the logs and the tarball go (default: %(default)s, untracked)")
    p.add_argument("--dry", action="store_true",
                   help="the same orchestration on the CPU at tiny sizes")
    p.add_argument("--size-study", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


@dataclass
class _Plan:
    """The check's steps and what the study step is launched with once it is sized."""
    steps: list[Step]
    launch: list[str]
    study_args: list[str]
    run_args: list[str]
    most_epochs: int
    dry: bool = False
    # filled as the steps run: each step's wall seconds, and the files this check wrote
    took: dict = None
    written: list = None

    def __post_init__(self):
        self.took = {} if self.took is None else self.took
        self.written = [] if self.written is None else self.written


def _plan(dry: bool, budget: float, work: Path) -> _Plan:
    """The five steps: on a GPU at the real sizes, or (`--dry`) on the CPU at tiny ones."""
    py = sys.executable
    if dry:
        suites = _dry_suites(work)
        launch = [py, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "benchmark/run.py", "--threads", "1"]
        # No op counts: on a busy 2-core CPU the K = 16 counts alone took 20 s of wall clock
        # (8 s of CPU), more than the step's 17 s, and came before its first row (K = 4: 7 s);
        # they are CPU work the same on every machine, tested by tests/training/test_op_count.py
        # and made by the real check. The table says they were not counted.
        speed = ["--models", "resnet20", "--batch", "8", "--steps", "1", "--warmup", "0",
                 "--workers", "0", "--stack", "4", "--device", "cpu", "--threads", "1",
                 "--op-count-k", "0"]
        cap = {"gpu_tests": 0.12 * budget, "speed": 0.15 * budget, "smoke": 0.3 * budget,
               "size_study": 0.25 * budget}
        grace, runner_grace, least = 5, 15, 10  # tiny epochs stop in seconds
        most_epochs = 4
    else:
        suites = {"smoke": "smoke", "synthetic_study": "synthetic_study"}
        launch = [py, "-m", "accelerate.commands.launch", "--num_processes", "1",
                  "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                  "benchmark/run.py"]
        speed = []
        cap = {"gpu_tests": 150, "speed": 120, "smoke": 60, "size_study": 90}
        grace, runner_grace, least = 10, RUNNER_GRACE_S, 20
        most_epochs = MAX_STUDY_EPOCHS
    run_args = ["--no-wandb", "--no-progress"]
    study_args = ["--suite", suites["synthetic_study"], *(["--threads", "1"] if dry else [])]
    steps = [
        Step("gpu_tests", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           *_gpu_test_files()], cap["gpu_tests"], grace, least),
        Step("speed", [py, "-m", "benchmark", "speed", "train", *speed, "--out",
                       str(work / "speed.md")], cap["speed"], grace, least),
        Step("smoke", [*launch, "--suite", suites["smoke"], *run_args, "--out",
                       str(work / "smoke")], cap["smoke"], runner_grace, least),
        Step("size_study", [py, "-m", "benchmark.tools.gpu_check", "--size-study",
                            *study_args], cap["size_study"], grace, least),
        Step("synthetic_study", None, None, runner_grace, least),
    ]
    return _Plan(steps, launch, study_args, run_args, most_epochs, dry)


def _run_steps(plan: _Plan, left, out: Path, work: Path, env: dict) -> tuple[list, dict, bool]:
    """Run each step inside its share of what is `left()`; one summary line per step, printed
    as it ends. The study step is sized from the sizing step's measured steps; when the sizing
    was stopped or failed, it runs at its fewest epochs if they were printed and time is left.
    A step stopped at its deadline after finishing its work counts as done (code 0). SIGTERM
    to this process stops the running step (with its grace) and ends the steps: (summary,
    codes, terminated)."""
    summary, codes, sized, least_epochs = [], {}, None, None
    for i, step in enumerate(plan.steps):
        try:
            line = _one_step(plan, i, left, out, work, env, codes, sized, least_epochs)
        except Terminated as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else None
            codes[step.name] = code if code is not None else -15
            line = (f"step {step.name}: stopped by SIGTERM to gpu_check (exit {code}); "
                    f"{_yield_of(step.name, out / f'{step.name}.log', work)}")
            summary.append(line)
            print(line, flush=True)
            for later in plan.steps[i + 1:]:
                codes[later.name] = None
                summary.append(f"step {later.name}: not run (gpu_check got SIGTERM)")
                print(summary[-1], flush=True)
            return summary, codes, True
        if step.name == "size_study":
            found = sizing_lines(out / f"{step.name}.log")
            sized = next((d for d in reversed(found) if "per_epoch_s" in d), None)
            least_epochs = next((d["min_epochs"] for d in found if "min_epochs" in d), None)
        summary.append(line)
        print(line, flush=True)
    return summary, codes, False


def _one_step(plan: _Plan, i: int, left, out: Path, work: Path, env: dict, codes: dict,
              sized: dict | None, least_epochs: int | None) -> str:
    """Run (or skip) step i; its code into `codes`; its summary line."""
    step = plan.steps[i]
    seconds = step_seconds(plan.steps, i, left())
    log = out / f"{step.name}.log"
    why, how = f"{seconds:.0f} s left", ""
    if step.cmd is None:  # the study, at the epochs its measured steps allow
        allow = ({"startup": dry_startup(plan.took), "safety": DRY_STUDY_SAFETY} if plan.dry
                 else {"startup": STARTUP_S, "safety": STUDY_SAFETY})
        epochs = study_epochs(sized, seconds, plan.most_epochs, **allow)
        if epochs is None and not sized and least_epochs is not None:
            epochs = least_epochs  # the sizing was stopped or failed: the fewest epochs
            how = f" (at its fewest epochs, {epochs}: the sizing gave no cost)"
        if epochs is None:
            why = "no sizing" if not sized else (
                f"{seconds:.0f} s, kept to {allow['safety']:g} of it, less {allow['startup']:.0f}"
                f" s start-up and {sized['fixed_s']:.0f} s fixed cost, leave "
                f"{study_usable(sized, seconds, **allow):.0f} s: fewer than the "
                f"{sized['min_epochs']} epochs of {sized['per_epoch_s']:.2g} s the study needs")
            seconds = -1.0
        else:
            step.cmd = [*plan.launch, *plan.study_args, "--epochs", str(epochs),
                        *plan.run_args, "--out", str(work / step.name)]
    plan.written.append(log)  # this check's own log (never an older one in --out)
    if seconds < step.least:
        log.write_text(f"skipped: {why}\n")
        codes[step.name] = None
        return f"step {step.name}: skipped ({why})"
    start = time.monotonic()
    code, stopped = run_child(step, log, seconds, env)
    took = plan.took[step.name] = time.monotonic() - start
    note = " (stopped at the deadline)" if stopped else ""
    if stopped and code != 0:
        done = finished_work(step.name, log)
        if done is True:
            note = " (stopped at the deadline after finishing its work)"
            code = 0
        elif done is False:
            note = " (stopped at the deadline after finishing its work, which failed)"
            code = 1
    codes[step.name] = code
    return (f"step {step.name}{how}: exit {code}, {took:.0f} s of {seconds:.0f}{note}; "
            f"{_yield_of(step.name, log, work)}")


def _pack(out: Path, work: Path, summary: list[str], written: list[Path]) -> Path:
    """The tarball: this check's logs (`written`: the logs this invocation wrote, never another
    file already in `out`), summary, speed table, records and leaderboards only."""
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    with tarfile.open(out / "gpu_check.tar.gz", "w:gz") as tar:
        for f in [*dict.fromkeys(f for f in written if f.is_file()), out / "summary.txt"]:
            tar.add(f, arcname=f"logs/{f.name}")
        if (work / "speed.md").is_file():  # this check's own table, never the committed one
            tar.add(work / "speed.md", arcname="leaderboards/speed.md")
        for name in ("smoke", "synthetic_study"):
            for rec in sorted((work / name).glob("results/*/*.json")):
                tar.add(rec, arcname=f"{name}/{rec.relative_to(work / name)}")
            lb = work / name / "leaderboards"
            if lb.is_dir():
                tar.add(lb, arcname=f"{name}/leaderboards")
    return out / "gpu_check.tar.gz"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.size_study is not None:  # the sizing step's child process
        print(json.dumps(size_study(args.size_study)), flush=True)
        return 0
    budget = args.budget or (115 if args.dry else 470)
    reserve = DRY_TAR_RESERVE_S if args.dry else TAR_RESERVE_S
    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A fresh folder per check: nothing from an earlier check (or the repository) is packed.
    work = Path(tempfile.mkdtemp(prefix="erasebench-gpu-check-"))
    # The GPU machine runs a copy of the working tree without `pip install`: put it on the path.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    terminated, plan = False, None
    try:
        plan = _plan(args.dry, budget, work)
        summary, codes, terminated = _run_steps(
            plan, lambda: budget - (time.monotonic() - t0) - reserve, out, work, env)
    except Terminated:  # before any step ran
        summary, codes, terminated = ["gpu_check got SIGTERM before its first step"], {}, True
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the summary and tarball come first
        tarball = _pack(out, work, summary, plan.written if plan is not None else [])
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)  # everything worth keeping is in the tarball
    print(f"codes: {codes}; wrote {tarball} in {time.monotonic() - t0:.0f} s"
          f"{' (stopped by SIGTERM)' if terminated else ''}", flush=True)
    if terminated:
        return 143
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
