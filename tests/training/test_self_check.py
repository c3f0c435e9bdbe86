"""The runtime self-check (training/selfcheck.py, training/graphs.py): untested hardware or a
plugin that breaks the contract can cost speed, never correctness. On CUDA it runs by default;
here `selfcheck.SELF_CHECK = True` switches it on for the CPU, `FakeCuda` stands in for the
graphs, and a deliberately stateful eraser (one that keeps a Python counter, against the plugin
contract) forces a mismatch."""

import pytest
import torch

import plugins
from benchmark.results.build import make_record
from benchmark.training import selfcheck
from benchmark.training.pack import PackTrainer, load_run_data
from benchmark.training.train import train_pack
from tests.training.test_graphs import FakeCuda, specs_for, state_of


class Alternating(plugins.Eraser):
    """Erases every image on odd calls, none on even ones: its mask depends on a Python
    counter, not on its tensors and generator. A CUDA graph freezes the mask of the call made
    at capture; the eager step makes another."""

    def __init__(self):
        self.calls = 0

    def forward(self, images, *, cam=None, generator=None):
        self.calls += 1
        b, _, h, w = images.shape
        return torch.full((b, 1, h, w), self.calls % 2 == 1, device=images.device)


class SharedCounter(plugins.Eraser):
    """The same, with the counter shared by every instance (a class attribute): a run stacked
    in a pack and the same run alone see different counts."""

    calls = 0

    def forward(self, images, *, cam=None, generator=None):
        SharedCounter.calls += 1
        b, _, h, w = images.shape
        return torch.full((b, 1, h, w), SharedCounter.calls % 2 == 1, device=images.device)


@pytest.fixture
def stateful(monkeypatch):
    plugins.register("alternating_test")(Alternating)
    plugins.register("shared_counter_test")(SharedCounter)
    monkeypatch.setattr(selfcheck, "SELF_CHECK", True)
    yield
    plugins.unregister("alternating_test")
    plugins.unregister("shared_counter_test")


def outcomes(specs, tmp_path, name="out"):
    lines = []
    out = train_pack(specs, device="cpu", work_dir=tmp_path / name, log=lines.append)
    return out, lines


def test_a_stateful_eraser_fails_the_graph_self_check_and_its_run_continues_eagerly(
        monkeypatch, tmp_path, stateful):
    fake = FakeCuda(monkeypatch)
    specs = specs_for(["alternating_test"], n_train=48)  # 6 steps: 3 warm-up, capture, 2 more
    (out,), lines = outcomes(specs, tmp_path)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"note: {specs[0].run_id}: the 'replace' step runs eagerly, not "
                               "as a CUDA graph: self-check: the graphed step differs from the "
                               "eager step (")
    assert "loss" in lines[0] and "parameter update differs by" in lines[0]
    print(lines[0])
    # one replay (the check's), then every step eagerly, to the end of the run
    assert fake.captures == 1 and fake.replays == 1
    assert out["status"] == "finished" and out["graphs"] == []
    assert out["graphs_eager"]["replace"].startswith("self-check: the graphed step differs")
    rec = make_record(specs[0], out, wall_time_s=1.0, device="cpu", command="test")
    assert rec["graphs"] == [] and rec["graphs_eager"] == out["graphs_eager"]
    assert rec["unstacked"] is None and "unstacked" not in out


def test_a_passing_graph_self_check_changes_no_number(monkeypatch):
    FakeCuda(monkeypatch)
    specs = specs_for(["random_erasing"], n_train=48)
    rd = load_run_data(specs[0], "cpu")
    got = {}
    for check in (False, True):
        monkeypatch.setattr(selfcheck, "SELF_CHECK", check)
        tr = PackTrainer(specs, rd, "cpu")
        assert tr.runner.self_check is check
        got[check] = (tr.train_epoch(0)[0], state_of(tr), tr.lanes[0].generator.get_state(),
                      tr.runner)
    (m0, s0, g0, r0), (m1, s1, g1, r1) = got[False], got[True]
    assert r1.checked == {"replace"} and r1.captured == r0.captured == {"replace"}
    assert not r1.eager_kinds
    assert {k: v for k, v in m1.items() if k != "_acc"} == {
        k: v for k, v in m0.items() if k != "_acc"}
    assert all(torch.equal(s1[n], s0[n]) for n in s0) and torch.equal(g1, g0)


