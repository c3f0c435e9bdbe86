"""Train a pack of K runs (K = 1: one run): the thesis's recipe and two-phase schedule, the
step replayed as a CUDA graph where it can be, eval, resumable per-run checkpoints, forks.

A pack is K runs of one CIFAR ResNet architecture, schedule and step kind, trained as one
grouped network (training/stack.py); everything else stays per run: seed, initial weights,
data order, augmentation, eraser, CAM, BN statistics, checkpoints and record. A run's
checkpoints are written in the layout of one ordinary model, so a run can resume packed or
alone. A provider run saves its state at a fork epoch; a CAM run whose first epochs are the
same plain training starts from that state instead of repeating them (shared warm-up).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from benchmark import robustness
from benchmark.suites.expand import RunSpec
from benchmark.training import checkpoint
from benchmark.training.pack import PackTrainer, load_run_data, step_kind
from benchmark.training.resume import (
    CURVES,
    Progress,
    advance,
    fork_path,
    progress,
    resume_path,
    save,
    start_state,
)
from benchmark.training.step import S as SLOT


class Hooks:
    """What the runner hears from a pack while it trains; every method is optional."""

    def started(self, k: int, progress: Progress, source: str) -> None:
        """Run k starts at `progress.epoch` from `source`: scratch, resume or fork."""

    def epoch_end(self, k: int, row: dict) -> None:
        """Run k finished an epoch (row: the curves' values plus the extra metrics)."""

    def step(self, done: int, total: int) -> None:
        """A step was launched (no host sync: on CUDA it may not have run yet)."""

    def should_stop(self) -> bool:
        """True: checkpoint every run at the end of this epoch and stop (a signal arrived)."""
        return False

    def finished(self, k: int, outcome: dict) -> None:
        """Run k finished (its outcome, as train_pack returns it): write its record now. Its
        resume checkpoint (the state after the last epoch) is deleted only after this returns,
        so a crash before the record is on disk costs no training."""


def occlusion_summary(a: list[float], cam_in_box) -> dict | None:
    """Occlusion rates from an accumulator row over the erasing epochs (see
    step.occlusion_stats)."""
    if a is None or cam_in_box is None:
        return None
    masked, erased = a[SLOT["masked"]], a[SLOT["erased_img"]]
    peaks = a[SLOT["peaks"]]
    return {
        "erased_image_rate": erased / masked if masked else 0.0,
        "object_hit_rate": a[SLOT["hit"]] / erased if erased else None,
        "object_covered_mean": a[SLOT["covered"]] / erased if erased else None,
        "train_cam_peak_in_box": a[SLOT["peak_in_box"]] / peaks if peaks else None,
        "cam_peak_in_box": cam_in_box[0],
        "random_point_in_box": cam_in_box[1],
    }


def train_pack(specs: list[RunSpec], *, device, work_dir: Path, data_cache: dict | None = None,
               precision: str = "no", frozen_ckpts: dict | None = None, hooks: Hooks | None = None,
               extra: list[dict] | None = None, log=None,
               unstacked: str | None = None, resume: tuple[list, list] | None = None
               ) -> list[dict]:
    """Train K runs together to the end (each from its resume checkpoint or fork if any); return
    one outcome per run: {"status": "finished"|"failed"|"interrupted", ...}. Runs whose start
    epochs differ are trained as separate packs, one after another. `resume`: (progress, state)
    of runs already started (hooks.started was called), to go on from in memory (a stacked
    pack split by its self-check); `unstacked`: why a run of one left its stacked pack."""
    hooks = hooks or Hooks()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        starts = [start_state(s, work_dir, precision) for s in specs]
        epochs = [0 if st is None else st["epoch"] for _, st in starts]
        if len(set(epochs)) > 1:  # e.g. one run resumed alone earlier: train by start epoch
            out: dict[int, dict] = {}
            for e in sorted(set(epochs)):
                idx = [i for i, x in enumerate(epochs) if x == e]
                res = train_pack([specs[i] for i in idx], device=device, work_dir=work_dir,
                                 data_cache=data_cache, precision=precision,
                                 frozen_ckpts=frozen_ckpts, hooks=_Sub(hooks, idx),
                                 extra=[(extra or [{}] * len(specs))[i] for i in idx], log=log)
                out.update(zip(idx, res, strict=True))
            return [out[i] for i in range(len(specs))]
    rd = load_run_data(specs[0], device, data_cache)
    tr = PackTrainer(specs, rd, device, precision=precision, frozen_ckpts=frozen_ckpts, log=log)
    tr.unstacked = unstacked
    if resume is None:
        ps = [progress(s, source, st, (extra or [{}] * len(specs))[k])
              for k, (s, (source, st)) in enumerate(zip(specs, starts, strict=True))]
        if any(st is not None for _, st in starts):
            tr.load_run_states([st["trainer"] for _, st in starts])
        for k, (source, _) in enumerate(starts):
            hooks.started(k, ps[k], source)
    else:
        ps = resume[0]
        tr.load_run_states(resume[1])
    try:
        done = _loop(tr, specs, ps, work_dir, hooks, precision)
    finally:
        tr.close()
    del tr  # its model's memory, before any sub-pack is built
    if isinstance(done, _Split):  # those runs go on alone, the others stacked; records say why
        return _train_apart(specs, done, device=device, work_dir=work_dir,
                            data_cache=data_cache, precision=precision,
                            frozen_ckpts=frozen_ckpts, hooks=hooks, log=log)
    return done


class _Split:
    """The stack self-check failed before `epoch`: `alone` {run index: why} train alone from
    there; `outcome` the runs already done (failed); `progress`, `states` every run's, to go
    on from in memory."""

    def __init__(self, alone: dict, outcome: dict, progress: list, states: list):
        self.alone, self.outcome, self.progress, self.states = alone, outcome, progress, states


def _stack_check(tr: PackTrainer, specs, epoch: int, ps, outcome: dict,
                 checked: set) -> _Split | None:
    """The stack's self-check (training/selfcheck.py) before `epoch` whenever the pack's runs
    take steps of kinds not checked yet: its first epoch, and its first erasing epoch after a
    plain warm-up (the erasers are first called there). A _Split when a run still training
    differs stacked from alone."""
    phase = tuple(step_kind(s, epoch) for s in specs)
    if phase in checked:
        return None
    checked.add(phase)
    alone = {k: why for k, why in tr.check_stack(epoch).items() if k not in outcome}
    if not alone:
        return None
    return _Split(alone, dict(outcome), ps, [tr.run_state(k) for k in range(len(specs))])


def _loop(tr: PackTrainer, specs, ps: list[Progress], work_dir: Path, hooks: Hooks,
          precision: str):
    from benchmark.suites import fingerprint

    t, k_all = specs[0].train, range(len(specs))
    fps = [fingerprint.of_run(s, precision) for s in specs]
    warm = [fingerprint.of_warmup(s, precision) for s in specs]
    outcome: dict[int, dict] = {}
    checked: set = set()
    for epoch in range(ps[0].epoch, t.epochs):
        active = [k for k in k_all if k not in outcome]
        if not active:
            break
        split = _stack_check(tr, specs, epoch, ps, outcome, checked)
        if split is not None:
            return split
        t0, c0 = time.perf_counter(), time.process_time()
        eps = tr.train_epoch(epoch, on_step=hooks.step)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        errs = tr.evaluate()
        for k in active:
            ep, p = eps[k], ps[k]
            if not math.isfinite(ep["train_loss"]):
                outcome[k] = failed(p, epoch + 1, ep["train_loss"])
                continue
            row = {"epoch": epoch + 1, "test_error": errs[k],
                   **{c: ep[c] for c in CURVES if c in ep}}
            advance(p, row, ep.pop("_acc"), dt / len(specs), dc / len(specs))  # the run's share
            s = specs[k]
            if s.fork_epochs and p.epoch in s.fork_epochs:
                save(fork_path(work_dir, s.run_id, p.epoch), tr, k, p, warm[k])
            every = t.checkpoint_every
            if every and (p.epoch % every == 0 or p.epoch == t.epochs):
                # after the last epoch too: kept until the run's record is written (Hooks.finished)
                save(resume_path(work_dir, s.run_id), tr, k, p, fps[k])
            extra = {c: ep[c] for c in ("object_hit_rate", "cam_peak_in_box") if c in ep}
            hooks.epoch_end(k, {**row, **extra, "images_per_s": ep["images"] * len(specs) / dt})
        if hooks.should_stop() and epoch + 1 < t.epochs:
            for k in k_all:
                if k not in outcome:
                    save(resume_path(work_dir, specs[k].run_id), tr, k, ps[k], fps[k])
                    outcome[k] = {"status": "interrupted", "epoch": ps[k].epoch,
                                  "progress": ps[k]}
            break
    for k in k_all:  # each run's record as soon as it is finished, then its resume state goes
        if k not in outcome:
            outcome[k] = _finish(tr, k, ps[k], work_dir)
            hooks.finished(k, outcome[k])
            resume_path(work_dir, specs[k].run_id).unlink(missing_ok=True)
    return [outcome[k] for k in k_all]


def failed(p: Progress, epoch: int, loss: float) -> dict:
    """The outcome of a run whose training loss was not finite in `epoch` (1-based)."""
    return {"status": "failed", "epoch": epoch, "progress": p,
            "reason": f"non-finite training loss ({loss}) in epoch {epoch}"}


def _finish(tr: PackTrainer, k: int, p: Progress, work_dir: Path) -> dict:
    spec, lane = tr.specs[k], tr.lanes[k]
    final = save_final(work_dir, spec, tr.single_model(k), tr.rd)
    return outcome(spec, p, tr.rd, final, tr.test_cam_in_box(k), eraser=lane.eraser,
                   cam_fn=lane.cam_fn, pack_size=tr.k, execution=tr.execution(),
                   robustness=robustness.for_pack_run(tr, k))


def save_final(work_dir: Path, spec: RunSpec, model, rd) -> Path:
    """A finished run's final checkpoint, `<run_id>.final.pt`: its weights and what rebuilds
    the model and normalises its input (checkpoint.save)."""
    return checkpoint.save(Path(work_dir) / f"{spec.run_id}.final.pt", model,
                           model_name=spec.model, num_classes=rd.num_classes, mean=rd.mean,
                           std=rd.std, extra={"run_id": spec.run_id})


def outcome(spec: RunSpec, p: Progress, rd, final: Path, cam_in_box, *, eraser, cam_fn,
            robustness: dict | None, pack_size: int = 1, execution: dict | None = None) -> dict:
    """A finished run's outcome, as train_pack and train_one return it (results.make_record
    turns it into the record): test errors (%) last and best, the curves, times, the final
    checkpoint, where the erasing and the CAM landed (`cam_in_box`: pack.cam_in_box's pair or
    None), which CAM path it took (`cam_fn` None: the free one), its robustness."""
    errs = p.curves["test_error"]
    best = min(range(len(errs)), key=errs.__getitem__)
    cam_path = None
    if eraser is not None and eraser.needs_cam:
        cam_path = "fast" if cam_fn is None or cam_fn.fast else "generic"
    return {
        "status": "finished", "progress": p,
        "final_test_error": errs[-1], "best_test_error": errs[best], "best_epoch": best + 1,
        "curves": p.curves, "occlusion": occlusion_summary(p.occ, cam_in_box),
        "train_time_s": p.train_time, "images_per_s": p.images / max(p.train_time, 1e-9),
        "cpu_time_s": p.cpu_time,
        "resumed_from_epoch": p.resumed_from, "forked_from": p.forked_from,
        "checkpoint": str(final), "cam_path": cam_path,
        "eraser_params": eraser.params() if eraser is not None else {},
        "pack_size": pack_size, **(execution or {"graphs": []}),
        "num_classes": rd.num_classes, "n_test": int(rd.test_labels.shape[0]),
        "robustness": robustness,
    }


def _train_apart(specs, split: _Split, *, hooks, **kw) -> list[dict]:
    """The runs whose stack self-check failed (`split.alone`: index -> why) go on alone, the
    others stacked without them, each from where the pack stopped (in memory); each record
    says why (`unstacked`). Runs already done keep their outcome."""
    out: dict[int, dict] = dict(split.outcome)
    going = [i for i in range(len(specs)) if i not in out]
    stacked = [i for i in going if i not in split.alone]
    for idx in ([stacked] if stacked else []) + [[i] for i in going if i in split.alone]:
        out.update(zip(idx, train_pack(
            [specs[i] for i in idx], hooks=_Sub(hooks, idx),
            unstacked=split.alone.get(idx[0]) if len(idx) == 1 else None,
            resume=([split.progress[i] for i in idx], [split.states[i] for i in idx]), **kw),
            strict=True))
    return [out[i] for i in range(len(specs))]


class _Sub(Hooks):
    """A parent's hooks seen from a sub-pack (run indices mapped back)."""

    def __init__(self, parent: Hooks, idx: list[int]):
        self.parent, self.idx = parent, idx

    def started(self, k, progress, source):
        self.parent.started(self.idx[k], progress, source)

    def epoch_end(self, k, row):
        self.parent.epoch_end(self.idx[k], row)

    def step(self, done, total):
        self.parent.step(done, total)

    def should_stop(self):
        return self.parent.should_stop()

    def finished(self, k, outcome):
        self.parent.finished(self.idx[k], outcome)


def steps_per_epoch(n: int, batch: int) -> int:
    return n // batch if n >= batch else 1


def image_passes(spec: RunSpec, n_train: int, *, start_epoch: int = 0) -> int:
    """Training images a run processes from `start_epoch` (erased copies included)."""
    per_epoch = steps_per_epoch(n_train, spec.train.batch_size) * spec.train.batch_size
    epochs = range(start_epoch, spec.train.epochs)
    return sum(per_epoch * (2 if step_kind(spec, e) == "append" else 1) for e in epochs)
