"""Run a suite: `erasebench run --suite smoke`, or `accelerate launch benchmark/run.py --suite smoke`.

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
from benchmark.suites import fingerprint, plan
from benchmark.suites.config import ConfigError, load_suite
from benchmark.suites.expand import RunSpec, apply_overrides, expand, parse_seeds
from benchmark.training.train import Hooks

POLL_S = 5.0  # how often a worker with nothing to claim looks again


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
    p.add_argument("--out", default=".",
                   help="put results/ and leaderboards/ under this folder (default: .)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and their estimated cost; train nothing")
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


def dry_run(runs: list[RunSpec], packs: list[plan.Pack], device, done: set[str],
            precision: str) -> None:
    """Print the packs and runs with a time estimate measured on this device's real step;
    finished runs show as done and cost nothing."""
    from benchmark.tools import cost

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
            when = "done" if e.get("done") else cost.fmt_seconds(e["seconds"])
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
    print(f"{len(runs)} runs in {len(packs)} packs (sizes {', '.join(map(str, sizes))}), "
          f"{len(done)} already done; the rest estimated {cost.fmt_seconds(total)} "
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


def _precision(acc) -> str:
    mp = str(getattr(acc, "mixed_precision", "no") if acc is not None else
             os.environ.get("ERASEBENCH_PRECISION", "no"))
    return "no" if mp in ("no", "None") else mp


def spawn_workers(args, argv, n: int, device) -> list[subprocess.Popen]:
    """n - 1 more worker processes on this process's device (--runs-per-device n)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "TORCHELASTIC_")) and k not in
           ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE")}
    argv = [a for a in (sys.argv[1:] if argv is None else list(map(str, argv)))]
    cmd = [sys.executable, "-m", "benchmark", "run", *argv, "--device", str(device),
           "--no-progress"]
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

    problems = [] if args.dry_run else [p for p in [check_out(Path(args.out))] if p]
    for name in suite.models:
        try:
            models.check(name)
        except ValueError as e:
            problems.append(f"{suite.file}: key 'models': {e}")
    try:
        data.check(suite.data.name, suite.data.data_dir, download=suite.data.download,
                   **suite.data.options)
    except (ValueError, FileNotFoundError) as e:
        problems.append(f"{suite.file}: key 'data': {e}")
    return problems


def check_fingerprints(runs: list[RunSpec], results_dir: Path, precision: str,
                       rerun_changed: bool) -> str | None:
    """A record made by another config stops the suite (one line naming the keys that differ),
    unless --rerun-changed, which moves those records aside so the runs train again."""
    from benchmark.fileio import move_aside
    from benchmark.suites import fingerprint

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


