"""Each run's random numbers from its own generator inside one call over several runs' images.

`SplitDraws` turns a random draw over the run-major images of n runs into n draws, each from
its run's own generator, in the order of that run alone; `_probe` checks once per eraser, fill
and shape that an eraser called so over n runs gives exactly the masks and images of n separate
calls (the training step, training/step.py, erases such a group of runs in one call, and any
other eraser run by run)."""

from __future__ import annotations

import copy

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import plugins
from plugins.mixing import is_mixing


class Unsplittable(RuntimeError):
    """A random draw of a call over several runs' images that cannot be split into per-run
    draws (no dimension, or more than one, of the runs' total size; a draw of another kind)."""


# The seed of the sentinel generator that stands for "each run's own generator" in a call over
# several runs' images (`SplitDraws`); no run is seeded with it (seeds are small integers).
SENTINEL_SEED = 0x5EED_0F_0E_1A_4E_50


class SplitDraws(TorchDispatchMode):
    """Draw each run's random numbers from its own generator inside one call over the runs' images.

    Inside this mode, a random op given the sentinel generator `lead` (one made with
    `SENTINEL_SEED`, never drawn from) whose size has exactly one dimension of
    ``len(generators) * per`` (the runs' images, run-major) is made as ``len(generators)`` ops of
    ``per`` along that dimension, the k-th from ``generators[k]``, joined there. Each generator
    so makes exactly the draws, in the same order and of the same shapes, as the same code
    called on run k's ``per`` images alone: per-image arithmetic on the joined draws then gives
    bit-identical results (what `_probe` checks for an eraser). Factory draws (rand, randn,
    randint, ...) and in-place ones (uniform_, normal_, ...) are split; any other use of `lead`
    raises `Unsplittable` before anything is drawn from a run's generator. Ops without `lead`
    run unchanged."""

    def __init__(self, lead: torch.Generator, generators, per: int):
        super().__init__()
        self.device, self.gens, self.per = lead.device, list(generators), per
        self.total = per * len(self.gens)

    def _is_lead(self, g) -> bool:
        return (isinstance(g, torch.Generator) and g.device == self.device
                and g.initial_seed() == SENTINEL_SEED)

    def _dim(self, func, shape) -> int:
        dims = [d for d, n in enumerate(shape) if n == self.total]
        if len(dims) != 1:
            raise Unsplittable(f"{func}: a draw of shape {tuple(shape)} over {len(self.gens)} "
                               f"runs of {self.per} images has {len(dims)} dimensions of "
                               f"{self.total}, not one")
        return dims[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if not self._is_lead(kwargs.get("generator")):
            if any(self._is_lead(a) for a in args):
                raise Unsplittable(f"{func}: the generator passed positionally")
            return func(*args, **kwargs)
        if args and isinstance(args[0], torch.Tensor):  # in place: uniform_, normal_, ...
            if not func.overloadpacket.__name__.endswith("_"):
                raise Unsplittable(f"{func}: only in-place and factory draws split")
            out = args[0]
            d = self._dim(func, out.shape)
            for k, g in enumerate(self.gens):
                func(out.narrow(d, k * self.per, self.per), *args[1:], **{**kwargs,
                                                                          "generator": g})
            return out
        sizes = [i for i, a in enumerate(args) if isinstance(a, (list, tuple))]
        if len(sizes) != 1:
            raise Unsplittable(f"{func}: no size argument to split")
        i = sizes[0]
        d = self._dim(func, args[i])
        size = list(args[i])
        size[d] = self.per
        parts = [func(*args[:i], size, *args[i + 1:], **{**kwargs, "generator": g})
                 for g in self.gens]
        return torch.cat(parts, dim=d)


_PROBED: dict[tuple, bool] = {}


def _probe(eraser, fill: str, n: int, per: int, shape: tuple[int, int, int]) -> bool:
    """Whether `eraser` (then `fill`, unless it mixes) over n runs' images at once, each run's
    numbers drawn from its own generator (`SplitDraws`), gives exactly the masks and images of
    n separate calls. Tried once per eraser, fill and shape, on the CPU with float32 images of
    the step's shape: an eraser that mixes images across the batch (a sort, a batch-wide coin)
    or draws in a way that cannot be split is called run by run instead.

    Every call is made on a deep copy of `eraser` (one per run, one for the joint call), so the
    probe leaves the lane's eraser and its Python state as they were; each copy is called
    twice in a row, so Python state that changes the second call's masks shows (an eraser
    that cannot be copied is called run by run)."""
    key = (type(eraser), repr(eraser), fill, n, per, shape)
    if key in _PROBED:
        return _PROBED[key]
    c, h, w = shape
    src = torch.Generator().manual_seed(0)
    x = torch.randn(n * per, c, h, w, generator=src)
    cmap = torch.rand(n * per, h, w, generator=src) if eraser.needs_cam else None
    mean = torch.zeros(c)

    def run(e, rows, cam_rows, g):
        out = []
        for _ in range(2):
            mask = e(rows, cam=cam_rows, generator=g)
            out.append((mask, rows if is_mixing(e) else
                        plugins.fill(rows, mask, fill, mean=mean, generator=g)))
        return out

    try:
        alone = [torch.Generator().manual_seed(1 + i) for i in range(n)]
        sep = [run(copy.deepcopy(eraser), x[i * per:(i + 1) * per],
                   None if cmap is None else cmap[i * per:(i + 1) * per], g)
               for i, g in enumerate(alone)]
        joint = [torch.Generator().manual_seed(1 + i) for i in range(n)]
        lead = torch.Generator().manual_seed(SENTINEL_SEED)
        mine = copy.deepcopy(eraser)
        with SplitDraws(lead, joint, per):
            calls = run(mine, x, cmap, lead)
        ok = (all(torch.equal(mask, torch.cat([s[c][0] for s in sep]))
                  and torch.equal(out, torch.cat([s[c][1] for s in sep]))
                  for c, (mask, out) in enumerate(calls))
              and all(torch.equal(a.get_state(), b.get_state())
                      for a, b in zip(alone, joint, strict=True)))
    except Exception:  # noqa: BLE001 - not copyable, unsplittable, or the eraser's own error
        ok = False
    _PROBED[key] = ok
    return ok
