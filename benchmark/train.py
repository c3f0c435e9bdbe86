"""One run: the thesis's recipe and two-phase schedule; the step on the device; eval; checkpoints.

The training step (`Trainer.step`) is the hot path of DESIGN.md: draw, augment, CAM, mask, fill,
forward, loss, backward, step, all tensor ops on the device; the only host syncs are at the end
of an epoch, where the device-side accumulators are read once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import plugins
from benchmark import augment, cam, checkpoint, models
from benchmark.suite import RunSpec

# Device-side accumulator slots, summed over an epoch and read once at its end.
LOSS, CORRECT, SEEN, MASKED, ERASED_IMG, ERASED_PIX, HIT, COVERED, PEAK_IN_BOX, PEAKS = range(10)


@dataclass
class RunData:
    """The datasets of a run, resident on the device (uint8), with the train split's statistics."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_boxes: torch.Tensor | None
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_boxes: torch.Tensor | None
    mean: tuple
    std: tuple
    num_classes: int


def load_run_data(spec: RunSpec, device, cache: dict | None = None) -> RunData:
    """Load (once per process: `cache`) and move the run's datasets to the device."""
    from benchmark import data

    key = (spec.data.name, spec.data.data_dir, repr(sorted(spec.data.options.items())), str(device))
    if cache is not None and key in cache:
        return cache[key]
    kw = dict(data_dir=spec.data.data_dir, download=spec.data.download, **spec.data.options)
    tr, te = data.load(spec.data.name, "train", **kw), data.load(spec.data.name, "test", **kw)

    def dev(t):
        return None if t is None else t.to(device)

    rd = RunData(dev(tr.images), dev(tr.labels), dev(tr.boxes), dev(te.images), dev(te.labels),
                 dev(te.boxes), tuple(tr.mean), tuple(tr.std), len(tr.classes))
    if cache is not None:
        cache[key] = rd
    return rd


def box_masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 4) pixel boxes (x1, y1, x2, y2; x2/y2 exclusive) -> bool (B, 1, h, w)."""
    ys = torch.arange(h, device=boxes.device).view(1, h, 1)
    xs = torch.arange(w, device=boxes.device).view(1, 1, w)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)).unsqueeze(1)


def peak_in_box(peaks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, 2) (row, col) peaks inside (B, 4) boxes -> bool (B,)."""
    r, c = peaks[:, 0].to(boxes.dtype), peaks[:, 1].to(boxes.dtype)
    return (c >= boxes[:, 0]) & (c < boxes[:, 2]) & (r >= boxes[:, 1]) & (r < boxes[:, 3])


