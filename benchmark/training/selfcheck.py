"""The runtime self-check: untested hardware, or a plugin that breaks the contract, can cost
speed but never correctness.

- Graphs (training/graphs.py: StepRunner, with `TrainState` as its probe): the first time a
  step kind is captured, the graph is replayed once and compared with one eager step from the
  same saved state; a mismatch trains that kind eagerly.
- Stacks (`check_stack`): the first step of a stacked pack, and its first step of each new
  phase (the first erasing epoch after a plain warm-up), is compared with each of its runs
  trained alone from the same state; a run that differs trains alone from there
  (training/train.py).

Per run, the step's mean loss and its parameter update must agree within bf16 tolerance
(`LOSS_RTOL`, `UPDATE_RTOL`). The check saves and restores the whole training state: the
tensors, every generator, and the Python state of what the step calls (each lane's eraser, its
epoch's eraser and its CAM source, deep-copied by `TrainState.save` and put back as fresh
copies by `load`: a trial step never advances a plugin's counter). So whether it passes or a
run leaves the pack, every run's numbers are those it has without the check. The usual cause
of a mismatch is an eraser whose `forward` keeps Python state (a counter): a graph freezes it
at capture. A lane whose Python state cannot be copied is not tried: its kind runs eagerly,
its run trains alone (speed, never correctness). State outside the objects (a class
attribute, a module global) cannot be put back; such a plugin is caught only where it shows.
"""

from __future__ import annotations

import copy

import torch

from benchmark.training.step import S as SLOT

# "auto": the self-check runs on CUDA; True: everywhere (tests force it on the CPU); False: never.
# Per run, the step's loss and parameter update must agree within bf16 tolerance.
SELF_CHECK: bool | str = "auto"
LOSS_RTOL, UPDATE_RTOL = 2e-2, 5e-2


def self_check_on(device) -> bool:
    return SELF_CHECK is True or (SELF_CHECK == "auto" and torch.device(device).type == "cuda")


def _shared(model) -> dict:
    """A deepcopy memo that keeps the trainer's model, parameters and buffers as they are (a
    CAM source of the live model must stay bound to it)."""
    memo = {id(model): model}
    for t in (*model.parameters(), *model.buffers()):
        memo[id(t)] = t
    return memo


def copy_python(lanes, model) -> list | str:
    """A deep copy of the Python objects each lane's step calls: [(eraser, epoch's eraser, CAM
    source)], copied together (objects shared between lanes stay shared); the trainer's model
    is not copied. A str (the error, one line) when they cannot be copied."""
    try:
        return copy.deepcopy([(ln.eraser, ln.epoch_eraser, ln.cam_fn) for ln in lanes],
                             _shared(model))
    except Exception as e:  # noqa: BLE001 - any plugin's object: a lock, a file, a C handle
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


class TrainState:
    """A pack's training state as the self-check sees it (graphs.Probe): parameters, buffers,
    momentum, the runs' generators, the step counter and the accumulators, and the Python
    state of the lanes' erasers and CAM sources (`copy_python`). It holds no reference to the
    trainer (the runner keeps it: no cycle)."""

    def __init__(self, model, opt, lanes, acc, pos, names: list[str]):
        self.model, self.opt, self.lanes, self.acc, self.pos, self.names = (
            model, opt, lanes, acc, pos, names)

    def save(self) -> dict:
        params = list(self.model.parameters())
        return {"params": [p.detach().clone() for p in params],
                "buffers": [b.clone() for b in self.model.buffers()],
                "momentum": [None if (m := self.opt.state.get(p, {}).get("momentum_buffer"))
                             is None else m.clone() for p in params],
                "gens": [lane.generator.get_state() for lane in self.lanes],
                "acc": self.acc.clone(), "pos": self.pos.clone(),
                "python": copy_python(self.lanes, self.model)}

    def unchecked(self, s: dict) -> str | None:
        """Why `s` cannot be loaded exactly (a lane's Python state that cannot be copied), or
        None: then a trial step from `s` and `load(s)` change no number."""
        py = s["python"]
        return None if not isinstance(py, str) else (
            f"an eraser's or CAM source's Python state cannot be copied ({py})")

    @torch.no_grad()
    def load(self, s: dict, *, python: bool = True) -> None:
        """Copy the tensors of `s` back in place; with `python`, give each lane a fresh copy
        of its saved eraser, epoch's eraser and CAM source (`s` can be loaded again)."""
        if python and not isinstance(s["python"], str):
            for lane, (eraser, epoch_eraser, cam_fn) in zip(
                    self.lanes, copy.deepcopy(s["python"], _shared(self.model)), strict=True):
                lane.eraser, lane.epoch_eraser, lane.cam_fn = eraser, epoch_eraser, cam_fn
        params = list(self.model.parameters())
        for p, v in zip(params, s["params"], strict=True):
            p.copy_(v)
        for b, v in zip(self.model.buffers(), s["buffers"], strict=True):
            b.copy_(v)
        for p, m in zip(params, s["momentum"], strict=True):
            state = self.opt.state.get(p)
            if m is None:
                if state:
                    state.pop("momentum_buffer", None)
            elif state is not None and "momentum_buffer" in state:
                state["momentum_buffer"].copy_(m)
            else:
                self.opt.state[p]["momentum_buffer"] = m.clone()
        for lane, g in zip(self.lanes, s["gens"], strict=True):
            lane.generator.set_state(g)
        self.acc.copy_(s["acc"])
        self.pos.copy_(s["pos"])

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=False)

    def results(self, before: dict, after: dict) -> list[tuple[float, torch.Tensor]]:
        """Per run: (the step's mean loss, its parameter update as one flat float64 vector)."""
        k = len(self.lanes)
        acc = (after["acc"] - before["acc"]).tolist()
        out = []
        for i in range(k):
            seen = acc[i][SLOT["seen"]]
            loss = acc[i][SLOT["loss"]] / seen if seen else 0.0
            upd = torch.cat([(a.chunk(k)[i] - b.chunk(k)[i]).double().flatten()
                             for a, b in zip(after["params"], before["params"], strict=True)])
            out.append((loss, upd))
        return out

    def differ(self, before: dict, graphed: dict, eager: dict) -> str | None:
        return compare_runs(self.names, self.results(before, graphed),
                            self.results(before, eager), ("graphed", "eager"))


