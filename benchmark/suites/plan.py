"""Form the packs a suite trains: runs that can share one stacked network, and in what order.

Runs pack together when they have the same CIFAR ResNet architecture, data, schedule and step
kind at every epoch (plain runs join the in-place erasers, which erase from epoch 0), start
at the same point (from scratch, or forked from a shared warm-up), and take their CAM, if
any, from the free path of the live model (`stacks`: the model code says what stacks).
Everything else (timm models, CAM "after" training, a CAM from an earlier layer) trains
alone. Packs whose runs provide a warm-up or a frozen CAM model come before the packs that
need them. Importing this imports torch (through benchmark.models); the config does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark import models
from benchmark.suites.config import RunSpec, to_dict

# A projection, not a measurement of this code: the prototype scripts this code grew from found
# the knee at K = 8-16 on one H100 (about 145k and 155k images/s of ResNet20 plain steps). This
# code's own K = 4, 8, 16 numbers come from `erasebench speed train` on a GPU
# (leaderboards/speed.md); until a GPU has run it, 16 is the prototype's choice.
AUTO_PACK_CUDA = 16


@dataclass
class Pack:
    runs: list[RunSpec]

    @property
    def id(self) -> str:
        return self.runs[0].run_id if len(self.runs) == 1 else \
            f"{self.runs[0].run_id}+{len(self.runs) - 1}"

    @property
    def needs(self) -> set[str]:
        """Run ids this pack waits for: warm-up providers and frozen CAM models."""
        own = {r.run_id for r in self.runs}
        deps = {r.fork_from for r in self.runs} | {r.frozen_from for r in self.runs}
        return {d for d in deps if d is not None and d not in own}


def stacks(r: RunSpec) -> bool:
    """Whether run r can share a stacked network with other runs: its model stacks
    (`models.stackable`) and its CAM, if it needs one, comes free from the live model's head
    layer (`models.head_layer`). training/pack.py refuses a pack of runs for which this is
    False, so the planner and the trainer cannot disagree."""
    m = r.method
    if not models.stackable(r.model):
        return False
    if m.is_plain or not m.needs_cam:
        return True
    return m.cam.source == "during" and m.cam.layer in (None, models.head_layer(r.model))


def pack_key(r: RunSpec) -> tuple | None:
    """Runs with equal keys can be stacked; None: the run trains alone."""
    m = r.method
    if not stacks(r):
        return None
    if m.mode == "append":
        phase = ("append", m.warmup_epochs, m.append_bn)
    else:  # plain runs train like in-place erasers that never erase
        phase = ("replace", m.warmup_epochs)
    return (r.model, repr(to_dict(r.train)), repr(to_dict(r.data)), phase, r.fork_from is not None)


def pack_size(setting, device_type: str) -> int:
    """`train.pack`: auto (16 on CUDA; 1 on the CPU, where stacking gains nothing), off, or K."""
    if setting == "off":
        return 1
    if setting == "auto":
        return AUTO_PACK_CUDA if device_type == "cuda" else 1
    return int(setting)


def _chunks(runs: list, size: int) -> list[list]:
    """Split into as few packs of at most `size` as possible, of near-equal sizes."""
    n = math.ceil(len(runs) / size)
    q, r = divmod(len(runs), n)
    out, i = [], 0
    for j in range(n):
        step = q + (1 if j < r else 0)
        out.append(runs[i:i + step])
        i += step
    return out


def make_packs(runs: list[RunSpec], setting, device_type: str) -> list[Pack]:
    """The suite's packs, providers first (in the suite's order otherwise)."""
    size = pack_size(setting, device_type)
    groups: dict[object, list[RunSpec]] = {}
    for i, r in enumerate(runs):
        key = pack_key(r) if size > 1 else None
        groups.setdefault(key if key is not None else ("alone", i), []).append(r)
    packs = [Pack(chunk) for group in groups.values() for chunk in _chunks(group, size)]
    return sorted(packs, key=lambda p: bool(p.needs))  # stable: dependents after providers
