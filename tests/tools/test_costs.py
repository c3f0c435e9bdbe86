"""Costs a user can plan with: records that sum every session of a run, and estimates that
count forked warm-ups and appended images right and give the same step kind the same cost."""

import textwrap
import time

import pytest
import torch

from benchmark import results
from benchmark.runner import hooks as runner_hooks
from benchmark.suites import plan
from benchmark.suites.config import load_suite
from benchmark.suites.expand import expand
from benchmark.tools import cost

TINY = """
name: tiny
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 4, batch_size: 32, milestones: [2], checkpoint_every: 1, eval_batch_size: 32}
models: [resnet20]
seeds: [0]
methods: [plain]
"""


def _hooks(n: int):
    """RunnerHooks of a pack of n runs, without a worker (only the cost bookkeeping is used)."""
    h = object.__new__(runner_hooks.RunnerHooks)
    h.specs, h.t0 = [None] * n, time.perf_counter()
    h.wall_before, h.kept = [0.0] * n, [None] * n
    return h


def test_a_resumed_runs_wall_time_sums_every_session_and_is_kept_for_the_next():
    from benchmark.training.resume import Progress

    resumed = Progress(epoch=2, train_time=40.0, extra={"wall_time_s": 55.0})
    forked = Progress(epoch=1, train_time=12.0)  # the warm-up it inherits
    h = _hooks(2)
    for k, (p, source) in enumerate([(resumed, "resume"), (forked, "fork")]):
        h.kept[k] = p.extra
        h.wall_before[k] = runner_hooks.RunnerHooks.wall_before_of(p, source)
    assert h.wall(0) >= 55.0 and resumed.extra["wall_time_s"] >= 55.0  # saved at the next ckpt
    assert h.wall(1) >= 12.0


def test_wall_time_is_never_below_train_time_in_a_record():
    assert results.build.run_costs(74.0, 78.7) == 78.7
    assert results.build.run_costs(80.0, 78.7) == 80.0
    assert results.build.run_costs(None, 78.7) is None


FIVE = TINY.replace(
    "methods: [plain]", "methods: [plain, random_erasing, cutout, hide_and_seek,\n"
    "          {name: cam_erasing, warmup_epochs: 2}]")


def _estimate(tmp_path, monkeypatch, text):
    suite = tmp_path / "five.yaml"
    suite.write_text(textwrap.dedent(text))
    runs = expand(load_suite(str(suite)))
    packs = plan.make_packs(runs, "off", "cpu")
    calls, timed = [], {}
    noise = iter(range(1, 100))

    def noisy_calibrate(jobs, device, sizes, precision="no", **kw):
        out = []  # each timing differs, as on a busy machine
        for specs, kinds, with_eval in jobs:
            calls.append((specs[0].run_id, tuple(kinds)))
            rates = {k: 0.01 * next(noise) for k in kinds}
            timed.update(rates)
            out.append({**rates, "eval": 0.5, "final": 0.25, "robustness": 0.125} if with_eval
                       else rates)
        return out

    monkeypatch.setattr(cost, "calibrate_together", noisy_calibrate)
    return runs, cost.estimate(packs, "cpu"), calls, timed


def test_methods_doing_the_same_step_kind_get_the_same_estimate(tmp_path, monkeypatch):
    runs, est, calls, _ = _estimate(tmp_path, monkeypatch, FIVE)
    seconds = {r.method.name: est[r.run_id]["seconds"] for r in runs}
    assert seconds["random_erasing"] == seconds["cutout"] == seconds["hide_and_seek"]
    timed = [k for _, kinds in calls for k in kinds]
    assert sorted(timed) == sorted(set(timed))  # each step kind timed once, not per eraser


