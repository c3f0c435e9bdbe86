"""The training step of a pack of K runs: the hot path, in one function (`Step.__call__`).

K = 1 is one ordinary model; K > 1 is a stacked network (training/stack.py) where run k is
group k. Each run ("lane") keeps its own generator, data order, augmentation, eraser and
CAM. Everything is tensor ops on the device with no host synchronisation, reading only
static buffers (the epoch's permutation, a step counter, the lr tensor), so on CUDA the
whole step is captured once in a CUDA graph (training/graphs.py) and replayed.

Batched across runs: the K lanes' images are one run-major batch of K x B, gathered, cropped,
flipped, normalised, erased (one call per group of lanes with equal erasers) and accounted
once, while each lane's random numbers still come from its own generator, in its own order
(`SplitDraws`); so a K = 16 step issues about as many ops as a few runs, not sixteen
(`benchmark/tools/op_count.py`), and every lane computes exactly what it would alone.

Step kinds (one CUDA graph each):
- "plain": no lane erases.
- "replace": lanes with an eraser erase their images in place (the baselines); the others
  pass through unchanged (a plain run packed with the baselines).
- "append": every lane trains on its B originals plus their B erased copies. `append_bn`
  "joint" (the thesis, default): the CAM comes from a no-grad forward of the originals
  (BatchNorm with batch statistics, running statistics untouched), then the 2B images go
  through the network as one batch. "split": the originals' training forward gives the
  CAM for free; the erased copies are a second forward, so BatchNorm sees two batches of B.

Mixing erasers (`mixes = True`: cutmix, cam_cutmix; plugins/mixing.py): the lane draws a
partner permutation from its generator BEFORE the eraser's own draws, gives a CAM eraser the
partner's CAM (`cam[partner]`), pastes the partner's pixels inside the mask
(`fill: paste`) and weights the loss per image, lam * CE(y) + (1 - lam) * CE(y[partner]) with
lam = 1 - the pasted fraction, then the mean. The permutation and lam are device tensors: no
host sync. In append mode the originals keep lam = 1 and their copies are the mixed images
with their mixed labels. Lanes without a mixing eraser have lam = 1; a step where no lane
mixes computes the loss exactly as before (bit-identical).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import plugins
from benchmark import cam
from benchmark.data.augment import DeviceLoader, normalize, random_crop_flip
from benchmark.suites.config import APPEND_BN
from benchmark.suites.config import STEP_KINDS as KINDS
from plugins.geometry import peak_in_box, peaks, xyxy_mask
from plugins.mixing import is_mixing, lam_from_mask, mixed_cross_entropy, partner_permutation, paste

# Per-run accumulator slots (a (K, len(SLOTS)) float64 device tensor, read once per epoch).
SLOTS = ("loss", "correct", "seen", "masked", "erased_img", "erased_pix", "hit", "covered",
         "peak_in_box", "peaks")
S = {name: i for i, name in enumerate(SLOTS)}


@dataclass
class Lane:
    """One run's part of the step."""

    loader: DeviceLoader
    generator: torch.Generator
    perm: torch.Tensor  # (N,) the epoch's permutation: a static buffer, refilled each epoch
    eraser: plugins.Eraser | None = None
    fill: str = "zero"
    fill_mean: torch.Tensor | None = None
    target: str = "label"  # CAM target: label | predicted
    cam_fn: object | None = None  # a cam.LiveCam (generic path) or cam.FrozenCam; None: fast path
    # The eraser of the current epoch when `eraser` depends on it (`at_epoch`, e.g. GridMask's
    # probability ramp); set by the trainer at the start of each epoch. `eraser` stays the
    # configured one (its params() are the record's).
    epoch_eraser: plugins.Eraser | None = None

    @property
    def current(self) -> plugins.Eraser | None:
        """The eraser the step erases with now."""
        return self.epoch_eraser if self.epoch_eraser is not None else self.eraser

    @property
    def mixes(self) -> bool:
        return self.eraser is not None and is_mixing(self.eraser)