def compare_runs(names, got, want, what: tuple[str, str]) -> str | None:
    """None if every run's (loss, update) in `got` matches `want` within LOSS_RTOL and
    UPDATE_RTOL; else one line on the first run that does not."""
    for name, (lg, ug), (lw, uw) in zip(names, got, want, strict=True):
        dl = abs(lg - lw) / max(abs(lw), 1e-6)
        du = ((ug - uw.to(ug.device)).norm() / uw.norm().clamp_min(1e-12)).item()
        if dl > LOSS_RTOL or du > UPDATE_RTOL or not (dl == dl and du == du):
            return (f"{name}: loss {lg:.6g} {what[0]} vs {lw:.6g} {what[1]}, parameter update "
                    f"differs by {100 * du:.3g}% (tolerance {100 * LOSS_RTOL:g}% / "
                    f"{100 * UPDATE_RTOL:g}%)")
    return None


def check_stack(tr, epoch: int) -> dict[int, str]:
    """The stack's self-check of `tr`, a training.pack.PackTrainer (`SELF_CHECK`: on CUDA by
    default), before the first step of `epoch`: one eager step of the stacked pack against
    each run's own step trained alone from the same state (a fresh single-run trainer loaded
    with `run_state`). training/train.py calls it before the pack's first epoch and again
    before the first epoch whose runs take other step kinds (the first erasing epoch after a
    plain warm-up, where the erasers are first called). Returns {run index: why} for the runs
    that differ (loss or parameter update beyond bf16 tolerance), each also said in one line
    (with the epoch they train alone from, when it is not the first); they should train alone.
    Leaves the pack (tensors, generators, and its erasers' and CAM sources' Python state: the
    trial step runs on them, then fresh copies of them from before it are put back) and the
    process's RNG as they were, so the check changes no number. Runs whose Python state
    cannot be copied are not tried: they train alone. {} for a single run."""
    if tr.k == 1 or not self_check_on(tr.device):
        return {}
    since = f"; alone from epoch {epoch + 1}" if epoch else ""
    before = tr.train_state.save()
    why = tr.train_state.unchecked(before)
    if why is not None:
        bad = {k: f"self-check: not tried, {why}{since}" for k, lane in enumerate(tr.lanes)
               if isinstance(copy_python([lane], tr.model), str)} or {
            k: f"self-check: not tried, {why}{since}" for k in range(tr.k)}
        for k in bad:
            tr.log(f"note: pack of {tr.k}: {tr.specs[k].run_id} trains alone, not stacked: "
                   f"{bad[k]}")
        return bad
    alone_states = [tr.run_state(k) for k in range(tr.k)]
    devices = [tr.device] if tr.device.type == "cuda" else []
    # the trial step starts its epoch's sums from zero (`_one_eager_step`), whatever the pack
    # summed before it (the epochs already trained, when the check runs mid-training)
    zero = dict(before, acc=torch.zeros_like(before["acc"]))
    with torch.random.fork_rng(devices=devices):
        stacked = tr.train_state.results(zero, _one_eager_step(tr, epoch))
        bad = {}
        for k, spec in enumerate(tr.specs):
            alone = type(tr)([spec], tr.rd, tr.device, precision=tr.precision, dtype=tr.dtype,
                             log=tr.log, frozen_ckpts=tr.frozen_ckpts)
            alone.load_run_states([alone_states[k]])
            start = alone.train_state.save()
            start["acc"].zero_()
            got = alone.train_state.results(start, _one_eager_step(alone, epoch))[0]
            alone.close()
            diff = compare_runs([spec.run_id], [stacked[k]], [got], ("stacked", "alone"))
            if diff is not None:
                bad[k] = f"self-check: its stacked step differs from its own ({diff}){since}"
                tr.log(f"note: pack of {tr.k}: {spec.run_id} trains alone, not stacked: "
                       f"{bad[k]}")
    tr.train_state.load(before)
    return bad


def _one_eager_step(tr, epoch: int) -> dict:
    """The first step of `epoch` as `train_epoch` takes it, eagerly; the state after it."""
    tr.model.train()
    tr.acc.zero_()
    tr.pos.zero_()
    for lane in tr.lanes:
        lane.perm.copy_(torch.randperm(lane.perm.shape[0], device=tr.device,
                                       generator=lane.generator))
    tr.at_epoch(epoch)
    tr.opt.zero_grad(set_to_none=True)
    tr.step_for(tr.kind(epoch))()
    return tr.train_state.save()
