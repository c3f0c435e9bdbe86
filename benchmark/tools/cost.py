"""Cost estimates for --dry-run: the real step of each step kind, timed on this device.

A pack's time is, per epoch, its steps times the measured time of that epoch's step kind
(plain, replace or append; as a CUDA graph where the run would use one, stacked where it would
be stacked), plus the measured evaluation, plus the end-of-run CAM check. A step kind is timed
once per context (model, pack size, CAM source, schedule, data size; not per eraser), so
methods doing the same work cost the same, and related contexts (the same model, pack size,
schedule and data: e.g. an append step with one BatchNorm batch and with two) are timed in one
calibration, one step of each in turns, so a burst of load falls on all of them alike. Each
rate is the median of several timed steps: wall time on CUDA (device synchronised); on the CPU,
the CPU time of the calling thread with torch held to one intra-op thread while calibrating:
the step's work in CPU-seconds, which a busy machine barely changes (wall time measures the
load, and the CPU time of all threads counts OpenMP threads spin-waiting for each other under
contention). The data are random images of the dataset's shape (Fashion-MNIST 1x28x28, CIFAR
and SVHN 3x32x32), at the number of images of the local files where a header tells it
(`dataset_facts`), so no image is read.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmark.timing import per_call, sync
from benchmark.tools.data_facts import DataFacts, dataset_facts, dataset_sizes
from benchmark.tools.flops import (
    STATED_BF16_TFLOPS,
    counted_flops,
    forward_flops_per_image,
    projection,
)
from benchmark.training.pack import PackTrainer, RunData, pack_kind
from benchmark.training.train import image_passes, steps_per_epoch

__all__ = ["DataFacts", "STATED_BF16_TFLOPS", "calibrate", "calibrate_together", "clock_of",
           "counted_flops", "dataset_facts", "dataset_sizes", "estimate", "fmt_seconds",
           "forward_flops_per_image", "median_call", "projection"]

TIMED_STEPS = 5


def _fake_data(n: int, n_test: int, classes: int, boxes: bool, device,
               shape: tuple[int, int, int] = (3, 32, 32)) -> RunData:
    g = torch.Generator().manual_seed(0)
    c, h, w = shape

    def images(m):
        return torch.randint(0, 256, (m, c, h, w), dtype=torch.uint8, generator=g).to(device)

    def labels(m):
        return torch.randint(0, classes, (m,), generator=g).to(device)

    def bx(m):
        if not boxes:
            return None
        side = min(h, w)
        lo = torch.randint(0, max(1, side // 2), (m, 2), generator=g).float()
        return torch.cat([lo, lo + max(1, side * 3 // 8)], dim=1).to(device)

    return RunData(images(n), labels(n), bx(n), images(n_test), labels(n_test), bx(n_test),
                   (0.5,) * c, (0.25,) * c, classes)


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


EVAL_ROUNDS = 3


def calibrate(specs, device, sizes, precision: str = "no", *, steps_only: bool = False,
              timed_steps: int = TIMED_STEPS, kinds=None, clock: str | None = None,
              log=None, shape: tuple[int, int, int] = (3, 32, 32)) -> dict:
    """Seconds per step of each step kind the pack takes (`kinds`: only these), per evaluation
    pass and per CAM check (`steps_only`: the steps alone), on random images of `shape`
    (channels, height, width). clock None: the mean wall time of `timed_steps` steps (speed
    tables); "wall" or "cpu": the median of `timed_steps` steps timed one by one on that clock,
    the kinds in turns (`calibrate_together`). `log`: told one line before each step kind (and
    the evaluation) is timed."""
    if kinds is None:
        kinds = {pack_kind(specs, e) for e in range(specs[0].train.epochs)}
    if clock is not None:
        return calibrate_together([(specs, sorted(kinds), not steps_only)], device, sizes,
                                  precision, timed_steps=timed_steps, clock=clock, log=log,
                                  shape=shape)[0]
    with _trainers([specs], device, sizes, precision, timed_steps, shape) as (trs, warm, _):
        tr, out = trs[0], {}
        for kind in sorted(kinds):  # the speed table: each kind's mean, one after the other
            tr.at_first_epoch_of(kind)  # its erasers as in that kind's first epoch
            step = tr.step_for(kind)
            tr.pos.zero_()
            out[kind] = _time(lambda kind=kind, step=step: tr.runner(kind, step), device,
                              warm, timed_steps, None)
        out["graphs"] = sorted(tr.runner.captured)
        if not steps_only:
            out.update(_eval_rates(trs, device, sizes, None, 1)[0])
    return out


@contextlib.contextmanager
def _trainers(packs, device, sizes, precision: str, timed_steps: int,
              shape: tuple[int, int, int]):
    """A PackTrainer per pack (a list of specs of one model and schedule) on shared random data
    of `shape`, each lane's order shuffled, in training mode; yields (trainers, warm-up steps,
    images evaluated). Closed at the end, even on an error: their graphs (memory pools) go
    then, and a `speed train` calibrates ~24 packs in a row (a trainer holds no cycle: nothing
    waits for gc)."""
    from benchmark.training.graphs import WARMUP_STEPS, use_graphs

    _, n_test, classes, boxes = sizes
    t = packs[0][0].train
    # eager warm-up steps, the capture and a first replay; eagerly, one step to warm caches
    warm = WARMUP_STEPS + 3 if use_graphs(t.graphs, device) else 1
    n_fake = t.batch_size * (warm + timed_steps + 1)
    n_eval = min(n_test, t.eval_batch_size * 2)
    rd = _fake_data(n_fake, n_eval, classes, boxes, device, shape)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        trainers = []
        for specs in packs:
            tr = stack.enter_context(contextlib.closing(PackTrainer(
                specs, rd, device, precision=precision,
                frozen_ckpts=_stand_in_frozen(specs, classes, rd, tmp))))
            for lane in tr.lanes:
                lane.perm.copy_(torch.randperm(n_fake, device=device))
            tr.model.train()
            trainers.append(tr)
        yield trainers, warm, n_eval


def calibrate_together(jobs, device, sizes, precision: str = "no", *, clock: str,
                       timed_steps: int = TIMED_STEPS, log=None,
                       shape: tuple[int, int, int] = (3, 32, 32)) -> list[dict]:
    """Time related packs in one calibration: `jobs` is [(specs, kinds, with_eval)], packs of
    one model, pack size, schedule and data size (`related`). Every job's step kinds are timed
    in the same rounds, one step of each per round (`timed_steps` rounds, each kind's median
    kept), so two kinds doing the same work (an append step with one BatchNorm batch of 2B or
    two of B; a replace step of any eraser) see the same load and come out alike even on a
    busy machine; likewise the evaluation and the end-of-run CAM check of the jobs with
    `with_eval` (`EVAL_ROUNDS` rounds). Returns one dict per job, as `calibrate`. clock "wall"
    or "cpu" (`median_call`; "cpu": on one torch thread)."""
    say = log or (lambda m: None)
    with one_thread(clock), _trainers([specs for specs, _, _ in jobs], device, sizes, precision,
                                      timed_steps, shape) as (trs, warm, n_eval):
        pairs = []
        for (specs, kinds, _), tr in zip(jobs, trs, strict=True):
            for kind in kinds:
                say(f"timing the {kind} step of a pack of {len(specs)} ({specs[0].model}) on "
                    f"{device}: {warm} warm-up + {max(1, timed_steps)} timed steps of batch "
                    f"{specs[0].train.batch_size}"
                    f"{f', in turns with {len(jobs) - 1} related pack(s)' if len(jobs) > 1 else ''}"
                    " ...")
                pairs.append((tr, kind))
        times = _interleaved(pairs, device, warm, timed_steps, clock)
        outs = [{} for _ in jobs]
        for (tr, kind), sec in zip(pairs, times, strict=True):
            outs[trs.index(tr)][kind] = sec
        for out, tr in zip(outs, trs, strict=True):
            out["graphs"] = sorted(tr.runner.captured)
        evals = [i for i, (_, _, with_eval) in enumerate(jobs) if with_eval]
        if evals:
            specs = jobs[evals[0]][0]
            say(f"timing the evaluation, the end-of-run CAM check and the robustness evaluation "
                f"of a pack of {len(specs)} ({specs[0].model}) on {device}: {n_eval} images "
                f"({min(n_eval, ROBUSTNESS_IMAGES)} for the robustness evaluation) ...")
            for i, rates in zip(evals, _eval_rates([trs[i] for i in evals], device, sizes, clock,
                                                   EVAL_ROUNDS), strict=True):
                outs[i].update(rates)
    return outs


ROBUSTNESS_IMAGES = 64  # test images the robustness evaluation is timed on (then scaled)


def _robustness_pass(tr, n: int) -> None:
    """The end-of-run robustness evaluation (`benchmark.robustness.measure`: the test set
    occluded at each fraction and placement, and the CAM that places `cam_peak`) of the trainer's
    first run, on its first `n` test images: the real call, on part of the test set."""
    from benchmark import robustness

    spec, rd = tr.specs[0], tr.rd
    boxes = None if rd.test_boxes is None else rd.test_boxes[:n]
    robustness.measure(tr.single_model(0), rd.test_images[:n], rd.test_labels[:n], boxes,
                       mean=rd.mean, std=rd.std, fill=robustness.occluder_fill(spec.method.fill),
                       batch_size=min(spec.train.eval_batch_size, n),
                       cam_layer=spec.method.cam.layer, dtype=tr.dtype, autocast=tr.autocast)
    tr.model.train()


def _eval_rates(trs, device, sizes, clock: str | None, rounds: int) -> list[dict]:
    """Seconds of one evaluation pass, one end-of-run CAM check ("final", the pack's) and one
    run's end-of-run robustness evaluation ("robustness": `_robustness_pass`, every finished run
    takes one) of each trainer over the whole test set (timed on part of it, scaled), the
    trainers in turns, each the median of `rounds` (clock None: one call)."""
    n_test = sizes[1]
    n_eval = len(trs[0].rd.test_labels)
    n_rob = min(n_eval, ROBUSTNESS_IMAGES)
    times = [{"eval": [], "final": [], "robustness": []} for _ in trs]
    for _ in range(max(1, rounds)):
        for tr, t in zip(trs, times, strict=True):
            t["eval"].append(_time(tr.evaluate, device, 0, 1, clock))
            t["final"].append(_time(lambda tr=tr: [tr.test_cam_in_box(k) for k in
                                                   range(len(tr.specs))], device, 0, 1, clock))
            t["robustness"].append(_time(lambda tr=tr: _robustness_pass(tr, n_rob), device, 0,
                                         1, clock))
    # timed on part of the test set, scaled to all of it
    scale = {"eval": n_test / n_eval, "final": n_test / n_eval, "robustness": n_test / n_rob}
    return [{k: statistics.median(v) * scale[k] for k, v in t.items()} for t in times]


def _interleaved(pairs, device, warm: int, timed_steps: int, clock: str) -> list[float]:
    """The median step of each (trainer, kind) pair, the pairs timed in turns (one step of
    each, `timed_steps` rounds), so a burst of load on a shared machine falls on every kind
    alike instead of on whichever kind was being timed."""
    steps = []
    for tr, kind in pairs:  # warm-up (and, where graphed, the capture) of every pair first
        # its erasers as training has them in the first epoch of this step kind (an eraser
        # that depends on the epoch, e.g. GridMask's ramp, needs its epoch)
        tr.at_first_epoch_of(kind)
        steps.append(tr.step_for(kind))
        tr.pos.zero_()
        for _ in range(warm):
            tr.runner(kind, steps[-1])
    times: list[list[float]] = [[] for _ in pairs]
    for _ in range(max(1, timed_steps)):
        for i, ((tr, kind), step) in enumerate(zip(pairs, steps, strict=True)):
            tr.pos.zero_()
            times[i].append(median_call(lambda tr=tr, kind=kind, step=step: tr.runner(kind, step),
                                        device, calls=1, clock=clock))
    return [statistics.median(v) for v in times]


def _time(fn, device, warmup: int, calls: int, clock: str | None) -> float:
    if clock is None:  # the speed table's mean wall time
        return per_call(fn, device, warmup=warmup, calls=calls)
    return median_call(fn, device, warmup=warmup, calls=calls, clock=clock)


def context(pack, sizes) -> tuple:
    """What a step's cost depends on besides its kind: model, pack size, where the CAM comes
    from, how an append step batches BatchNorm, a frozen CAM model, the schedule and the data
    (`sizes`: its sizes and image shape). Not the eraser or its parameters: an erase is a few
    tensor ops beside the network, so methods doing the same work share one timing instead of
    differing by timing noise."""
    cams = sorted({(r.method.cam.source, r.method.cam.layer) for r in pack.runs
                   if not r.method.is_plain and r.method.needs_cam})
    r = pack.runs[0]
    return (r.model, len(pack.runs), tuple(cams), r.method.append_bn,
            any(x.frozen_from for x in pack.runs),
            repr(sorted(vars(r.train).items())), sizes)


def related(key: tuple) -> tuple:
    """The part of a `context` that related contexts share (model, pack size, schedule, data):
    their step kinds are timed in one calibration, in turns (`calibrate_together`)."""
    return key[0], key[1], key[5], key[6]


def estimate(packs, device, *, precision: str = "no", done=frozenset(),
             log=None) -> dict[str, dict]:
    """{run_id: {"images": n, "seconds": s, "fixed_seconds": f}}: seconds on `clock_of(device)`
    (wall on CUDA; on the CPU, CPU-seconds of work timed on one thread). A pack's time is
    shared by its runs; a run forked from a shared warm-up trains (and counts images) only from
    the fork epoch; an append epoch counts 2B images per step; runs in `done` cost nothing.
    seconds cover the training steps, the evaluation after each epoch, the end-of-run CAM check
    (the pack's, shared) and the run's own end-of-run robustness evaluation (`_robustness_pass`);
    not the process's start-up, loading the data or writing checkpoints and records.
    fixed_seconds: the part that does not scale with the epochs (the end-of-run CAM check's
    share and the robustness evaluation).
    Each step kind is timed once per context, and the contexts of one model, pack size,
    schedule and data in one calibration, in turns (`calibrate_together`)."""
    device = torch.device(device)
    clock = clock_of(device)
    out, todo_packs = {}, []
    jobs: dict = {}  # related -> [(context, specs, kinds, with_eval)]
    covered: dict = {}  # context -> the step kinds some job times
    facts_of: dict = {}
    for pack in packs:
        todo = [r for r in pack.runs if r.run_id not in done]
        for r in pack.runs:
            if r.run_id in done:
                out[r.run_id] = {"images": 0, "seconds": 0.0, "fixed_seconds": 0.0, "done": True}
        if not todo:
            continue
        facts = dataset_facts(todo[0])
        t = todo[0].train
        start = todo[0].method.warmup_epochs if todo[0].fork_from else 0
        kinds = [pack_kind(pack.runs, e) for e in range(start, t.epochs)]
        key = context(pack, (facts.sizes, facts.shape))
        todo_packs.append((pack, todo, facts, start, kinds, key))
        new = sorted(set(kinds) - covered.get(key, set()))
        if new:  # a pack that can take these kinds' steps (its own eraser and CAM)
            jobs.setdefault(related(key), []).append((key, pack.runs, new, key not in covered))
            covered.setdefault(key, set()).update(new)
            facts_of[related(key)] = facts
    rates: dict = {}  # context -> {kind: seconds per step, "eval": ..., "final": ...}
    for rel, group in jobs.items():
        facts = facts_of[rel]
        timed = calibrate_together([(specs, kinds, first) for _, specs, kinds, first in group],
                                   device, facts.sizes, precision, clock=clock, log=log,
                                   shape=facts.shape)
        for (key, *_), rate in zip(group, timed, strict=True):
            rates.setdefault(key, {}).update(rate)
    for pack, todo, facts, start, kinds, key in todo_packs:
        out.update(_run_costs(pack, todo, facts, start, kinds, rates[key]))
    return out


def _run_costs(pack, todo, facts, start: int, kinds: list, rate: dict) -> dict[str, dict]:
    """`estimate`'s entries for one pack's runs still to train, from its context's rates."""
    n_steps = steps_per_epoch(facts.n_train, todo[0].train.batch_size)
    seconds = sum(n_steps * rate[kind] for kind in kinds) + len(kinds) * rate["eval"]
    fixed = rate["final"] / len(pack.runs) + rate["robustness"]  # each run its own
    return {r.run_id: {"images": image_passes(r, facts.n_train, start_epoch=start),
                       "seconds": seconds / len(pack.runs) + fixed, "fixed_seconds": fixed}
            for r in todo}


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"