@contextlib.contextmanager
def batch_stats_only(model: nn.Module):
    """BatchNorm normalises with the batch's statistics but leaves running stats and counters
    alone: a side-effect-free forward for the CAM of the joint append step."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
              and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def occlusion_stats(mask, boxes, cmap, device) -> torch.Tensor:
    """Slots masked..peaks of one lane for one step: how much was erased, and where."""
    out = torch.zeros(7, device=device, dtype=torch.float64)
    if mask is None:
        return out
    frac = mask.flatten(1).float().mean(1)
    vals = [torch.full((), mask.shape[0], device=device), (frac > 0).sum(), frac.sum()]
    if boxes is not None:
        obj = xyxy_mask(boxes, mask.shape[-2:])
        inter = (mask & obj).flatten(1).sum(1).float()
        vals += [(inter > 0).sum(), (inter / obj.flatten(1).sum(1).clamp(min=1)).sum()]
        if cmap is not None:
            vals += [peak_in_box(peaks(cmap), boxes).sum(), torch.full((), boxes.shape[0],
                                                                          device=device)]
    return torch.cat([torch.stack(vals).to(torch.float64), out[len(vals):]])


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
    or draws in a way that cannot be split is called run by run instead."""
    key = (type(eraser), repr(eraser), fill, n, per, shape)
    if key in _PROBED:
        return _PROBED[key]
    c, h, w = shape
    src = torch.Generator().manual_seed(0)
    x = torch.randn(n * per, c, h, w, generator=src)
    cmap = torch.rand(n * per, h, w, generator=src) if eraser.needs_cam else None
    mean = torch.zeros(c)

    def run(rows, cam_rows, g):
        mask = eraser(rows, cam=cam_rows, generator=g)
        if is_mixing(eraser):
            return mask, rows
        return mask, plugins.fill(rows, mask, fill, mean=mean, generator=g)

    alone = [torch.Generator().manual_seed(1 + i) for i in range(n)]
    sep = [run(x[i * per:(i + 1) * per], None if cmap is None else cmap[i * per:(i + 1) * per],
               g) for i, g in enumerate(alone)]
    joint = [torch.Generator().manual_seed(1 + i) for i in range(n)]
    lead = torch.Generator().manual_seed(SENTINEL_SEED)
    try:
        with SplitDraws(lead, joint, per):
            mask, out = run(x, cmap, lead)
        ok = (torch.equal(mask, torch.cat([m for m, _ in sep]))
              and torch.equal(out, torch.cat([o for _, o in sep]))
              and all(torch.equal(a.get_state(), b.get_state())
                      for a, b in zip(alone, joint, strict=True)))
    except Exception:  # noqa: BLE001 - unsplittable, or the eraser's own error: run by run
        ok = False
    _PROBED[key] = ok
    return ok


