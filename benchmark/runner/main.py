"""Run a suite: `erasebench run --suite smoke` (or `accelerate launch benchmark/run.py ...`).

Every process is a worker on the suite's results folder: it claims the runs nobody holds
(runner/claims.py), trains them in packs (suites/plan.py, training/train.py) and writes
one record per run. So `accelerate launch --num_processes N`, two shells, `--runs-per-device N`
and SLURM array tasks all share the work the same way; finished runs are skipped,
interrupted ones resume from their checkpoint.
"""  # noqa: E501 - the first line is `erasebench run --help`'s description (parse_args)

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmark import results
from benchmark.fileio import WriteError, write_error
from benchmark.report.grid import planned_run as expected
from benchmark.runner import claims
from benchmark.runner.worker import Stop, Worker
from benchmark.suites import fingerprint, plan
from benchmark.suites.config import ConfigError, load_suite, validate
from benchmark.suites.expand import RunSpec, apply_overrides, expand, parse_seeds
from benchmark.training.pack import PRECISIONS

IMPORTS_RUN_CODE = (
    "Security: a suite with `imports:` (and each --import) runs that Python code (the module or "
    ".py file) as soon as the suite is read, with your permissions, even with --dry-run. Read "
    "a suite's imported files before you run a suite you did not write. Results folders are "
    "data, not code: checkpoints are loaded with torch.load(weights_only=True).")


class _OneLineParser(argparse.ArgumentParser):
    """A bad option value is one line, `error: argument --epochs: invalid int value: 'x'`, exit
    2, like every other bad value (argparse would print its whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_args(argv=None, prog: str = "erasebench run") -> argparse.Namespace:
    p = _OneLineParser(prog=prog, description=__doc__.splitlines()[0],
                                epilog=IMPORTS_RUN_CODE)
    p.add_argument("--suite", default="smoke",
                   help="a name in configs/ or a path to a YAML file (default: smoke); its "
                   "`imports:` run as Python code when it is read, even with --dry-run")
    p.add_argument("--epochs", type=int,
                   help="override train.epochs (LR milestones and warm-up scale with it)")
    p.add_argument("--seeds", help="override seeds: 0,1,2 or 0-4")
    p.add_argument("--models", help="override models: comma-separated, e.g. resnet20,timm/resnet18")
    p.add_argument("--erasers", help="keep only these methods (names or labels), e.g. plain,cutout")
    p.add_argument("--data", help="override the dataset: synthetic, cifar10, cifar100, hf:<id>")
    p.add_argument("--data-dir", help="where datasets live (default: $ERASEBENCH_DATA or ./data)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option (repeatable), e.g. n_train=5000, or for hf: datasets "
                   "data_dir=... (Hugging Face's own)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE|FILE",
                   help="import a module or .py file that registers erasers (repeatable); "
                   "it runs as Python code, even with --dry-run")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR with torchvision if absent")
    p.add_argument("--out", default="runs",
                   help="put results/, leaderboards/ and wandb/ under this folder (default: runs, "
                        "untracked; `--out .` writes the repository's committed leaderboards/)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and their estimated cost; train nothing")
    p.add_argument("--mixed-precision", choices=("no", "bf16"),
                   help="default: Accelerate's setting (accelerate launch --mixed_precision)")
    p.add_argument("--graphs", choices=("auto", "on", "off"),
                   help="override train.graphs: capture each step in a CUDA graph (auto: on CUDA)")
    p.add_argument("--pack", help="override train.pack: auto, off, or K runs per stacked network")
    p.add_argument("--runs-per-device", type=int, default=1, metavar="N",
                   help="N worker processes share each device (for runs that do not stack)")
    p.add_argument("--claim-timeout", type=float, default=claims.DEFAULT_TIMEOUT_S, metavar="S",
                   help="a claim whose heartbeat is older than S seconds is taken over "
                   "(default: 600)")
    p.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    p.add_argument("--wandb-project", default="erasebench",
                   help="W&B project (default: erasebench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch threads per process on the CPU "
                   "(default: the machine's cores divided by the number of processes)")
    p.add_argument("--rerun-changed", action="store_true",
                   help="retrain runs whose record was made by another config (moved aside)")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again")
    p.add_argument("--device", help=argparse.SUPPRESS)  # a --runs-per-device worker's device
    return p.parse_args(argv)


def split(text: str, option: str | None = None, example: str = "") -> list[str]:
    """Comma-separated names; with `option`, a list that names nothing (`--models ,`, `--models
    ''`) or names one twice is a one-line ConfigError: it would train nothing, or twice."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if option is None:
        return items
    if not items:
        raise ConfigError(f"{option} {text!r}: names nothing; expected comma-separated names, "
                          f"e.g. {example}")
    twice = sorted({x for x in items if items.count(x) > 1})
    if twice:
        raise ConfigError(f"{option} {text!r}: names {', '.join(twice)} more than once")
    return items


