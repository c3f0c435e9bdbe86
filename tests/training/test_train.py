"""The pack trainer: shared warm-ups, the append step's BatchNorm batch, graph fallback,
planning."""

import textwrap

import pytest
import torch

from benchmark import results
from benchmark.runner.main import main
from benchmark.suites import plan
from benchmark.suites.config import load_suite, parse_suite
from benchmark.suites.expand import apply_overrides, expand
from benchmark.training import graphs
from benchmark.training.pack import PackTrainer, load_run_data
from benchmark.training.step import batch_stats_only

TINY = """
name: fork
data: {name: synthetic, options: {n_train: 128, n_test: 64, seed: 0, size: 16}}
train: {epochs: 3, batch_size: 32, milestones: [2], checkpoint_every: 1, eval_batch_size: 64,
        share_warmup: SHARE}
models: [resnet20]
seeds: [0]
methods:
  - plain
  - {name: cam_erasing, warmup_epochs: 2}
"""


def tiny_run(tmp_path, share: bool):
    p = tmp_path / f"fork-{share}.yaml"
    p.write_text(textwrap.dedent(TINY).replace("SHARE", str(share).lower()))
    out = tmp_path / f"out-{share}"
    assert main(["--suite", str(p), "--out", str(out), "--no-wandb", "--no-progress"]) == 0
    recs = {r["run_id"]: r for r in results.load_records(out / "results" / "fork")}
    ckpt = out / "results" / "fork" / "checkpoints" / "resnet20__cam_erasing__s0.final.pt"
    return recs, torch.load(ckpt, weights_only=True)["state_dict"]


def test_a_forked_cam_run_is_bit_identical_to_the_same_run_from_scratch(tmp_path):
    forked, w_forked = tiny_run(tmp_path, True)
    scratch, w_scratch = tiny_run(tmp_path, False)
    f, s = forked["resnet20__cam_erasing__s0"], scratch["resnet20__cam_erasing__s0"]
    inherited = f["forked_from"]
    assert {k: inherited[k] for k in ("run_id", "epoch")} == {"run_id": "resnet20__plain__s0",
                                                             "epoch": 2}
    # the warm-up's training time it inherited, so the leaderboard's total counts it once
    assert 0 < inherited["train_time_s"] < f["train_time_s"]
    assert 0 < inherited["cpu_time_s"] < f["cpu_time_s"]
    assert s["forked_from"] is None
    assert f["curves"] == s["curves"]  # every epoch, the two warm-up epochs included
    assert f["occlusion"] == s["occlusion"]
    assert all(torch.equal(w_forked[k], v) for k, v in w_scratch.items())


def test_bh_sweep_shares_25_of_30_warmups():
    runs = expand(load_suite("bh_sweep"))
    forked = [r for r in runs if r.fork_from]
    assert len(runs) == 30 and len(forked) == 25
    providers = {r.fork_from for r in forked}
    assert providers == {f"resnet20__cam_erasing-b_h=0__s{s}" for s in range(5)}


def test_cam_runs_fork_from_the_suites_plain_run_of_the_same_seed():
    runs = expand(load_suite("thesis"))
    cam = [r for r in runs if r.method.name == "cam_erasing"]
    assert {r.fork_from for r in cam} == {f"{m}__plain__s{s}" for m in ("resnet20", "resnet32",
                                                                        "resnet44")
                                          for s in range(5)}
    plain = next(r for r in runs if r.run_id == "resnet20__plain__s0")
    assert plain.fork_epochs == [150]
    off = load_suite("thesis")
    off.train.share_warmup = False
    assert not any(r.fork_from for r in expand(off))


def append_spec(bn: str):
    s = parse_suite({"name": "a", "data": {"name": "synthetic",
                                           "options": {"n_train": 64, "n_test": 16, "size": 16}},
                     "train": {"epochs": 2, "batch_size": 16, "milestones": [1]},
                     "models": ["resnet20"],
                     "methods": [{"name": "cam_erasing", "warmup_epochs": 0, "append_bn": bn}]})
    return expand(s)[0]


