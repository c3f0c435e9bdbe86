"""CUDA graphs of the training step (training/graphs.py), on the CPU: `FakeCuda` stands in for
the parts of torch.cuda the runner calls and keeps torch < 2.13's rules for generators (a
capture puts the registered generators into capture state; only a successful capture_end takes
them out; `set_state` and `CUDAGraph.reset` do not)."""

import contextlib
import gc
import warnings
import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode

from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training import graphs
from benchmark.training.pack import PackTrainer, load_run_data


class FakeCuda:
    """Just enough of torch.cuda for StepRunner's logic to run on the CPU.

    A capture runs the step's Python (here its kernels run at once, on the CPU); a replay runs
    nothing. `capture_raises`: the capture fails as an invalidated one does, at its end, after
    the step ran (torch.cuda.graph's __exit__ calls capture_end, which raises)."""

    def __init__(self, monkeypatch, *, capture_raises=None):
        self.captures = self.replays = 0
        self.streams, self.capture_streams, self.sync_modes = [], [], []
        self.graphs: list[weakref.ref] = []
        self.stuck: set[int] = set()  # ids of generators left in capture state
        self.capturing = False
        outer = self

        class Stream:
            def __init__(self):
                outer.streams.append(self)

            def wait_stream(self, other):
                pass

        class Graph:
            def __init__(self):
                self.registered = []
                outer.graphs.append(weakref.ref(self))

            def register_generator_state(self, g):
                self.registered.append(g)

            def replay(self):
                outer.replays += 1

            def reset(self):  # torch < 2.13: leaves the generators' capture state alone
                pass

        class Capture:
            def __init__(self, graph, pool=None, stream=None, capture_error_mode="global"):
                self.graph, self.stream = graph, stream

            def __enter__(self):
                outer.captures += 1
                outer.capture_streams.append(self.stream)
                outer.capturing = True
                outer.stuck |= {id(g) for g in self.graph.registered}  # capture_prologue

            def __exit__(self, *exc):
                outer.capturing = False
                if capture_raises is not None:  # capture_end fails before capture_epilogue
                    raise capture_raises
                if exc[0] is None:
                    outer.stuck -= {id(g) for g in self.graph.registered}  # capture_epilogue
                return False

        current = Stream()
        self.streams.clear()
        for name, value in {
            "Stream": Stream, "current_stream": lambda: current,
            "stream": lambda s: contextlib.nullcontext(),
            "get_sync_debug_mode": lambda: 0, "CUDAGraph": Graph, "graph": Capture,
            "set_sync_debug_mode": self.sync_modes.append,
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)
        monkeypatch.setattr(graphs, "use_graphs", lambda mode, device: mode != "off")

    def generators_guarded(self):
        """A mode in which a random op drawing from a generator left in capture state raises, as
        CUDAGeneratorState::increase does ("Offset increment outside graph capture ...")."""
        outer = self

        class Guard(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                g = (kwargs or {}).get("generator")
                if g is not None and id(g) in outer.stuck and not outer.capturing:
                    raise RuntimeError("Offset increment outside graph capture encountered "
                                       "unexpectedly.")
                return func(*args, **(kwargs or {}))

        return Guard()


class CudaLikeGenerator(torch.Generator):
    """A CPU generator with a CUDA generator's `graphsafe_set_state`: it takes the given
    state object, which (a clone) is not in capture state."""

    fake: FakeCuda | None = None

    def graphsafe_set_state(self, clone):
        if CudaLikeGenerator.fake is not None:
            CudaLikeGenerator.fake.stuck.discard(id(self))
        self.set_state(clone.get_state())


def runner(mode="auto", **kw):
    lines = []
    r = graphs.StepRunner(mode, "cpu", [], lambda: None, label="run-x", warmup_steps=2,
                          log=lines.append, **kw)
    return r, lines


def test_a_step_is_warmed_up_on_one_side_stream_then_captured_on_it_once_and_replayed(
        monkeypatch):
    fake = FakeCuda(monkeypatch)
    r, lines = runner()
    calls = []
    for _ in range(6):
        r("plain", lambda: calls.append(1))
    # 2 eager warm-up steps; the capture records the step and is replayed at once; every later
    # step is a replay
    assert fake.captures == 1 and fake.replays == 4 and r.captured == {"plain"} and not lines
    # one side stream for the whole runner: warm-up and capture (make_graphed_callables' rule)
    assert len(fake.streams) == 1 and fake.capture_streams == fake.streams
    r.recapture()
    for _ in range(4):
        r("plain", lambda: calls.append(1))
    assert fake.captures == 2 and len(fake.streams) == 1 and fake.capture_streams == [
        fake.streams[0]] * 2


def test_a_step_that_cannot_be_captured_runs_eagerly_and_says_why_once(monkeypatch):
    FakeCuda(monkeypatch, capture_raises=RuntimeError("operation not permitted when stream is "
                                                      "capturing"))
    r, lines = runner()
    calls = []
    for _ in range(6):
        r("replace", lambda: calls.append(1))
    assert len(calls) == 7  # every step ran eagerly; the failed capture ran the step's Python
    assert len(lines) == 1 and "run-x" in lines[0] and "capture failed" in lines[0]
    assert list(r.eager_kinds) == ["replace"] and "capture failed" in r.eager_kinds["replace"]
    assert r.report() == {"graphs": [], "graphs_eager": r.eager_kinds}


def syncing_step():
    """What torch says (in sync debug mode "warn") when a step calls .item() on CUDA."""
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)


