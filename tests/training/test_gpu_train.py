"""GPU checks of the training step: graphed equals eager, stacked equals separate, no host sync.

Skipped without CUDA (tests/conftest.py). Run them with `python -m pytest -m gpu`.
"""

import pytest
import torch

import plugins
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training import stack
from benchmark.training.pack import PackTrainer, load_run_data

pytestmark = pytest.mark.gpu

BUILTIN = ["plain", *plugins.available()]


def specs_for(methods, *, seeds=(0,), bn="joint", graphs="auto", n_train=1024, size=32):
    entries = []
    for m in methods:
        if m == "cam_erasing":
            entries.append({"name": m, "warmup_epochs": 0, "append_bn": bn})
        else:
            entries.append(m)
    s = parse_suite({"name": "gpu", "data": {"name": "synthetic",
                                             "options": {"n_train": n_train, "n_test": 256,
                                                         "size": size}},
                     "train": {"epochs": 2, "batch_size": 128, "milestones": [1],
                               "graphs": graphs},
                     "models": ["resnet20"], "seeds": list(seeds), "methods": entries})
    return expand(s)


def losses(specs, graphs: str, precision="bf16", epochs=2):
    for s in specs:
        s.train.graphs = graphs
    rd = load_run_data(specs[0], "cuda")
    tr = PackTrainer(specs, rd, "cuda", precision=precision)
    out = [[m["train_loss"] for m in tr.train_epoch(e)] for e in range(epochs)]
    return out, tr


@pytest.mark.parametrize("method", BUILTIN)
@pytest.mark.parametrize("bn", ["joint", "split"])
def test_a_graphed_step_trains_like_the_eager_step(method, bn):
    if bn == "split" and method != "cam_erasing":
        pytest.skip("append_bn only matters for the append step")
    eager, _ = losses(specs_for([method], bn=bn), "off")
    graphed, tr = losses(specs_for([method], bn=bn), "on")
    assert tr.runner.captured, "the step was not captured"
    for e, g in zip(eager, graphed, strict=True):
        assert g == pytest.approx(e, rel=2e-2)  # bf16 tolerance


def test_a_graphed_pack_captures_with_each_runs_own_generator():
    specs = specs_for(["plain", "random_erasing", "cutout", "hide_and_seek"], seeds=(0, 1))
    eager, _ = losses([s for s in specs], "off")
    graphed, tr = losses(specs_for(["plain", "random_erasing", "cutout", "hide_and_seek"],
                                   seeds=(0, 1)), "on")
    assert tr.model.stack_size == 8 and tr.runner.captured == {"replace"}
    for e, g in zip(eager, graphed, strict=True):
        assert g == pytest.approx(e, rel=2e-2)


def test_stacked_runs_equal_separate_runs_on_the_gpu_in_float64():
    specs = specs_for(["plain", "random_erasing", "cutout"], seeds=(0,), n_train=512, size=16)
    rd = load_run_data(specs[0], "cuda")
    packed = PackTrainer(specs, rd, "cuda", dtype=torch.float64)
    got = packed.train_epoch(0)
    for k, s in enumerate(specs):
        alone = PackTrainer([s], rd, "cuda", dtype=torch.float64)
        want = alone.train_epoch(0)[0]
        assert got[k]["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        mine = stack.split_state(packed.model.state_dict(), k, len(specs))
        for name, w in alone.model.state_dict().items():
            if w.is_floating_point():
                assert ((mine[name] - w).norm() / w.norm().clamp_min(1e-30)).item() <= 1e-5


@pytest.mark.parametrize("method", BUILTIN)
def test_no_step_synchronises_with_the_host(method):
    specs = specs_for([method])
    tr = PackTrainer(specs, load_run_data(specs[0], "cuda"), "cuda", precision="bf16")
    tr.model.train()
    for lane in tr.lanes:
        lane.perm.copy_(torch.randperm(lane.perm.shape[0], device="cuda",
                                       generator=lane.generator))
    kind = tr.kind(0)
    step = tr.step_for(kind)
    tr.opt.zero_grad(set_to_none=True)
    step()  # first step: lazy initialisation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tr.opt.zero_grad(set_to_none=True)
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_a_failed_capture_leaves_usable_generators_on_the_gpu():
    """A capture invalidated by a host sync (`.item()` inside the capture: "operation not
    permitted when stream is capturing") falls back to eager; the runs' generators and the
    device's default one still draw, and draw what an eager run draws."""
    from benchmark.training import graphs

    gen, ref = (torch.Generator(device="cuda").manual_seed(0) for _ in range(2))
    lines, calls = [], []
    r = graphs.StepRunner("auto", "cuda", [gen], lambda: None, warmup_steps=2,
                          log=lines.append)
    x = torch.zeros(64, device="cuda")

    def step():
        x.uniform_(generator=gen)
        if len(calls) == 2:  # the capture (warm-up steps 1 and 2 are plain)
            x.sum().item()
        calls.append(1)

    for _ in range(4):
        r("replace", step)
    assert len(lines) == 1 and "capture failed" in lines[0] and r.eager_kinds
    for _ in range(3):  # 2 warm-up steps, the eager fallback, the 4th step: 4 eager draws
        torch.empty(64, device="cuda").uniform_(generator=ref)
    ref_next = torch.empty(64, device="cuda").uniform_(generator=ref)
    assert torch.equal(x, ref_next)
    torch.rand(4, device="cuda", generator=gen)
    torch.rand(4, device="cuda")  # the default generator (registered implicitly, torch < 2.13)


@pytest.mark.parametrize("method", BUILTIN)
def test_every_builtin_step_passes_the_graph_self_check(method):
    specs = specs_for([method])
    tr = PackTrainer(specs, load_run_data(specs[0], "cuda"), "cuda", precision="bf16")
    tr.train_epoch(0)
    kind = tr.kind(0)
    assert tr.runner.captured == tr.runner.checked == {kind}, tr.runner.eager_kinds


def test_a_stateful_eraser_fails_the_graph_self_check_on_the_gpu(monkeypatch):
    from tests.training.test_self_check import Alternating

    plugins.register("alternating_gpu")(Alternating)
    try:
        specs = specs_for(["alternating_gpu"])
        lines = []
        tr = PackTrainer(specs, load_run_data(specs[0], "cuda"), "cuda", precision="bf16",
                         log=lines.append)
        tr.train_epoch(0)
        assert "self-check" in tr.runner.eager_kinds.get("replace", ""), lines
        assert len(lines) == 1 and "self-check" in lines[0]
    finally:
        plugins.unregister("alternating_gpu")


def test_trainers_in_a_row_do_not_pile_up_gpu_memory():
    """A dropped trainer frees its graph's memory pool at once (no reference cycle keeps it
    until the cycle collector runs), and one side stream per runner keeps the warm-up from
    holding a step's activations per stream."""
    import gc

    specs = specs_for(["cutout"])
    rd = load_run_data(specs[0], "cuda")
    after = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            tr = PackTrainer(specs, rd, "cuda", precision="bf16")
            tr.train_epoch(0)
            assert tr.runner.captured
            del tr
            torch.cuda.synchronize()
            after.append(torch.cuda.memory_allocated())
    finally:
        gc.enable()
    assert after[2] <= after[0] + 16 * 2**20, after
