"""Cost estimates for --dry-run: each pack's real step, timed on this device after warm-up.

A pack's time is, per epoch, its steps times the measured time of that epoch's step kind
(plain, erase or append; as a CUDA graph where the run would use one, stacked where it would
be stacked), plus the measured evaluation, plus the end-of-run CAM check. The data are random
images of the dataset's shape, so no dataset file is read.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch

from benchmark.timing import per_call
from benchmark.training.pack import PackTrainer, RunData, pack_kind
from benchmark.training.train import image_passes, steps_per_epoch

TIMED_STEPS = 5


def dataset_sizes(spec) -> tuple[int, int, int, bool]:
    """(n_train, n_test, num_classes, has boxes) of a run's dataset, loading it only if unknown."""
    from benchmark import data

    known = data.known_sizes(spec.data.name, **spec.data.options)
    if known is not None:  # CIFAR's published sizes, the synthetic set's options: nothing read
        return known
    kw = dict(root=spec.data.root, **spec.data.options)
    tr, te = data.load(spec.data.name, "train", **kw), data.load(spec.data.name, "test", **kw)
    return len(tr.labels), len(te.labels), len(tr.classes), tr.boxes is not None


def _fake_data(n: int, n_test: int, classes: int, boxes: bool, device) -> RunData:
    g = torch.Generator().manual_seed(0)

    def images(m):
        return torch.randint(0, 256, (m, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)

    def labels(m):
        return torch.randint(0, classes, (m,), generator=g).to(device)

    def bx(m):
        if not boxes:
            return None
        lo = torch.randint(0, 16, (m, 2), generator=g).float()
        return torch.cat([lo, lo + 12], dim=1).to(device)

    return RunData(images(n), labels(n), bx(n), images(n_test), labels(n_test), bx(n_test),
                   (0.5,) * 3, (0.25,) * 3, classes)


def _stand_in_frozen(specs, classes: int, rd: RunData, tmp: str) -> dict:
    """CAM "after" runs need a frozen model: a fresh one of the same architecture costs the same."""
    from benchmark import models
    from benchmark.training import checkpoint

    return {s.run_id: checkpoint.save(Path(tmp) / f"{s.run_id}.pt",
                                      models.create(s.model, num_classes=classes),
                                      model_name=s.model, num_classes=classes, mean=rd.mean,
                                      std=rd.std) for s in specs if s.frozen_from}


def calibrate(specs, device, sizes, precision: str = "no", *, steps_only: bool = False,
              timed_steps: int = TIMED_STEPS) -> dict:
    """Seconds per step of each step kind the pack takes, per evaluation pass and per CAM check
    (`steps_only`: the steps alone)."""
    from benchmark.training.graphs import WARMUP_STEPS, use_graphs

    n_train, n_test, classes, boxes = sizes
    t = specs[0].train
    # eager warm-up steps, the capture and a first replay; eagerly, one step to warm caches
    warm = WARMUP_STEPS + 3 if use_graphs(t.graphs, device) else 1
    n_fake = t.batch_size * (warm + timed_steps + 1)
    n_eval = min(n_test, t.eval_batch_size * 2)
    rd = _fake_data(n_fake, n_eval, classes, boxes, device)
    # closing: the trainer's graphs (memory pools) go at the end, even on an error; a `speed
    # train` calibrates ~24 packs in a row (the trainer holds no cycle: nothing waits for gc)
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(PackTrainer(
            specs, rd, device, precision=precision,
            frozen_ckpts=_stand_in_frozen(specs, classes, rd, tmp))) as tr:
        for lane in tr.lanes:
            lane.perm.copy_(torch.randperm(n_fake, device=device))
        tr.model.train()
        out = {}
        for kind in sorted({pack_kind(specs, e) for e in range(t.epochs)}):
            step = tr.step_for(kind)
            tr.pos.zero_()
            out[kind] = per_call(lambda kind=kind, step=step: tr.runner(kind, step), device,
                                 warmup=warm, calls=timed_steps)
        out["graphs"] = sorted(tr.runner.captured)
        if steps_only:
            return out
        scale = n_test / n_eval  # timed on part of the test set
        out["eval"] = per_call(tr.evaluate, device) * scale
        out["final"] = per_call(lambda: [tr.test_cam_in_box(k) for k in range(len(specs))],
                                device) * scale
    return out


def _signature(pack, sizes) -> tuple:
    return (tuple((r.model, r.method.name, repr(sorted(r.method.params.items())), r.method.mode,
                   r.method.append_bn, r.method.cam.source, r.method.cam.layer,
                   r.method.warmup_epochs, bool(r.frozen_from)) for r in pack.runs),
            repr(sorted(vars(pack.runs[0].train).items())), sizes)


def estimate(packs, device, *, precision: str = "no", done=frozenset(),
             log=None) -> dict[str, dict]:
    """{run_id: {"images": n, "seconds": s}}; a pack's time is shared by its runs, a forked run
    starts at its warm-up's end, and runs in `done` cost nothing."""
    device = torch.device(device)
    rates: dict = {}
    out = {}
    for pack in packs:
        todo = [r for r in pack.runs if r.run_id not in done]
        for r in pack.runs:
            if r.run_id in done:
                out[r.run_id] = {"images": 0, "seconds": 0.0, "done": True}
        if not todo:
            continue
        sizes = dataset_sizes(todo[0])
        key = _signature(pack, sizes)
        if key not in rates:
            if log is not None:
                log(f"calibrating pack of {len(pack.runs)} ({pack.runs[0].run_id}) on {device} ...")
            rates[key] = calibrate(pack.runs, device, sizes, precision)
        rate, t = rates[key], todo[0].train
        start = todo[0].method.warmup_epochs if todo[0].fork_from else 0
        n_steps = steps_per_epoch(sizes[0], t.batch_size)
        seconds = sum(n_steps * rate[pack_kind(pack.runs, e)] for e in range(start, t.epochs))
        seconds += (t.epochs - start) * rate["eval"] + rate["final"]
        for r in todo:
            out[r.run_id] = {"images": image_passes(r, sizes[0], start_epoch=start),
                             "seconds": seconds / len(pack.runs)}
    return out


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"
