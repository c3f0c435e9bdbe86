"""The worker: claims the runs nobody holds, trains them in packs, writes one record per run.

Every process that runs a suite is one (`accelerate launch` processes, `--runs-per-device`
children, shells, SLURM array tasks); claim files (runner/claims.py) keep any two from training
the same run. A signal (SIGINT, SIGTERM, SIGHUP) stops it after the current epoch, with resume
checkpoints written. A write the filesystem refuses (disk full) stops it with one line and is
never recorded as a result of a run (fileio.WriteError): the same command resumes later.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark import fileio, results
from benchmark.runner import claims
from benchmark.runner.hooks import RunnerHooks
from benchmark.suites import fingerprint, plan
from benchmark.suites.expand import RunSpec

POLL_S = 5.0  # how often a worker with nothing to claim looks again (at most)


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker takes from the command line (`runner.cli.worker_options`).

    out: the folder holding results/ and leaderboards/; rerun_changed: move a record or resume
    checkpoint of another config aside and train the run again (else stop); retry_failed: train
    a failed run again (once per invocation); claim_timeout: seconds after which a claim's
    heartbeat is stale and taken over; progress: draw progress bars (process 0 only); wandb,
    wandb_project: log each run to Weights & Biases; spawned: this worker is a --runs-per-device
    child (it draws no bars and renders nothing)."""

    out: str = "runs"
    rerun_changed: bool = False
    retry_failed: bool = False
    claim_timeout: float = claims.DEFAULT_TIMEOUT_S
    progress: bool = True
    wandb: bool = True
    wandb_project: str = "erasebench"
    spawned: bool = False


