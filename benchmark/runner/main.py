"""Run a suite: `erasebench run --suite smoke` (or `accelerate launch benchmark/run.py ...`).

Every process is a worker on the suite's results folder: it claims the runs nobody holds
(runner/claims.py), trains them in packs (suites/plan.py, training/train.py) and writes
one record per run. So `accelerate launch --num_processes N`, two shells, `--runs-per-device N`
and SLURM array tasks all share the work the same way; finished runs are skipped,
interrupted ones resume from their checkpoint.

This module is the suite's order of work; each step lives by its job: the command line
(runner/cli.py), preflight checks (runner/preflight.py), the fingerprint gate (runner/gate.py),
the dry-run table (runner/dry_run.py), launching (runner/launch.py), the worker
(runner/worker.py) and rendering (runner/render.py).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from benchmark import results
from benchmark.fileio import WriteError, write_error
from benchmark.runner.cli import (  # noqa: F401 - the command line's names, as they were here
    IMPORTS_RUN_CODE,
    build_suite,
    check_cli,
    data_options,
    parse_args,
    parse_pack,
    split,
    worker_options,
)
from benchmark.runner.dry_run import dry_run
from benchmark.runner.gate import check_fingerprints
from benchmark.runner.launch import device_of, precision_of, set_threads, spawn_workers
from benchmark.runner.preflight import (  # noqa: F401 - as they were here
    check_data,
    check_out,
    check_warmups,
    data_identity,
    preflight,
)
from benchmark.runner.render import render, wandb_hint
from benchmark.runner.worker import Stop, Worker
from benchmark.suites import fingerprint, plan
from benchmark.suites.config import PRECISIONS, ConfigError
from benchmark.suites.expand import expand


def main(argv=None, prog: str = "erasebench run") -> int:
    """`erasebench run`: 0 when every run finished, 1 when one failed (or a write failed), 2 for
    bad input (one line each, before any training), 128 + N after signal N."""
    args = parse_args(argv, prog)
    try:
        suite = build_suite(args)
        runs = expand(suite)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results_dir = Path(args.out) / "results" / suite.name
    acc, device, index, count = device_of(args)
    set_threads(args, device, count)
    precision = precision_of(acc, args)
    problems = _problems(args, suite, runs, results_dir, precision, index)
    if problems:
        if index == 0:
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    packs = plan.make_packs(runs, suite.train.pack, device.type)
    if args.dry_run:
        if index == 0:
            states = {r.run_id: results.status(results_dir, r.run_id, set_aside=False)
                      for r in runs}
            if args.retry_failed:
                states = {i: None if st == "failed" else st for i, st in states.items()}
            dry_run(runs, packs, device, states, precision)
        return 0
    stop = Stop().install()
    try:
        return _train_suite(args, argv, suite, runs, packs, acc, device, (index, count), stop)
    except Exception as e:
        return _environment_failure(e)
    except KeyboardInterrupt:
        print(_stopped_at_once(suite, runs, results_dir), file=sys.stderr)
        return 130


def _stopped_at_once(suite, runs, results_dir: Path) -> str:
    """What a second Ctrl-C leaves: the unfinished runs' resume checkpoints, or none yet."""
    from benchmark.training.resume import resume_path

    saved = sum(resume_path(results_dir / "checkpoints", r.run_id).is_file() for r in runs)
    if not saved:
        return (f"stopped at once, before any run of {suite.name} had a checkpoint (one every "
                f"{suite.train.checkpoint_every} epochs): rerun the same command to train them "
                "from the start")
    return (f"stopped at once; rerun the same command to resume {suite.name}: {saved} run(s) "
            "from their last checkpoint (the epochs after it are trained again), the others "
            "from the start")


def _problems(args, suite, runs, results_dir: Path, precision: str, index: int) -> list[str]:
    """Every one-line problem found before training: preflight, the methods on their models
    (torch: not in config), the precision, and the fingerprint gate (only once the rest is
    clean, and not in a --runs-per-device child: its parent checked)."""
    problems = preflight(args, suite, runs, results_dir)
    if not problems:
        from benchmark.runner.method_checks import check_methods

        more, warnings = check_methods(suite, runs)
        problems += more
        for w in warnings if index == 0 else []:
            print(f"warning: {w}", file=sys.stderr, flush=True)
    if precision not in PRECISIONS:
        problems.append(f"mixed precision {precision!r}: erasebench trains in 'no' "
                        "(fp32) or 'bf16'; fp16 would need loss scaling")
    if not problems and not args.device:
        problems = [p for p in [check_fingerprints(runs, results_dir, precision,
                                                   args.rerun_changed and index == 0,
                                                   data_identity(suite), args.dry_run)] if p]
    return problems