class Stop:
    """SIGINT/SIGTERM: finish the epoch, checkpoint, render, exit 130/143. A second Ctrl-C: now."""

    def __init__(self):
        self.signum: int | None = None
        self.where = ""

    def install(self) -> Stop:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum, self.where = signum, ""
        print(f"\n{signal.Signals(signum).name}: finishing the current epoch, then stopping "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @property
    def code(self) -> int:
        return 128 + (self.signum or 0)


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
    if not problems and not args.device:
        problems = [p for p in [check_fingerprints(runs, results_dir, _precision(acc),
                                                   args.rerun_changed and index == 0)] if p]
    if problems:
        if index == 0:
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    packs = plan.make_packs(runs, suite.train.pack, device.type)
    if args.dry_run:
        if index == 0:
            states = {r.run_id: results.status(results_dir, r.run_id) for r in runs}
            done = {i for i, st in states.items()
                    if st == "finished" or (st == "failed" and not args.retry_failed)}
            dry_run(runs, packs, device, done, _precision(acc))
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
    children = spawn_workers(args, argv, args.runs_per_device, device) \
        if args.runs_per_device > 1 and not args.device else []
    command = shlex.join(["erasebench", "run", *(sys.argv[1:] if argv is None else map(str, argv))])
    t_suite = time.perf_counter()
    worker = Worker(args, runs, device, _precision(acc), results_dir, work_dir, command, process,
                    stop)
    worker.run(packs)
    for c in children:
        c.wait()
    if acc is not None and not stop.signum:
        acc.wait_for_everyone()
    if process[0] == 0 and not args.device:
        lb = out / "leaderboards" / f"{suite.name}.md"
        _render(suite, runs, results_dir, work_dir, lb)
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
    print(f"W&B: {len(runs)} offline runs in {folder}/ (not logged in); upload them with: "
          f"wandb sync {folder}/offline-run-*")


def _render(suite, runs, results_dir: Path, work_dir: Path, lb: Path) -> None:
    from benchmark.report import leaderboard

    leaderboard.render_suite(suite.name, results_dir, lb, figures_dir=lb.parent / "figures",
                             expected_runs=[expected(r) for r in runs],
                             cam_figure_from=(runs, work_dir))


class Worker:
    """Claims and trains packs until every run of the suite has a record."""

    def __init__(self, args, runs, device, precision, results_dir: Path, work_dir: Path,
                 command: str, process: tuple[int, int], stop: Stop | None = None):
        self.stop = stop or Stop()
        self.args, self.runs, self.device, self.precision = args, runs, device, precision
        self.results_dir, self.work_dir, self.command, self.process = (results_dir, work_dir,
                                                                        command, process)
        self.claims_dir = results_dir / "claims"
        self.trained = self.skipped = 0
        self.failed: list[str] = []
        self.data_cache: dict = {}
        self.seen: set[str] = set()  # run ids already counted (trained, skipped or failed)
        self.bar = None

    def describe(self, spec: RunSpec) -> dict:
        """What a record and a W&B config add to the run's config: the resolved eraser params,
        where the eraser came from, the fingerprint and the precision."""
        import plugins
        from plugins.sources import provenance

        m = spec.method
        return {**spec.to_dict(), "fingerprint": fingerprint.of_run(spec, self.precision),
                "precision": self.precision,
                "eraser_params": {} if m.is_plain else plugins.build(m.name, **m.params).params(),
                "eraser_source": None if m.is_plain else provenance(m.name)}

    def _stamp(self, spec: RunSpec, rec: dict) -> dict:
        d = self.describe(spec)
        rec.update({k: d[k] for k in ("fingerprint", "precision", "eraser_source")})
        return rec

    def state(self, run_id: str) -> str | None:
        """finished, failed or None (to train): a failed run is retried only with --retry-failed,
        and once per invocation."""
        st = results.status(self.results_dir, run_id)
        if st == "failed" and self.args.retry_failed and run_id not in self.failed:
            return None
        return st

    def ready(self, r: RunSpec) -> bool:
        """A run's dependencies allow it to start (a failed warm-up provider: start from
        scratch)."""
        if r.frozen_from and self.state(r.frozen_from) != "finished":
            return False
        if r.fork_from:
            from benchmark.training.train import fork_path

            fork = fork_path(self.work_dir, r.fork_from, r.method.warmup_epochs)
            return fork.is_file() or self.state(r.fork_from) is not None
        return True

    def _todo(self, pack: plan.Pack) -> list[RunSpec]:
        """The pack's runs still to train; counts the ones found done."""
        todo = []
        for r in pack.runs:
            st = self.state(r.run_id)
            if st is None and r.frozen_from and self.state(r.frozen_from) == "failed":
                self._fail(r, None, f"its frozen CAM model's run {r.frozen_from} failed")
                st = "failed"
            if st is None:
                todo.append(r)
            elif r.run_id not in self.seen:
                self.seen.add(r.run_id)
                self.skipped += st == "finished"
        return todo

    def _progress(self, total: int):
        """The suite's bar: runs settled (finished or failed) of all, with tqdm's ETA."""
        if self.args.no_progress or self.process[0] != 0 or self.args.device:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"suite {self.runs[0].suite}", unit="run", position=0,
                    dynamic_ncols=True, leave=True)

    def run(self, packs: list[plan.Pack]) -> None:
        self.bar = self._progress(len(self.runs))
        try:
            self._run(packs)
        finally:
            if self.bar is not None:
                self.bar.close()

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.n = len(self.seen)
            self.bar.refresh()

    def _run(self, packs: list[plan.Pack]) -> None:
        pending = list(packs)
        while pending and not self.stop.signum:
            for pack in list(pending):
                todo = self._todo(pack)
                if not todo:
                    pending.remove(pack)
                    continue
                mine = self._claim([r for r in todo if self.ready(r)])
                self._tick()
                if mine:
                    try:
                        self._train(mine)
                    finally:
                        for _, c in mine:
                            c.release()
                    self._tick()
                    break  # rescan from the top: providers first
            else:
                if pending:
                    time.sleep(POLL_S)  # others hold the rest, or their dependencies are not ready

    def _claim(self, todo: list[RunSpec]) -> list[tuple[RunSpec, claims.Claim]]:
        mine = []
        for r in todo:
            c = claims.try_claim(self.claims_dir, r.run_id, timeout_s=self.args.claim_timeout)
            if c is None:
                continue
            if self.state(r.run_id) is not None:  # finished between our look and our claim
                c.release()
                continue
            mine.append((r, c))
        return mine

    def _train(self, mine: list[tuple[RunSpec, claims.Claim]]) -> None:
        from benchmark.training.train import train_pack

        specs = [r for r, _ in mine]
        hooks = RunnerHooks(self, mine)
        frozen = {r.run_id: self.work_dir / f"{r.frozen_from}.final.pt"
                  for r in specs if r.frozen_from}
        t0 = time.perf_counter()
        try:
            outcomes = train_pack(specs, device=self.device, work_dir=self.work_dir,
                                  data_cache=self.data_cache, precision=self.precision,
                                  frozen_ckpts=frozen, hooks=hooks, extra=hooks.extra)
        except Exception as e:  # noqa: BLE001 - one broken run must not lose the others' results
            hooks.close()
            if len(specs) > 1:  # find the culprit: train the pack's runs one by one
                print(f"warning: a pack of {len(specs)} failed ({results.one_line(e)}); training "
                      "its runs one by one", file=sys.stderr)
                for pair in mine:
                    if not self.stop.signum:
                        self._train([pair])
                return
            self._fail(specs[0], hooks.epoch + 1, e, wall=time.perf_counter() - t0)
            return
        wall = time.perf_counter() - t0
        for spec, outcome in zip(specs, outcomes, strict=True):
            if outcome["status"] == "finished":
                rec = results.make_record(spec, outcome, wall_time_s=wall / len(specs),
                                          device=self.device, command=self.command,
                                          process=self.process)
                results.write_record(self.results_dir, self._stamp(spec, rec))
                hooks.finish(spec.run_id, rec)
                self.stop.where = self.stop.where or f"after run {spec.run_id} finished"
                self.trained += 1
                self.seen.add(spec.run_id)
            elif outcome["status"] == "failed":
                self._fail(spec, outcome["epoch"], outcome["reason"], outcome["progress"],
                           wall=wall / len(specs))
            else:  # interrupted: the first one names where
                self.stop.where = f"at epoch {outcome['epoch']} of run {spec.run_id}"
        hooks.close()

    def _fail(self, spec: RunSpec, epoch, reason, progress=None, wall=None) -> None:
        """A failed run is a result too: its record says when and why."""
        self.failed.append(spec.run_id)
        self.seen.add(spec.run_id)
        rec = results.failed_record(
            spec, epoch=epoch, reason=reason, curves=getattr(progress, "curves", None),
            wall_time_s=wall, device=self.device, command=self.command, process=self.process,
            train_time_s=getattr(progress, "train_time", None))
        try:
            self._stamp(spec, rec)
        except Exception:  # noqa: BLE001 - an eraser that cannot be built may be why it failed
            rec["precision"] = self.precision
        results.write_record(self.results_dir, rec)
        print(f"error: run {spec.run_id} failed in epoch {epoch}: {rec['failure']['reason']}",
              file=sys.stderr)