def test_a_stacked_run_whose_step_differs_from_its_own_trains_alone(tmp_path, stateful):
    specs = specs_for(["shared_counter_test", "cutout"], n_train=24)
    out, lines = outcomes(specs, tmp_path)
    stateful_run = specs[0].run_id
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"note: pack of 2: {stateful_run} trains alone, not stacked: "
                               "self-check: its stacked step differs from its own (")
    print(lines[0])
    assert [o["status"] for o in out] == ["finished", "finished"]
    assert [o["pack_size"] for o in out] == [1, 1]
    assert out[0]["unstacked"].startswith("self-check: its stacked step differs from its own")
    assert "unstacked" not in out[1]  # it trained alone because the other left
    rec = make_record(specs[0], out[0], wall_time_s=1.0, device="cpu", command="test")
    assert rec["unstacked"] == out[0]["unstacked"] and rec["pack_size"] == 1


def test_a_passing_stack_self_check_changes_no_number(monkeypatch):
    specs = specs_for(["random_erasing", "cutout"], n_train=24)
    rd = load_run_data(specs[0], "cpu")
    got = {}
    for check in (False, True):
        monkeypatch.setattr(selfcheck, "SELF_CHECK", check)
        tr = PackTrainer(specs, rd, "cpu")
        cpu_rng = torch.get_rng_state()
        assert tr.check_stack(0) == {}
        assert torch.equal(torch.get_rng_state(), cpu_rng)
        got[check] = ([{k: v for k, v in m.items() if k != "_acc"} for m in tr.train_epoch(0)],
                      state_of(tr))
    assert got[True][0] == got[False][0]
    assert all(torch.equal(got[True][1][n], got[False][1][n]) for n in got[False][1])


class EveryOther(plugins.Eraser):
    """Erases the top-left 8 x 8 on odd calls only (an instance counter, against the contract):
    the tester's plugin. Each run has its own instance, called once a step, stacked or alone."""

    def __init__(self):
        self.calls = 0

    def forward(self, images, *, cam=None, generator=None):
        self.calls += 1
        b, _, h, w = images.shape
        m = torch.zeros(b, 1, h, w, dtype=torch.bool, device=images.device)
        if self.calls % 2 == 1:
            m[..., :8, :8] = True
        return m


def _alone_f64(spec, rd, epochs):
    tr = PackTrainer([spec], rd, "cpu", dtype=torch.float64)
    rows = [tr.train_epoch(e)[0] for e in range(epochs)]
    return rows, tr


@pytest.mark.parametrize("methods", [
    ["every_other_test", "cutout", "cutout"],  # seed 1 of the stateful eraser with cutouts
    ["every_other_test", "every_other_test", "cutout", "cutout"],  # t18b's pack of 4
    ["alternating_test", "cutout"],  # a counter that flips every call
])
def test_a_passing_self_check_leaves_a_stateful_erasers_numbers_unchanged(
        monkeypatch, stateful, methods):
    """float64: after the stack self-check (passed, or its runs excluded), every stacked run
    trains exactly as the same run alone without the check (a trial step or a grouping probe
    that advanced an eraser's counter made the stateful run erase on the other steps)."""
    plugins.register("every_other_test")(EveryOther)
    try:
        by = {}
        for s in specs_for(list(dict.fromkeys(methods)), n_train=32, seeds=(0, 1), epochs=2):
            by.setdefault(s.method.name, []).append(s)
        by[methods[0]].reverse()  # the stateful eraser's seed 1 first, as in t18b's pack
        pack = [by[name].pop(0) for name in methods]
        rd = load_run_data(pack[0], "cpu")
        tr = PackTrainer(pack, rd, "cpu", dtype=torch.float64)
        bad = tr.check_stack(0)
        assert all(not isinstance(lane.eraser, EveryOther) or lane.eraser.calls == 0
                   for lane in tr.lanes)
        got = [tr.train_epoch(e) for e in range(2)]
        for k, spec in enumerate(pack):
            if k in bad:
                continue
            want, alone = _alone_f64(spec, rd, 2)
            for e in range(2):
                g, w = got[e][k], want[e]
                assert g["erased_fraction"] == w["erased_fraction"], (spec.run_id, e)
                assert g["train_loss"] == pytest.approx(w["train_loss"], rel=1e-9, abs=0), (
                    spec.run_id, e)
        assert len(bad) < len(pack)
    finally:
        plugins.unregister("every_other_test")


