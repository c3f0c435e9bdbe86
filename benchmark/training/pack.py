"""A pack of K runs (K = 1: one run) ready to train: the model (stacked when K > 1), fused SGD
with a device learning rate, the schedule, each run's lane (generator, loader, eraser, CAM) and
the epoch: the step replayed as a CUDA graph where it can be, evaluation, per-run state."""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import plugins
from benchmark import cam, models
from benchmark.data import augment
from benchmark.suites import plan
from benchmark.suites.config import PRECISIONS, RunSpec
from benchmark.training import selfcheck, stack
from benchmark.training.graphs import StepRunner
from benchmark.training.selfcheck import TrainState, self_check_on
from benchmark.training.step import APPEND_BN, SLOTS, Lane, Step, epoch_row
from benchmark.training.step import S as SLOT
from plugins.geometry import peak_in_box
from plugins.mixing import check_mixing_fill


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


def cam_in_box(model, rd: RunData, layer: str | None, batch_size: int,
               dtype: torch.dtype = torch.float32) -> tuple[float, float] | None:
    """How often the model's CAM peak (true class, at `layer`) lies in the object box over the
    test set, beside the rate of a uniformly random point (the mean box area / image area);
    None without boxes. Puts the model in eval mode."""
    if rd.test_boxes is None:
        return None
    model.eval()
    hits = torch.zeros((), device=rd.test_boxes.device)
    for i, (x, y) in enumerate(augment.eval_batches(rd.test_images, rd.test_labels,
                                                    batch_size=batch_size, mean=rd.mean,
                                                    std=rd.std)):
        b = rd.test_boxes[i * batch_size:][: len(y)]
        cmap = cam.grad_cam(model, x.to(dtype), y, layer=layer)
        hits += peak_in_box(cam.peaks(cmap), b).sum()
    bx = rd.test_boxes
    h, w = rd.test_images.shape[-2:]
    area = ((bx[:, 2] - bx[:, 0]).clamp(min=0) * (bx[:, 3] - bx[:, 1]).clamp(min=0)) / (h * w)
    return hits.item() / len(bx), area.mean().item()


def autocast_for(device, precision: str):
    """A context factory: bf16 autocast or nothing. The autocast weight cache is off, as CUDA
    graph capture requires (cached casts would be freed after capture); the step casts the
    weights once a step itself (training/weight_cast.py)."""
    if precision not in PRECISIONS:
        raise ValueError(f"mixed precision {precision!r}: erasebench trains in 'no' (fp32) "
                         "or 'bf16'; fp16 would need loss scaling")
    if precision == "no":
        return contextlib.nullcontext
    dev = torch.device(device).type
    return lambda: torch.autocast(dev, dtype=torch.bfloat16, cache_enabled=False)


def eraser_and_cam(spec: RunSpec, model, device, *, fast: bool, frozen: Path | None = None,
                   packed: bool = False) -> tuple[plugins.Eraser | None, object | None]:
    """The run's eraser (None for a plain run; a mixing eraser's fill checked) and its CAM source:
    None when the eraser needs no CAM or takes it free from the training forward of `model`
    (`fast`: `cam.fast_path_applies` at the run's layer, and the CAM taken "during" training),
    else `cam.cam_source` (Grad-CAM of the live `model`, or of the frozen plain model saved at
    `frozen` for a CAM "after"). ValueError for a run of a stacked pack (`packed`) that would
    need a CAM source: only the free path packs."""
    m = spec.method
    if m.is_plain:
        return None, None
    eraser = plugins.build(m.name, **m.params)
    check_mixing_fill(f"{spec.run_id}: method.fill", eraser, m.fill)
    if not eraser.needs_cam or (fast and m.cam.source == "during"):
        return eraser, None
    if packed:
        raise ValueError(f"{spec.run_id}: only the free CAM path of the live model packs")
    return eraser, cam.cam_source(m.cam.source, model=model, checkpoint=frozen, device=device,
                                  layer=m.cam.layer, target=m.cam.target)


