"""Cost estimates for --dry-run: the real step of each step kind, timed on this device.

A pack's time is, per epoch, its steps times the measured time of that epoch's step kind
(plain, replace or append; as a CUDA graph where the run would use one, stacked where it would
be stacked), plus the measured evaluation, plus the end-of-run CAM check. A step kind is timed
once per context (model, pack size, CAM source, schedule, data size; not per eraser), so
methods doing the same work cost the same. Each rate is the median of several timed steps:
wall time on CUDA (device synchronised); on the CPU, the CPU time of the calling thread with
torch held to one intra-op thread while calibrating: the step's work in CPU-seconds, which a
busy machine barely changes (wall time measures the load, and the CPU time of all threads
counts OpenMP threads spin-waiting for each other under contention). The data are random
images of the dataset's shape, so no dataset file is read.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmark.timing import per_call, sync
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


def clock_of(device) -> str:
    """"wall" on CUDA; "cpu" on the CPU: CPU-seconds of work, timed on one thread
    (`one_thread`, `median_call`)."""
    return "wall" if torch.device(device).type == "cuda" else "cpu"


@contextlib.contextmanager
def one_thread(clock: str | None):
    """While timing on the "cpu" clock: torch on one intra-op thread, so the calling thread's
    CPU time is the step's whole work (no spin-waiting threads counted); restored after."""
    if clock != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_call(fn, device, *, warmup: int = 0, calls: int = TIMED_STEPS,
                clock: str = "wall") -> float:
    """Median seconds of one call of `fn` over `calls` calls, each timed alone after `warmup`
    calls, device synchronised. clock "wall": time.perf_counter; "cpu": time.thread_time (the
    calling thread's CPU time: with torch on one thread (`one_thread`) the step's work, which a
    busy machine barely changes)."""
    tick = time.thread_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, calls)):
        sync(device)
        start = tick()
        fn()
        sync(device)
        times.append(tick() - start)
    return statistics.median(times)


def calibrate(specs, device, sizes, precision: str = "no", *, steps_only: bool = False,
              timed_steps: int = TIMED_STEPS, kinds=None, clock: str | None = None,
              log=None) -> dict:
    """Seconds per step of each step kind the pack takes (`kinds`: only these), per evaluation
    pass and per CAM check (`steps_only`: the steps alone). clock None: the mean wall time of
    `timed_steps` steps (speed tables); "wall" or "cpu": the median of `timed_steps` steps
    timed one by one on that clock (`median_call`; "cpu": on one torch thread). `log`: told
    one line before each step kind (and the evaluation) is timed."""
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
    say = log or (lambda m: None)
    what = f"of a pack of {len(specs)} ({specs[0].model}) on {device}"
    with one_thread(clock), tempfile.TemporaryDirectory() as tmp, contextlib.closing(
            PackTrainer(specs, rd, device, precision=precision,
                        frozen_ckpts=_stand_in_frozen(specs, classes, rd, tmp))) as tr:
        for lane in tr.lanes:
            lane.perm.copy_(torch.randperm(n_fake, device=device))
        tr.model.train()
        out = {}
        if kinds is None:
            kinds = {pack_kind(specs, e) for e in range(t.epochs)}
        if clock is None:  # the speed table: each kind's mean, one after the other
            for kind in sorted(kinds):
                step = tr.step_for(kind)
                tr.pos.zero_()
                out[kind] = _time(lambda kind=kind, step=step: tr.runner(kind, step), device,
                                  warm, timed_steps, clock)
        else:
            for kind in sorted(kinds):
                say(f"timing the {kind} step {what}: {warm} warm-up + {max(1, timed_steps)} "
                    f"timed steps of batch {t.batch_size} ...")
            out.update(_interleaved(tr, sorted(kinds), device, warm, timed_steps, clock))
        out["graphs"] = sorted(tr.runner.captured)
        if steps_only:
            return out
        scale = n_test / n_eval  # timed on part of the test set
        say(f"timing the evaluation and the end-of-run CAM check {what}: {n_eval} images ...")
        out["eval"] = _time(tr.evaluate, device, 0, 1, clock) * scale
        out["final"] = _time(lambda: [tr.test_cam_in_box(k) for k in range(len(specs))],
                             device, 0, 1, clock) * scale
    return out


def _interleaved(tr, kinds: list[str], device, warm: int, timed_steps: int,
                 clock: str) -> dict[str, float]:
    """Each kind's median step, the kinds timed in turns (one step of each, `timed_steps`
    rounds), so a burst of load on a shared machine falls on every kind alike instead of on
    whichever kind was being timed."""
    steps = {}
    for kind in kinds:  # warm-up (and, where graphed, the capture) of every kind first
        steps[kind] = tr.step_for(kind)
        tr.pos.zero_()
        for _ in range(warm):
            tr.runner(kind, steps[kind])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(max(1, timed_steps)):
        for kind in kinds:
            tr.pos.zero_()
            times[kind].append(median_call(lambda kind=kind: tr.runner(kind, steps[kind]),
                                           device, calls=1, clock=clock))
    return {k: statistics.median(v) for k, v in times.items()}