def test_the_grouping_probe_never_calls_a_lanes_own_eraser(stateful):
    from benchmark.training import draws

    e = Alternating()
    draws._PROBED.clear()
    draws._probe(e, "zero", 2, 4, (3, 8, 8))
    assert e.calls == 0


def test_a_failed_graph_self_check_leaves_the_numbers_of_an_eager_run(monkeypatch, stateful):
    """The graph self-check catches the stateful eraser, then takes that step again from the
    whole state before the capture (its Python state too): the run's numbers are exactly those
    of the same run trained eagerly, without graphs or check."""
    specs = specs_for(["alternating_test"], n_train=48)
    rd = load_run_data(specs[0], "cpu")
    monkeypatch.setattr(selfcheck, "SELF_CHECK", False)
    eager = PackTrainer(specs, rd, "cpu")
    want = eager.train_epoch(0)[0]
    monkeypatch.setattr(selfcheck, "SELF_CHECK", True)
    FakeCuda(monkeypatch)
    tr = PackTrainer(specs, rd, "cpu", log=lambda m: None)
    got = tr.train_epoch(0)[0]
    assert "replace" in tr.runner.eager_kinds
    assert {k: v for k, v in got.items() if k != "_acc"} == {
        k: v for k, v in want.items() if k != "_acc"}
    assert all(torch.equal(a, b) for a, b in zip(state_of(tr).values(),
                                                  state_of(eager).values(), strict=True))
    assert tr.lanes[0].eraser.calls == eager.lanes[0].eraser.calls


def _warm(methods, warmup_epochs=1, epochs=2):
    return specs_for([{"name": m, "warmup_epochs": warmup_epochs} for m in methods], n_train=24,
                     epochs=epochs)


def test_a_stateful_eraser_that_starts_after_a_plain_warmup_is_caught_at_its_first_erasing_epoch(
        tmp_path, stateful, monkeypatch):
    """The pack's first epoch is a plain warm-up step (no eraser is called): the stack check
    runs again before the first erasing epoch, catches the stateful run there, and it trains
    alone from that epoch on; the warm-up it trained stacked is kept, not trained again."""
    specs = _warm(["shared_counter_test", "cutout"])
    out, lines = outcomes(specs, tmp_path)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"note: pack of 2: {specs[0].run_id} trains alone, not stacked: "
                               "self-check: its stacked step differs from its own (")
    assert lines[0].endswith("; alone from epoch 2")
    print(lines[0])
    assert [o["status"] for o in out] == ["finished", "finished"]
    assert [o["pack_size"] for o in out] == [1, 1]
    assert out[0]["unstacked"].endswith("; alone from epoch 2")
    assert "unstacked" not in out[1]
    assert [o["curves"]["epoch"] for o in out] == [[1, 2], [1, 2]]
    monkeypatch.setattr(selfcheck, "SELF_CHECK", False)
    unchecked, _ = outcomes(specs, tmp_path, "unchecked")  # the pack stacked throughout
    for o, u in zip(out, unchecked, strict=True):
        assert o["curves"]["train_loss"][0] == u["curves"]["train_loss"][0]  # the warm-up
        assert o["curves"]["test_error"][0] == u["curves"]["test_error"][0]


def test_a_passing_stack_check_at_the_first_erasing_epoch_changes_no_number(tmp_path,
                                                                            monkeypatch):
    specs = _warm(["random_erasing", "cutout"])
    got = {}
    for check in (False, True):
        monkeypatch.setattr(selfcheck, "SELF_CHECK", check)
        out, lines = outcomes(specs, tmp_path, f"check-{check}")
        assert lines == [] and [o["pack_size"] for o in out] == [2, 2]
        got[check] = [o["curves"] for o in out]
    assert got[True] == got[False]


def test_a_runs_state_is_a_copy_that_training_on_does_not_change():
    """run_state's momentum buffers are copies, not views of the live ones (on the CPU
    `.cpu()` is the tensor itself): a state taken mid-training, for the stack check's runs
    alone or a split pack, keeps the values it had."""
    specs = specs_for(["cutout", "random_erasing"], n_train=24, epochs=2)
    tr = PackTrainer(specs, load_run_data(specs[0], "cpu"), "cpu")
    tr.train_epoch(0)
    state = tr.run_state(0)
    kept = [m.clone() for m in state["momentum"]]
    tr.train_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(state["momentum"], kept, strict=True))
