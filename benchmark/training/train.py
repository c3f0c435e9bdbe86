"""Train a pack of K runs (K = 1: one run): the thesis's recipe and two-phase schedule, the
step replayed as a CUDA graph where it can be, eval, resumable per-run checkpoints, forks.

A pack is K runs of one CIFAR ResNet architecture, schedule and step kind, trained as one
grouped network (training/stack.py); everything else stays per run: seed, initial weights,
data order, augmentation, eraser, CAM, BN statistics, checkpoints and record. A run's
checkpoints are written in the layout of one ordinary model, so a run can resume packed or
alone. A provider run saves its state at a fork epoch; a CAM run whose first epochs are the
same plain training starts from that state instead of repeating them (shared warm-up).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import plugins
from benchmark import cam, models
from benchmark.data import augment
from benchmark.suites.expand import RunSpec
from benchmark.training import checkpoint, stack
from benchmark.training.graphs import StepRunner
from benchmark.training.step import APPEND_BN, SLOTS, Lane, Step
from benchmark.training.step import S as SLOT
from plugins.geometry import peak_in_box

RESUME_FORMAT = 2
CURVES = ("epoch", "train_loss", "train_acc", "test_error", "lr", "erased_fraction")
PRECISIONS = ("no", "bf16")


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
    kw = dict(root=spec.data.data_dir, download=spec.data.download, **spec.data.options)
    tr, te = data.load(spec.data.name, "train", **kw), data.load(spec.data.name, "test", **kw)

    def dev(t):
        return None if t is None else t.to(device)

    rd = RunData(dev(tr.images), dev(tr.labels), dev(tr.boxes), dev(te.images), dev(te.labels),
                 dev(te.boxes), tuple(tr.mean), tuple(tr.std), len(tr.classes))
    if cache is not None:
        cache[key] = rd
    return rd


def autocast_for(device, precision: str):
    """A context factory: bf16 autocast or nothing. The autocast weight cache is off, as CUDA
    graph capture requires (cached casts would be freed after capture)."""
    if precision not in PRECISIONS:
        raise ValueError(f"mixed precision {precision!r}: erasebench trains in 'no' (fp32) "
                         "or 'bf16'; fp16 would need loss scaling")
    if precision == "no":
        return contextlib.nullcontext
    dev = torch.device(device).type
    return lambda: torch.autocast(dev, dtype=torch.bfloat16, cache_enabled=False)


def step_kind(spec: RunSpec, epoch: int) -> str:
    """The step a run takes in `epoch`: plain before its warm-up ends, then erase or append."""
    m = spec.method
    if m.is_plain or epoch < m.warmup_epochs:
        return "plain"
    return "append" if m.mode == "append" else "erase"


def pack_kind(specs: list[RunSpec], epoch: int) -> str:
    """The step a pack takes in `epoch`: plain runs ride along with in-place erasers."""
    kinds = {step_kind(s, epoch) for s in specs}
    if kinds == {"plain", "erase"}:
        return "erase"
    if len(kinds) > 1:
        raise ValueError(f"runs of different step kinds in one pack: {sorted(kinds)}")
    return kinds.pop()


class PackTrainer:
    """K runs' model (stacked when K > 1), optimiser, schedule and lanes; `train_epoch` runs the
    step for one epoch, eagerly or as a replayed CUDA graph."""

    def __init__(self, specs: list[RunSpec], rd: RunData, device, *, precision: str = "no",
                 frozen_ckpts: dict | None = None, log=None, dtype: torch.dtype = torch.float32):
        t, self.k, self.dtype = specs[0].train, len(specs), dtype
        self.specs, self.rd, self.device = specs, rd, torch.device(device)
        self.autocast = autocast_for(self.device, precision)
        singles = []
        for s in specs:
            torch.manual_seed(s.seed)  # each run's initial weights, as if it trained alone
            singles.append(models.create(s.model, num_classes=rd.num_classes))
        self.fast_cam = cam.fast_path_applies(singles[0], specs[0].method.cam.layer)
        model = stack.stack_models(singles) if self.k > 1 else singles[0]
        self.model = model.to(self.device, dtype)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # lr is a device tensor: the scheduler rewrites it in place, outside the captured step.
        # Fused SGD reads it without a host sync. The recipe decays every parameter, BN included.
        self.lr = torch.tensor(float(t.lr), device=self.device, dtype=dtype)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=t.momentum,
                                   weight_decay=t.weight_decay, nesterov=t.nesterov, fused=True)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, t.milestones, t.gamma)
        self.lanes = [self._lane(s, (frozen_ckpts or {}).get(s.run_id)) for s in specs]
        self.acc = torch.zeros(self.k, len(SLOTS), device=self.device, dtype=torch.float64)
        self.pos = torch.zeros((), device=self.device, dtype=torch.long)
        self.runner = StepRunner(t.graphs, self.device, [lane.generator for lane in self.lanes],
                                 lambda: self.opt.zero_grad(set_to_none=True),
                                 label=specs[0].run_id if self.k == 1 else f"pack of {self.k}",
                                 log=log)
        self._steps: dict[str, Step] = {}

    def _lane(self, s: RunSpec, frozen: Path | None) -> Lane:
        t, m, rd = s.train, s.method, self.rd
        gen = torch.Generator(device=self.device).manual_seed(s.seed)
        loader = augment.DeviceLoader(rd.train_images, rd.train_labels, rd.train_boxes,
                                      batch_size=t.batch_size, mean=rd.mean, std=rd.std,
                                      pad=t.pad, flip=t.flip, generator=gen, dtype=self.dtype)
        eraser = None if m.is_plain else plugins.build(m.name, **m.params)
        cam_fn = None
        if eraser is not None and eraser.needs_cam:
            if m.cam.source == "after" or not self.fast_cam:
                if self.k > 1:
                    raise ValueError(f"{s.run_id}: only the free CAM path of the live model packs")
                cam_fn = cam.cam_source(m.cam.source, model=self.model, checkpoint=frozen,
                                        device=self.device, layer=m.cam.layer, target=m.cam.target)
        # `mean` fill: images are erased after normalisation, where the dataset mean is 0.
        return Lane(loader, gen, torch.empty(len(rd.train_labels), dtype=torch.long,
                                             device=self.device),
                    eraser, m.fill, torch.zeros(3, device=self.device, dtype=self.dtype),
                    m.cam.target, cam_fn)

    def step_for(self, kind: str) -> Step:
        if kind not in self._steps:
            m = self.specs[0].method
            self._steps[kind] = Step(self.model, self.opt, self.lanes, kind=kind,
                                     append_bn=m.append_bn if m.append_bn in APPEND_BN else "joint",
                                     autocast=self.autocast, acc=self.acc, pos=self.pos,
                                     channels_last=self.specs[0].train.channels_last)
        return self._steps[kind]

    def kind(self, epoch: int) -> str:
        return pack_kind(self.specs, epoch)

    def train_epoch(self, epoch: int, on_step=None) -> list[dict]:
        """One pass over each run's permuted train set; per-run metrics (one host sync)."""
        self.model.train()
        self.acc.zero_()
        self.pos.zero_()
        for lane in self.lanes:  # the epoch's order, drawn outside the graph into its buffer
            lane.perm.copy_(torch.randperm(lane.perm.shape[0], device=self.device,
                                           generator=lane.generator))
        kind, n = self.kind(epoch), len(self.lanes[0].loader)
        step = self.step_for(kind)
        for i in range(n):
            self.runner(kind, step)
            if on_step is not None:
                on_step(i + 1, n)
        lr = float(self.lr)
        self.sched.step()
        return [self._metrics(row, lr) for row in self.acc.tolist()]

    def _metrics(self, a: list[float], lr: float) -> dict:
        seen = max(a[SLOT["seen"]], 1)
        out = {"train_loss": a[SLOT["loss"]] / seen, "train_acc": 100 * a[SLOT["correct"]] / seen,
               "lr": lr, "images": a[SLOT["seen"]],
               "erased_fraction": a[SLOT["erased_pix"]] / a[SLOT["masked"]] if a[SLOT["masked"]]
               else 0.0}
        if a[SLOT["erased_img"]] and self.rd.train_boxes is not None:
            out["object_hit_rate"] = a[SLOT["hit"]] / a[SLOT["erased_img"]]
        if a[SLOT["peaks"]]:
            out["cam_peak_in_box"] = a[SLOT["peak_in_box"]] / a[SLOT["peaks"]]
        out["_acc"] = a
        return out

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Top-1 test error (%) of each run over the whole test set, in large batches."""
        self.model.eval()
        correct = torch.zeros(self.k, device=self.device, dtype=torch.long)
        for x, y in augment.eval_batches(self.rd.test_images, self.rd.test_labels,
                                         batch_size=self.specs[0].train.eval_batch_size,
                                         mean=self.rd.mean, std=self.rd.std):
            x = x.to(self.dtype)
            if self.k > 1:
                x = x.repeat(1, self.k, 1, 1)  # every run sees the same test images
            with self.autocast():
                logits = self.model(x).view(len(y), self.k, -1)
            correct += (logits.argmax(-1) == y[:, None]).sum(0)
        n = len(self.rd.test_labels)
        return [100.0 * (1 - c / n) for c in correct.tolist()]

    def single_model(self, k: int) -> torch.nn.Module:
        """Run k's model as one ordinary network (the stack's group k, copied out)."""
        if self.k == 1:
            return self.model
        m = models.create(self.specs[k].model, num_classes=self.rd.num_classes)
        m.load_state_dict(stack.split_state(self.model.state_dict(), k, self.k))
        return m.to(self.device, self.dtype).eval()

    def test_cam_in_box(self, k: int) -> tuple[float, float] | None:
        """How often run k's final CAM peak (true class) lies in the object box on the test set,
        beside the rate of a uniformly random point (the mean box area / image area)."""
        rd, bs = self.rd, self.specs[k].train.eval_batch_size
        if rd.test_boxes is None:
            return None
        model = self.single_model(k).eval()
        hits = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(augment.eval_batches(rd.test_images, rd.test_labels,
                                                        batch_size=bs, mean=rd.mean, std=rd.std)):
            b = rd.test_boxes[i * bs:][: len(y)]
            layer = self.specs[k].method.cam.layer
            cmap = cam.grad_cam(model, x.to(self.dtype), y, layer=layer)
            hits += peak_in_box(cam.peaks(cmap), b).sum()
        bx = rd.test_boxes
        h, w = rd.test_images.shape[-2:]
        area = ((bx[:, 2] - bx[:, 0]).clamp(min=0) * (bx[:, 3] - bx[:, 1]).clamp(min=0)) / (h * w)
        return hits.item() / len(bx), area.mean().item()

    def close(self) -> None:
        """Free the captured graphs now (their memory pools), not when a GC cycle finds them."""
        self.runner.graph = None
        self._steps.clear()

    # -- per-run resumable state (the layout of one ordinary model) ------------------------
    def run_state(self, k: int) -> dict:
        sd = self.model.state_dict()
        sd = (stack.split_state(sd, k, self.k) if self.k > 1
              else {n: t.clone() for n, t in sd.items()})
        bufs = [self.opt.state.get(p, {}).get("momentum_buffer") for p in self.model.parameters()]
        bufs = [None if b is None else (b.chunk(self.k)[k] if self.k > 1 else b).detach().cpu()
                for b in bufs]
        return {"model": {n: t.cpu() for n, t in sd.items()}, "momentum": bufs,
                "sched": self.sched.state_dict(), "lr": float(self.lr),
                "gen": self.lanes[k].generator.get_state(), "cpu_rng": torch.get_rng_state()}

    def load_run_states(self, states: list[dict]) -> None:
        """Load each run's state into its group (all from the same epoch)."""
        sds = [s["model"] for s in states]
        self.model.load_state_dict(stack.merge_states(sds) if self.k > 1 else sds[0])
        for i, p in enumerate(self.model.parameters()):
            bufs = [s["momentum"][i] for s in states]
            if all(b is not None for b in bufs):
                self.opt.state[p]["momentum_buffer"] = torch.cat(bufs).to(p).contiguous(
                    memory_format=_format_of(p))
        self.sched.load_state_dict(states[0]["sched"])
        self.lr.fill_(states[0]["lr"])
        for lane, s in zip(self.lanes, states, strict=True):
            lane.generator.set_state(s["gen"])
        torch.set_rng_state(states[0]["cpu_rng"])


