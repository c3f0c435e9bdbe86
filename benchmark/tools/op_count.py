"""How many top-level aten ops one training step issues: the number of kernels a CUDA graph of
the step replays (about), counted on the CPU.

`count_ops(fn)` counts the aten ops that reach the dispatcher's Python mode while `fn` runs
(forward, backward and optimiser alike): an op's own internal calls are not counted, so these
are top-level aten ops. Two numbers: `all`, every op, views included (`view`, `detach`,
`select`, `t`, ...), the number the goal (`GOAL_K16`) is about; and `kernels`, the ops that can
launch a kernel (all but the views, which only make a new tensor header over the same memory).
`all` is on the high side: while a dispatch mode is active, autograd's saving of an op's
output (relu, log_softmax) and its unpacking in the backward each reach the mode as a `detach`
that a run without the mode does not issue (about 40 of a resnet20 step's ops). A profiler
counts differently again: it files the backward's ops under autograd events and a composite op
(`conv2d`, `batch_norm`) as one, and sees the per-run draws a `SplitDraws` makes inside one op
as that op's children.
`count_step_ops(kind, k, batch, gpu_path=...)` builds a CPU pack of `k` runs on a tiny synthetic
set and counts one step of `kind`:

- "plain": k plain runs;
- "replace": in-place erasers, a different one in neighbouring lanes (cutout, random_erasing,
  hide_and_seek, plain, in turn): the step `GOAL_K16` is about;
- "mixing": k CutMix runs (an in-place step whose eraser also mixes labels);
- "append": CAM erasing (cam_erasing) on originals + erased copies, one BatchNorm batch.

The count depends on the precision: `gpu_path=True` counts the step as a CUDA run takes it,
bf16 autocast (its weight casts once a step: training/weight_cast.py) and channels_last (the
train default), autocast on the CPU standing in for the GPU's; `gpu_path=False` counts fp32 and
contiguous. It also grows with K (each lane's draws are its own ops) and with the number of
different erasers in the pack, so one number is not all steps: `goal_lines` prints one per kind
and precision (`iter_goal_lines` yields them as they are counted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["GOAL_K16", "KINDS", "OpCount", "count_ops", "count_step_ops", "goal_lines",
           "iter_goal_lines", "step_pack"]

KINDS = ("plain", "replace", "mixing", "append")
GOAL_K16 = 600  # the most top-level aten ops, views included, a K = 16 erasing step may issue
_REPLACE = ("cutout", "random_erasing", "hide_and_seek", "plain")


class OpCount(NamedTuple):
    """Top-level aten ops: `kernels` (all but views, which launch nothing) and `all` (every
    op, views included: the count `GOAL_K16` bounds)."""

    kernels: int
    all: int


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.all = self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.all += 1
        self.kernels += func.namespace == "aten" and not func.is_view
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> OpCount:
    """The top-level aten ops `fn()` issues (their own nested calls are not counted)."""
    counter = _Counter()
    with counter:
        fn()
    return OpCount(counter.kernels, counter.all)


def _methods(kind: str, k: int) -> list:
    if kind == "plain":
        return ["plain"] * k
    if kind == "replace":
        return [_REPLACE[i % len(_REPLACE)] for i in range(k)]
    if kind == "mixing":
        return ["cutmix"] * k
    if kind == "append":
        return [{"name": "cam_erasing", "params": {"b_h": 2}, "warmup_epochs": 0}] * k
    raise ValueError(f"op count: step kind {kind!r}; allowed: {', '.join(KINDS)}")


def step_pack(kind: str, k: int, batch: int = 8, *, size: int = 16, gpu_path: bool = False):
    """(trainer, step): a CPU pack of `k` resnet20 runs (lane i: seed i and the i-th method of
    `kind`, see KINDS) on a tiny synthetic set, batch `batch`, `size` x `size` images, in fp32
    and contiguous or (`gpu_path`) bf16 autocast and channels_last as a CUDA run trains, its
    epoch permutations drawn, and its `kind` step. ValueError for an unknown kind."""
    from benchmark.suites.config import parse_suite
    from benchmark.suites.expand import expand
    from benchmark.training.pack import PackTrainer, load_run_data

    methods = _methods(kind, k)
    names = [m["name"] if isinstance(m, dict) else m for m in methods]
    runs = expand(parse_suite({
        "name": "op_count", "data": {"name": "synthetic",
                                     "options": {"n_train": 4 * batch, "n_test": 8,
                                                 "size": size}},
        "train": {"epochs": 1, "batch_size": batch, "milestones": [1],
                  "channels_last": gpu_path, "graphs": "off"},
        "models": ["resnet20"], "seeds": list(range(k)),
        "methods": list({n: m for n, m in zip(names, methods, strict=True)}.values())}))
    # one run a lane: lane i gets seed i and method i
    specs = [next(r for r in runs if r.seed == i and r.method.name == names[i])
             for i in range(k)]
    tr = PackTrainer(specs, load_run_data(specs[0], "cpu"), "cpu",
                     precision="bf16" if gpu_path else "no")
    tr.model.train()
    for lane in tr.lanes:
        lane.perm.copy_(torch.randperm(lane.perm.shape[0], generator=lane.generator))
    return tr, tr.step_for("replace" if kind == "mixing" else kind)


def count_step_ops(kind: str, k: int, batch: int = 8, *, size: int = 16,
                   gpu_path: bool = False) -> OpCount:
    """Top-level aten ops of one `kind` step (KINDS) of `step_pack(kind, k, batch, ...)` (the
    count does not depend on the image size). The first step is taken uncounted (lazy state:
    the optimiser's buffers), the second is counted. ValueError for an unknown kind."""
    tr, step = step_pack(kind, k, batch, size=size, gpu_path=gpu_path)

    def one():
        tr.opt.zero_grad(set_to_none=True)
        step()

    one()
    n = count_ops(one)
    tr.close()
    return n


_WHAT = {"plain": "plain runs", "replace": "cutout/random_erasing/hide_and_seek/plain in turn",
         "mixing": "cutmix", "append": "cam_erasing, originals + erased copies"}


def iter_goal_lines(k: int = 16, batch: int = 8) -> Iterator[str]:
    """`goal_lines`, one line at a time, each yielded as soon as its step is counted (a caller
    that prints them shows every count made before a stop)."""
    for kind in KINDS:
        for gpu_path in (True, False):
            n = count_step_ops(kind, k, batch, gpu_path=gpu_path)
            met = "met" if n.all <= GOAL_K16 else "NOT met"
            how = "bf16 autocast + channels_last (the GPU path)" if gpu_path else "fp32"
            goal = "goal" if kind == "replace" else "the replace step's goal"
            yield (f"K={k} {kind} step ({_WHAT[kind]}), {how}: {n.all} top-level aten ops, "
                   f"views included ({goal} <= {GOAL_K16}: {met}); {n.kernels} can launch "
                   f"a kernel")
    yield (f"(op counts: one step of a pack of {k} resnet20 runs, batch {batch}, counted on the "
           "CPU; bf16 autocast on the CPU stands in for the GPU's; the count grows with the "
           f"different erasers in a pack: the replace step's {len(_REPLACE) - 1} and plain; "
           "a pack of more different erasers issues more)")


def goal_lines(k: int = 16, batch: int = 8) -> list[str]:
    """Lines for `erasebench speed train`: for each step kind (KINDS) and both precisions (the
    GPU path's bf16 autocast + channels_last first, then fp32), the K-run step's top-level aten
    ops, views included (`all`), against `GOAL_K16`, each saying "met" or "NOT met" for itself
    (the goal is set for the "replace" step; the others are measured against the same bound so
    that no one number reads as all), with the ops that can launch a kernel beside it; last a
    footer saying how they were counted and that a pack of more different erasers issues
    more. `iter_goal_lines` yields them one by one."""
    return list(iter_goal_lines(k, batch))