def _time(fn, device, warmup: int, calls: int, clock: str | None) -> float:
    if clock is None:  # the speed table's mean wall time
        return per_call(fn, device, warmup=warmup, calls=calls)
    return median_call(fn, device, warmup=warmup, calls=calls, clock=clock)


def context(pack, sizes) -> tuple:
    """What a step's cost depends on besides its kind: model, pack size, where the CAM comes
    from, how an append step batches BatchNorm, a frozen CAM model, the schedule and the data
    size. Not the eraser or its parameters: an erase is a few tensor ops beside the network, so
    methods doing the same work share one timing instead of differing by timing noise."""
    cams = sorted({(r.method.cam.source, r.method.cam.layer) for r in pack.runs
                   if not r.method.is_plain and r.method.needs_cam})
    r = pack.runs[0]
    return (r.model, len(pack.runs), tuple(cams), r.method.append_bn,
            any(x.frozen_from for x in pack.runs),
            repr(sorted(vars(r.train).items())), sizes)


def estimate(packs, device, *, precision: str = "no", done=frozenset(),
             log=None) -> dict[str, dict]:
    """{run_id: {"images": n, "seconds": s, "fixed_seconds": f}}: seconds on `clock_of(device)`
    (wall on CUDA; on the CPU, CPU-seconds of work timed on one thread). A pack's time is
    shared by its runs; a run forked from a shared warm-up trains (and counts images) only from
    the fork epoch; an append epoch counts 2B images per step; runs in `done` cost nothing.
    fixed_seconds: the part that does not scale with the epochs (the end-of-run CAM check)."""
    device = torch.device(device)
    clock = clock_of(device)
    rates: dict = {}  # context -> {kind: seconds per step, "eval": ..., "final": ...}
    out = {}
    for pack in packs:
        todo = [r for r in pack.runs if r.run_id not in done]
        for r in pack.runs:
            if r.run_id in done:
                out[r.run_id] = {"images": 0, "seconds": 0.0, "fixed_seconds": 0.0, "done": True}
        if not todo:
            continue
        sizes = dataset_sizes(todo[0])
        t = todo[0].train
        start = todo[0].method.warmup_epochs if todo[0].fork_from else 0
        kinds = [pack_kind(pack.runs, e) for e in range(start, t.epochs)]
        key = context(pack, sizes)
        rate = rates.setdefault(key, {})
        missing = sorted(set(kinds) - set(rate))
        if missing:
            rate.update(calibrate(pack.runs, device, sizes, precision, kinds=missing,
                                  steps_only="eval" in rate, clock=clock, log=log))
        n_steps = steps_per_epoch(sizes[0], t.batch_size)
        seconds = sum(n_steps * rate[kind] for kind in kinds) + len(kinds) * rate["eval"]
        for r in todo:
            out[r.run_id] = {"images": image_passes(r, sizes[0], start_epoch=start),
                             "seconds": (seconds + rate["final"]) / len(pack.runs),
                             "fixed_seconds": rate["final"] / len(pack.runs)}
    return out


# Stated dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's datasheets: a
# projection's ceiling, not a measurement of this code.
STATED_BF16_TFLOPS = {"H100 SXM": 989.0, "H200 SXM": 989.0, "A100 SXM": 312.0}
_flops_cache: dict = {}


def forward_flops_per_image(model_name: str, num_classes: int) -> int:
    """FLOPs of one 3x32x32 image's forward pass, counted by torch's FlopCounterMode (matmuls
    and convolutions; a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark import models

    key = (model_name, num_classes)
    if key not in _flops_cache:
        model = models.create(model_name, num_classes=num_classes).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        _flops_cache[key] = int(counter.get_total_flops())
    return _flops_cache[key]


def counted_flops(runs, est: dict) -> float:
    """Training FLOPs of the runs still to train: 3 forward passes' worth per trained image
    (forward, and a backward of about twice that) plus one per test image per epoch."""
    total = 0.0
    for r in runs:
        e = est[r.run_id]
        if e.get("done"):
            continue
        _, n_test, classes, _ = dataset_sizes(r)
        start = r.method.warmup_epochs if r.fork_from else 0
        f = forward_flops_per_image(r.model, classes)
        total += f * (3 * e["images"] + n_test * (r.train.epochs - start))
    return total


def projection(flops: float) -> str:
    """One line: the counted FLOPs and the floor they set on each GPU of STATED_BF16_TFLOPS."""
    def secs(s):
        return f"{s:.2g}s" if s < 10 else fmt_seconds(s)

    floors = ", ".join(f"{name} {secs(flops / (tf * 1e12))}"
                       for name, tf in STATED_BF16_TFLOPS.items())
    return (f"projection (not measured): {flops / 1e12:,.3g} TFLOP counted (FlopCounterMode); "
            f"at the stated bf16 peak that is at least {floors}; small ResNets reach a fraction "
            "of the peak, so expect several times longer: measure with `erasebench speed train` "
            "on that GPU")


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"
