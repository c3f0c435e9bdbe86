"""The step batched across runs trains each run as if alone: lanes sharing an eraser are erased in
one call (their CAMs in one computation), each with its own generator's draws."""

import pytest
import torch

from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training import stack
from benchmark.training.pack import PackTrainer, load_run_data


def runs(methods):
    """Run i: method i with seed i; 4 steps of 8 images, 20x20 synthetic images (not 16: two
    lanes of 8 images would be a second dimension of 16 in a random fill's draw, and that
    group would be erased lane by lane)."""
    return [expand(parse_suite({
        "name": "batched", "data": {"name": "synthetic",
                                    "options": {"n_train": 32, "n_test": 16, "size": 20}},
        "train": {"epochs": 1, "batch_size": 8, "milestones": [1], "channels_last": False},
        "models": ["resnet20"], "seeds": [i], "methods": [m]}))[-1]
        for i, m in enumerate(methods)]


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def trains_like_separate_runs(specs, kind_check=None):
    rd = load_run_data(specs[0], "cpu")
    packed = PackTrainer(specs, rd, "cpu", dtype=torch.float64)
    got = packed.train_epoch(0)
    if kind_check is not None:
        kind_check(packed)
    for k, spec in enumerate(specs):
        alone = PackTrainer([spec], rd, "cpu", dtype=torch.float64)
        want = alone.train_epoch(0)[0]
        assert got[k]["train_loss"] == pytest.approx(want["train_loss"], rel=1e-9)
        assert got[k]["erased_fraction"] == want["erased_fraction"]  # the same masks
        assert ("object_hit_rate" in got[k]) == ("object_hit_rate" in want)
        if "object_hit_rate" in want:
            assert got[k]["object_hit_rate"] == pytest.approx(want["object_hit_rate"], rel=1e-12)
        mine = stack.split_state(packed.model.state_dict(), k, len(specs))
        for name, w in alone.model.state_dict().items():
            if w.is_floating_point():
                assert rel(mine[name], w) <= 1e-8, name


def test_lanes_sharing_an_eraser_erase_in_one_call_and_train_like_separate_runs():
    specs = runs(["cutout", {"name": "random_erasing", "fill": "random"}, "cutout", "plain",
                  {"name": "random_erasing", "fill": "random"}])

    def grouped(tr):
        groups = [g for g, _ in tr.step_for("replace")._groups()]
        assert groups == [(0, 2), (1, 4)]  # one call per eraser, not per lane

    trains_like_separate_runs(specs, grouped)


def test_cam_erasing_lanes_share_one_cam_computation_and_train_like_separate_runs():
    cam = {"name": "cam_erasing", "warmup_epochs": 0}
    specs = runs([cam, {**cam, "params": {"b_h": 0}}, cam])

    def grouped(tr):
        assert [g for g, _ in tr.step_for("append")._groups()] == [(0, 2), (1,)]

    trains_like_separate_runs(specs, grouped)