def parse_pack(text: str | None):
    if text is None:
        return None
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"--pack {text!r}: expected auto, off or a pack size >= 1")


def data_options(items: list[str]) -> dict:
    """--data-option key=value (values read as YAML scalars: 5000 is an int, true a bool)."""
    import yaml

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--data-option {item!r}: expected key=value")
        if key.strip() in out:
            raise ConfigError(f"--data-option {key.strip()}: given twice; give each key once")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def check_cli(args) -> None:
    """The options' own values, before the suite (and its imports) is read: one ConfigError line
    each."""
    for imp in args.imports:
        if not imp.strip():
            raise ConfigError("--import '': expected a module name or a .py file")
    for opt in ("runs_per_device", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise ConfigError(f"--{opt.replace('_', '-')} {value}: must be >= 1")
    if args.claim_timeout <= 0:
        raise ConfigError(f"--claim-timeout {args.claim_timeout:g}: must be > 0 seconds")
    for opt in ("data", "data_dir", "suite"):
        if getattr(args, opt) is not None and not getattr(args, opt).strip():
            raise ConfigError(f"--{opt.replace('_', '-')} '': expected a value")


def build_suite(args):
    check_cli(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    models = split(args.models, "--models", "resnet20,timm/resnet18") \
        if args.models is not None else None
    methods = split(args.erasers, "--erasers", "plain,cutout") \
        if args.erasers is not None else None
    options = data_options(args.data_option)
    suite = load_suite(args.suite, extra_imports=args.imports)
    file_epochs = suite.train.epochs
    suite = apply_overrides(suite, epochs=args.epochs, seeds=seeds, models=models,
                            methods=methods, data=args.data, data_dir=args.data_dir)
    suite.data.options.update(options)
    if args.download:
        suite.data.download = True
    if args.graphs is not None:
        suite.train.graphs = args.graphs
    pack = parse_pack(args.pack)
    if pack is not None:
        suite.train.pack = pack
    if any(x is not None for x in (args.epochs, seeds, models, methods, args.data)) or options:
        try:  # what the options changed (--epochs rescales milestones and warm-ups)
            validate(suite, milestones_in_range=False)
        except ConfigError as e:
            if args.epochs is None or args.epochs == file_epochs:
                raise
            raise ConfigError(f"{e} (values rescaled by --epochs {args.epochs} from the file's "
                              f"train.epochs {file_epochs}; give a larger --epochs)") from None
    return suite


def dry_run(runs: list[RunSpec], packs: list[plan.Pack], device, states: dict,
            precision: str) -> None:
    """Print the packs and runs with a time estimate measured on this device's real step;
    finished runs show as done, failed ones (not retrained without --retry-failed) as failed,
    and neither costs anything."""
    from benchmark.tools import cost

    done = {i for i, st in states.items() if st is not None}
    est = cost.estimate(packs, device, precision=precision, done=done,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    width = max(len(r.run_id) for r in runs)
    print(f"{'run':<{width}}  {'pack':>4} {'mode':<7} {'warmup':>6} {'epochs':>6} {'images':>12} "
          f"{'est. time':>10}")
    for i, p in enumerate(packs):
        for r in p.runs:
            e = est[r.run_id]
            dep = (f"  (forks {r.fork_from} at epoch {r.method.warmup_epochs})" if r.fork_from
                   else "")
            dep += f"  (CAM from {r.frozen_from})" if r.frozen_from else ""
            when = states[r.run_id] or cost.fmt_seconds(e["seconds"])
            when = "done" if when == "finished" else when
            print(f"{r.run_id:<{width}}  {i:>4} {r.method.mode or '-':<7} "
                  f"{r.method.warmup_epochs:>6} {r.train.epochs:>6} {e['images']:>12,} "
                  f"{when:>10}{dep}")
    forked = [r for r in runs if r.fork_from]
    warm = [r for r in runs if r.method.warmup_epochs > 0 and not r.method.is_plain]
    if warm:
        saved = sum(r.method.warmup_epochs for r in forked)
        print(f"shared warm-up: {len(forked)} of {len(warm)} warm-ups forked "
              f"({saved} epochs saved)")
    sizes = [len(p.runs) for p in packs]
    total = sum(est[r.run_id]["seconds"] for r in runs)
    failed = list(states.values()).count("failed")
    also = f", {failed} failed (--retry-failed trains them again)" if failed else ""
    print(f"{len(runs)} runs in {len(packs)} packs (sizes {', '.join(map(str, sizes))}), "
          f"{len(done) - failed} already done{also}; the rest estimated {cost.fmt_seconds(total)} "
          f"({total / 3600:.2f} device-hours) on {results.device_name(device)}, one process, "
          f"{'bf16' if precision == 'bf16' else 'fp32'}; rates measured here on the real step")


def _device(args):
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


def _precision(acc, args=None) -> str:
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


def check_out(out: Path) -> str | None:
    """--out must be a folder we can write: checked before any training, not at the first save."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: is a file, not a folder"
    probe = out / f".erasebench-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"--out {out}: not writable ({e.strerror or e})"
    return None


def preflight(args, suite, runs: list[RunSpec], results_dir: Path) -> list[str]:
    """Every check that can fail before training, each failure one line (exit 2); a dry run
    makes the same checks (it only writes nothing and fetches nothing)."""
    from benchmark import models

    problems = [] if args.dry_run else [p for p in [check_out(Path(args.out))] if p]
    for name in suite.models:
        try:
            models.check(name)
        except ValueError as e:
            problems.append(f"{suite.file}: key 'models': {e}")
    rescaled = "" if args.epochs is None else (
        f" (values rescaled by --epochs {args.epochs} in proportion to the file's train.epochs; "
        "give a larger --epochs)")
    problems += [p + rescaled for p in check_warmups(suite)]
    problems += check_data(suite, dry_run=args.dry_run)
    return problems


def check_warmups(suite) -> list[str]:
    """A method whose warm-up lasts the whole run would train plainly under its eraser's name."""
    from benchmark.suites.config import expand_method
    from benchmark.suites.expand import resolve_method

    epochs, out = suite.train.epochs, []
    for i, m in enumerate(suite.methods):
        for v, _ in expand_method(m, src=suite.file, where=f"methods[{i}]"):
            r = resolve_method(v, epochs)
            if not r.is_plain and r.warmup_epochs >= epochs:
                out.append(f"{suite.file}: key 'methods[{i}].warmup_epochs' is {r.warmup_epochs} "
                           f"for {r.label}, but train.epochs is {epochs}: its eraser would never "
                           f"run; allowed: 0..{epochs - 1}")
    return out


def check_data(suite, dry_run: bool = False) -> list[str]:
    """Load both splits (into the cache the runs read) and check them: options, files, labels
    (`data.check_splits`) and the batch size against the training split. A dry run of CIFAR that
    is not downloaded yet plans with a one-line warning (its sizes are known)."""
    from benchmark import data
    from benchmark.fileio import DamagedFileError, warn

    d, problems = suite.data, []
    download = d.download and not dry_run  # a dry run fetches nothing
    try:
        data.check(d.name, d.data_dir, download=download, **d.options)
        train, _ = data.load_checked(d.name, d.data_dir, download=download, **d.options)
    except FileNotFoundError as e:
        if dry_run and d.name in ("cifar10", "cifar100"):
            warn(f"{suite.file}: key 'data': {e} (planned with {d.name}'s known sizes; the run "
                 "itself needs it)")
        else:
            problems.append(f"{suite.file}: key 'data': {e}")
        return problems
    except (ValueError, DamagedFileError, data.DataUnavailableError) as e:
        return [f"{suite.file}: key 'data': {e}"]
    if suite.train.batch_size > len(train):
        problems.append(f"{suite.file}: key 'train.batch_size' is {suite.train.batch_size}, but "
                        f"the training split of {d.name} has {len(train)} images; allowed: "
                        f"1..{len(train)}")
    return problems


def data_identity(suite) -> dict | None:
    """The identity of the suite's data if preflight loaded it in this process, else None."""
    from benchmark import data

    d = suite.data
    return data.identity(d.name, d.data_dir, download=d.download, load=False, **d.options)


def check_fingerprints(runs: list[RunSpec], results_dir: Path, precision: str,
                       rerun_changed: bool, data_identity: dict | None = None,
                       dry_run: bool = False) -> str | None:
    """A record or resume checkpoint made by another config stops the suite (one line naming the
    keys that differ), unless --rerun-changed, which moves those files aside so the runs train
    again (a dry run only says how many it would retrain). `data_identity`: the data this run
    would train on (`benchmark.data.identity`), compared with the records' own."""
    from benchmark.fileio import move_aside
    from benchmark.training.resume import resume_path

    changed, keys = [], {}
    for r in runs:
        path = results.record_path(results_dir, r.run_id)
        rec = results.read_record(path, set_aside=not dry_run) if path.is_file() else None
        if rec is not None:
            diff = fingerprint.diff_record(rec, r, precision, data_identity)
        else:
            path = resume_path(results_dir / "checkpoints", r.run_id)
            diff = fingerprint.diff_resume(path, r, precision)
        if diff:
            changed.append(path)
            for key, old, new in diff:
                keys.setdefault(key, (old, new))
    if not changed:
        return None
    if rerun_changed and dry_run:
        print(f"note: {len(changed)} records of another config would be moved aside (*.changed) "
              "and their runs trained again; --dry-run moves nothing", file=sys.stderr)
        return None
    if rerun_changed:
        for path in changed:
            move_aside(path, ".changed")
        print(f"note: {len(changed)} records of another config moved aside (*.changed); their "
              "runs train again", file=sys.stderr)
        return None
    return fingerprint.refusal(results_dir, len(changed), keys)


def main(argv=None, prog: str = "erasebench run") -> int:
    args = parse_args(argv, prog)
    try:
        suite = build_suite(args)
        runs = expand(suite)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    results_dir = out / "results" / suite.name
    acc, device, index, count = _device(args)
    _threads(args, device, count)
    problems = preflight(args, suite, runs, results_dir)
    if not problems:  # the suite's methods on its models and image size (torch: not in config)
        from benchmark.runner.method_checks import check_methods

        more, warnings = check_methods(suite, runs)
        problems += more
        for w in warnings if index == 0 else []:
            print(f"warning: {w}", file=sys.stderr, flush=True)
    if _precision(acc, args) not in PRECISIONS:
        problems.append(f"mixed precision {_precision(acc, args)!r}: erasebench trains in 'no' "
                        "(fp32) or 'bf16'; fp16 would need loss scaling")
    if not problems and not args.device:
        problems = [p for p in [check_fingerprints(runs, results_dir, _precision(acc, args),
                                                   args.rerun_changed and index == 0,
                                                   data_identity(suite), args.dry_run)] if p]
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
            dry_run(runs, packs, device, states, _precision(acc, args))
        return 0
    stop = Stop().install()
    try:
        return _train_suite(args, argv, suite, runs, packs, acc, device, (index, count), stop)
    except fingerprint.ConfigChanged as e:  # found while working: what a rerun would say
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from benchmark.data import DataUnavailableError

        if isinstance(e, DataUnavailableError):  # the network or a dataset id: not a result
            print(f"error: {e}", file=sys.stderr)
            return 2
        failed = write_error(e)  # a full disk (any write): the environment, not a run
        if failed is None:
            raise
        print(f"error: {failed}; nothing was recorded for the run; rerun the same command to "
              "resume once the write can succeed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopped at once; rerun the same command to resume {suite.name} from the last "
              "checkpoints", file=sys.stderr)
        return 130


def _threads(args, device, count: int) -> None:
    if device.type == "cpu":
        import torch

        # `accelerate launch` exports OMP_NUM_THREADS=1 unless configured, which halves CPU speed
        # on 2 cores; default to the cores shared out between the processes instead.
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // (
            count * max(1, args.runs_per_device))))