class Trainer:
    """Holds a run's model, optimiser, eraser and CAM source; `step` is the hot path."""

    def __init__(self, spec: RunSpec, rd: RunData, device, *, autocast=None, frozen_ckpt=None):
        t, m = spec.train, spec.method
        self.spec, self.rd, self.device = spec, rd, torch.device(device)
        self.autocast = autocast or contextlib.nullcontext
        torch.manual_seed(spec.seed)
        self.model = models.create(spec.model, num_classes=rd.num_classes).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The thesis's recipe (and the Random Erasing code) decays every parameter, BN included.
        self.opt = torch.optim.SGD(self.model.parameters(), lr=t.lr, momentum=t.momentum,
                                   weight_decay=t.weight_decay, nesterov=t.nesterov)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, t.milestones, t.gamma)
        self.gen = torch.Generator(device=self.device).manual_seed(spec.seed)
        self.loader = augment.DeviceLoader(rd.train_images, rd.train_labels, rd.train_boxes,
                                           batch_size=t.batch_size, mean=rd.mean, std=rd.std,
                                           pad=t.pad, flip=t.flip, generator=self.gen)
        self.eraser = None if m.is_plain else plugins.build(m.name, **m.params)
        # `mean` fill: images are erased after normalisation, where the dataset mean is 0.
        self.fill_mean = torch.zeros(3, device=self.device)
        self.cam_fn = None  # where the CAM comes from: the live model or a frozen one (cam.py)
        if self.eraser is not None and self.eraser.needs_cam:
            self.cam_fn = cam.cam_source(m.cam.source, model=self.model, checkpoint=frozen_ckpt,
                                         device=self.device, layer=m.cam.layer, target=m.cam.target)
        self.acc = torch.zeros(10, device=self.device, dtype=torch.float64)

    # -- the hot path ------------------------------------------------------------------------
    def step(self, x, y, boxes, erase: bool):
        model, mth, acc = self.model, self.spec.method, self.acc
        mask = cmap = None
        with self.autocast():
            if erase and mth.mode == "append":  # phase 2: 128 originals + their 128 erased copies
                feats = model.forward_features(x)
                logits = model.forward_head(feats)
                cmap = self.cam_fn(x, y, features=feats)  # fast path: free from these features
                mask = self.eraser(x, cam=cmap, generator=self.gen)
                xe = plugins.fill(x, mask, mth.fill, mean=self.fill_mean, generator=self.gen)
                logits, y = torch.cat([logits, model(xe)]), torch.cat([y, y])
            elif erase:  # baselines: erase in place with the eraser's own p
                cmap = self.cam_fn(x, y) if self.cam_fn is not None else None
                mask = self.eraser(x, cam=cmap, generator=self.gen)
                logits = model(plugins.fill(x, mask, mth.fill, mean=self.fill_mean, generator=self.gen))
            else:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            acc[LOSS] += loss.detach() * y.numel()
            acc[CORRECT] += (logits.argmax(1) == y).sum()
            acc[SEEN] += y.numel()
            if mask is not None:
                self._occlusion(mask, boxes, cmap)

    def _occlusion(self, mask, boxes, cmap):
        acc, frac = self.acc, mask.flatten(1).float().mean(1)
        acc[MASKED] += mask.shape[0]
        acc[ERASED_IMG] += (frac > 0).sum()
        acc[ERASED_PIX] += frac.sum()
        if boxes is not None:
            obj = box_masks(boxes, *mask.shape[-2:])
            inter = (mask & obj).flatten(1).sum(1).float()
            acc[HIT] += (inter > 0).sum()
            acc[COVERED] += (inter / obj.flatten(1).sum(1).clamp(min=1)).sum()
            if cmap is not None:
                acc[PEAK_IN_BOX] += peak_in_box(cam.peaks(cmap), boxes).sum()
                acc[PEAKS] += boxes.shape[0]

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the permuted train set; returns the epoch's metrics (one host sync)."""
        self.model.train()
        self.acc.zero_()
        erase = self.eraser is not None and epoch >= self.spec.method.warmup_epochs
        cl = self.spec.train.channels_last
        for x, y, boxes in self.loader:
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            self.step(x, y, boxes, erase)
        lr = self.opt.param_groups[0]["lr"]
        self.sched.step()
        a = self.acc.tolist()
        out = {"train_loss": a[LOSS] / max(a[SEEN], 1), "train_acc": 100 * a[CORRECT] / max(a[SEEN], 1),
               "lr": lr, "erased_fraction": a[ERASED_PIX] / a[MASKED] if a[MASKED] else 0.0,
               "images": a[SEEN]}
        if a[MASKED] and a[ERASED_IMG] and self.rd.train_boxes is not None:
            out["object_hit_rate"] = a[HIT] / a[ERASED_IMG]
        if a[PEAKS]:
            out["cam_peak_in_box"] = a[PEAK_IN_BOX] / a[PEAKS]
        out["_acc"] = a
        return out

    @torch.no_grad()
    def evaluate(self) -> float:
        """Top-1 test error (%) over the whole test set, in large batches."""
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for x, y in augment.eval_batches(self.rd.test_images, self.rd.test_labels,
                                         batch_size=self.spec.train.eval_batch_size,
                                         mean=self.rd.mean, std=self.rd.std):
            with self.autocast():
                correct += (self.model(x).argmax(1) == y).sum()
        return 100.0 * (1 - correct.item() / len(self.rd.test_labels))

    def test_cam_in_box(self) -> tuple[float, float] | None:
        """Rate at which the final model's CAM peak (true class) lies in the object box on the test
        set, beside the rate of a uniformly random point (the mean box area / image area)."""
        if self.rd.test_boxes is None:
            return None
        self.model.eval()
        hits = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(augment.eval_batches(self.rd.test_images, self.rd.test_labels,
                                                        batch_size=self.spec.train.eval_batch_size,
                                                        mean=self.rd.mean, std=self.rd.std)):
            b = self.rd.test_boxes[i * self.spec.train.eval_batch_size:][: len(y)]
            layer = self.spec.method.cam.layer
            hits += peak_in_box(cam.peaks(cam.grad_cam(self.model, x, y, layer=layer)), b).sum()
        bx = self.rd.test_boxes
        h, w = self.rd.test_images.shape[-2:]
        area = ((bx[:, 2] - bx[:, 0]).clamp(min=0) * (bx[:, 3] - bx[:, 1]).clamp(min=0)) / (h * w)
        return hits.item() / len(bx), area.mean().item()

    # -- resumable state -----------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "gen": self.gen.get_state(),
                "cpu_rng": torch.get_rng_state()}

    def load_state(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.gen.set_state(s["gen"])
        torch.set_rng_state(s["cpu_rng"])


def occlusion_summary(a: list[float], cam_in_box) -> dict | None:
    """Occlusion rates from an accumulator over the erasing epochs (see Trainer._occlusion)."""
    if a is None or cam_in_box is None:
        return None
    masked, erased = a[MASKED], a[ERASED_IMG]
    return {
        "erased_image_rate": erased / masked if masked else 0.0,
        "object_hit_rate": a[HIT] / erased if erased else None,
        "object_covered_mean": a[COVERED] / erased if erased else None,
        "train_cam_peak_in_box": a[PEAK_IN_BOX] / a[PEAKS] if a[PEAKS] else None,
        "cam_peak_in_box": cam_in_box[0],
        "random_point_in_box": cam_in_box[1],
    }


def train_run(spec: RunSpec, *, device, work_dir: Path, data_cache: dict | None = None,
              autocast=None, tracker=None, frozen_ckpt: Path | None = None, progress=None,
              on_epoch=None) -> dict:
    """Train one run to the end (resuming from its checkpoint if one exists); return the metrics
    part of its result record. The final model is saved to work_dir/<run_id>.final.pt."""
    from benchmark.tracking import NullTracker

    tracker = tracker or NullTracker()
    rd = load_run_data(spec, device, data_cache)
    tr = Trainer(spec, rd, device, autocast=autocast, frozen_ckpt=frozen_ckpt)
    t = spec.train
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    resume_path = work_dir / f"{spec.run_id}.resume.pt"
    curves = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_error", "lr", "erased_fraction")}
    occ = torch.zeros(10, dtype=torch.float64).tolist()
    start, train_time, images, resumed_from = 0, 0.0, 0.0, None
    if resume_path.is_file():
        s = torch.load(resume_path, map_location=tr.device, weights_only=False)
        tr.load_state(s["trainer"])
        start, curves, occ = s["epoch"], s["curves"], s["occ"]
        train_time, images, resumed_from = s["train_time"], s["images"], s["epoch"]
    for epoch in range(start, t.epochs):
        t0 = time.perf_counter()
        ep = tr.train_epoch(epoch)
        dt = time.perf_counter() - t0
        train_time, images = train_time + dt, images + ep["images"]
        occ = [o + a for o, a in zip(occ, ep.pop("_acc"), strict=True)]
        err = tr.evaluate()
        row = {"epoch": epoch + 1, "test_error": err, **{k: ep[k] for k in curves if k in ep}}
        for k in curves:
            curves[k].append(row[k])
        extra = {k: ep[k] for k in ("object_hit_rate", "cam_peak_in_box") if k in ep}
        tracker.log({**row, **extra, "images_per_s": ep["images"] / max(dt, 1e-9)}, step=epoch + 1)
        if progress is not None:
            progress(epoch + 1, row)
        if t.checkpoint_every and (epoch + 1) % t.checkpoint_every == 0 and epoch + 1 < t.epochs:
            tmp = resume_path.with_suffix(".tmp")
            torch.save({"trainer": tr.state(), "epoch": epoch + 1, "curves": curves, "occ": occ,
                        "train_time": train_time, "images": images}, tmp)
            tmp.replace(resume_path)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    final_ckpt = checkpoint.save(work_dir / f"{spec.run_id}.final.pt", tr.model, model_name=spec.model,
                                 num_classes=rd.num_classes, mean=rd.mean, std=rd.std,
                                 extra={"run_id": spec.run_id})
    cam_in_box = tr.test_cam_in_box()
    errs = curves["test_error"]
    best = min(range(len(errs)), key=errs.__getitem__)
    out = {
        "final_test_error": errs[-1], "best_test_error": errs[best], "best_epoch": best + 1,
        "curves": curves, "occlusion": occlusion_summary(occ, cam_in_box),
        "train_time_s": train_time, "images_per_s": images / max(train_time, 1e-9),
        "resumed_from_epoch": resumed_from, "checkpoint": str(final_ckpt),
        "cam_path": None if tr.cam_fn is None else ("fast" if tr.cam_fn.fast else "generic"),
        "eraser_params": tr.eraser.params() if tr.eraser is not None else {},
    }
    resume_path.unlink(missing_ok=True)
    return out


def steps_per_epoch(n: int, batch: int) -> int:
    return n // batch if n >= batch else 1


def image_passes(spec: RunSpec, n_train: int) -> int:
    """Training images a run processes (erased copies included): the basis of the cost estimate."""
    per_epoch = steps_per_epoch(n_train, spec.train.batch_size) * spec.train.batch_size
    extra = 0
    if spec.method.mode == "append":
        extra = per_epoch * max(0, spec.train.epochs - spec.method.warmup_epochs)
    return per_epoch * spec.train.epochs + extra