def _environment_failure(e: Exception) -> int:
    """A failure found while training that is no result of a run: a config changed under the
    worker (2), the data unavailable (2), a write the filesystem refused (1); else re-raised."""
    from benchmark.data import DataUnavailableError

    if isinstance(e, fingerprint.ConfigChanged | DataUnavailableError):
        print(f"error: {e}", file=sys.stderr)  # what a rerun would say; the network, a data id
        return 2
    failed = write_error(e)  # a full disk (any write): the environment, not a run
    if failed is None:
        raise e
    print(f"error: {failed}; nothing was recorded for the run; rerun the same command to "
          "resume once the write can succeed", file=sys.stderr)
    return 1


def _train_suite(args, argv, suite, runs, packs, acc, device, process, stop: Stop) -> int:
    """Train every run this process can claim (with its --runs-per-device children), then, in
    process 0, render the leaderboard; the exit code."""
    results_dir = Path(args.out) / "results" / suite.name
    work_dir = results_dir / "checkpoints"
    work_dir.mkdir(parents=True, exist_ok=True)
    precision = precision_of(acc, args)
    children = spawn_workers(args, argv, args.runs_per_device, device, precision) \
        if args.runs_per_device > 1 and not args.device else []
    command = shlex.join(["erasebench", "run", *(sys.argv[1:] if argv is None else map(str, argv))])
    t_suite = time.perf_counter()
    worker = Worker(worker_options(args), runs, device, precision, results_dir, work_dir, command,
                    process, stop)
    try:
        worker.run(packs)
    except WriteError:
        for c in children:  # they hit the same disk; a signal stops them after their epoch
            c.terminate()
            c.wait()
        raise
    for c in children:
        c.wait()
    if acc is not None and not stop.signum:
        acc.wait_for_everyone()
    if process[0] == 0 and not args.device:
        if not _finish(args, suite, runs, worker, time.perf_counter() - t_suite):
            return 1  # the leaderboard could not be written (its line is printed)
    if acc is not None:
        acc.end_training()
    return _exit_code(suite, runs, results_dir, stop, worker, children)


def _finish(args, suite, runs, worker: Worker, seconds: float) -> bool:
    """Process 0, after every worker: the leaderboard (and W&B's copy of it), one summary line;
    False (and one line) when a full disk stopped the leaderboard: the records are safe."""
    out = Path(args.out)
    results_dir = out / "results" / suite.name
    lb = out / "leaderboards" / f"{suite.name}.md"
    results.set_aside_damaged(results_dir)  # e.g. a copy of a record: each run counts once
    try:
        render(suite, runs, results_dir, results_dir / "checkpoints", lb)
    except Exception as e:
        failed = write_error(e, lb)  # a full disk: the records are safe, the render is not
        if failed is None:
            raise
        print(f"error: {failed}; the records are safe in {results_dir}, but the leaderboard "
              f"{lb} was not written; once the write can succeed, render it with: "
              f"erasebench leaderboard --suite {suite.name} --results {results_dir} "
              f"--out {lb}", file=sys.stderr)
        return False
    if not args.no_wandb:
        from benchmark.report.compare import read_summary
        from benchmark.runner import tracking

        tracking.log_leaderboard(read_summary(str(lb)), project=args.wandb_project, out_dir=out)
    states = [results.status(results_dir, r.run_id) for r in runs]
    failed = states.count("failed")
    hint = " (kept as results; --retry-failed trains them again)" if failed else ""
    print(f"suite {suite.name}: {states.count('finished')}/{len(runs)} runs finished, "
          f"{failed} failed{hint} ({worker.trained} trained here, {worker.skipped} already "
          f"done) in {seconds:.0f}s; results: {results_dir}; leaderboard: {lb}")
    wandb_hint(args)
    return True


def _exit_code(suite, runs, results_dir: Path, stop: Stop, worker: Worker, children) -> int:
    """128 + N after signal N with runs left (said in one line), else 1 if any run failed."""
    left = [r for r in runs if results.status(results_dir, r.run_id) is None]
    if stop.signum and left:
        print(f"interrupted {stop.where or 'between runs'}; {len(left)} of {len(runs)} runs left; "
              "rerun the same command to resume", file=sys.stderr)
        return stop.code
    if stop.signum:  # every run has its record: the signal cost nothing, nothing to resume
        import signal

        print(f"{signal.Signals(stop.signum).name} arrived after every run of {suite.name} had "
              "its record; nothing left to resume", file=sys.stderr)
    failed = any(results.status(results_dir, r.run_id) == "failed" for r in runs)
    return 1 if failed or worker.failed or any(c.returncode for c in children) else 0


if __name__ == "__main__":
    sys.exit(main())