def test_a_forked_run_counts_only_the_epochs_after_its_warm_up_at_2b_images(tmp_path,
                                                                            monkeypatch):
    runs, est, _, rate = _estimate(tmp_path, monkeypatch, FIVE)
    cam = next(r for r in runs if r.method.name == "cam_erasing")
    plain = next(r for r in runs if r.method.is_plain)
    assert cam.fork_from == plain.run_id
    per_epoch = (64 // 32) * 32
    assert est[plain.run_id]["images"] == 4 * per_epoch
    assert est[cam.run_id]["images"] == 2 * (2 * per_epoch)  # 2 append epochs of 2B per step
    # its time: 2 epochs of 2 append steps and evaluations, not the 2 warm-up epochs again,
    # then the CAM check and the robustness evaluation
    assert abs(est[cam.run_id]["seconds"] - (2 * 2 * rate["append"] + 2 * 0.5 + 0.25 + 0.125)) \
        < 1e-9


def test_each_runs_estimate_includes_its_own_end_of_run_robustness_evaluation(tmp_path,
                                                                             monkeypatch):
    """Every finished run is evaluated for robustness on its own (not shared by a pack): its
    whole cost is in each run's estimate, and in the part that does not scale with epochs."""
    two = FIVE.replace("seeds: [0]", "seeds: [0, 1]").replace(
        "methods: [plain, random_erasing, cutout, hide_and_seek,\n"
        "          {name: cam_erasing, warmup_epochs: 2}]", "methods: [plain]")
    suite = tmp_path / "two.yaml"
    suite.write_text(two)
    runs = expand(load_suite(str(suite)))
    monkeypatch.setattr(cost, "calibrate_together", lambda jobs, *a, **kw: [
        {"plain": 0.01, "eval": 0.5, "final": 0.25, "robustness": 3.0} for _ in jobs])
    packs = plan.make_packs(runs, 2, "cpu")
    assert [len(p.runs) for p in packs] == [2]
    est = cost.estimate(packs, "cpu")
    for r in runs:  # a pack of 2: 4 epochs of 2 steps and an evaluation, the CAM check, halved
        shared = (4 * 2 * 0.01 + 4 * 0.5 + 0.25) / 2
        assert abs(est[r.run_id]["seconds"] - (shared + 3.0)) < 1e-9
        assert abs(est[r.run_id]["fixed_seconds"] - (0.25 / 2 + 3.0)) < 1e-9


def test_the_robustness_evaluation_is_timed_on_the_real_call_and_scaled_to_the_test_set(
        tmp_path, monkeypatch):
    from benchmark import robustness

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("epochs: 4", "epochs: 1").replace("milestones: [2]",
                                                                      "milestones: [1]"))
    runs = expand(load_suite(str(suite)))
    seen, real = [], robustness.measure

    def spy(model, images, *a, **kw):
        seen.append((len(images), kw["batch_size"]))
        return real(model, images, *a, **kw)

    monkeypatch.setattr(robustness, "measure", spy)
    monkeypatch.setattr(cost, "ROBUSTNESS_IMAGES", 8)
    est = cost.estimate(plan.make_packs(runs, "off", "cpu"), "cpu")
    assert seen and all(n == 8 and b == 8 for n, b in seen)  # timed on 8 of the 32 test images
    assert est[runs[0].run_id]["fixed_seconds"] > 0


def test_an_estimate_off_cuda_projects_onto_named_gpus_from_counted_flops(tmp_path,
                                                                         monkeypatch):
    runs, est, _, _ = _estimate(tmp_path, monkeypatch, FIVE)
    flops = cost.counted_flops(runs, est)
    f = cost.forward_flops_per_image("resnet20", 10)
    assert 8e7 < f < 1e9  # ResNet20 on 32x32: about 41M multiply-adds, 2 FLOPs each
    small = cost.forward_flops_per_image("resnet20", 10, (3, 16, 16))  # the suite's images
    assert 0.2 < small / f < 0.3
    images = sum(e["images"] for e in est.values())
    assert flops >= 3 * small * images
    line = cost.projection(flops)
    assert line.startswith("projection (not measured): ") and "H100 SXM" in line
    assert "TFLOP counted (FlopCounterMode)" in line


def test_the_calibration_says_what_it_times_before_timing_it_on_one_torch_thread(tmp_path,
                                                                               monkeypatch):
    import torch

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("epochs: 4", "epochs: 2").replace("milestones: [2]",
                                                                      "milestones: [1]"))
    runs = expand(load_suite(str(suite)))
    packs = plan.make_packs(runs, "off", "cpu")
    said, threads = [], []
    real = cost.median_call

    def watched(fn, device, **kw):  # every timed call: how many torch threads, after the line
        threads.append((torch.get_num_threads(), len(said)))
        return real(fn, device, **kw)

    monkeypatch.setattr(cost, "median_call", watched)
    before = torch.get_num_threads()
    est = cost.estimate(packs, "cpu", log=said.append)
    assert said[0] == ("timing the plain step of a pack of 1 (resnet20) on cpu: 1 warm-up + "
                       f"{cost.TIMED_STEPS} timed steps of batch 32 ...")
    assert said[1].startswith("timing the evaluation, the end-of-run CAM check and the "
                              "robustness evaluation")
    assert threads and all(n == 1 for n, _ in threads)  # the step's work, no spinning threads
    assert threads[0][1] == 1  # the first line came before the first timed step
    assert torch.get_num_threads() == before  # restored
    assert est[runs[0].run_id]["seconds"] > 0