@pytest.mark.filterwarnings("ignore:called a synchronizing")  # the later, eager steps warn too
def test_a_step_that_synchronises_after_its_first_warm_up_step_is_caught(monkeypatch):
    fake = FakeCuda(monkeypatch)
    r, lines = runner()
    for _ in range(4):
        r("append", syncing_step)
    assert len(lines) == 1 and "synchronises with the host" in lines[0] and fake.captures == 0
    r_on, _ = runner("on")
    r_on("append", syncing_step)  # the first warm-up step is not checked
    with pytest.raises(graphs.CaptureError, match="graphs: auto"):
        r_on("append", syncing_step)


def test_the_first_warm_up_step_may_synchronise_once(monkeypatch):
    """Lazy initialisation (a cuDNN benchmark, a handle) synchronises in the first step of a
    kind: that step is not checked, so the kind is still captured."""
    fake = FakeCuda(monkeypatch)
    r, lines = runner("on")
    seen = []

    def first_call_syncs():
        seen.append(1)
        if len(seen) == 1:
            syncing_step()

    for _ in range(4):
        r("plain", first_call_syncs)
    assert fake.captures == 1 and r.captured == {"plain"} and not lines
    assert fake.sync_modes == [0, "warn", 0]  # first step: not checked; the second: checked


def specs_for(methods, *, n_train=48, seeds=(0,), epochs=1):
    s = parse_suite({"name": "graphs", "data": {"name": "synthetic", "options": {
                         "n_train": n_train, "n_test": 16, "size": 16}},
                     "train": {"epochs": epochs, "batch_size": 8, "milestones": [1],
                               "channels_last": False},
                     "models": ["resnet20"], "seeds": list(seeds), "methods": list(methods)})
    return expand(s)


def state_of(tr):
    return {n: t.clone() for n, t in tr.model.state_dict().items()}


def test_a_failed_capture_leaves_usable_generators_and_the_pack_trains_like_an_eager_pack(
        monkeypatch):
    """torch < 2.13: an invalidated capture (here: raised at capture_end, after the step drew
    its random numbers) leaves the registered generators in capture state; the fallback gives
    each one a fresh state object from before the capture, so the eager steps draw exactly the
    numbers an eager pack draws."""
    specs = specs_for(["random_erasing"])
    rd = load_run_data(specs[0], "cpu")
    eager = PackTrainer(specs, rd, "cpu")
    want = eager.train_epoch(0)[0]

    fake = FakeCuda(monkeypatch, capture_raises=RuntimeError(
        "CUDA error: operation failed due to a previous error during capture"))
    monkeypatch.setattr(CudaLikeGenerator, "fake", fake)
    monkeypatch.setattr(torch, "Generator", CudaLikeGenerator)
    lines = []
    tr = PackTrainer(specs, rd, "cpu", log=lines.append)
    assert all(isinstance(lane.generator, CudaLikeGenerator) for lane in tr.lanes)
    with fake.generators_guarded():
        got = tr.train_epoch(0)[0]
    assert fake.captures == 1 and not fake.stuck
    assert len(lines) == 1 and "capture failed" in lines[0]
    assert tr.execution()["graphs_eager"] == {"replace": lines[0].split(": ", 3)[-1]}
    assert {k: got[k] for k in ("train_loss", "train_acc", "erased_fraction")} == {
        k: want[k] for k in ("train_loss", "train_acc", "erased_fraction")}
    mine, theirs = state_of(tr), state_of(eager)
    assert all(torch.equal(mine[n], theirs[n]) for n in theirs)


def test_without_restoring_them_the_generators_would_stay_in_capture_state(monkeypatch):
    """The guard above is real: a generator left in capture state makes the next draw raise."""
    fake = FakeCuda(monkeypatch)
    g = CudaLikeGenerator().manual_seed(0)
    fake.stuck.add(id(g))
    with fake.generators_guarded(), pytest.raises(RuntimeError, match="outside graph capture"):
        torch.rand(2, generator=g)
    monkeypatch.setattr(CudaLikeGenerator, "fake", fake)
    graphs.restore_generators([g], [g.clone_state()])
    with fake.generators_guarded():
        torch.rand(2, generator=g)


def test_a_closed_or_dropped_trainer_is_freed_without_the_cycle_collector(monkeypatch):
    FakeCuda(monkeypatch)
    fake_graphs = []
    specs = specs_for(["cutout"])
    rd = load_run_data(specs[0], "cpu")
    gc.collect()
    gc.disable()
    try:
        tr = PackTrainer(specs, rd, "cpu")
        tr.train_epoch(0)
        assert tr.runner.captured == {"replace"}
        refs = [weakref.ref(tr), weakref.ref(tr.runner), weakref.ref(tr.runner.graph),
                weakref.ref(tr.model), weakref.ref(tr.opt)]
        fake_graphs.append(refs[2])
        del tr
        assert [r() for r in refs] == [None] * len(refs)
        tr = PackTrainer(specs, rd, "cpu")  # closed: its graph goes at once, the trainer later
        tr.train_epoch(0)
        graph = weakref.ref(tr.runner.graph)
        tr.close()
        assert graph() is None
    finally:
        gc.enable()


def test_the_cost_calibration_frees_its_trainers_and_graphs(monkeypatch):
    from benchmark.tools import cost

    fake = FakeCuda(monkeypatch)
    specs = specs_for(["cutout"])
    gc.collect()
    gc.disable()
    try:
        rates = cost.calibrate(specs, "cpu", (48, 16, 10, False), steps_only=True, timed_steps=1)
        assert rates["graphs"] == ["replace"] and fake.graphs
        assert all(g() is None for g in fake.graphs)
    finally:
        gc.enable()