def step_kind(spec: RunSpec, epoch: int) -> str:
    """The step a run takes in `epoch`: plain before its warm-up ends, then its mode (replace
    or append)."""
    m = spec.method
    if m.is_plain or epoch < m.warmup_epochs:
        return "plain"
    return "append" if m.mode == "append" else "replace"


def pack_kind(specs: list[RunSpec], epoch: int) -> str:
    """The step a pack takes in `epoch`: plain runs ride along with in-place erasers."""
    kinds = {step_kind(s, epoch) for s in specs}
    if kinds == {"plain", "replace"}:
        return "replace"
    if len(kinds) > 1:
        raise ValueError(f"runs of different step kinds in one pack: {sorted(kinds)}")
    return kinds.pop()


def first_epoch(specs: list[RunSpec], kind: str) -> int:
    """The first epoch (0-based) in which the pack takes step `kind` (`pack_kind`); 0 when it
    never does. A step timed or checked outside the epoch loop takes its erasers as training
    would in that epoch (`PackTrainer.at_epoch`)."""
    return next((e for e in range(specs[0].train.epochs) if pack_kind(specs, e) == kind), 0)


def tune_cudnn(device) -> bool:
    """On CUDA, set `torch.backends.cudnn.benchmark`: cuDNN times its convolution algorithms
    once per input shape and keeps the fastest, instead of its heuristics' pick (unmeasured for
    bf16 NHWC grouped convolutions of 3-64 channels per group). A pack's shapes are fixed (one
    batch per step kind, the evaluation's), so the search runs once per shape, in the first
    eager warm-up step of a kind (which the graphs' sync check exempts: training/graphs.py),
    never inside a capture; the choice may differ between processes, like GPU atomics' order.
    Not on the CPU: the flag concerns cuDNN only and changes no CPU result. Returns whether it
    was set here (process-wide, as cuDNN's setting is)."""
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cudnn.benchmark = True
    return True


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _pack_model(specs: list[RunSpec], rd: RunData, device: torch.device, dtype: torch.dtype):
    """(the K runs' model on `device`: each run's initial weights as if it trained alone, stacked
    when K > 1, channels_last if the recipe says so; whether the free CAM path applies, probed
    only for a pack whose runs need a CAM)."""
    singles = []
    for s in specs:
        torch.manual_seed(s.seed)  # each run's initial weights, as if it trained alone
        singles.append(models.create(s.model, num_classes=rd.num_classes,
                                     in_chans=rd.train_images.shape[1]))
    cam_spec = next((s for s in specs if s.method.needs_cam), None)
    fast_cam = cam_spec is not None and cam.fast_path_applies(singles[0],
                                                              cam_spec.method.cam.layer)
    model = (stack.stack_models(singles) if len(specs) > 1 else singles[0]).to(device, dtype)
    if specs[0].train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, fast_cam