def _format_of(t: torch.Tensor):
    if (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
            and not t.is_contiguous()):
        return torch.channels_last
    return torch.contiguous_format


def occlusion_summary(a: list[float], cam_in_box) -> dict | None:
    """Occlusion rates from an accumulator row over the erasing epochs (see
    step.occlusion_stats)."""
    if a is None or cam_in_box is None:
        return None
    masked, erased = a[SLOT["masked"]], a[SLOT["erased_img"]]
    peaks = a[SLOT["peaks"]]
    return {
        "erased_image_rate": erased / masked if masked else 0.0,
        "object_hit_rate": a[SLOT["hit"]] / erased if erased else None,
        "object_covered_mean": a[SLOT["covered"]] / erased if erased else None,
        "train_cam_peak_in_box": a[SLOT["peak_in_box"]] / peaks if peaks else None,
        "cam_peak_in_box": cam_in_box[0],
        "random_point_in_box": cam_in_box[1],
    }


# --------------------------------------------------------------------------- the run loop

@dataclass
class Progress:
    """What a run has done so far; saved in its resume checkpoint and its fork files."""

    epoch: int = 0
    curves: dict = field(default_factory=lambda: {k: [] for k in CURVES})
    occ: list = field(default_factory=lambda: [0.0] * len(SLOTS))
    train_time: float = 0.0
    images: float = 0.0
    resumed_from: int | None = None
    forked_from: dict | None = None
    extra: dict = field(default_factory=dict)  # the runner's own (e.g. the W&B run id)


