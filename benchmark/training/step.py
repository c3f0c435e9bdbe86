"""The training step of a pack of K runs: the hot path, in one function (`Step.__call__`).

K = 1 is one ordinary model; K > 1 is a stacked network (training/stack.py) where run k is
group k. Each run ("lane") keeps its own generator, data order, augmentation, eraser and
CAM. Everything is tensor ops on the device with no host synchronisation, reading only
static buffers (the epoch's permutation, a step counter, the lr tensor), so on CUDA the
whole step is captured once in a CUDA graph (training/graphs.py) and replayed.

Batched across runs: the K lanes' images are one run-major batch of K x B, gathered, cropped,
flipped, normalised, erased (one call per group of lanes with equal erasers) and accounted
once, while each lane's random numbers still come from its own generator, in its own order
(`SplitDraws`, training/draws.py; the lanes' erasing: training/erasing.py); so a K = 16 step
issues about as many ops as a few runs, not sixteen (each lane still adds its own small draws, and
each different eraser its group's ops: `benchmark/tools/op_count.py`), and every
lane computes exactly what it would alone.

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

import plugins
from benchmark.data.augment import DeviceLoader, normalize, random_crop_flip
from benchmark.suites.config import APPEND_BN
from benchmark.suites.config import STEP_KINDS as KINDS
from benchmark.training.draws import SENTINEL_SEED, SplitDraws
from benchmark.training.erasing import LaneErasing
from benchmark.training.weight_cast import WeightCast
from plugins.geometry import peak_in_box, peaks, xyxy_mask
from plugins.mixing import is_mixing, mixed_cross_entropy

# Per-run accumulator slots (a (K, len(SLOTS)) float64 device tensor, read once per epoch).
SLOTS = ("loss", "correct", "seen", "masked", "erased_img", "erased_pix", "hit", "covered",
         "peak_in_box", "peaks")
S = {name: i for i, name in enumerate(SLOTS)}


def epoch_row(a: list[float], lr: float, *, boxes: bool) -> dict:
    """One run's epoch in the curves' units from its SLOTS sums `a` and the epoch's `lr`:
    train_loss (mean per image), train_acc (%), lr, erased_fraction (mean erased area of the
    erased images, 0 when none), and where there is something to say, object_hit_rate (of the
    erased images, with object `boxes`) and cam_peak_in_box."""
    seen = max(a[S["seen"]], 1)
    row = {"train_loss": a[S["loss"]] / seen, "train_acc": 100 * a[S["correct"]] / seen, "lr": lr,
           "erased_fraction": a[S["erased_pix"]] / a[S["masked"]] if a[S["masked"]] else 0.0}
    if a[S["erased_img"]] and boxes:
        row["object_hit_rate"] = a[S["hit"]] / a[S["erased_img"]]
    if a[S["peaks"]]:
        row["cam_peak_in_box"] = a[S["peak_in_box"]] / a[S["peaks"]]
    return row


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


class Step(LaneErasing):
    """One optimiser step of every lane; call it, or let graphs.StepRunner capture it.

    The K lanes' images travel as one run-major batch of K x B (run k's images are rows
    k B .. (k + 1) B - 1): one gather, crop/flip and normalisation when the lanes read the same
    data with the same augmentation; one mask and fill per group of lanes with equal erasers
    (`_probe`), each lane's random numbers drawn from its own generator (`SplitDraws`) in the
    order of a lane alone; one accounting over all lanes. A lane alone (K = 1) runs exactly
    the ops of one ordinary run."""

    def __init__(self, model, opt, lanes: list[Lane], *, kind: str, append_bn: str = "joint",
                 autocast=None, channels_last: bool = False, acc: torch.Tensor, pos: torch.Tensor,
                 weight_dtype: torch.dtype | None = None):
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
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.split = kind == "append" and append_bn == "split"  # two training forwards a step
        self.cast = WeightCast(model, None if self.split else weight_dtype)  # see weight_cast.py
        # BatchNorm layers whose batch counter `_training` advances (a momentum set: the
        # counter is not read in the forward)
        self._bns = [m for m in model.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                     and m.momentum is not None and m.num_batches_tracked is not None]
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
        self._layouts: dict[tuple, tuple] = {}
        # `mean` fills group by their values, read once here (never in the step: a host sync)
        self._means = [None if lane.fill != "mean" else
                       id(lane.fill_mean) if lane.fill_mean is None
                       or lane.fill_mean.device.type == "meta" else tuple(lane.fill_mean.tolist())
                       for lane in lanes]
        self._groups()  # the lane groups' index tensors and probes, made before any capture
        self._constants()

    def _constants(self) -> None:
        """The accounting's constant columns, (K,) float64 device tensors made once: images
        seen, erased (masked) and CAM peaks a step, zero where a lane does not erase or has no
        CAM; the CAM lanes as 1.0; zeros. `grid`: (1, max(H, W), 1) pixel indices."""
        erases = [self.erasing and lane.current is not None for lane in self.lanes]
        cams = [e and lane.current.needs_cam for e, lane in zip(erases, self.lanes, strict=True)]

        def column(values):
            return torch.tensor([float(v) for v in values], device=self.device,
                                dtype=torch.float64)

        b, k = self.b, self.k
        self.seen = column([b * (2 if self.kind == "append" else 1)] * k)
        self.count = column([b * e for e in erases])
        self.peaks_on = column([b * c for c in cams])
        self.cam_on = None if all(cams) else column(cams)
        self.zero = column([0] * k)
        h, w = self.lanes[0].loader.images.shape[-2:]
        self.grid = torch.arange(max(h, w), device=self.device).view(1, -1, 1)

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
        return normalize(x, ld.mean4, ld.std4, ld.dtype), ld.labels[index], boxes

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
        with torch.no_grad(), batch_stats_only(self.model), self.cast.swapped(), self.autocast():
            feats = self.model.forward_features(x)
            logits = self.model.forward_head(feats) if self.want_logits else None
        return feats, logits

    # -- the step ----------------------------------------------------------------------------
    def __call__(self) -> None:
        idx = self.pos + self.offsets
        xr, yr, boxes = self._batch(idx)  # run-major
        logits, y, mask, cams, y2, lam = self._forward(xr, yr)
        logits = logits.view(y.shape[0], self.k, -1)
        if logits.dtype in (torch.bfloat16, torch.float16):
            logits = logits.float()  # bf16 -> fp32
        if lam is None:
            per_run = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").mean(0)  # (K,)
        else:  # mixing: lam * CE(y) + (1 - lam) * CE(y[partner]) per image, then the mean
            per_run = mixed_cross_entropy(logits.permute(0, 2, 1), y, y2,
                                          lam.to(logits.dtype)).mean(0)
        self._backward(per_run.sum())  # run k's parameters get exactly run k's gradient
        self.opt.step()
        with torch.no_grad():
            self._account(per_run, logits, y, mask, boxes, cams)
        self.pos += self.offsets.shape[0]

    def _forward(self, xr, yr):
        """The training forward of the run-major batch xr (K B, C, H, W), labels yr (K B,):
        (logits, labels (B', K), mask, CAMs, partner labels, lams) as `_erase` gives them, the
        originals and their erased copies for an append step."""
        y = self._lanes_major(yr)
        self.cast.refresh()  # the weights' bf16 copies for this step's forwards (bf16 only)
        if self.kind == "plain":
            with self._training():
                return self.model(self._join(xr)), y, None, None, None, None
        x = self._join(xr) if self.kind == "append" or any(self.fast) else None
        feats = logits = None
        if self.split:  # the originals' forward gives the CAM for free
            with self._training():
                feats = self.model.forward_features(x)
                logits = self.model.forward_head(feats)
        elif any(self.fast):  # joint append, replace: CAM from a no-grad forward
            feats, logits = self._features(x)
        xe, mask, cams, y2, lam = self._erase(xr, yr, feats, logits)
        with self._training():
            if self.kind == "replace":
                return self.model(self._join(xe)), y, mask, cams, y2, lam
            if self.split:
                logits = torch.cat([logits, self.model(self._join(xe))])
            else:  # joint: one batch of 2B
                logits = self.model(torch.cat([x, self._join(xe)]))
        y, y2, lam = self._append_labels(y, y2, lam)
        return logits, y, mask, cams, y2, lam

    @contextlib.contextmanager
    def _training(self):
        """A training forward under autocast, each BatchNorm's `num_batches_tracked` counted
        up by one for it as BatchNorm does itself, but by one foreach op after the forward,
        not one op per layer (the layers see None meanwhile, which with a `momentum` set
        changes nothing else they compute)."""
        bns = [m for m in self._bns if m.training]
        counters = [m.num_batches_tracked for m in bns]
        for m in bns:
            m.num_batches_tracked = None
        try:
            with self.cast.swapped(), self.autocast():
                yield
        finally:
            for m, t in zip(bns, counters, strict=True):
                m.num_batches_tracked = t
        if counters:
            torch._foreach_add_(counters, 1)

    def _backward(self, loss) -> None:
        """`loss.backward()` as one `torch.autograd.grad`: each parameter gets its gradient as
        backward() gives it (kept when it has the parameter's strides, else copied into them;
        added in place to a gradient already there), without the `detach` per parameter that
        backward()'s gradient accumulation issues."""
        grads = torch.autograd.grad(loss, self.cast.inputs(self.params), allow_unused=True)
        grads = self.cast.gradients(self.params, grads)  # bf16 copies' gradients -> fp32
        for p, g in zip(self.params, grads, strict=True):
            if g is None:
                continue
            if p.grad is not None:
                p.grad.add_(g)
            elif g.stride() == p.stride():
                p.grad = g
            else:
                p.grad = torch.empty_strided(p.shape, p.stride(), dtype=p.dtype,
                                             device=p.device).copy_(g)

    def _append_labels(self, y, y2, lam):
        """Labels of the originals + copies; mixing: the originals with lam 1, the copies with
        their partners' labels and lam."""
        if lam is None:
            return torch.cat([y, y]), None, None
        return torch.cat([y, y]), torch.cat([y, y2]), torch.cat([torch.ones_like(lam), lam])

    def _account(self, per_run, logits, y, mask, boxes, cams):
        """Add this step's SLOTS sums, (K, len(SLOTS)), to the accumulators: one stack of the
        columns (float64 by type promotion: exact for the float32 sums and integer counts)
        and one in-place add."""
        cols = [per_run.double() * y.shape[0], (logits.argmax(-1) == y).sum(0), self.seen]
        self.acc += torch.stack(cols + self._occlusion(mask, boxes, cams), dim=1)

    def _occlusion(self, mask, boxes, cams) -> list:
        """Slots masked..peaks of every lane, 7 (K,) columns: `occlusion_stats` of each lane's
        rows of the run-major mask (K B', 1, H, W), boxes and CAMs at once, the same numbers;
        zero for a lane without an eraser (its rows of the mask are empty)."""
        if mask is None:
            return [self.zero] * 7
        k = self.k
        per = mask.reshape(k, -1, mask[0].numel())  # (K, B', H W); a view unless expanded
        frac = per.float().mean(2)
        vals = [self.count, (frac > 0).sum(1), frac.sum(1)]
        if boxes is None:
            return vals + [self.zero] * 4
        obj = xyxy_mask(boxes, mask.shape[-2:], grid=self.grid).view(per.shape)
        inter = (per & obj).sum(2).float()
        vals += [(inter > 0).sum(1), (inter / obj.sum(2).clamp(min=1)).sum(1)]
        if cams is None:
            return vals + [self.zero] * 2
        hit = peak_in_box(peaks(cams), boxes).view(k, -1).sum(1)
        return vals + [hit if self.cam_on is None else hit * self.cam_on, self.peaks_on]
