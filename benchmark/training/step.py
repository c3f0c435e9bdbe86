"""The training step of a pack of K runs: the hot path, in one function (`Step.__call__`).

K = 1 is one ordinary model; K > 1 is a stacked network (training/stack.py) where run k is
group k. Each run ("lane") keeps its own generator, data order, augmentation, eraser and
CAM. Everything is tensor ops on the device with no host synchronisation, reading only
static buffers (the epoch's permutation, a step counter, the lr tensor), so on CUDA the
whole step is captured once in a CUDA graph (training/graphs.py) and replayed.

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
from benchmark import cam
from benchmark.data.augment import DeviceLoader
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


class Step:
    """One optimiser step of every lane; call it, or let graphs.StepRunner capture it."""

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
        b = lanes[0].loader.batch_size
        self.offsets = torch.arange(b, device=pos.device)
        self.erasing = kind != "plain"
        # The free CAM path reads the features of a forward of this model (lanes without cam_fn).
        self.fast = [lane.eraser is not None and lane.eraser.needs_cam and lane.cam_fn is None
                     for lane in lanes]
        self.want_logits = any(f and lane.target == "predicted"
                               for f, lane in zip(self.fast, lanes, strict=True))
        self.mixing = self.erasing and any(lane.mixes for lane in lanes)

    def _join(self, xs):
        x = torch.cat(xs, dim=1) if self.stacked else xs[0]
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

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

    def _erase(self, xs, ys, feats, logits):
        """Per lane: CAM if its eraser needs one, mask, fill (or paste from the partner).
        Returns (erased, masks, cams, partner labels, lams); the last two are per lane (B,)
        tensors when the step mixes (a lane that does not mix: its own labels, lam 1), else
        None."""
        out, masks, cams, ys2, lams = [], [], [], [], []
        for k, lane in enumerate(self.lanes):
            cmap = mask = None
            y2, lam = ys[k], None
            eraser = lane.current
            if eraser is not None:
                if eraser.needs_cam:
                    cmap = self._cam(k, xs[k], ys[k], feats, logits)
                if lane.mixes:  # the partner first, then the eraser's own draws
                    partner = partner_permutation(xs[k].shape[0], xs[k].device,
                                                  generator=lane.generator)
                    mask = eraser(xs[k], cam=None if cmap is None else cmap[partner],
                                  generator=lane.generator)
                    xs_k = paste(xs[k], mask, partner)
                    y2, lam = ys[k][partner], lam_from_mask(mask)
                else:
                    mask = eraser(xs[k], cam=cmap, generator=lane.generator)
                    xs_k = plugins.fill(xs[k], mask, lane.fill, mean=lane.fill_mean,
                                        generator=lane.generator)
            else:
                xs_k = xs[k]
            if lam is None and self.mixing:
                lam = torch.ones(xs[k].shape[0], device=xs[k].device)
            out.append(xs_k)
            masks.append(mask)
            cams.append(cmap)
            ys2.append(y2)
            lams.append(lam)
        if not self.mixing:
            return out, masks, cams, None, None
        return out, masks, cams, torch.stack(ys2, dim=1), torch.stack(lams, dim=1)

    def __call__(self) -> None:
        idx = self.pos + self.offsets
        xs, ys, boxes = zip(*(lane.loader.batch(lane.perm[idx]) for lane in self.lanes),
                            strict=True)
        x, y = self._join(xs), torch.stack(ys, dim=1)  # y: (B, K)
        masks = cams = [None] * self.k
        feats = logits = y2 = lam = None
        if self.kind == "plain":
            with self.autocast():
                logits = self.model(x)
        elif self.kind == "replace":
            if any(self.fast):
                feats, logits = self._features(x)
            xe, masks, cams, y2, lam = self._erase(xs, ys, feats, logits)
            with self.autocast():
                logits = self.model(self._join(xe))
        elif self.append_bn == "split":  # the originals' forward gives the CAM for free
            with self.autocast():
                feats = self.model.forward_features(x)
                logits = self.model.forward_head(feats)
            xe, masks, cams, y2, lam = self._erase(xs, ys, feats, logits)
            with self.autocast():
                logits = torch.cat([logits, self.model(self._join(xe))])
            y, y2, lam = self._append_labels(y, y2, lam)
        else:  # joint: CAM from a no-grad forward, then one batch of 2B
            if any(self.fast):
                feats, logits = self._features(x)
            xe, masks, cams, y2, lam = self._erase(xs, ys, feats, logits)
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
        self._account(per_run.detach(), logits.detach(), y, masks, boxes, cams)
        self.pos += self.offsets.shape[0]

    def _append_labels(self, y, y2, lam):
        """Labels of the originals + copies; mixing: the originals with lam 1, the copies with
        their partners' labels and lam."""
        if lam is None:
            return torch.cat([y, y]), None, None
        return torch.cat([y, y]), torch.cat([y, y2]), torch.cat([torch.ones_like(lam), lam])

    def _account(self, per_run, logits, y, masks, boxes, cams):
        n = y.shape[0]
        dev = per_run.device
        head = torch.stack([per_run.double() * n, (logits.argmax(-1) == y).sum(0).double(),
                            torch.full((self.k,), n, device=dev, dtype=torch.float64)], dim=1)
        occ = torch.stack([occlusion_stats(m, b, c, dev)
                           for m, b, c in zip(masks, boxes, cams, strict=True)])
        self.acc += torch.cat([head, occ], dim=1)