class Hooks:
    """What the runner hears from a pack while it trains; every method is optional."""

    def started(self, k: int, progress: Progress, source: str) -> None:
        """Run k starts at `progress.epoch` from `source`: scratch, resume or fork."""

    def epoch_end(self, k: int, row: dict) -> None:
        """Run k finished an epoch (row: the curves' values plus the extra metrics)."""

    def step(self, done: int, total: int) -> None:
        """A step was launched (no host sync: on CUDA it may not have run yet)."""

    def should_stop(self) -> bool:
        """True: checkpoint every run at the end of this epoch and stop (a signal arrived)."""
        return False


def resume_path(work_dir: Path, run_id: str) -> Path:
    return Path(work_dir) / f"{run_id}.resume.pt"


def fork_path(work_dir: Path, run_id: str, epoch: int) -> Path:
    return Path(work_dir) / f"{run_id}.fork-e{epoch}.pt"


def _save(path: Path, trainer: PackTrainer, k: int, p: Progress, fp: dict) -> None:
    checkpoint.save_resume(path, {
        "format": RESUME_FORMAT, "fingerprint": fp, "trainer": trainer.run_state(k),
        "epoch": p.epoch, "curves": p.curves, "occ": p.occ, "train_time": p.train_time,
        "images": p.images, "forked_from": p.forked_from, "extra": p.extra})


