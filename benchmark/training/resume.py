"""A run's progress on disk: resume checkpoints (every `checkpoint_every` epochs, and after the
last epoch until the run's record is written) and fork files (a provider's state at a shared
warm-up's end), each tied to the config that made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.suites.config import RunSpec
from benchmark.training import checkpoint
from benchmark.training.pack import PackTrainer
from benchmark.training.step import SLOTS
from benchmark.training.step import S as SLOT

RESUME_FORMAT = 2
CURVES = ("epoch", "train_loss", "train_acc", "test_error", "lr", "erased_fraction")


@dataclass
class Progress:
    """What a run has done so far; saved in its resume checkpoint and its fork files."""

    epoch: int = 0
    curves: dict = field(default_factory=lambda: {k: [] for k in CURVES})
    occ: list = field(default_factory=lambda: [0.0] * len(SLOTS))
    train_time: float = 0.0
    # the process's CPU time in the training epochs (the run's share of a pack's), every session
    # summed; None when an earlier session's file did not keep it (written before it existed)
    cpu_time: float | None = 0.0
    images: float = 0.0
    resumed_from: int | None = None
    forked_from: dict | None = None
    extra: dict = field(default_factory=dict)  # the runner's own (e.g. the W&B run id)


def progress(spec: RunSpec, source: str, start: dict | None, extra: dict | None = None
             ) -> Progress:
    """A run's progress at its start (`start_state`): nothing yet, where it stopped (resume),
    or where its warm-up provider was at the fork epoch (fork). `extra`: the runner's own."""
    p = Progress(extra=dict(extra or {}))
    if start is None:
        return p
    p.epoch, p.curves, p.occ = start["epoch"], start["curves"], start["occ"]
    p.train_time, p.images = start["train_time"], start["images"]
    p.cpu_time = start.get("cpu_time")  # None: a file from before CPU time was kept
    p.forked_from = start.get("forked_from")
    if source == "resume":
        p.resumed_from = start["epoch"]
        p.extra.update(start.get("extra") or {})
    else:
        # what the warm-up cost, inherited in this run's times: the report counts it once
        p.forked_from = {"run_id": spec.fork_from, "epoch": start["epoch"],
                         "train_time_s": start["train_time"], "cpu_time_s": start.get("cpu_time")}
    return p


def advance(p: Progress, row: dict, acc: list[float], seconds: float,
            cpu_seconds: float) -> None:
    """Count one more epoch into `p`: its row of the curves (`row["epoch"]` the epoch done), its
    training time (`seconds`: wall clock; `cpu_seconds`: the process's CPU time, both the run's
    share for a pack) and its sums (a step.SLOTS row: images seen, where the erasing landed)."""
    p.epoch, p.train_time = row["epoch"], p.train_time + seconds
    if p.cpu_time is not None:
        p.cpu_time += cpu_seconds
    p.images += acc[SLOT["seen"]]
    p.occ = [o + a for o, a in zip(p.occ, acc, strict=True)]
    for c in CURVES:
        p.curves[c].append(row[c])


def state_of(model, opt, sched, lr, gen) -> dict:
    """One ordinary model's resumable state, in the layout PackTrainer.run_state writes for
    each run of a pack: weights, momentum buffers, schedule, lr, generator, CPU RNG."""
    bufs = [opt.state.get(q, {}).get("momentum_buffer") for q in model.parameters()]
    return {"model": {n: v.detach().clone().cpu() for n, v in model.state_dict().items()},
            "momentum": [None if b is None else b.detach().cpu() for b in bufs],
            "sched": sched.state_dict(), "lr": float(lr), "gen": gen.get_state(),
            "cpu_rng": torch.get_rng_state()}


def load_state(state: dict, model, opt, sched, lr, gen) -> None:
    """Put a `state_of` (or a pack's `run_state`) back into one ordinary model's training."""
    model.load_state_dict(state["model"])
    for q, b in zip(model.parameters(), state["momentum"], strict=True):
        if b is not None:
            opt.state[q]["momentum_buffer"] = torch.empty_like(q).copy_(b)
    sched.load_state_dict(state["sched"])
    lr.fill_(state["lr"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["cpu_rng"])


def resume_path(work_dir: Path, run_id: str) -> Path:
    return Path(work_dir) / f"{run_id}.resume.pt"


def fork_path(work_dir: Path, run_id: str, epoch: int) -> Path:
    return Path(work_dir) / f"{run_id}.fork-e{epoch}.pt"


def save(path: Path, trainer: PackTrainer, k: int, p: Progress, fp: dict) -> None:
    """Run k of a pack: its state in the layout of one ordinary model (PackTrainer.run_state)."""
    save_state(path, trainer.run_state(k), p, fp)


def save_state(path: Path, state: dict, p: Progress, fp: dict) -> None:
    """A run's resume or fork file: `state` is {model, momentum, sched, lr, gen, cpu_rng} (as
    PackTrainer.run_state and training/one.py write it), `fp` the fingerprint it belongs to."""
    checkpoint.save_resume(path, {
        "format": RESUME_FORMAT, "fingerprint": fp, "trainer": state,
        "epoch": p.epoch, "curves": p.curves, "occ": p.occ, "train_time": p.train_time,
        "cpu_time": p.cpu_time, "images": p.images, "forked_from": p.forked_from, "extra": p.extra})


def load(path: Path, fp: dict) -> dict | None:
    """A resume or fork file made by this config, or None (an unusable one is moved aside with a
    one-line warning: damaged, another version's format, or another config's fingerprint)."""
    from benchmark.fileio import move_aside, warn
    from benchmark.suites import fingerprint

    s = checkpoint.load_resume(path, required=("format", "trainer", "epoch", "curves", "occ"))
    if s is None:
        return None
    why = None
    if s.get("format") != RESUME_FORMAT:
        why = f"written by another erasebench (format {s.get('format')!r}, not {RESUME_FORMAT})"
    elif s.get("fingerprint") != fp:
        keys = [k for k, _, _ in fingerprint.diff(s.get("fingerprint") or {}, fp)]
        why = f"made by another config ({', '.join(keys[:4])} differ)"
    if why is None:
        return s
    warn(f"{path}: {why}; moved to {move_aside(path).name}; the run restarts from scratch")
    return None


def start_state(spec: RunSpec, work_dir: Path, precision: str = "no") -> tuple[str, dict | None]:
    """Where a run starts: its own resume checkpoint, else its warm-up provider's fork, else
    scratch."""
    from benchmark.suites import fingerprint

    s = load(resume_path(work_dir, spec.run_id), fingerprint.of_run(spec, precision))
    if s is not None:
        return "resume", s
    if spec.fork_from is not None:
        f = fork_path(work_dir, spec.fork_from, spec.method.warmup_epochs)
        s = load(f, fingerprint.of_warmup(spec, precision)) if f.is_file() else None
        if s is not None:
            return "fork", s
    return "scratch", None