def test_a_resumed_runs_cpu_time_sums_every_session_and_the_record_keeps_it(tmp_path,
                                                                            monkeypatch):
    import torch

    from benchmark.training import train
    from benchmark.training.resume import progress

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("epochs: 4", "epochs: 2").replace("milestones: [2]",
                                                                    "milestones: [1]"))
    spec = expand(load_suite(str(suite)))[0]
    ticks = iter(range(10_000))  # the process's CPU clock: 1.5 s more at each reading
    monkeypatch.setattr(train.time, "process_time", lambda: 1.5 * next(ticks))

    class StopAfterOneEpoch(train.Hooks):
        def should_stop(self):
            return True

    torch.manual_seed(0)
    first = train.train_pack([spec], device="cpu", work_dir=tmp_path / "w",
                             hooks=StopAfterOneEpoch())[0]
    assert first["status"] == "interrupted" and first["progress"].cpu_time == 1.5
    out = train.train_pack([spec], device="cpu", work_dir=tmp_path / "w")[0]
    assert out["status"] == "finished" and out["resumed_from_epoch"] == 1
    assert out["cpu_time_s"] == 3.0  # both sessions, not the last one's 1.5
    rec = results.make_record(spec, out, wall_time_s=9.0, device="cpu", command="test")
    assert rec["cpu_time_s"] == 3.0 and results.schema.value_problem(rec) is None
    # on a GPU the cost is its wall-clock time: the host's CPU time is not kept
    assert results.build.cpu_cost("NVIDIA H100 80GB HBM3", 3.0) is None
    # a checkpoint written before CPU time was kept: unknown (the leaderboard falls back to
    # wall-clock time, labelled), never the last session's alone
    assert progress(spec, "resume", {"epoch": 1, "curves": {}, "occ": [], "train_time": 4.0,
                                     "images": 64.0}).cpu_time is None


def _paper_suite(tmp_path, name, root):
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(TINY.replace("data: {name: synthetic, options: {n_train: 64, n_test: 32, "
                                  "seed: 0, size: 16}}", f"data: {{name: {name}, root: {root}}}"))
    return expand(load_suite(str(suite)))


def test_dry_run_plans_fashion_mnist_at_1x28x28_and_the_files_own_size(tmp_path, monkeypatch,
                                                                       capsys):
    from benchmark.data import papers
    from benchmark.runner.dry_run import dry_run
    from tests.data.test_paper_sets import write_fashion

    write_fashion(tmp_path / "data", n_train=96, n_test=40)
    runs = _paper_suite(tmp_path, "fashion_mnist", tmp_path / "data")

    def no_loading(*a, **kw):
        raise AssertionError("a plan reads the headers only")

    monkeypatch.setattr(papers, "_read_idx", no_loading)
    seen = []

    def fake_calibrate(jobs, device, sizes, precision="no", *, shape, **kw):
        seen.append((sizes, shape))
        return [{**{k: 0.01 for k in kinds}, "eval": 0.5, "final": 0.0, "robustness": 0.0}
                for _, kinds, _ in jobs]

    monkeypatch.setattr(cost, "calibrate_together", fake_calibrate)
    dry_run(runs, plan.make_packs(runs, "off", "cpu"), "cpu", {r.run_id: None for r in runs},
            "no")
    assert seen == [((96, 40, 10, False), (1, 28, 28))]  # the files' sizes, grey 28x28
    out = capsys.readouterr().out
    assert (f"data: fashion_mnist, 1x28x28 images, 96 training and 40 test images (counted "
            f"from the headers of its files in {tmp_path / 'data'})") in out.splitlines()
    assert f"{4 * 96:,}" in out  # 4 epochs of the 96 images (3 batches of 32)


def test_svhn_is_planned_from_its_mat_headers_and_absent_data_at_the_published_sizes(tmp_path):
    from tests.data.test_paper_sets import write_svhn

    write_svhn(tmp_path / "svhn", n_train=48, n_test=16)
    facts = cost.dataset_facts(_paper_suite(tmp_path, "svhn", tmp_path / "svhn")[0])
    assert (facts.n_train, facts.n_test, facts.shape) == (48, 16, (3, 32, 32))
    absent = cost.dataset_facts(_paper_suite(tmp_path, "fashion_mnist", tmp_path / "none")[0])
    assert (absent.n_train, absent.n_test, absent.shape) == (60_000, 10_000, (1, 28, 28))
    assert absent.line() == ("data: fashion_mnist, 1x28x28 images, 60,000 training and 10,000 "
                             "test images (fashion_mnist's published sizes: its files are not "
                             f"in {tmp_path / 'none'})")


SPLIT = TINY.replace("methods: [plain]", "methods: [plain, random_erasing,\n"
                     "          {name: cam_erasing, warmup_epochs: 2},\n"
                     "          {name: cam_erasing, warmup_epochs: 2, append_bn: split, "
                     "label: cam_split}]")