def _load(path: Path, fp: dict) -> dict | None:
    """A resume or fork file made by this config, or None (an unusable one is moved aside with a
    one-line warning: damaged, another version's format, or another config's fingerprint)."""
    from benchmark.fileio import move_aside, warn
    from benchmark.suites import fingerprint

    s = checkpoint.load_resume(path, required=("format", "trainer", "epoch", "curves", "occ"))
    if s is None:
        return None
    why = None
    if s.get("format") != RESUME_FORMAT:
        why = f"written by another erasebench (format {s.get('format')!r}, not {RESUME_FORMAT})"
    elif s.get("fingerprint") != fp:
        keys = [k for k, _, _ in fingerprint.diff(s.get("fingerprint") or {}, fp)]
        why = f"made by another config ({', '.join(keys[:4])} differ)"
    if why is None:
        return s
    warn(f"{path}: {why}; moved to {move_aside(path).name}; the run restarts from scratch")
    return None


def start_state(spec: RunSpec, work_dir: Path, precision: str = "no") -> tuple[str, dict | None]:
    """Where a run starts: its own resume checkpoint, else its warm-up provider's fork, else
    scratch."""
    from benchmark.suites import fingerprint

    s = _load(resume_path(work_dir, spec.run_id), fingerprint.of_run(spec, precision))
    if s is not None:
        return "resume", s
    if spec.fork_from is not None:
        f = fork_path(work_dir, spec.fork_from, spec.method.warmup_epochs)
        s = _load(f, fingerprint.of_warmup(spec, precision)) if f.is_file() else None
        if s is not None:
            return "fork", s
    return "scratch", None