def _train_suite(args, argv, suite, runs, packs, acc, device, process, stop: Stop) -> int:
    out = Path(args.out)
    results_dir = out / "results" / suite.name
    work_dir = results_dir / "checkpoints"
    work_dir.mkdir(parents=True, exist_ok=True)
    children = spawn_workers(args, argv, args.runs_per_device, device, _precision(acc, args)) \
        if args.runs_per_device > 1 and not args.device else []
    command = shlex.join(["erasebench", "run", *(sys.argv[1:] if argv is None else map(str, argv))])
    t_suite = time.perf_counter()
    worker = Worker(args, runs, device, _precision(acc, args), results_dir, work_dir, command,
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
        lb = out / "leaderboards" / f"{suite.name}.md"
        try:
            _render(suite, runs, results_dir, work_dir, lb)
        except Exception as e:
            failed = write_error(e, lb)  # a full disk: the records are safe, the render is not
            if failed is None:
                raise
            print(f"error: {failed}; the records are safe in {results_dir}, but the leaderboard "
                  f"{lb} was not written; once the write can succeed, render it with: "
                  f"erasebench leaderboard --suite {suite.name} --results {results_dir} "
                  f"--out {lb}", file=sys.stderr)
            return 1
        if not args.no_wandb:
            from benchmark.report.compare import read_summary
            from benchmark.runner import tracking

            tracking.log_leaderboard(read_summary(str(lb)), project=args.wandb_project,
                                     out_dir=out)
        states = [results.status(results_dir, r.run_id) for r in runs]
        failed = states.count("failed")
        hint = " (kept as results; --retry-failed trains them again)" if failed else ""
        print(f"suite {suite.name}: {states.count('finished')}/{len(runs)} runs finished, "
              f"{failed} failed{hint} ({worker.trained} trained here, {worker.skipped} already "
              f"done) in {time.perf_counter() - t_suite:.0f}s; results: {results_dir}; "
              f"leaderboard: {lb}")
        _wandb_hint(args)
    if acc is not None:
        acc.end_training()
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


def _wandb_hint(args) -> None:
    """Say where the offline W&B runs are and how to upload them."""
    from benchmark.runner import tracking

    runs = tracking.offline_runs(args.out)
    if args.no_wandb or not runs or tracking.wandb_mode() != "offline":
        return
    folder = Path(args.out) / "wandb"
    print(f"W&B: {len(runs)} offline run{'s' if len(runs) != 1 else ''} in {folder}/ (not "
          f"logged in); upload {'them' if len(runs) != 1 else 'it'} with: "
          f"wandb sync {folder}/offline-run-*")


def _render(suite, runs, results_dir: Path, work_dir: Path, lb: Path) -> None:
    from benchmark.report import leaderboard

    results.set_aside_damaged(results_dir)  # e.g. a copy of a record: each run counts once
    leaderboard.render_suite(suite.name, results_dir, lb, figures_dir=lb.parent / "figures",
                             expected_runs=[expected(r) for r in runs],
                             cam_figure_from=(runs, work_dir))


if __name__ == "__main__":
    sys.exit(main())