class Stop:
    """SIGINT/SIGTERM/SIGHUP (a closed terminal, a dropped ssh)/SIGUSR2 (submitit's time-limit
    warning): finish the epoch, checkpoint, render, exit 128 + the signal's number (130, 143,
    129, 140). A second Ctrl-C: now."""

    def __init__(self):
        self.signum: int | None = None
        self.where = ""
        self.training = False  # whether a pack is training now (the Worker sets it)

    def install(self) -> Stop:
        import signal

        # SIGUSR2: what submitit sends before a job's time limit (its own handler would raise
        # inside training, and the run would be recorded as failed)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum, self.where = signum, ""
        doing = "finishing the current epoch, then stopping" if self.training else \
            "no run is training; stopping after the current step (writing results, waiting)"
        print(f"\n{signal.Signals(signum).name}: {doing} (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    @property
    def code(self) -> int:
        return 128 + (self.signum or 0)


class Worker:
    """Claims and trains packs until every run of the suite has a record."""

    def __init__(self, options: WorkerOptions, runs, device, precision, results_dir: Path,
                 work_dir: Path, command: str, process: tuple[int, int], stop: Stop | None = None):
        self.stop = stop or Stop()
        self.options, self.runs, self.device, self.precision = options, runs, device, precision
        self.results_dir, self.work_dir, self.command, self.process = (results_dir, work_dir,
                                                                        command, process)
        self.claims_dir = results_dir / "claims"
        self.trained = self.skipped = 0
        self.failed: list[str] = []
        self.data_cache: dict = {}
        self.seen: set[str] = set()  # run ids already counted (trained, skipped or failed)
        self.bar = None
        self.waiting: dict[str, str] = {}
        self.retrain_noted: set[str] = set()  # run id -> token of the claim this worker waits on

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
        rec["data_identity"] = self._data_identity(spec)
        return rec

    def _data_identity(self, spec: RunSpec) -> dict | None:
        """The identity of the run's data (benchmark.data.identity), as preflight loaded it."""
        from benchmark import data

        d = spec.data
        return data.identity(d.name, d.root, download=d.download, **d.options)

    def _check_found(self, r: RunSpec, what: str) -> bool:
        """A record (what="record") or resume checkpoint ("resume") of `r` found in the results
        folder must be of this config: else the worker stops with the one-line error a rerun
        gets (fingerprint.ConfigChanged), or with --rerun-changed moves the file aside and
        returns True (train the run)."""
        from benchmark.fileio import move_aside
        from benchmark.training.resume import resume_path

        if what == "record":
            path = results.record_path(self.results_dir, r.run_id)
            rec = results.read_record(path)
            keys = [] if rec is None else fingerprint.diff_record(
                rec, r, self.precision, self._data_identity(r))
        else:
            path = resume_path(self.work_dir, r.run_id)
            keys = fingerprint.diff_resume(path, r, self.precision)
        if not keys:
            return False
        if not self.options.rerun_changed:
            raise fingerprint.ConfigChanged(fingerprint.refusal(
                self.results_dir, 1, {k: (old, new) for k, old, new in keys}))
        moved = move_aside(path, ".changed")
        print(f"note: {path} was made by another config; moved to {moved.name}, the run trains "
              "again", file=sys.stderr)
        return True

    def state(self, run_id: str) -> str | None:
        """finished, failed or None (to train): a failed run is retried only with --retry-failed,
        and once per invocation."""
        st = results.status(self.results_dir, run_id)
        if st == "failed" and self.options.retry_failed and run_id not in self.failed:
            return None
        if st == "finished" and self._needs_model(run_id):
            return None
        return st

    def _needs_model(self, run_id: str) -> bool:
        """A finished CAM provider (`cam: {source: after}`) whose final.pt is gone while a run
        that needs it still has to train: the provider is not done, it trains again."""
        if (self.work_dir / f"{run_id}.final.pt").is_file():
            return False
        for r in self.runs:
            if r.frozen_from == run_id and r.run_id != run_id:
                st = results.status(self.results_dir, r.run_id)
                if st is None or (st == "failed" and self.options.retry_failed
                                  and r.run_id not in self.failed):
                    if run_id not in self.retrain_noted:
                        self.retrain_noted.add(run_id)
                        print(f"note: run {run_id} is finished but its model "
                              f"{self.work_dir / (run_id + '.final.pt')} is gone and {r.run_id} "
                              "needs it (cam source: after); training it again", file=sys.stderr,
                              flush=True)
                    return True
        return False

    def ready(self, r: RunSpec) -> bool:
        """A run's dependencies allow it to start (a failed warm-up provider: start from
        scratch)."""
        if r.frozen_from and self.state(r.frozen_from) != "finished":
            return False
        if r.fork_from:
            from benchmark.training.resume import fork_path

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
            elif r.run_id not in self.seen and self._check_found(r, "record"):
                todo.append(r)  # another config's record, moved aside (--rerun-changed)
            elif r.run_id not in self.seen:
                self.seen.add(r.run_id)
                self.skipped += st == "finished"
        return todo

    def _progress(self, total: int):
        """The suite's bar: runs settled (finished or failed) of all, with tqdm's ETA."""
        if not self.options.progress or self.process[0] != 0 or self.options.spawned:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"suite {self.runs[0].suite}", unit="run", position=0,
                    dynamic_ncols=True, leave=True)

    def run(self, packs: list[plan.Pack]) -> None:
        """Train until every run has a record or a signal arrives. Raises fileio.WriteError when
        a write fails (disk full): nothing is recorded for the run, its claim is released."""
        for folder in (self.results_dir, self.work_dir, self.claims_dir,
                       Path(self.options.out) / "leaderboards"):
            for p in fileio.remove_stale_temps(folder):
                print(f"note: removed {p}, a temp file of a writer that died", file=sys.stderr)
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
                        self.stop.training = True
                        self._train(mine)
                    finally:
                        self.stop.training = False
                        for _, c in mine:
                            c.release()
                    self._tick()
                    break  # rescan from the top: providers first
            else:
                if pending:  # others hold the rest, or their dependencies are not ready
                    self._say_waiting()
                    timeout = self.options.claim_timeout
                    time.sleep(min(POLL_S, max(0.2, timeout / 4)))
        if self.stop.signum and not self.stop.where:
            self.stop.where = self._where_waiting()

    def _say_waiting(self) -> None:
        """One line when the claims this worker waits on change: who holds them, their heartbeat
        and when they will be taken over."""
        held = {}
        for run_id in list(self.waiting):
            info = claims.holder(self.claims_dir, run_id)
            if self.state(run_id) is None and info is not None:
                held[run_id] = info.get("token") if isinstance(info, dict) else None
        if held and held != self.waiting:
            first = next(iter(held))
            more = f" (and {len(held) - 1} more held runs)" if len(held) > 1 else ""
            print(f"waiting for run {first}: "
                  f"{claims.describe_holder(self.claims_dir, first, self.options.claim_timeout)}"
                  f"{more}", file=sys.stderr, flush=True)
        self.waiting = held

    def _where_waiting(self) -> str:
        for run_id in self.waiting:
            info = claims.holder(self.claims_dir, run_id)
            if isinstance(info, dict) and self.state(run_id) is None:
                return (f"while waiting for run {run_id} (held by {info.get('host')} pid "
                        f"{info.get('pid')})")
        return "before training any run" if not self.trained else "between runs"

    def _claim(self, todo: list[RunSpec]) -> list[tuple[RunSpec, claims.Claim]]:
        mine = []
        for r in todo:
            c = claims.try_claim(self.claims_dir, r.run_id, timeout_s=self.options.claim_timeout)
            if c is None:
                self.waiting.setdefault(r.run_id, "")
                continue
            self.waiting.pop(r.run_id, None)
            if self.state(r.run_id) is not None:  # finished between our look and our claim
                c.release()
                continue
            old = c.info.get("took_over")
            if old:
                print(f"note: took over run {r.run_id} from {old.get('host')} pid "
                      f"{old.get('pid')} ({old.get('why')})", file=sys.stderr, flush=True)
            try:
                self._check_found(r, "resume")  # a resume checkpoint of another config: stop
            except BaseException:
                c.release()
                for _, other in mine:
                    other.release()
                raise
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
            from benchmark.data import DataUnavailableError

            if isinstance(e, DataUnavailableError):  # the environment's failure, not the run's
                raise
            failed_write = fileio.write_error(e)
            if failed_write is not None:  # the environment, not the run: no record; stop
                raise failed_write from e
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
            if outcome["status"] == "finished":  # its record was written by hooks.finished
                self.stop.where = self.stop.where or f"after run {spec.run_id} finished"
            elif outcome["status"] == "failed":
                self._fail(spec, outcome["epoch"], outcome["reason"], outcome["progress"],
                           wall=wall / len(specs))
            else:  # interrupted: the first one names where
                self.stop.where = f"at epoch {outcome['epoch']} of run {spec.run_id}"
        hooks.close()

    def record(self, spec: RunSpec, outcome: dict, wall: float, hooks: RunnerHooks) -> None:
        """Write a finished run's record (called as soon as the run finishes, before its resume
        checkpoint is deleted)."""
        rec = results.make_record(spec, outcome, wall_time_s=wall, device=self.device,
                                  command=self.command, process=self.process)
        results.write_record(self.results_dir, self._stamp(spec, rec))
        hooks.finish(spec.run_id, rec)
        self.trained += 1
        self.seen.add(spec.run_id)

    def _fail(self, spec: RunSpec, epoch, reason, progress=None, wall=None) -> None:
        """A failed run is a result too: its record says when and why."""
        self.failed.append(spec.run_id)
        self.seen.add(spec.run_id)
        rec = results.failed_record(
            spec, epoch=epoch, reason=reason, curves=getattr(progress, "curves", None),
            wall_time_s=wall, device=self.device, command=self.command, process=self.process,
            train_time_s=getattr(progress, "train_time", None),
            cpu_time_s=getattr(progress, "cpu_time", None))
        try:
            self._stamp(spec, rec)
        except Exception:  # noqa: BLE001 - an eraser that cannot be built may be why it failed
            rec["precision"] = self.precision
        results.write_record(self.results_dir, rec)
        print(f"error: run {spec.run_id} failed in epoch {epoch}: {rec['failure']['reason']}",
              file=sys.stderr)