def train_pack(specs: list[RunSpec], *, device, work_dir: Path, data_cache: dict | None = None,
               precision: str = "no", frozen_ckpts: dict | None = None, hooks: Hooks | None = None,
               extra: list[dict] | None = None, log=None) -> list[dict]:
    """Train K runs together to the end (each from its resume checkpoint or fork if any); return
    one outcome per run: {"status": "finished"|"failed"|"interrupted", ...}. Runs whose start
    epochs differ are trained as separate packs, one after another."""
    hooks = hooks or Hooks()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    starts = [start_state(s, work_dir, precision) for s in specs]
    epochs = [0 if st is None else st["epoch"] for _, st in starts]
    if len(set(epochs)) > 1:  # e.g. one run resumed alone earlier: train by start epoch
        out: dict[int, dict] = {}
        for e in sorted(set(epochs)):
            idx = [i for i, x in enumerate(epochs) if x == e]
            res = train_pack([specs[i] for i in idx], device=device, work_dir=work_dir,
                             data_cache=data_cache, precision=precision, frozen_ckpts=frozen_ckpts,
                             hooks=_Sub(hooks, idx), extra=[(extra or [{}] * len(specs))[i]
                                                            for i in idx], log=log)
            out.update(zip(idx, res, strict=True))
        return [out[i] for i in range(len(specs))]
    rd = load_run_data(specs[0], device, data_cache)
    tr = PackTrainer(specs, rd, device, precision=precision, frozen_ckpts=frozen_ckpts, log=log)
    progress = [Progress(extra=dict((extra or [{}] * len(specs))[k])) for k in range(len(specs))]
    if any(st is not None for _, st in starts):
        tr.load_run_states([st["trainer"] for _, st in starts])
    for k, (source, st) in enumerate(starts):
        p = progress[k]
        if st is not None:
            p.epoch, p.curves, p.occ = st["epoch"], st["curves"], st["occ"]
            p.train_time, p.images = st["train_time"], st["images"]
            p.forked_from = st.get("forked_from")
            if source == "resume":
                p.resumed_from = st["epoch"]
                p.extra.update(st.get("extra") or {})
            else:
                p.forked_from = {"run_id": specs[k].fork_from, "epoch": st["epoch"]}
        hooks.started(k, p, source)
    try:
        return _loop(tr, specs, progress, work_dir, hooks, precision)
    finally:
        tr.close()


