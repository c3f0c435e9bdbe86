"""The runner's training hooks: a progress bar, one W&B run per run of the pack, and the
claims' heartbeats, called by the trainer (training.train.Hooks)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmark.training.train import Hooks


class RunnerHooks(Hooks):
    """Progress bar, W&B runs and claim heartbeats of one training pack."""

    def __init__(self, worker, mine):
        """worker: the runner.worker.Worker training `mine`, its [(RunSpec, claim)] pack."""
        from benchmark.runner import tracking

        self.worker, self.mine = worker, mine
        self.specs = [r for r, _ in mine]
        self.extra = [{} for _ in mine]  # kept in each run's resume checkpoint (its W&B id)
        self.trackers = [tracking.NullTracker() for _ in mine]
        self.lost = False
        options = worker.options
        self.bar = None
        self.last_beat = self.last_draw = time.monotonic()
        self.t0 = time.perf_counter()
        # each run's wall time before this session (a resume: its earlier sessions; a fork: the
        # warm-up's training time it inherits), and its progress.extra, which is saved in its
        # resume checkpoint, so a record's wall_time_s sums every session
        self.wall_before = [0.0] * len(mine)
        self.kept = [None] * len(mine)
        self.epoch = 0
        if options.progress:
            from tqdm.auto import tqdm

            name = self.specs[0].run_id if len(self.specs) == 1 else \
                f"{self.specs[0].run_id} +{len(self.specs) - 1}"
            self.bar = tqdm(total=self.specs[0].train.epochs, desc=name, leave=False, unit="ep",
                            dynamic_ncols=True, position=1 + worker.process[0])

    def started(self, k, progress, source):
        from benchmark.runner import tracking

        self.epoch = progress.epoch
        options, r = self.worker.options, self.specs[k]
        # a random id per experiment, kept in the resume state: a resumed run continues its own
        wid = progress.extra.setdefault("wandb_id", tracking.new_run_id())
        self.kept[k] = progress.extra
        self.wall_before[k] = self.wall_before_of(progress, source)
        self.trackers[k] = tracking.start(enabled=options.wandb, project=options.wandb_project,
                                          group=r.suite, name=r.run_id, run_id=wid,
                                          config=self.worker.describe(r),
                                          out_dir=Path(options.out))
        if source == "fork":  # the inherited warm-up epochs belong to this run's W&B history too
            curves = progress.curves
            for i in range(len(curves["epoch"])):
                row = {c: curves[c][i] for c in curves}
                self.trackers[k].log(tracking.metrics(row), step=row["epoch"])
        if self.bar is not None and k == 0:
            self.bar.n = progress.epoch
            self.bar.refresh()

    @staticmethod
    def wall_before_of(progress, source: str) -> float:
        """Seconds a run had spent before this session: a resumed run's earlier sessions (kept
        in its checkpoint; at least their training time), a forked run's inherited warm-up
        training time, else 0."""
        if source == "resume":
            return max(float(progress.extra.get("wall_time_s") or 0.0), progress.train_time)
        return float(progress.train_time)

    def wall(self, k) -> float:
        """Run k's wall time so far, every session: its share of this pack's time plus what
        it had before this session (kept in its resume checkpoint)."""
        wall = self.wall_before[k] + (time.perf_counter() - self.t0) / len(self.specs)
        if self.kept[k] is not None:
            self.kept[k]["wall_time_s"] = wall
        return wall

    def epoch_end(self, k, row):
        from benchmark.runner import tracking

        self.wall(k)
        self.trackers[k].log(tracking.metrics(row), step=row["epoch"])
        self.epoch = row["epoch"]
        if self.bar is None:  # --no-progress: one flushed line per run and epoch, for log files
            print(f"{self.specs[k].run_id} epoch {row['epoch']}/{self.specs[k].train.epochs}: "
                  f"train loss {row['train_loss']:.4f}, test error {row['test_error']:.2f}%",
                  flush=True)
        elif k == 0:
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
        for k in range(len(self.specs)):  # before the checkpoints a stop writes
            self.wall(k)
        return self.worker.stop.signum is not None or self.lost

    def finished(self, k, outcome):
        self.worker.record(self.specs[k], outcome, self.wall(k), self)

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

