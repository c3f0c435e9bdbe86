"""Run a training step eagerly, or capture it once in a CUDA graph and replay it.

The step (training/step.py) reads only static buffers, so capture-once-replay-always is
exact: replaying the graph runs the same kernels on the same memory as the eager step. The
recipe is PyTorch's whole-network capture (the CUDA semantics notes, "Whole-network capture"):
a few eager steps on a side stream (lazy initialisation: cuDNN/cuBLAS handles, cuDNN's
benchmark, the optimiser's momentum buffers), gradients set to None, capture, replay. The
warm-up steps are real training steps, identical to what the graph then replays, so capturing
changes no result.

One side stream per runner, for every warm-up step and every capture, as
`torch.cuda.make_graphed_callables` does (torch/cuda/graphs.py: "Need to use the same stream
for warmup and capture to avoid capture errors"): per-stream handles and workspaces (cuBLAS,
hipBLASLt) are created in warm-up, not inside the capture, and the caching allocator reuses
the warm-up steps' blocks (blocks are cached per stream: a new stream per step would keep up
to one step's activations per stream).

A step that synchronises with the host (a third-party eraser calling `.item()`, say) cannot
be captured: the eager warm-up steps after the first run under
`torch.cuda.set_sync_debug_mode("warn")`, and a synchronisation there, or any error while
capturing, makes that step kind run eagerly for the rest of the run, with one printed line
saying why (`graphs: on` raises instead). The first warm-up step of each kind is not checked:
lazy initialisation (a cuDNN benchmark, a handle, a module load) may synchronise once.

A failed capture leaves nothing behind: the graph is reset and every generator the capture
knew (the runs' own and the device's default) gets a fresh copy of its state from before the
capture, so the eager fallback draws the same numbers an eager run would (see `_recover`).

**Self-check.** The first time a step kind is captured, the runner (given a `probe`, the
trainer's saved state) replays the graph once, then runs one eager step from the same saved
tensors and generators, with the Python state the capture's call left (as the next eager step
would see it), and compares per-run loss and parameter update (`probe.differ`). A mismatch (a
step whose result depends on Python state that a graph freezes at capture, e.g. a stateful
eraser) prints one line naming the kind and the difference; the step is then taken again
eagerly from the whole state before the capture (tensors, generators and the erasers' Python
state), and that kind runs eagerly: the run's numbers are those of an eager run. When the
check passes, training continues from the graph's own state (tensors, generators, and the
Python state as the capture left it): the check changes no number of the run. A step whose
Python state cannot be copied (`probe.unchecked`) is not captured while the check is on.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Protocol

import torch

from benchmark.suites.config import GRAPHS as MODES

WARMUP_STEPS = 3


class CaptureError(RuntimeError):
    """The step cannot be captured in a CUDA graph (and `graphs: on` asked for one)."""


class Probe(Protocol):
    """What the self-check needs of a trainer: its whole training state, saved and loaded."""

    def save(self) -> object:
        """A copy of everything a step reads and writes (parameters, buffers, optimiser state,
        generators, step counter, accumulators)."""

    def load(self, state, *, python: bool = True) -> None:
        """Copy `state` back in place (the graph's static buffers keep their addresses); with
        `python`, also the Python state of what the step calls (fresh copies)."""

    def unchecked(self, state) -> str | None:
        """Why `state` cannot be loaded exactly (Python state that cannot be copied); None."""

    def zero_grad(self) -> None:
        """Zero the gradients in place (the graph's static .grad tensors stay)."""

    def differ(self, before, graphed, eager) -> str | None:
        """None when the two steps from `before` agree per run (loss, parameter update) within
        tolerance; else one line naming the largest difference."""


def register_generators(graph, generators) -> None:
    """Tell the graph about our own generators. torch <= 2.13 needs it (the default generator is
    registered implicitly); newer torch registers lazily and deprecates the call (a no-op)."""
    register = getattr(graph, "register_generator_state", None)
    if register is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in generators:
            register(g)


def use_graphs(mode: str, device) -> bool:
    """`auto`: on CUDA; `on`: CUDA required; `off`: never (the eager reference)."""
    if mode not in MODES:
        raise ValueError(f"graphs: {mode!r}; allowed: {', '.join(MODES)}")
    cuda = torch.device(device).type == "cuda"
    if mode == "on" and not cuda:
        raise CaptureError(f"graphs: on needs a CUDA device; this run is on {device}")
    return cuda and mode != "off"


def default_generator(device) -> torch.Generator:
    """The device's default generator (a capture on torch < 2.13 registers it implicitly)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None
                                             else torch.cuda.current_device()]
    return torch.default_generator


def restore_generators(generators, saved) -> None:
    """Give each generator its state from `saved` (clones from `Generator.clone_state()`).

    A CUDA generator gets the clone as its new state object (`graphsafe_set_state`, torch >=
    2.4): on torch < 2.13 a failed capture leaves the registered generators' state flagged as
    capturing (CUDAGeneratorState::capture_prologue sets it, only capture_epilogue, run by a
    successful capture_end, clears it; `set_state` does not), and the next eager random op
    raises "Offset increment outside graph capture encountered unexpectedly". A clone starts
    out of capture. A CPU generator has no capture state and no graph-safe state: its state is
    copied."""
    for g, clone in zip(generators, saved, strict=True):
        try:
            g.graphsafe_set_state(clone)
        except RuntimeError:  # "graphsafe_set_state is not supported in this Generator" (CPU)
            g.set_state(clone.get_state())


class StepRunner:
    """Replays one captured graph per step kind; eager where graphs are off or impossible.

    mode: `graphs` (auto | on | off); generators: the runs' own generators (the device's default
    one is handled too); zero_grad: sets the gradients to None (called before each eager step
    and before the capture); probe: the trainer's state (graphs.Probe), restored after a failed
    capture and used by the self-check (`self_check`; None: neither).
    """

    def __init__(self, mode: str, device, generators, zero_grad: Callable[[], None], *,
                 label: str = "", warmup_steps: int = WARMUP_STEPS, log=None,
                 probe: Probe | None = None, self_check: bool = True):
        self.enabled = use_graphs(mode, device)
        self.mode, self.device, self.generators, self.zero_grad, self.label = (
            mode, torch.device(device), list(generators), zero_grad, label)
        self.warmup_steps = warmup_steps
        self.log = log or _stderr
        self.probe, self.self_check = probe, self_check and probe is not None
        self.kind: str | None = None
        self.graph = None
        self.side = None  # the one side stream of warm-up and capture (created on first use)
        self.eager_left = 0
        self.eager_kinds: dict[str, str] = {}  # kind -> why it runs eagerly
        self.captured: set[str] = set()
        self.checked: set[str] = set()  # kinds whose graph passed the self-check

    def __call__(self, kind: str, step: Callable[[], None]) -> None:
        if kind != self.kind:  # kinds only move forward (plain warm-up, then erasing): free the old
            self.kind, self.graph, self.eager_left = kind, None, self.warmup_steps
        if self.graph is not None:
            self.graph.replay()
        elif not self.enabled or kind in self.eager_kinds:
            self.zero_grad()
            step()
        elif self.eager_left > 0:
            first = self.eager_left == self.warmup_steps
            self.eager_left -= 1
            self._warmup(kind, step, check_syncs=not first)
        else:
            self._capture(kind, step)

    def recapture(self) -> None:
        """Drop the captured graph: the next step warms up and captures anew. For a change the
        graph cannot see (a Python number baked into its kernels, e.g. an eraser's
        probability that follows an epoch ramp)."""
        self.kind, self.graph, self.eager_left = None, None, 0

    def close(self) -> None:
        """Free the captured graph (its memory pool) now."""
        self.graph = None
        self.kind = None

    def report(self) -> dict:
        """What a record says about graphs: `graphs`, the kinds captured, and `graphs_eager`,
        {kind: why it ran eagerly although graphs were on} (a host sync, a failed capture, a
        failed self-check). Where graphs were off (`graphs: off`, not a CUDA device: the
        record's config and device say so), `graphs_eager` is empty."""
        return {"graphs": sorted(self.captured), "graphs_eager": dict(self.eager_kinds)}

    def _stream(self):
        if self.side is None:
            self.side = torch.cuda.Stream()
        return self.side

    def _fallback(self, kind: str, why: str) -> None:
        if self.mode == "on":
            raise CaptureError(f"{self.label}: the {kind!r} step cannot be captured in a CUDA "
                               f"graph ({why}); use graphs: auto to train it eagerly")
        self.eager_kinds[kind] = why
        self.captured.discard(kind)
        self.log(f"note: {self.label}: the {kind!r} step runs eagerly, not as a CUDA graph: {why}")

    def _warmup(self, kind: str, step, *, check_syncs: bool) -> None:
        side = self._stream()
        side.wait_stream(torch.cuda.current_stream())
        before = torch.cuda.get_sync_debug_mode()
        if check_syncs:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught, torch.cuda.stream(side):
                warnings.simplefilter("always")
                self.zero_grad()
                step()
        finally:
            torch.cuda.set_sync_debug_mode(before)
        torch.cuda.current_stream().wait_stream(side)
        syncs = [str(w.message).splitlines()[0] for w in caught
                 if "synchroniz" in str(w.message).lower()]
        if syncs and check_syncs:
            self._fallback(kind, f"it synchronises with the host ({syncs[0]})")

    def _generators(self) -> list:
        return [*self.generators, default_generator(self.device)]

    def _recover(self, graph, saved) -> None:
        """After a failed capture: reset the graph (on torch >= 2.13 CUDAGraph::reset removes
        the generators' capture states; on older torch it does not) and restore every
        generator's pre-capture state (`restore_generators`, which works on every torch)."""
        try:
            graph.reset()
        except Exception:  # noqa: BLE001 - a half-captured graph may refuse; nothing to keep
            pass
        restore_generators(self._generators(), saved)

    def _capture(self, kind: str, step) -> None:
        saved = [g.clone_state() for g in self._generators()]
        graph = torch.cuda.CUDAGraph()
        register_generators(graph, self.generators)
        check = self.self_check and kind not in self.checked
        before = self.probe.save() if self.probe is not None else None
        if check and (why := self.probe.unchecked(before)) is not None:
            self._fallback(kind, f"self-check: not tried, {why}")
            self.zero_grad()
            step()
            return
        self.zero_grad()  # the captured backward allocates the static .grad tensors
        try:
            with torch.cuda.graph(graph, stream=self._stream()):
                step()
        except Exception as e:  # noqa: BLE001 - any capture failure means: run eagerly
            self._recover(graph, saved)
            del graph
            if before is not None:
                self.probe.load(before)
            self._fallback(kind, f"capture failed: {type(e).__name__}: {str(e).splitlines()[0]}")
            self.zero_grad()
            step()
            return
        self.graph = graph
        self.captured.add(kind)
        graph.replay()  # capture records the step without running it: run it now
        if check:
            self._self_check(kind, step, before)

    def _self_check(self, kind: str, step, before) -> None:
        """Compare the first replay with one eager step from the same state (module doc)."""
        probe = self.probe
        graphed = probe.save()
        probe.load(before, python=False)  # the Python state stays as the capture's call left it
        probe.zero_grad()  # in place: the graph's static .grad tensors stay where it reads them
        step()
        eager = probe.save()
        diff = probe.differ(before, graphed, eager)
        if diff is None:
            self.checked.add(kind)
            probe.load(graphed)  # the run goes on from the graph's state, as without the check
            return
        self.graph = None
        self._fallback(kind, f"self-check: the graphed step differs from the eager step ({diff})")
        probe.load(before)  # this step again, eagerly, as an eager run takes it; then eagerly
        self.zero_grad()
        step()


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