class RunnerHooks(Hooks):
    """Progress bar, W&B runs and claim heartbeats of one training pack."""

    def __init__(self, worker: Worker, mine):
        from benchmark.runner import tracking

        self.worker, self.mine = worker, mine
        self.specs = [r for r, _ in mine]
        self.extra = [{} for _ in mine]  # kept in each run's resume checkpoint (its W&B id)
        self.trackers = [tracking.NullTracker() for _ in mine]
        self.lost = False
        args = worker.args
        self.bar = None
        self.last_beat = self.last_draw = time.monotonic()
        self.epoch = 0
        if not args.no_progress:
            from tqdm.auto import tqdm

            name = self.specs[0].run_id if len(self.specs) == 1 else \
                f"{self.specs[0].run_id} +{len(self.specs) - 1}"
            self.bar = tqdm(total=self.specs[0].train.epochs, desc=name, leave=False, unit="ep",
                            dynamic_ncols=True, position=1 + worker.process[0])

    def started(self, k, progress, source):
        from benchmark.runner import tracking

        self.epoch = progress.epoch
        args, r = self.worker.args, self.specs[k]
        # a random id per experiment, kept in the resume state: a resumed run continues its own
        wid = progress.extra.setdefault("wandb_id", tracking.new_run_id())
        self.trackers[k] = tracking.start(enabled=not args.no_wandb, project=args.wandb_project,
                                          group=r.suite, name=r.run_id, run_id=wid,
                                          config=self.worker.describe(r), out_dir=Path(args.out))
        if source == "fork":  # the inherited warm-up epochs belong to this run's W&B history too
            curves = progress.curves
            for i in range(len(curves["epoch"])):
                row = {c: curves[c][i] for c in curves}
                self.trackers[k].log(tracking.metrics(row), step=row["epoch"])
        if self.bar is not None and k == 0:
            self.bar.n = progress.epoch
            self.bar.refresh()

    def epoch_end(self, k, row):
        from benchmark.runner import tracking

        self.trackers[k].log(tracking.metrics(row), step=row["epoch"])
        self.epoch = row["epoch"]
        if self.bar is not None and k == 0:
            self.bar.n = row["epoch"]
            self.bar.set_postfix({"loss": f"{row['train_loss']:.3f}",
                                  "err%": f"{row['test_error']:.2f}"}, refresh=False)
            self.bar.refresh()
        self._beat()

    def step(self, done, total):
        now = time.monotonic()
        if self.bar is not None and now - self.last_draw > 0.5:
            self.bar.n = round(self.epoch + done / total, 2)
            self.bar.refresh()
            self.last_draw = now
        self._beat()

    def _beat(self):
        if time.monotonic() - self.last_beat > 30:
            for r, c in self.mine:
                if not c.heartbeat() and not self.lost:
                    self.lost = True
                    print(f"warning: another worker took over {r.run_id} (this one looked dead); "
                          "stopping this pack", file=sys.stderr)
            self.last_beat = time.monotonic()

    def should_stop(self):
        return self.worker.stop.signum is not None or self.lost

    def finish(self, run_id: str, rec: dict) -> None:
        k = [r.run_id for r in self.specs].index(run_id)
        occ = rec["occlusion"] or {}
        test = {"test/cam_peak_in_box": occ.get("cam_peak_in_box"),
                "test/random_point_in_box": occ.get("random_point_in_box")}
        self.trackers[k].summary({
            "test/final_error_pct": rec["final_test_error"],
            "test/best_error_pct": rec["best_test_error"], "test/best_epoch": rec["best_epoch"],
            **{k2: v for k2, v in test.items() if v is not None},
            **{f"occlusion/{key}": v for key, v in occ.items()
               if v is not None and key not in ("cam_peak_in_box", "random_point_in_box")}})

    def close(self):
        for t in self.trackers:
            t.finish()
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
