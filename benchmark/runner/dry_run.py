"""`erasebench run --dry-run`: the packs and runs of a suite with a time estimate measured on
this device's real step (wall time on CUDA, CPU time on the CPU), and off CUDA a projection
for named GPUs from counted FLOPs; trains nothing, writes nothing."""

from __future__ import annotations

import sys

from benchmark import results
from benchmark.suites import plan
from benchmark.suites.expand import RunSpec


def dry_run(runs: list[RunSpec], packs: list[plan.Pack], device, states: dict,
            precision: str) -> None:
    """Print the packs and runs with a time estimate measured on this device's real step (one
    timing per step kind and context, the median of several steps: `cost.estimate`); finished
    runs show as done, failed ones (not retrained without --retry-failed) as failed, and
    neither costs anything. On the CPU the estimate is CPU-seconds of work, timed on one torch
    thread (which a busy machine barely changes), with the wall time it takes at best on the
    threads the run will use; off CUDA a last line projects the suite onto named GPUs from its
    counted FLOPs and their stated peaks (a floor, said so). A line names the dataset planned
    with: its image shape and sizes, counted from the local files where they are present (a
    header where one tells, `cost.dataset_facts`), else the published sizes, saying why."""
    from benchmark.tools import cost

    done = {i for i, st in states.items() if st is not None}
    print(f"estimating {len(runs) - len(done)} run(s) in {len(packs)} pack(s): each step kind is "
          f"timed once on {device} (a line before each) ...", file=sys.stderr, flush=True)
    est = cost.estimate(packs, device, precision=precision, done=done,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    for line in dict.fromkeys(cost.dataset_facts(r).line() for r in runs):
        print(line)  # the shape timed and the sizes planned with, and where they came from
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
    _summary(runs, packs, device, states, precision, est, done)


def _summary(runs, packs, device, states: dict, precision: str, est: dict, done: set) -> None:
    """The last lines: off CUDA the GPU projection, then the runs, packs and total estimate."""
    from benchmark.robustness import FRACTIONS
    from benchmark.tools import cost

    sizes = [len(p.runs) for p in packs]
    total = sum(est[r.run_id]["seconds"] for r in runs)
    failed = list(states.values()).count("failed")
    also = f", {failed} failed (--retry-failed trains them again)" if failed else ""
    cpu = cost.clock_of(device) == "cpu"
    unit = "device-hours"
    if cpu:
        import torch

        n = torch.get_num_threads()
        unit = (f"CPU-hours of work, timed on one torch thread; on {n} thread"
                f"{'s' if n > 1 else ''}, at best {cost.fmt_seconds(total / n)} wall")
    hours = f"{total / 3600:.2f}" if total >= 36 else f"{total / 3600:.1e}"  # not "0.00"
    if cpu:  # before the summary, which stays the last line
        print(cost.projection(cost.counted_flops(runs, est)))
    print(f"{len(runs)} runs in {len(packs)} packs (sizes {', '.join(map(str, sizes))}), "
          f"{len(done) - failed} already done{also}; the rest estimated {cost.fmt_seconds(total)} "
          f"({hours} {unit}) on {results.device_name(device)}, one process, "
          f"{'bf16' if precision == 'bf16' else 'fp32'}; each step kind timed here on the real "
          "step, the median of several steps; it covers the training steps, the evaluation after "
          "each epoch, the end-of-run CAM check and each run's robustness evaluation "
          f"({len(FRACTIONS)} occluded fractions x each placement, and its CAM, over the test "
          "set), not the "
          "process's start-up, loading the data or writing checkpoints")