class PackTrainer:
    """K runs' model (stacked when K > 1), optimiser, schedule and lanes; `train_epoch` runs the
    step for one epoch, eagerly or as a replayed CUDA graph."""

    def __init__(self, specs: list[RunSpec], rd: RunData, device, *, precision: str = "no",
                 frozen_ckpts: dict | None = None, log=None, dtype: torch.dtype = torch.float32):
        t, self.k, self.dtype = specs[0].train, len(specs), dtype
        alone = [s.run_id for s in specs if self.k > 1 and not plan.stacks(s)]
        if alone:  # the planner's own rule (suites/plan.py: stacks), so the two cannot disagree
            raise ValueError(f"{alone[0]}: its model or CAM cannot train in a stacked pack; "
                             "train it alone")
        self.specs, self.rd, self.device = specs, rd, torch.device(device)
        self.autocast = autocast_for(self.device, precision)
        tune_cudnn(self.device)
        self.model, self.fast_cam = _pack_model(specs, rd, self.device, dtype)
        # lr is a device tensor: the scheduler rewrites it in place, outside the captured step.
        # Fused SGD reads it without a host sync. The recipe decays every parameter, BN included.
        # float32 whatever the model's dtype: CUDA's fused SGD reads a tensor lr as float (a
        # float64 lr raises at the first step); fp32 and bf16 runs had a float32 lr already.
        self.lr = torch.tensor(float(t.lr), device=self.device, dtype=torch.float32)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=t.momentum,
                                   weight_decay=t.weight_decay, nesterov=t.nesterov, fused=True)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, t.milestones, t.gamma)
        self.lanes = [self._lane(s, (frozen_ckpts or {}).get(s.run_id)) for s in specs]
        self.acc = torch.zeros(self.k, len(SLOTS), device=self.device, dtype=torch.float64)
        self.pos = torch.zeros((), device=self.device, dtype=torch.long)
        self.log = log or _stderr
        self.train_state = TrainState(self.model, self.opt, self.lanes, self.acc, self.pos,
                                [s.run_id for s in specs])
        # No reference back to the trainer (a bound method of the optimiser, the state above):
        # a closed or dropped trainer, its runner and its graphs' memory pools are freed at
        # once by reference counting, not by a later run of the cycle collector.
        self.runner = StepRunner(t.graphs, self.device, [lane.generator for lane in self.lanes],
                                 functools.partial(self.opt.zero_grad, set_to_none=True),
                                 label=specs[0].run_id if self.k == 1 else f"pack of {self.k}",
                                 log=self.log, probe=self.train_state,
                                 self_check=self_check_on(self.device))
        self._steps: dict[str, Step] = {}
        self.unstacked: str | None = None  # why this run trains alone (the stack self-check)
        self.precision, self.frozen_ckpts = precision, frozen_ckpts
        # As training starts: an eraser that depends on the epoch (GridMask's ramp) erases as
        # in epoch 0 until `at_epoch` says otherwise, so a step taken outside the epoch loop
        # (a timing, a probe, an op count) never meets an eraser without its epoch.
        self.at_epoch(0)

    def _lane(self, s: RunSpec, frozen: Path | None) -> Lane:
        t, m, rd = s.train, s.method, self.rd
        gen = torch.Generator(device=self.device).manual_seed(s.seed)
        loader = augment.DeviceLoader(rd.train_images, rd.train_labels, rd.train_boxes,
                                      batch_size=t.batch_size, mean=rd.mean, std=rd.std,
                                      pad=t.pad, flip=t.flip, generator=gen, dtype=self.dtype)
        eraser, cam_fn = eraser_and_cam(s, self.model, self.device, fast=self.fast_cam,
                                        frozen=frozen, packed=self.k > 1)
        # `mean` fill: images are erased after normalisation, where the dataset mean is 0.
        return Lane(loader, gen, torch.empty(len(rd.train_labels), dtype=torch.long,
                                             device=self.device),
                    eraser, m.fill,
                    torch.zeros(rd.train_images.shape[1], device=self.device, dtype=self.dtype),
                    m.cam.target, cam_fn)

    def step_for(self, kind: str) -> Step:
        if kind not in self._steps:
            m = self.specs[0].method
            self._steps[kind] = Step(self.model, self.opt, self.lanes, kind=kind,
                                     append_bn=m.append_bn if m.append_bn in APPEND_BN else "joint",
                                     autocast=self.autocast, acc=self.acc, pos=self.pos,
                                     weight_dtype=torch.bfloat16 if self.precision == "bf16"
                                     else None,
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
        self.at_epoch(epoch)
        kind, n = self.kind(epoch), len(self.lanes[0].loader)
        step = self.step_for(kind)
        for i in range(n):
            self.runner(kind, step)
            if on_step is not None:
                on_step(i + 1, n)
        lr = float(self.lr)
        self.sched.step()
        return [self._metrics(row, lr) for row in self.acc.tolist()]

    def check_stack(self, epoch: int) -> dict[int, str]:
        """{run index: why} for the runs whose stacked step differs from their own
        (selfcheck.check_stack); they should train alone. {} for a single run."""
        return selfcheck.check_stack(self, epoch)

    def at_first_epoch_of(self, kind: str) -> None:
        """`at_epoch` of the first epoch in which the pack takes step `kind` (`first_epoch`):
        for a step taken outside the epoch loop (a timing), its erasers as training has them."""
        self.at_epoch(first_epoch(self.specs, kind))

    def at_epoch(self, epoch: int) -> None:
        """Give each lane whose eraser depends on the epoch (``at_epoch``, e.g. GridMask's
        ``ramp_epochs``) that epoch's eraser (``epoch`` 0-based, counted from the run's start,
        warm-up included). A captured graph baked the old eraser's numbers into its kernels,
        so when an epoch's eraser differs from the last one the step is captured anew (its
        warm-up steps are real steps: nothing changes in the result)."""
        changed = False
        for lane in self.lanes:
            if lane.eraser is None or not callable(getattr(lane.eraser, "at_epoch", None)):
                continue
            new = lane.eraser.at_epoch(epoch)
            old = lane.epoch_eraser
            if old is None or type(old) is not type(new) or old.params() != new.params():
                changed = True
            lane.epoch_eraser = new
        if changed:
            self.runner.recapture()

    def _metrics(self, a: list[float], lr: float) -> dict:
        row = epoch_row(a, lr, boxes=self.rd.train_boxes is not None)
        return {**row, "images": a[SLOT["seen"]], "_acc": a}

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
        m = models.create(self.specs[k].model, num_classes=self.rd.num_classes,
                          in_chans=self.rd.train_images.shape[1])
        m.load_state_dict(stack.split_state(self.model.state_dict(), k, self.k))
        return m.to(self.device, self.dtype).eval()

    def test_cam_in_box(self, k: int) -> tuple[float, float] | None:
        """Run k's `cam_in_box` on the test set."""
        return cam_in_box(self.single_model(k), self.rd, self.specs[k].method.cam.layer,
                          self.specs[k].train.eval_batch_size, self.dtype)

    def close(self) -> None:
        """Free the captured graphs now (their memory pools). Dropping the last reference to
        the trainer does the same (it holds no reference cycle)."""
        self.runner.close()
        self._steps.clear()

    def execution(self) -> dict:
        """How the pack ran, for each run's record: `graphs` (the step kinds captured as CUDA
        graphs), and only where there is something to say, `graphs_eager` ({kind: why it ran
        eagerly although graphs were on}) and `unstacked` (why the run left its stacked pack).
        An eager CPU run's outcome is then exactly `train_one`'s (tests/training/test_one.py)."""
        report = self.runner.report()
        out = {"graphs": report["graphs"]}
        if report["graphs_eager"]:
            out["graphs_eager"] = report["graphs_eager"]
        if self.unstacked is not None:
            out["unstacked"] = self.unstacked
        return out

    # -- per-run resumable state (the layout of one ordinary model) ------------------------
    def run_state(self, k: int) -> dict:
        sd = self.model.state_dict()
        sd = (stack.split_state(sd, k, self.k) if self.k > 1
              else {n: t.clone() for n, t in sd.items()})
        bufs = [self.opt.state.get(p, {}).get("momentum_buffer") for p in self.model.parameters()]
        # copies (`.cpu()` of a CPU tensor is the tensor itself, a chunk a view): a state taken
        # now keeps its values while the pack trains on (the self-check's trial step, a split)
        bufs = [None if b is None else (b.chunk(self.k)[k] if self.k > 1 else b).detach().to(
            "cpu", copy=True) for b in bufs]
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