def test_related_step_kinds_are_timed_in_one_calibration_in_turns(tmp_path, monkeypatch):
    suite = tmp_path / "split.yaml"
    suite.write_text(SPLIT)
    runs = expand(load_suite(str(suite)))
    invocations = []

    def one_call(jobs, device, sizes, precision="no", **kw):
        invocations.append([(specs[0].label, tuple(kinds), with_eval)
                            for specs, kinds, with_eval in jobs])
        return [{**{k: 0.01 for k in kinds}, "eval": 0.5, "final": 0.25, "robustness": 0.0}
                for _, kinds, _ in jobs]

    monkeypatch.setattr(cost, "calibrate_together", one_call)
    est = cost.estimate(plan.make_packs(runs, "off", "cpu"), "cpu")
    # one model, schedule and data: plain, replace and both append steps in one calibration,
    # each context's evaluation once
    assert invocations == [[("plain", ("plain",), True), ("random_erasing", ("replace",), False),
                            ("cam_erasing", ("append",), True), ("cam_split", ("append",), True)]]
    by = {r.label: est[r.run_id]["seconds"] for r in runs}
    assert by["cam_erasing"] == by["cam_split"] and by["plain"] == by["random_erasing"]


def test_interleaved_timing_takes_one_step_of_each_kind_per_round(monkeypatch):
    import torch

    order = []

    class Fake:
        def __init__(self, name):
            self.name, self.pos = name, torch.zeros(1)

        def step_for(self, kind):
            return kind

        def at_first_epoch_of(self, kind):  # the erasers of the kind's first epoch
            order.append((self.name, f"epoch of {kind}"))

        def runner(self, kind, step):
            order.append((self.name, kind))

    a, b = Fake("joint"), Fake("split")
    times = cost._interleaved([(a, "append"), (b, "append")], "cpu", warm=1, timed_steps=3,
                              clock="cpu")
    assert len(times) == 2
    assert order == ([("joint", "epoch of append"), ("joint", "append"),
                      ("split", "epoch of append"), ("split", "append")]  # set up, warm-up
                     + [("joint", "append"), ("split", "append")] * 3)  # then 3 rounds


RAMP = TINY.replace("epochs: 4,", "epochs: 3,").replace(
    "methods: [plain]", "methods: [{name: gridmask, warmup_epochs: 1, params: {ramp_epochs: 2}}]")


@pytest.mark.parametrize("clock", [None, "wall"])  # the speed table's path, the estimate's
def test_the_estimate_times_an_eraser_that_ramps_with_the_epoch_as_training_would(
        tmp_path, monkeypatch, clock):
    """A GridMask with `ramp_epochs` erases only through its epoch's eraser (`at_epoch`); the
    timing (dry-run estimate, speed table) takes every step kind with the erasers of that
    kind's first epoch, as the epoch loop would, instead of crashing on the bare eraser."""
    from plugins.gridmask import GridMask

    asked = []
    real = GridMask.at_epoch
    monkeypatch.setattr(GridMask, "at_epoch", lambda self, e: asked.append(e) or real(self, e))
    suite = tmp_path / "ramp.yaml"
    suite.write_text(textwrap.dedent(RAMP))
    (spec,) = expand(load_suite(str(suite)))
    out = cost.calibrate([spec], "cpu", cost.dataset_sizes(spec), steps_only=True,
                         timed_steps=1, clock=clock, shape=(3, 16, 16))
    assert out["plain"] > 0 and out["replace"] > 0
    assert asked[-1] == 1  # its replace step timed as in epoch 1, the first after the warm-up


def test_a_trainer_built_outside_the_epoch_loop_erases_as_in_epoch_0(tmp_path):
    """Any step taken before `train_epoch` (an op count, a probe) meets the eraser of epoch 0,
    not a ramped eraser that refuses to erase without its epoch."""
    from benchmark.training.pack import PackTrainer, first_epoch, load_run_data

    suite = tmp_path / "ramp.yaml"
    suite.write_text(textwrap.dedent(RAMP.replace("warmup_epochs: 1, ", "")))
    (spec,) = expand(load_suite(str(suite)))
    tr = PackTrainer([spec], load_run_data(spec, "cpu"), "cpu")
    try:
        tr.lanes[0].perm.copy_(torch.arange(tr.lanes[0].perm.shape[0]))
        assert tr.lanes[0].current.p == 0.0 and tr.lanes[0].current.ramp_epochs is None
        assert first_epoch([spec], "replace") == 0
        tr.step_for("replace")()  # erases (nothing yet, p = 0 in epoch 0) without raising
        tr.at_epoch(2)
        assert tr.lanes[0].current.p == spec.method.params.get("p", 0.8)
    finally:
        tr.close()
