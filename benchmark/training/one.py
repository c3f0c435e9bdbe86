"""One run, start to end, read top to bottom like airbench's `main()`: `train_one` (data, model,
optimiser and schedule; then each epoch: its phase, the steps, evaluation, checkpoints; last the
outcome), then `OneRun`'s parts in that order: `__init__`, `train_epoch`, `step`, `erase`,
`evaluate`, `save`, `finish`.

It is the reference: the pack executor (train.py, pack.py, step.py, graphs.py: K runs stacked,
CUDA graphs, shared warm-ups) is held to it. A pack of one trains bit-identically on the CPU, for
every step kind (tests/training/test_one.py). `train_one` runs eagerly, on one ordinary model; its
checkpoints are the pack's (training/resume.py), so a run resumes on either path.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import plugins
from benchmark import cam, models, robustness
from benchmark.data import augment
from benchmark.suites import fingerprint
from benchmark.suites.config import RunSpec
from benchmark.training import pack, resume
from benchmark.training.step import SLOTS, batch_stats_only, epoch_row, occlusion_stats
from benchmark.training.step import S as SLOT
from benchmark.training.train import Hooks, failed, outcome, save_final
from plugins import mixing


def train_one(spec: RunSpec, *, device="cpu", work_dir: Path, data_cache: dict | None = None,
              precision: str = "no", frozen_ckpt: Path | None = None, hooks: Hooks | None = None,
              extra: dict | None = None) -> dict:
    """Train `spec` to its last epoch, from its resume checkpoint or its warm-up provider's fork
    file in `work_dir` if there is one, and return its outcome as `train_pack` does for each run:
    {"status": "finished", "final_test_error" (%), "curves", "checkpoint", ...} (turn it into the
    record with results.make_record); {"status": "failed", "epoch", "reason"} when the training
    loss is not finite; {"status": "interrupted", "epoch"} when `hooks.should_stop()`.
    `frozen_ckpt`: the plain model's final checkpoint, for a CAM taken after training."""
    t, device, hooks, work_dir = spec.train, torch.device(device), hooks or Hooks(), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    source, start = resume.start_state(spec, work_dir, precision)
    # Data: both splits resident on the device as uint8; crop, flip, normalise per batch.
    rd = pack.load_run_data(spec, device, data_cache)
    # Model, optimiser, schedule, the run's generator and loader, the eraser and its CAM.
    run = OneRun(spec, rd, device, precision, frozen_ckpt)
    # Checkpoints: resume where the run stopped, or start where its shared warm-up ended.
    p = resume.progress(spec, source, start, extra)
    if start is not None:
        resume.load_state(start["trainer"], run.model, run.opt, run.sched, run.lr, run.gen)
    hooks.started(0, p, source)
    fp, warm = fingerprint.of_run(spec, precision), fingerprint.of_warmup(spec, precision)
    for epoch in range(p.epoch, t.epochs):
        # The two-phase schedule: plain for the warm-up epochs, then the method's step.
        kind = pack.step_kind(spec, epoch)
        t0, c0 = time.perf_counter(), time.process_time()
        acc = run.train_epoch(kind, epoch, hooks)
        lr = float(run.lr)
        run.sched.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        err, a = run.evaluate(), acc.tolist()
        row = {"epoch": epoch + 1, "test_error": err,
               **epoch_row(a, lr, boxes=rd.train_boxes is not None)}  # train_loss, lr, ...
        if not math.isfinite(row["train_loss"]):
            return failed(p, epoch + 1, row["train_loss"])
        resume.advance(p, row, a, dt, dc)
        if p.epoch in spec.fork_epochs:  # the state its warm-up's other runs start from
            run.save(resume.fork_path(work_dir, spec.run_id, p.epoch), p, warm)
        if t.checkpoint_every and p.epoch % t.checkpoint_every == 0 and p.epoch < t.epochs:
            run.save(resume.resume_path(work_dir, spec.run_id), p, fp)
        hooks.epoch_end(0, {**row, "images_per_s": a[SLOT["seen"]] / dt})
        if hooks.should_stop() and p.epoch < t.epochs:
            run.save(resume.resume_path(work_dir, spec.run_id), p, fp)
            return {"status": "interrupted", "epoch": p.epoch, "progress": p}
    return run.finish(p, work_dir)


