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
from benchmark.runner import claims
from benchmark.runner.worker import Stop, Worker
from benchmark.suites import fingerprint, plan
from benchmark.suites.config import ConfigError, load_suite
from benchmark.suites.expand import RunSpec, apply_overrides, expand, parse_seeds
from benchmark.training.pack import PRECISIONS


def parse_args(argv=None, prog: str = "erasebench run") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="smoke",
                   help="a name in configs/ or a path to a YAML file (default: smoke)")
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
                   help="import a module or .py file that registers erasers (repeatable)")
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


def split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


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
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def build_suite(args):
    suite = load_suite(args.suite, extra_imports=args.imports)
    suite = apply_overrides(
        suite, epochs=args.epochs, seeds=parse_seeds(args.seeds) if args.seeds else None,
        models=split(args.models) if args.models else None,
        methods=split(args.erasers) if args.erasers else None, data=args.data,
        data_dir=args.data_dir)
    suite.data.options.update(data_options(args.data_option))
    if args.download:
        suite.data.download = True
    if args.graphs is not None:
        suite.train.graphs = args.graphs
    pack = parse_pack(args.pack)
    if pack is not None:
        suite.train.pack = pack
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


def expected(r: RunSpec) -> dict:
    """What the leaderboard needs to place a planned run's cell before (or without) its record."""
    m = r.method
    cam = ({"source": m.cam.source, "layer": m.cam.layer, "target": m.cam.target} if m.needs_cam
           else None)
    return {"run_id": r.run_id, "model": r.model, "method": r.label, "seed": r.seed,
            "eraser": None if m.is_plain else m.name, "eraser_params": dict(m.params), "cam": cam}


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
    """Every check that can fail before training, each failure one line (exit 2)."""
    from benchmark import data, models
    from benchmark.fileio import DamagedFileError

    problems = [] if args.dry_run else [p for p in [check_out(Path(args.out))] if p]
    for name in suite.models:
        try:
            models.check(name)
        except ValueError as e:
            problems.append(f"{suite.file}: key 'models': {e}")
    d = suite.data
    try:
        data.check(d.name, d.data_dir, download=d.download, **d.options)
        if d.name in ("cifar10", "cifar100"):  # damaged files: one line now, not a failed run
            for split in ("train", "test"):    # each (read once into the cache the runs use)
                data.load(d.name, split, d.data_dir, download=d.download, **d.options)
    except (ValueError, FileNotFoundError, DamagedFileError) as e:
        problems.append(f"{suite.file}: key 'data': {e}")
    return problems


def check_fingerprints(runs: list[RunSpec], results_dir: Path, precision: str,
                       rerun_changed: bool) -> str | None:
    """A record made by another config stops the suite (one line naming the keys that differ),
    unless --rerun-changed, which moves those records aside so the runs train again."""
    from benchmark.fileio import move_aside

    changed, keys = [], {}
    for r in runs:
        path = results.record_path(results_dir, r.run_id)
        rec = results.read_record(path) if path.is_file() else None
        if rec is None:
            continue
        diff = fingerprint.diff(fingerprint.of_record(rec), fingerprint.of_run(r, precision))
        if diff:
            changed.append(path)
            for key, old, new in diff:
                keys.setdefault(key, (old, new))
    if not changed:
        return None
    if rerun_changed:
        for path in changed:
            move_aside(path, ".changed")
        print(f"note: {len(changed)} records of another config moved aside (*.changed); their "
              "runs train again", file=sys.stderr)
        return None
    what = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(keys.items())[:4])
    more = f" (and {len(keys) - 4} more keys)" if len(keys) > 4 else ""
    return (f"{results_dir}: {len(changed)} of its records were made by another config ({what}"
            f"{more}); use another --out for this one, or --rerun-changed to retrain those runs")


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
    if _precision(acc, args) not in PRECISIONS:
        problems.append(f"mixed precision {_precision(acc, args)!r}: erasebench trains in 'no' "
                        "(fp32) or 'bf16'; fp16 would need loss scaling")
    if not problems and not args.device:
        problems = [p for p in [check_fingerprints(runs, results_dir, _precision(acc, args),
                                                   args.rerun_changed and index == 0)] if p]
    if problems:
        if index == 0:
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    packs = plan.make_packs(runs, suite.train.pack, device.type)
    if args.dry_run:
        if index == 0:
            states = {r.run_id: results.status(results_dir, r.run_id) for r in runs}
            if args.retry_failed:
                states = {i: None if st == "failed" else st for i, st in states.items()}
            dry_run(runs, packs, device, states, _precision(acc, args))
        return 0
    stop = Stop().install()
    try:
        return _train_suite(args, argv, suite, runs, packs, acc, device, (index, count), stop)
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
    worker.run(packs)
    for c in children:
        c.wait()
    if acc is not None and not stop.signum:
        acc.wait_for_everyone()
    if process[0] == 0 and not args.device:
        lb = out / "leaderboards" / f"{suite.name}.md"
        _render(suite, runs, results_dir, work_dir, lb)
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
    if stop.signum:
        print(f"interrupted {stop.where}; rerun the same command to resume", file=sys.stderr)
        return stop.code
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

    leaderboard.render_suite(suite.name, results_dir, lb, figures_dir=lb.parent / "figures",
                             expected_runs=[expected(r) for r in runs],
                             cam_figure_from=(runs, work_dir))


if __name__ == "__main__":
    sys.exit(main())