class Step:
    """One optimiser step of every lane; call it, or let graphs.StepRunner capture it.

    The K lanes' images travel as one run-major batch of K x B (run k's images are rows
    k B .. (k + 1) B - 1): one gather, crop/flip and normalisation when the lanes read the same
    data with the same augmentation; one mask and fill per group of lanes with equal erasers
    (`_probe`), each lane's random numbers drawn from its own generator (`SplitDraws`) in the
    order of a lane alone; one accounting over all lanes. A lane alone (K = 1) runs exactly
    the ops of one ordinary run."""

    def __init__(self, model, opt, lanes: list[Lane], *, kind: str, append_bn: str = "joint",
                 autocast=None, channels_last: bool = False, acc: torch.Tensor, pos: torch.Tensor):
        if kind not in KINDS or append_bn not in APPEND_BN:
            raise ValueError(f"step: kind {kind!r} / append_bn {append_bn!r}; allowed: "
                             f"{', '.join(KINDS)} / {', '.join(APPEND_BN)}")
        self.model, self.opt, self.lanes, self.kind, self.append_bn = (
            model, opt, lanes, kind, append_bn)
        self.k = len(lanes)
        self.stacked = getattr(model, "stack_size", 1) > 1
        self.autocast = autocast or contextlib.nullcontext
        self.channels_last, self.acc, self.pos = channels_last, acc, pos
        self.b = b = lanes[0].loader.batch_size
        self.device = pos.device
        self.offsets = torch.arange(b, device=pos.device)
        self.erasing = kind != "plain"
        # The free CAM path reads the features of a forward of this model (lanes without cam_fn).
        self.fast = [lane.eraser is not None and lane.eraser.needs_cam and lane.cam_fn is None
                     for lane in lanes]
        self.want_logits = any(f and lane.target == "predicted"
                               for f, lane in zip(self.fast, lanes, strict=True))
        self.mixing = self.erasing and any(lane.mixes for lane in lanes)
        if len({lane.loader.boxes is None for lane in lanes}) > 1:
            raise ValueError("step: the lanes of one step must all have object boxes or none")
        # A sentinel generator for the calls over several lanes (SplitDraws); none when a lane
        # draws from the global generator (then each lane draws alone, in the old order).
        split = self.k > 1 and all(lane.generator is not None
                                   and lane.loader.generator is not None for lane in lanes)
        self.lead = (torch.Generator(device=self.device).manual_seed(SENTINEL_SEED)
                     if split else None)
        self.perms = self._shared_perms() if split and self._same_data() else None
        self._index: dict[tuple[int, ...], torch.Tensor] = {}
        # `mean` fills group by their values, read once here (never in the step: a host sync)
        self._means = [None if lane.fill != "mean" else
                       id(lane.fill_mean) if lane.fill_mean is None
                       or lane.fill_mean.device.type == "meta" else tuple(lane.fill_mean.tolist())
                       for lane in lanes]
        self._groups()  # the lane groups' index tensors and probes, made before any capture
        erases = [self.erasing and lane.current is not None for lane in lanes]
        cams = [e and lane.current.needs_cam for e, lane in zip(erases, lanes, strict=True)]
        self.count = torch.tensor([float(b) if e else 0.0 for e in erases], device=self.device)
        self.on = None
        if not all(erases) or not all(c == cams[0] for c in cams):
            self.on = torch.tensor([[float(e)] * 5 + [float(c)] * 2
                                    for e, c in zip(erases, cams, strict=True)],
                                   device=self.device, dtype=torch.float64)

    # -- the lanes' batches, run-major -------------------------------------------------------
    def _same_data(self) -> bool:
        """Every lane reads the same device tensors with the same augmentation and batch size."""
        first = self.lanes[0].loader

        def same(a, b):
            return a is b or (a is not None and b is not None and a.shape == b.shape
                              and a.device == b.device and a.data_ptr() == b.data_ptr())

        def eq(a, b):
            return a is b or (a.device.type != "meta" and torch.equal(a, b))

        return all(same(ld.images, first.images) and same(ld.labels, first.labels)
                   and same(ld.boxes, first.boxes) and ld.batch_size == first.batch_size
                   and ld.pad == first.pad and ld.flip == first.flip and ld.dtype == first.dtype
                   and eq(ld.mean, first.mean) and eq(ld.std, first.std)
                   for ld in (lane.loader for lane in self.lanes))

    def _shared_perms(self) -> torch.Tensor:
        """The lanes' epoch permutations as rows of one (K, N) buffer (each lane's `perm` a view
        of its row, so refilling it in place fills the buffer): one gather a step for all."""
        perms = [lane.perm for lane in self.lanes]
        base = perms[0]._base
        if (base is not None and base.shape[0] == self.k
                and all(p._base is base and p.data_ptr() == base[k].data_ptr()
                        for k, p in enumerate(perms))):
            return base
        buf = torch.stack(perms)
        for k, lane in enumerate(self.lanes):
            lane.perm = buf[k]
        return buf

    def _batch(self, idx):
        """(x (K B, C, H, W), labels (K B,), boxes (K B, 4) or None), run-major."""
        if self.perms is None:
            xs, ys, boxes = zip(*(lane.loader.batch(lane.perm[idx]) for lane in self.lanes),
                                strict=True)
            if self.k == 1:
                return xs[0], ys[0], boxes[0]
            return (torch.cat(xs), torch.cat(ys),
                    None if boxes[0] is None else torch.cat(boxes))
        ld = self.lanes[0].loader
        index = self.perms[:, idx].reshape(-1)
        boxes = ld.boxes[index] if ld.boxes is not None else None
        with SplitDraws(self.lead, [lane.loader.generator for lane in self.lanes], self.b):
            x, boxes = random_crop_flip(ld.images[index], boxes, pad=ld.pad, flip=ld.flip,
                                        generator=self.lead)
        return normalize(x, ld.mean, ld.std, ld.dtype), ld.labels[index], boxes

    def _join(self, x):
        """Run-major (K B, C, H, W) -> the model's input (B, K C, H, W): run k is group k."""
        if self.stacked:
            _, c, h, w = x.shape
            x = x.view(self.k, -1, c, h, w).transpose(0, 1).reshape(-1, self.k * c, h, w)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _lanes_major(self, t):
        """(K B,) run-major -> (B, K)."""
        return t.view(self.k, -1).t()

    # -- CAM ---------------------------------------------------------------------------------
    def _features(self, x):
        """(features, logits or None) of the originals for the CAM, without side effects."""
        with torch.no_grad(), batch_stats_only(self.model), self.autocast():
            feats = self.model.forward_features(x)
            logits = self.model.forward_head(feats) if self.want_logits else None
        return feats, logits

    def _cam(self, k, x, y, feats, logits):
        lane = self.lanes[k]
        if lane.cam_fn is not None:  # generic Grad-CAM of the live model, or a frozen model
            return lane.cam_fn(x, y)
        c = feats.shape[1] // self.k
        weight = self.model.get_classifier().weight
        weight = weight.view(self.k, -1, c)[k]
        target = y if lane.target == "label" else logits.view(len(y), self.k, -1)[:, k].argmax(-1)
        return cam.cam_from_features(feats[:, k * c:(k + 1) * c], weight, target,
                                     size=x.shape[-2:])

    def _cams(self, group, idx, x, y, feats, logits):
        """The CAMs of a group's lanes, run-major (n B, H, W): `cam.cam_from_features` for all
        of them at once (the free path), or lane by lane."""
        n = len(group)
        if n == 1 or not all(self.fast[k] for k in group):
            rows = [self._cam(k, x[i * self.b:(i + 1) * self.b], y[i * self.b:(i + 1) * self.b],
                              feats, logits) for i, k in enumerate(group)]
            return rows[0] if n == 1 else torch.cat(rows)
        b, kc, h, w = feats.shape
        c = kc // self.k
        fs = feats.view(b, self.k, c, h, w)
        weight = self.model.get_classifier().weight.view(self.k, -1, c)
        if idx is not None:
            fs, weight = fs[:, idx], weight[idx]
        if self.lanes[group[0]].target == "label":
            target = y.view(n, b).t()
        else:
            target = logits.view(b, self.k, -1).argmax(-1)
            target = target if idx is None else target[:, idx]
        with torch.no_grad(), torch.autocast(feats.device.type, enabled=False):
            rows = weight.detach().float()[torch.arange(n, device=feats.device), target]
            rows = rows / (h * w)  # (B, n, C): as cam_from_features, lane by lane
            maps = torch.einsum("bnc,bnchw->nbhw", rows, fs.detach().float()).relu_()
            return F.interpolate(maps.reshape(n * b, 1, h, w), size=tuple(x.shape[-2:]),
                                 mode="bilinear", align_corners=False)[:, 0]

    # -- erasing -----------------------------------------------------------------------------
    def _key(self, k):
        lane = self.lanes[k]
        e = lane.current
        return type(e), repr(e), lane.fill, self._means[k], lane.target, lane.cam_fn is None

    def _groups(self) -> list[tuple[tuple[int, ...], torch.Tensor | None]]:
        """Lanes erasing alike, each group with the index tensor of its lanes (None: all lanes,
        in order). A group whose eraser does not batch exactly (`_probe`) is split into lanes."""
        if not self.erasing:
            return []
        keys: dict[tuple, list[int]] = {}
        for k, lane in enumerate(self.lanes):
            if lane.current is not None:
                keys.setdefault(self._key(k), []).append(k)
        shape = tuple(self.lanes[0].loader.images.shape[1:])
        groups = []
        for members in keys.values():
            lane = self.lanes[members[0]]
            if len(members) > 1 and (self.lead is None or not _probe(
                    lane.current, lane.fill, len(members), self.b, shape)):
                groups += [(k,) for k in members]
            else:
                groups.append(tuple(members))
        out = []
        for g in groups:
            if g == tuple(range(self.k)):
                out.append((g, None))
                continue
            if g not in self._index:
                self._index[g] = torch.tensor(g, device=self.device, dtype=torch.long)
            out.append((g, self._index[g]))
        return out

    def _erase_group(self, group, rows, y, cmap):
        """One group's (erased, mask, partner labels or None, lam or None), run-major."""
        lanes = [self.lanes[k] for k in group]
        lane, n = lanes[0], len(group)
        eraser = lane.current
        gen = lane.generator
        split = contextlib.nullcontext()
        if n > 1:
            gen = self.lead
            split = SplitDraws(self.lead, [ln.generator for ln in lanes], self.b)
        with split:
            if lane.mixes:  # the partner first, then the eraser's own draws
                if n == 1:
                    partner = partner_permutation(rows.shape[0], rows.device, generator=gen)
                else:  # partner_permutation's draw, sorted within each lane
                    keys = torch.rand(rows.shape[0], device=rows.device, generator=gen)
                    partner = (keys.view(n, -1).argsort()
                               + torch.arange(0, rows.shape[0], self.b,
                                              device=rows.device)[:, None]).view(-1)
                mask = eraser(rows, cam=None if cmap is None else cmap[partner], generator=gen)
                return paste(rows, mask, partner), mask, y[partner], lam_from_mask(mask)
            mask = eraser(rows, cam=cmap, generator=gen)
            return (plugins.fill(rows, mask, lane.fill, mean=lane.fill_mean, generator=gen),
                    mask, None, None)

    def _erase(self, x, y, feats, logits):
        """Every lane's eraser over the run-major batch x (K B, C, H, W), labels y (K B,): CAM if
        its eraser needs one, mask, fill (or paste from the partner). Returns (erased, mask or
        None, CAMs or None, partner labels, lams): run-major; the last two (B, K) when the
        step mixes (a lane that does not mix: its own labels, lam 1), else None. Rows of lanes
        without an eraser: their images, an empty mask, a zero CAM."""
        kb = x.shape[0]
        erased, mask, cams = x, None, None
        y2 = lam = None
        if self.mixing:
            y2, lam = y, torch.ones(kb, device=x.device)
        for group, idx in self._groups():
            first = self.lanes[group[0]]
            rows, labels = x, y
            if idx is not None:
                rows = x.view(self.k, -1)[idx].view(-1, *x.shape[1:])
                if first.mixes or first.current.needs_cam:  # only these read the labels
                    labels = y.view(self.k, -1)[idx].view(-1)
            cmap = None
            if first.current.needs_cam:
                cmap = self._cams(group, idx, rows, labels, feats, logits)
            out, m, y2g, lamg = self._erase_group(group, rows, labels, cmap)
            if idx is None:
                erased, mask, cams = out, m, cmap
                if y2g is not None:
                    y2, lam = y2g, lamg
                continue
            erased = _put(erased, idx, out, self.k)
            mask = _put(torch.zeros((kb, *m.shape[1:]), dtype=m.dtype, device=m.device)
                        if mask is None else mask, idx, m, self.k)
            if cmap is not None:
                cams = _put(torch.zeros((kb, *cmap.shape[1:]), dtype=cmap.dtype,
                                        device=cmap.device) if cams is None else cams,
                            idx, cmap, self.k)
            if y2g is not None:
                y2, lam = _put(y2, idx, y2g, self.k), _put(lam, idx, lamg, self.k)
        if not self.mixing:
            return erased, mask, cams, None, None
        return erased, mask, cams, self._lanes_major(y2), self._lanes_major(lam)

    # -- the step ----------------------------------------------------------------------------
    def __call__(self) -> None:
        idx = self.pos + self.offsets
        xr, yr, boxes = self._batch(idx)  # run-major
        x, y = self._join(xr), self._lanes_major(yr)  # x: (B, K C, H, W), y: (B, K)
        mask = cams = None
        feats = logits = y2 = lam = None
        if self.kind == "plain":
            with self.autocast():
                logits = self.model(x)
        elif self.kind == "replace":
            if any(self.fast):
                feats, logits = self._features(x)
            xe, mask, cams, y2, lam = self._erase(xr, yr, feats, logits)
            with self.autocast():
                logits = self.model(self._join(xe))
        elif self.append_bn == "split":  # the originals' forward gives the CAM for free
            with self.autocast():
                feats = self.model.forward_features(x)
                logits = self.model.forward_head(feats)
            xe, mask, cams, y2, lam = self._erase(xr, yr, feats, logits)
            with self.autocast():
                logits = torch.cat([logits, self.model(self._join(xe))])
            y, y2, lam = self._append_labels(y, y2, lam)
        else:  # joint: CAM from a no-grad forward, then one batch of 2B
            if any(self.fast):
                feats, logits = self._features(x)
            xe, mask, cams, y2, lam = self._erase(xr, yr, feats, logits)
            with self.autocast():
                logits = self.model(torch.cat([x, self._join(xe)]))
            y, y2, lam = self._append_labels(y, y2, lam)
        logits = logits.view(y.shape[0], self.k, -1)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32
        if lam is None:
            per_run = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").mean(0)  # (K,)
        else:  # mixing: lam * CE(y) + (1 - lam) * CE(y[partner]) per image, then the mean
            per_run = mixed_cross_entropy(logits.permute(0, 2, 1), y, y2,
                                          lam.to(logits.dtype)).mean(0)
        per_run.sum().backward()  # run k's parameters get exactly run k's gradient
        self.opt.step()
        self._account(per_run.detach(), logits.detach(), y, mask, boxes, cams)
        self.pos += self.offsets.shape[0]

    def _append_labels(self, y, y2, lam):
        """Labels of the originals + copies; mixing: the originals with lam 1, the copies with
        their partners' labels and lam."""
        if lam is None:
            return torch.cat([y, y]), None, None
        return torch.cat([y, y]), torch.cat([y, y2]), torch.cat([torch.ones_like(lam), lam])

    def _account(self, per_run, logits, y, mask, boxes, cams):
        n = y.shape[0]
        dev = per_run.device
        head = torch.stack([per_run.double() * n, (logits.argmax(-1) == y).sum(0).double(),
                            torch.full((self.k,), n, device=dev, dtype=torch.float64)], dim=1)
        self.acc += torch.cat([head, self._occlusion(mask, boxes, cams)], dim=1)

    def _occlusion(self, mask, boxes, cams) -> torch.Tensor:
        """Slots masked..peaks of every lane, (K, 7) float64: `occlusion_stats` of each lane's
        rows of the run-major mask (K B', 1, H, W), boxes and CAMs at once; zero for a lane
        without an eraser."""
        if mask is None:
            return torch.zeros(self.k, 7, device=self.acc.device, dtype=torch.float64)
        k = self.k
        frac = mask.flatten(1).float().mean(1).view(k, -1)
        vals = [self.count, (frac > 0).sum(1), frac.sum(1)]
        if boxes is not None:
            obj = xyxy_mask(boxes, mask.shape[-2:])
            inter = (mask & obj).flatten(1).sum(1).float()
            vals += [(inter > 0).view(k, -1).sum(1),
                     (inter / obj.flatten(1).sum(1).clamp(min=1)).view(k, -1).sum(1)]
            if cams is not None:
                vals += [peak_in_box(peaks(cams), boxes).view(k, -1).sum(1),
                         torch.full((k,), boxes.shape[0] // k, device=mask.device)]
        occ = torch.stack(vals, dim=1).to(torch.float64)
        if len(vals) < 7:
            occ = torch.cat([occ, torch.zeros(k, 7 - len(vals), device=occ.device,
                                              dtype=torch.float64)], dim=1)
        return occ if self.on is None else occ * self.on


def _put(t, idx, rows, k):
    """t (K B', ...) with lanes idx's rows replaced by rows (n B', ...): a new tensor."""
    return t.reshape(k, -1).index_copy(0, idx, rows.reshape(len(idx), -1)).view(t.shape)
