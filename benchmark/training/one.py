"""One run, start to end, in one function read top to bottom (like airbench's `main()`): data,
model, optimiser, the two-phase schedule, the step, evaluation, checkpoints, the outcome.

`train_one` is the reference. The pack executor (training/train.py, pack.py, step.py: K runs
stacked, CUDA graphs, shared warm-ups) is held to it: tests/training/test_one.py checks that a
pack of one trains bit-identically on the CPU, for every step kind. It always runs eagerly, on
one ordinary model, and reuses the project's building blocks (data/augment.py, plugins.fill,
cam.py's free CAM path, training/resume.py and checkpoint.py). Its checkpoints are the pack's,
so a run resumes on either path.
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
from benchmark.training import checkpoint, resume
from benchmark.training.pack import autocast_for, cam_in_box, load_run_data
from benchmark.training.step import SLOTS, batch_stats_only, occlusion_stats
from benchmark.training.step import S as SLOT
from benchmark.training.train import Hooks, occlusion_summary
from plugins.mixing import (
    check_mixing_fill,
    is_mixing,
    lam_from_mask,
    mixed_cross_entropy,
    partner_permutation,
    paste,
)


def train_one(spec: RunSpec, *, device="cpu", work_dir: Path, data_cache: dict | None = None,
              precision: str = "no", frozen_ckpt: Path | None = None, hooks: Hooks | None = None,
              extra: dict | None = None) -> dict:
    """Train `spec` to its last epoch, from its resume checkpoint or its warm-up provider's fork
    file in `work_dir` if there is one, and return its outcome as `train_pack` does for each run:
    {"status": "finished", "final_test_error" (%), "curves", "checkpoint", ...} (turn it into the
    record with results.make_record); {"status": "failed", "epoch", "reason"} when the training
    loss is not finite; {"status": "interrupted", "epoch"} when `hooks.should_stop()`.
    `frozen_ckpt`: the plain model's final checkpoint, for a CAM taken after training."""
    t, m, device, hooks = spec.train, spec.method, torch.device(device), hooks or Hooks()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    source, start = resume.start_state(spec, work_dir, precision)
    # Data: both splits resident on the device as uint8; crop, flip, normalise per batch.
    rd = load_run_data(spec, device, data_cache)
    autocast = autocast_for(device, precision)
    # Model: the seed fixes the initial weights.
    torch.manual_seed(spec.seed)
    model = models.create(spec.model, num_classes=rd.num_classes,
                          in_chans=rd.train_images.shape[1]).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Optimiser: SGD with momentum and weight decay on every parameter, the lr a device tensor
    # (as the CUDA graphs of the pack need), divided by `gamma` at each milestone epoch.
    lr = torch.tensor(float(t.lr), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=t.momentum,
                          weight_decay=t.weight_decay, nesterov=t.nesterov, fused=True)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, t.milestones, t.gamma)
    # One generator draws the run's data order, crops, flips, erasing and random fills.
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    loader = augment.DeviceLoader(rd.train_images, rd.train_labels, rd.train_boxes,
                                  batch_size=t.batch_size, mean=rd.mean, std=rd.std, pad=t.pad,
                                  flip=t.flip, generator=gen)
    # Erasing: the method's eraser. Its CAM, if it needs one, comes free from the training
    # forward where the layer feeds a GAP + linear head (a probe checks), else from Grad-CAM
    # of the live model or of the frozen plain model (CAM "after" training).
    # A mixing eraser (cutmix, cam_cutmix) pastes a partner image's region instead of a fill
    # and mixes the labels by area. An eraser with `at_epoch` (GridMask's probability ramp)
    # erases with that epoch's eraser (`now`); `eraser` stays the configured one.
    eraser = None if m.is_plain else plugins.build(m.name, **m.params)
    if eraser is not None:
        check_mixing_fill(f"{spec.run_id}: method.fill", eraser, m.fill)
    mixes = eraser is not None and is_mixing(eraser)
    now = {"eraser": eraser}
    needs_cam = eraser is not None and eraser.needs_cam
    fast = needs_cam and m.cam.source == "during" and cam.fast_path_applies(model, m.cam.layer)
    cam_fn = None
    if needs_cam and not fast:
        cam_fn = cam.cam_source(m.cam.source, model=model, checkpoint=frozen_ckpt, device=device,
                                layer=m.cam.layer, target=m.cam.target)
    # the `mean` fill, one value per channel: the data mean is 0 once normalised
    zero = torch.zeros(rd.train_images.shape[1], device=device)
    # Checkpoints: resume where the run stopped, or start where its shared warm-up ended.
    p = resume.progress(spec, source, start, extra)
    if start is not None:
        resume.load_state(start["trainer"], model, opt, sched, lr, gen)
    hooks.started(0, p, source)

    def save(path, fp):
        resume.save_state(path, resume.state_of(model, opt, sched, lr, gen), p, fp)

    def fmt(x):  # the model's memory format
        return x.contiguous(memory_format=torch.channels_last) if t.channels_last else x

    def features(x):  # a side-effect-free forward for the CAM: BN batch statistics, no update
        with torch.no_grad(), batch_stats_only(model), autocast():
            feats = model.forward_features(x)
            return feats, model.forward_head(feats) if m.cam.target == "predicted" else None

    def erase(x, y, feats, logits):  # the eraser's mask (from the CAM if it needs one), filled
        cmap = None  # returns (erased, mask, CAM, the partner's labels, lam): the last two
        if cam_fn is not None:  # only for a mixing eraser
            cmap = cam_fn(x, y)
        elif needs_cam:
            target = y if m.cam.target == "label" else logits.argmax(-1)
            cmap = cam.cam_from_features(feats, model.get_classifier().weight, target,
                                         size=x.shape[-2:])
        if mixes:  # the partner first (from the run's generator), then the eraser's own draws;
            # a CAM eraser boxes the partner's peak; the partner's pixels are pasted
            partner = partner_permutation(len(x), device, generator=gen)
            mask = now["eraser"](x, cam=None if cmap is None else cmap[partner], generator=gen)
            return paste(x, mask, partner), mask, cmap, y[partner], lam_from_mask(mask)
        mask = now["eraser"](x, cam=cmap, generator=gen)
        return plugins.fill(x, mask, m.fill, mean=zero, generator=gen), mask, cmap, None, None

    def step(kind, x, y, boxes, acc):  # one SGD step of the epoch's kind
        mask = cmap = feats = logits = y2 = lam = None
        if kind == "plain":
            with autocast():
                logits = model(fmt(x))
        elif kind == "replace":  # the baselines: erase in place
            feats, logits = features(fmt(x)) if fast else (None, None)
            xe, mask, cmap, y2, lam = erase(x, y, feats, logits)
            with autocast():
                logits = model(fmt(xe))
        elif m.append_bn == "split":  # append: the originals' forward gives the CAM for free,
            with autocast():  # the erased copies are a second BatchNorm batch
                feats = model.forward_features(fmt(x))
                logits = model.forward_head(feats)
            xe, mask, cmap, y2, lam = erase(x, y, feats, logits)
            with autocast():
                logits = torch.cat([logits, model(fmt(xe))])
        else:  # append, joint (the thesis): originals and erased copies as one batch of 2B
            feats, logits = features(fmt(x)) if fast else (None, None)
            xe, mask, cmap, y2, lam = erase(x, y, feats, logits)
            with autocast():
                logits = model(torch.cat([fmt(x), fmt(xe)]))
        if kind == "append":  # mixing: the originals keep their labels (lam 1), the copies mix
            y2 = None if lam is None else torch.cat([y, y2])
            lam = None if lam is None else torch.cat([torch.ones_like(lam), lam])
            y = torch.cat([y, y])
        logits = logits.float()  # bf16 -> fp32 for the loss
        # The mean of per-image losses, classes on dim 1 of a (N, classes, 1) tensor: the
        # pack's layout for K runs, with K = 1. Same math as F.cross_entropy(logits, y); these
        # kernels also give the pack's bits (tests/training/test_one.py).
        if lam is None:
            loss = F.cross_entropy(logits[..., None], y[:, None], reduction="none").mean()
        else:  # mixing: lam * CE(y) + (1 - lam) * CE(y[partner]) per image, then the mean
            loss = mixed_cross_entropy(logits[..., None], y[:, None], y2[:, None],
                                       lam[:, None].to(logits.dtype)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = torch.full((), len(y), device=device, dtype=torch.float64)
        head = [loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double(), n]
        acc += torch.cat([torch.stack(head), occlusion_stats(mask, boxes, cmap, device)])

    @torch.no_grad()
    def evaluate() -> float:  # top-1 test error (%)
        model.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in augment.eval_batches(rd.test_images, rd.test_labels, mean=rd.mean,
                                         std=rd.std, batch_size=t.eval_batch_size):
            with autocast():
                correct += (model(x).argmax(-1) == y).sum()
        return 100.0 * (1 - int(correct) / len(rd.test_labels))

    fp, warm = fingerprint.of_run(spec, precision), fingerprint.of_warmup(spec, precision)
    for epoch in range(p.epoch, t.epochs):
        # The two-phase schedule: plain for the warm-up epochs, then the method's erasing step.
        kind = ("plain" if m.is_plain or epoch < m.warmup_epochs
                else "append" if m.mode == "append" else "replace")
        t0 = time.perf_counter()
        if eraser is not None and callable(getattr(eraser, "at_epoch", None)):
            now["eraser"] = eraser.at_epoch(epoch)  # e.g. GridMask's probability this epoch
        model.train()
        acc = torch.zeros(len(SLOTS), device=device, dtype=torch.float64)
        perm = torch.randperm(len(rd.train_labels), device=device, generator=gen)
        b = t.batch_size
        for i in range(len(loader)):
            step(kind, *loader.batch(perm[i * b:(i + 1) * b]), acc)
            hooks.step(i + 1, len(loader))
        epoch_lr = float(lr)
        sched.step()
        dt, err, a = time.perf_counter() - t0, evaluate(), acc.tolist()
        seen = max(a[SLOT["seen"]], 1)
        loss = a[SLOT["loss"]] / seen
        if not math.isfinite(loss):
            return {"status": "failed", "epoch": epoch + 1, "progress": p,
                    "reason": f"non-finite training loss ({loss}) in epoch {epoch + 1}"}
        p.epoch, p.train_time, p.images = epoch + 1, p.train_time + dt, p.images + a[SLOT["seen"]]
        p.occ = [o + x for o, x in zip(p.occ, a, strict=True)]
        row = {"epoch": p.epoch, "train_loss": loss, "train_acc": 100 * a[SLOT["correct"]] / seen,
               "test_error": err, "lr": epoch_lr, "erased_fraction":
               a[SLOT["erased_pix"]] / a[SLOT["masked"]] if a[SLOT["masked"]] else 0.0}
        for c in resume.CURVES:
            p.curves[c].append(row[c])
        if p.epoch in spec.fork_epochs:  # the state its warm-up's other runs start from
            save(resume.fork_path(work_dir, spec.run_id, p.epoch), warm)
        if t.checkpoint_every and p.epoch % t.checkpoint_every == 0 and p.epoch < t.epochs:
            save(resume.resume_path(work_dir, spec.run_id), fp)
        hooks.epoch_end(0, {**row, "images_per_s": a[SLOT["seen"]] / dt})
        if hooks.should_stop() and p.epoch < t.epochs:
            save(resume.resume_path(work_dir, spec.run_id), fp)
            return {"status": "interrupted", "epoch": p.epoch, "progress": p}
    # The outcome: final weights, test error curves, where the erasing and the CAM landed.
    final = checkpoint.save(work_dir / f"{spec.run_id}.final.pt", model, model_name=spec.model,
                            num_classes=rd.num_classes, mean=rd.mean, std=rd.std,
                            extra={"run_id": spec.run_id})
    errs = p.curves["test_error"]
    best = min(range(len(errs)), key=errs.__getitem__)
    resume.resume_path(work_dir, spec.run_id).unlink(missing_ok=True)
    return {
        "status": "finished", "progress": p, "final_test_error": errs[-1],
        "best_test_error": errs[best], "best_epoch": best + 1, "curves": p.curves,
        "occlusion": occlusion_summary(p.occ, cam_in_box(model, rd, m.cam.layer,
                                                         t.eval_batch_size)),
        "train_time_s": p.train_time, "images_per_s": p.images / max(p.train_time, 1e-9),
        "resumed_from_epoch": p.resumed_from, "forked_from": p.forked_from,
        "checkpoint": str(final), "cam_path": None if not needs_cam
        else "generic" if cam_fn is not None and not cam_fn.fast else "fast",
        "eraser_params": eraser.params() if eraser is not None else {},
        "pack_size": 1, "graphs": [],
        "num_classes": rd.num_classes, "n_test": int(rd.test_labels.shape[0]),
        "robustness": robustness.for_run(spec, model, rd, autocast=autocast),
    }

