"""Run a training step eagerly, or capture it once in a CUDA graph and replay it.

The step (training/step.py) reads only static buffers, so capture-once-replay-always is
exact: replaying the graph runs the same kernels on the same memory as the eager step. The
recipe is PyTorch's whole-network capture: a few eager steps on a side stream (lazy
initialisation: cuDNN/cuBLAS handles, the optimiser's momentum buffers), gradients set to
None, capture, replay. The warm-up steps are real training steps, identical to what the
graph then replays, so capturing changes no result.

A step that synchronises with the host (a third-party eraser calling `.item()`, say) cannot
be captured: the eager warm-up runs under `torch.cuda.set_sync_debug_mode("warn")`, and a
synchronisation there, or any error while capturing, makes that step kind run eagerly for
the rest of the run, with one printed line saying why (`graphs: on` raises instead).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import torch

from benchmark.suites.config import GRAPHS as MODES

WARMUP_STEPS = 3


class CaptureError(RuntimeError):
    """The step cannot be captured in a CUDA graph (and `graphs: on` asked for one)."""


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


class StepRunner:
    """Replays one captured graph per step kind; eager where graphs are off or impossible."""

    def __init__(self, mode: str, device, generators, zero_grad: Callable[[], None], *,
                 label: str = "", warmup_steps: int = WARMUP_STEPS, log=None):
        self.enabled = use_graphs(mode, device)
        self.mode, self.generators, self.zero_grad, self.label = (
            mode, list(generators), zero_grad, label)
        self.warmup_steps = warmup_steps
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.kind: str | None = None
        self.graph = None
        self.eager_left = 0
        self.eager_kinds: set[str] = set()  # kinds that could not be captured
        self.captured: set[str] = set()

    def __call__(self, kind: str, step: Callable[[], None]) -> None:
        if kind != self.kind:  # kinds only move forward (plain warm-up, then erasing): free the old
            self.kind, self.graph, self.eager_left = kind, None, self.warmup_steps
        if self.graph is not None:
            self.graph.replay()
        elif not self.enabled or kind in self.eager_kinds:
            self.zero_grad()
            step()
        elif self.eager_left > 0:
            self.eager_left -= 1
            self._warmup(kind, step)
        else:
            self._capture(kind, step)

    def recapture(self) -> None:
        """Drop the captured graph: the next step warms up and captures anew. For a change the
        graph cannot see (a Python number baked into its kernels, e.g. an eraser's
        probability that follows an epoch ramp)."""
        self.kind, self.graph, self.eager_left = None, None, 0

    def _fallback(self, kind: str, why: str) -> None:
        if self.mode == "on":
            raise CaptureError(f"{self.label}: the {kind!r} step cannot be captured in a CUDA "
                               f"graph ({why}); use graphs: auto to train it eagerly")
        self.eager_kinds.add(kind)
        self.log(f"note: {self.label}: the {kind!r} step runs eagerly, not as a CUDA graph: {why}")

    def _warmup(self, kind: str, step) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        before = torch.cuda.get_sync_debug_mode()
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
        if syncs:
            self._fallback(kind, f"it synchronises with the host ({syncs[0]})")

    def _capture(self, kind: str, step) -> None:
        states = [g.get_state() for g in self.generators]
        graph = torch.cuda.CUDAGraph()
        register_generators(graph, self.generators)
        self.zero_grad()  # the captured backward allocates the static .grad tensors
        try:
            with torch.cuda.graph(graph):
                step()
        except Exception as e:  # noqa: BLE001 - any capture failure means: run eagerly
            for g, s in zip(self.generators, states, strict=True):
                g.set_state(s)
            self._fallback(kind, f"capture failed: {type(e).__name__}: {str(e).splitlines()[0]}")
            self.zero_grad()
            step()
            return
        self.graph = graph
        self.captured.add(kind)
        graph.replay()  # capture records the step without running it: run it now
