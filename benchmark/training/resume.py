"""A run's progress on disk: resume checkpoints (every `checkpoint_every` epochs, and after the
last epoch until the run's record is written) and fork files (a provider's state at a shared
warm-up's end), each tied to the config that made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.suites.expand import RunSpec
from benchmark.training import checkpoint
from benchmark.training.pack import PackTrainer
from benchmark.training.step import SLOTS

RESUME_FORMAT = 2
CURVES = ("epoch", "train_loss", "train_acc", "test_error", "lr", "erased_fraction")


@dataclass
class Progress:
    """What a run has done so far; saved in its resume checkpoint and its fork files."""

    epoch: int = 0
    curves: dict = field(default_factory=lambda: {k: [] for k in CURVES})
    occ: list = field(default_factory=lambda: [0.0] * len(SLOTS))
    train_time: float = 0.0
    images: float = 0.0
    resumed_from: int | None = None
    forked_from: dict | None = None
    extra: dict = field(default_factory=dict)  # the runner's own (e.g. the W&B run id)


def resume_path(work_dir: Path, run_id: str) -> Path:
    return Path(work_dir) / f"{run_id}.resume.pt"


def fork_path(work_dir: Path, run_id: str, epoch: int) -> Path:
    return Path(work_dir) / f"{run_id}.fork-e{epoch}.pt"


def save(path: Path, trainer: PackTrainer, k: int, p: Progress, fp: dict) -> None:
    checkpoint.save_resume(path, {
        "format": RESUME_FORMAT, "fingerprint": fp, "trainer": trainer.run_state(k),
        "epoch": p.epoch, "curves": p.curves, "occ": p.occ, "train_time": p.train_time,
        "images": p.images, "forked_from": p.forked_from, "extra": p.extra})


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