def _loop(tr: PackTrainer, specs, progress: list[Progress], work_dir: Path, hooks: Hooks,
          precision: str):
    from benchmark.suites import fingerprint

    t, k_all = specs[0].train, range(len(specs))
    fps = [fingerprint.of_run(s, precision) for s in specs]
    warm = [fingerprint.of_warmup(s, precision) for s in specs]
    outcome: dict[int, dict] = {}
    for epoch in range(progress[0].epoch, t.epochs):
        active = [k for k in k_all if k not in outcome]
        if not active:
            break
        t0 = time.perf_counter()
        eps = tr.train_epoch(epoch, on_step=hooks.step)
        dt = time.perf_counter() - t0
        errs = tr.evaluate()
        for k in active:
            ep, p = eps[k], progress[k]
            if not math.isfinite(ep["train_loss"]):
                outcome[k] = {"status": "failed", "epoch": epoch + 1, "progress": p,
                              "reason": f"non-finite training loss ({ep['train_loss']}) in epoch "
                                        f"{epoch + 1}"}
                continue
            p.train_time += dt / len(specs)  # the run's share of the pack's time
            p.images += ep["images"]
            p.occ = [o + a for o, a in zip(p.occ, ep.pop("_acc"), strict=True)]
            p.epoch = epoch + 1
            row = {"epoch": epoch + 1, "test_error": errs[k],
                   **{c: ep[c] for c in CURVES if c in ep}}
            for c in CURVES:
                p.curves[c].append(row[c])
            s = specs[k]
            if s.fork_epochs and p.epoch in s.fork_epochs:
                _save(fork_path(work_dir, s.run_id, p.epoch), tr, k, p, warm[k])
            every = t.checkpoint_every
            if every and p.epoch % every == 0 and p.epoch < t.epochs:
                _save(resume_path(work_dir, s.run_id), tr, k, p, fps[k])
            extra = {c: ep[c] for c in ("object_hit_rate", "cam_peak_in_box") if c in ep}
            hooks.epoch_end(k, {**row, **extra, "images_per_s": ep["images"] * len(specs) / dt})
        if hooks.should_stop() and epoch + 1 < t.epochs:
            for k in k_all:
                if k not in outcome:
                    _save(resume_path(work_dir, specs[k].run_id), tr, k, progress[k], fps[k])
                    outcome[k] = {"status": "interrupted", "epoch": progress[k].epoch,
                                  "progress": progress[k]}
            break
    for k in k_all:
        if k not in outcome:
            outcome[k] = _finish(tr, k, progress[k], work_dir)
    return [outcome[k] for k in k_all]


def _finish(tr: PackTrainer, k: int, p: Progress, work_dir: Path) -> dict:
    spec, rd = tr.specs[k], tr.rd
    final = checkpoint.save(work_dir / f"{spec.run_id}.final.pt", tr.single_model(k),
                            model_name=spec.model, num_classes=rd.num_classes, mean=rd.mean,
                            std=rd.std, extra={"run_id": spec.run_id})
    cam_in_box = tr.test_cam_in_box(k)
    errs = p.curves["test_error"]
    best = min(range(len(errs)), key=errs.__getitem__)
    lane = tr.lanes[k]
    cam_path = None
    if lane.eraser is not None and lane.eraser.needs_cam:
        cam_path = "fast" if lane.cam_fn is None or lane.cam_fn.fast else "generic"
    resume_path(work_dir, spec.run_id).unlink(missing_ok=True)
    return {
        "status": "finished", "progress": p,
        "final_test_error": errs[-1], "best_test_error": errs[best], "best_epoch": best + 1,
        "curves": p.curves, "occlusion": occlusion_summary(p.occ, cam_in_box),
        "train_time_s": p.train_time, "images_per_s": p.images / max(p.train_time, 1e-9),
        "resumed_from_epoch": p.resumed_from, "forked_from": p.forked_from,
        "checkpoint": str(final), "cam_path": cam_path,
        "eraser_params": lane.eraser.params() if lane.eraser is not None else {},
        "pack_size": tr.k, "graphs": sorted(tr.runner.captured),
    }


class _Sub(Hooks):
    """A parent's hooks seen from a sub-pack (run indices mapped back)."""

    def __init__(self, parent: Hooks, idx: list[int]):
        self.parent, self.idx = parent, idx

    def started(self, k, progress, source):
        self.parent.started(self.idx[k], progress, source)

    def epoch_end(self, k, row):
        self.parent.epoch_end(self.idx[k], row)

    def step(self, done, total):
        self.parent.step(done, total)

    def should_stop(self):
        return self.parent.should_stop()


def train_run(spec: RunSpec, *, device, work_dir: Path, **kw) -> dict:
    """One run alone (a pack of one): its outcome (see train_pack)."""
    return train_pack([spec], device=device, work_dir=work_dir, **kw)[0]


def steps_per_epoch(n: int, batch: int) -> int:
    return n // batch if n >= batch else 1


def image_passes(spec: RunSpec, n_train: int, *, start_epoch: int = 0) -> int:
    """Training images a run processes from `start_epoch` (erased copies included)."""
    per_epoch = steps_per_epoch(n_train, spec.train.batch_size) * spec.train.batch_size
    epochs = range(start_epoch, spec.train.epochs)
    return sum(per_epoch * (2 if step_kind(spec, e) == "append" else 1) for e in epochs)