def batches_seen(bn: str) -> list[tuple[int, bool]]:
    """(batch size, grad enabled) of every forward through the first conv in one append step."""
    spec = append_spec(bn)
    tr = PackTrainer([spec], load_run_data(spec, "cpu"), "cpu")
    seen = []
    tr.model.conv1.register_forward_hook(
        lambda _m, inp, _o: seen.append((inp[0].shape[0], torch.is_grad_enabled())))
    tr.model.train()
    tr.lanes[0].perm.copy_(torch.randperm(64, generator=tr.lanes[0].generator))
    tr.step_for("append")()
    return seen


def test_joint_append_step_trains_originals_and_copies_as_one_batch_of_2b():
    # the CAM comes from a no-grad forward of the 16 originals, then 32 images train together
    assert batches_seen("joint") == [(16, False), (32, True)]


def test_split_append_step_keeps_two_batchnorm_batches():
    assert batches_seen("split") == [(16, True), (16, True)]


def test_the_cam_forward_leaves_batchnorm_statistics_and_mode_alone():
    spec = append_spec("joint")
    tr = PackTrainer([spec], load_run_data(spec, "cpu"), "cpu")
    tr.model.train()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with torch.no_grad(), batch_stats_only(tr.model):
        tr.model(torch.randn(8, 3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert all(m.track_running_stats for m in tr.model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_graphs_are_off_on_the_cpu_and_on_is_an_error_there():
    assert graphs.use_graphs("auto", "cpu") is False
    assert graphs.use_graphs("off", "cuda") is False
    with pytest.raises(graphs.CaptureError, match="needs a CUDA device"):
        graphs.use_graphs("on", "cpu")
    with pytest.raises(ValueError, match="allowed: auto, on, off"):
        graphs.use_graphs("maybe", "cpu")


def test_the_planner_stacks_each_models_plain_and_baseline_runs_then_its_forked_cam_runs():
    runs = expand(load_suite("thesis"))
    packs = plan.make_packs(runs, "auto", "cuda")
    sizes = [len(p.runs) for p in packs]
    assert sum(sizes) == 75 and max(sizes) <= 16
    first = packs[0].runs
    assert {r.model for r in first} == {"resnet20"}
    assert {r.label for r in first} <= {"plain", "random_erasing", "cutout", "hide_and_seek"}
    cam = [p for p in packs if p.runs[0].method.name == "cam_erasing"]
    assert [len(p.runs) for p in cam] == [5, 5, 5]
    assert all(p.needs for p in cam) and packs.index(cam[0]) > packs.index(packs[0])
    assert sizes == [10, 10, 10, 10, 10, 10, 5, 5, 5]  # 20 per model, split evenly
    assert plan.make_packs(runs, "auto", "cpu")[0].runs == [runs[0]]  # the CPU does not stack
    assert [len(p.runs) for p in plan.make_packs(runs, 4, "cuda")][:5] == [4] * 5


def test_runs_that_cannot_stack_train_alone():
    runs = expand(load_suite("resnet18"))  # timm models
    assert all(len(p.runs) == 1 for p in plan.make_packs(runs, "auto", "cuda"))
    after = expand(apply_overrides(load_suite("cam_timing"), epochs=10))
    packs = plan.make_packs(after, "auto", "cuda")
    alone = [p for p in packs if p.runs[0].method.cam.source == "after"]
    assert alone and all(len(p.runs) == 1 for p in alone)


def test_a_model_whose_head_has_a_conv_after_the_pool_trains_runs_that_need_no_cam(
        monkeypatch):
    """timm/mobilenetv3_small_050 (GAP -> conv -> linear): plain and cutout runs never ask
    the free CAM path's probe, and they train; a CAM run's probe answers "no fast path"."""
    from benchmark import cam

    s = parse_suite({"name": "mnv3", "data": {"name": "synthetic", "options": {
                         "n_train": 16, "n_test": 8, "size": 16}},
                     "train": {"epochs": 1, "batch_size": 8, "milestones": [1]},
                     "models": ["timm/mobilenetv3_small_050"], "seeds": [0],
                     "methods": ["plain", "cutout"]})
    specs = expand(s)
    rd = load_run_data(specs[0], "cpu")
    probe = cam.fast_path_applies
    monkeypatch.setattr(cam, "fast_path_applies", lambda *a, **k: pytest.fail("probed"))
    for spec in specs:
        tr = PackTrainer([spec], rd, "cpu")
        assert tr.fast_cam is False
        row = tr.train_epoch(0)[0]
        assert row["train_loss"] == row["train_loss"]  # trained, finite
    assert probe(tr.model, input_size=(16, 16)) is False