class OneRun:
    """One run's model, optimiser, schedule, generator, loader, eraser and CAM source."""

    def __init__(self, spec: RunSpec, rd, device, precision: str, frozen_ckpt: Path | None):
        t, m, self.spec, self.rd = spec.train, spec.method, spec, rd
        self.autocast = pack.autocast_for(device, precision)  # bf16 autocast or nothing
        torch.manual_seed(spec.seed)  # the seed fixes the initial weights
        self.model = models.create(spec.model, num_classes=rd.num_classes,
                                   in_chans=rd.train_images.shape[1]).to(device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # SGD with momentum and weight decay on every parameter, the lr a device tensor (as the
        # pack's CUDA graphs need), divided by `gamma` at each milestone epoch.
        self.lr = torch.tensor(float(t.lr), device=device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=t.momentum,
                                   weight_decay=t.weight_decay, nesterov=t.nesterov, fused=True)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, t.milestones, t.gamma)
        # One generator draws the data order, crops, flips, erasing and random fills.
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)
        self.loader = augment.DeviceLoader(rd.train_images, rd.train_labels, rd.train_boxes,
                                           batch_size=t.batch_size, mean=rd.mean, std=rd.std,
                                           pad=t.pad, flip=t.flip, generator=self.gen)
        # The eraser (`now`: this epoch's, e.g. GridMask's ramp). Its CAM, if it needs one, comes
        # free from the training forward where the layer feeds a GAP + linear head (`fast`, a
        # probe checks), else from Grad-CAM of the live or the frozen plain model (`cam_fn`).
        self.eraser, self.cam_fn = pack.eraser_and_cam(
            spec, self.model, device,
            fast=m.needs_cam and cam.fast_path_applies(self.model, m.cam.layer),
            frozen=frozen_ckpt)
        self.now = self.eraser  # as in epoch 0 until train_epoch gives the epoch's eraser
        if self.eraser is not None and callable(getattr(self.eraser, "at_epoch", None)):
            self.now = self.eraser.at_epoch(0)
        self.fast = self.eraser is not None and self.eraser.needs_cam and self.cam_fn is None

    def train_epoch(self, kind: str, epoch: int, hooks: Hooks) -> torch.Tensor:
        """One pass over the train set in a fresh order, every step of `kind`; the epoch's sums
        (a step.SLOTS row: loss, correct, seen, then where the erasing and the CAM landed)."""
        if self.eraser is not None and callable(getattr(self.eraser, "at_epoch", None)):
            self.now = self.eraser.at_epoch(epoch)  # e.g. GridMask's probability this epoch
        self.model.train()
        acc = torch.zeros(len(SLOTS), device=self.lr.device, dtype=torch.float64)
        perm = torch.randperm(len(self.loader.labels), device=self.lr.device, generator=self.gen)
        b, n = self.loader.batch_size, len(self.loader)
        for i in range(n):
            acc += self.step(kind, *self.loader.batch(perm[i * b:(i + 1) * b]))
            hooks.step(i + 1, n)
        return acc

    def step(self, kind: str, x, y, boxes) -> torch.Tensor:
        """One SGD step of `kind` (plain, replace or append) on a batch; its sums (SLOTS)."""
        model, autocast, fmt = self.model, self.autocast, self.fmt
        mask = cmap = y2 = lam = None
        if kind == "plain":
            with autocast():
                logits = model(fmt(x))
        elif kind == "replace":  # the baselines: erase in place
            xe, mask, cmap, y2, lam = self.erase(x, y, *self.features(x))
            with autocast():
                logits = model(fmt(xe))
        elif self.spec.method.append_bn == "split":  # append: the originals' forward gives the
            with autocast():  # CAM for free, the erased copies are a second BatchNorm batch
                feats = model.forward_features(fmt(x))
                logits = model.forward_head(feats)
            xe, mask, cmap, y2, lam = self.erase(x, y, feats, logits)
            with autocast():
                logits = torch.cat([logits, model(fmt(xe))])
        else:  # append, joint (the thesis): originals and erased copies as one batch of 2B
            xe, mask, cmap, y2, lam = self.erase(x, y, *self.features(x))
            with autocast():
                logits = model(torch.cat([fmt(x), fmt(xe)]))
        if kind == "append":  # mixing: the originals keep their labels (lam 1), the copies mix
            y2 = None if lam is None else torch.cat([y, y2])
            lam = None if lam is None else torch.cat([torch.ones_like(lam), lam])
            y = torch.cat([y, y])
        logits = logits.float()  # bf16 -> fp32 for the loss
        # The mean of per-image losses, classes on dim 1 of a (N, classes, 1) tensor: the pack's
        # layout for K runs, with K = 1; the math of F.cross_entropy(logits, y) and the pack's
        # bits (docs/architecture.md). Mixing: lam * CE(y) + (1 - lam) * CE(y2) per image.
        if lam is None:
            loss = F.cross_entropy(logits[..., None], y[:, None], reduction="none").mean()
        else:
            loss = mixing.mixed_cross_entropy(logits[..., None], y[:, None], y2[:, None],
                                              lam[:, None].to(logits.dtype)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        n = torch.full((), len(y), device=y.device, dtype=torch.float64)
        head = [loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double(), n]
        return torch.cat([torch.stack(head), occlusion_stats(mask, boxes, cmap, y.device)])

    def fmt(self, x: torch.Tensor) -> torch.Tensor:
        """`x` in the model's memory format."""
        if self.spec.train.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def features(self, x) -> tuple:
        """(features, logits or None) for the free CAM, else (None, None): a forward without side
        effects (BatchNorm with the batch's statistics, running statistics untouched)."""
        if not self.fast:
            return None, None
        with torch.no_grad(), batch_stats_only(self.model), self.autocast():
            feats = self.model.forward_features(self.fmt(x))
            predicted = self.spec.method.cam.target == "predicted"
            return feats, self.model.forward_head(feats) if predicted else None

    def erase(self, x, y, feats, logits) -> tuple:
        """The eraser's mask (from the CAM if it needs one), filled: (erased, mask, CAM,
        partner's labels, lam). A mixing eraser (cutmix, cam_cutmix) pastes a partner image's
        region instead of a fill and mixes the labels by area; for the others the last two are
        None."""
        m, cmap, gen = self.spec.method, None, self.gen
        if self.cam_fn is not None:
            cmap = self.cam_fn(x, y)
        elif self.eraser.needs_cam:
            target = y if m.cam.target == "label" else logits.argmax(-1)
            cmap = cam.cam_from_features(feats, self.model.get_classifier().weight, target,
                                         size=x.shape[-2:])
        if mixing.is_mixing(self.eraser):  # the partner first (from the run's generator), then
            # the eraser's own draws; a CAM eraser boxes the partner's peak
            partner = mixing.partner_permutation(len(x), x.device, generator=gen)
            mask = self.now(x, cam=None if cmap is None else cmap[partner], generator=gen)
            erased = mixing.paste(x, mask, partner)
            return erased, mask, cmap, y[partner], mixing.lam_from_mask(mask)
        mask = self.now(x, cam=cmap, generator=gen)
        zero = torch.zeros(x.shape[1], device=x.device)  # the `mean` fill: 0 once normalised
        return plugins.fill(x, mask, m.fill, mean=zero, generator=gen), mask, cmap, None, None

    @torch.no_grad()
    def evaluate(self) -> float:
        """Top-1 test error (%) over the whole test set."""
        self.model.eval()
        rd, correct = self.rd, torch.zeros((), device=self.lr.device, dtype=torch.long)
        for x, y in augment.eval_batches(rd.test_images, rd.test_labels, mean=rd.mean,
                                         std=rd.std, batch_size=self.spec.train.eval_batch_size):
            with self.autocast():
                correct += (self.model(x).argmax(-1) == y).sum()
        return 100.0 * (1 - int(correct) / len(rd.test_labels))

    def save(self, path: Path, p: resume.Progress, fp: dict) -> None:
        """A resume or fork file: the run's state, in the layout the pack writes for each run."""
        state = resume.state_of(self.model, self.opt, self.sched, self.lr, self.gen)
        resume.save_state(path, state, p, fp)

    def finish(self, p: resume.Progress, work_dir: Path) -> dict:
        """The outcome: final weights, test error curves, where the erasing and the CAM landed."""
        s, rd, model = self.spec, self.rd, self.model
        final = save_final(work_dir, s, model, rd)
        in_box = pack.cam_in_box(model, rd, s.method.cam.layer, s.train.eval_batch_size)
        resume.resume_path(work_dir, s.run_id).unlink(missing_ok=True)
        return outcome(s, p, rd, final, in_box, eraser=self.eraser, cam_fn=self.cam_fn,
                       robustness=robustness.for_run(s, model, rd, autocast=self.autocast))
