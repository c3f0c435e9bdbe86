"""train_one is the reference for one run; the pack executor is held to it: a pack of one,
trained eagerly on the CPU, gives the same bits (curves, final weights, record metrics) for
every step kind."""

import pytest
import torch

from benchmark import results
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training.one import train_one
from benchmark.training.train import Hooks, train_pack

DATA: dict = {}  # the synthetic set, made once for the whole file (load_run_data's cache)
TIMES = {"train_time_s", "cpu_time_s", "images_per_s", "checkpoint", "progress"}
METHODS = {
    "plain": "plain",
    "cutout": {"name": "cutout", "params": {"size": 6}},
    "random_erasing": "random_erasing",
    "cam_replace": {"name": "cam_erasing", "mode": "replace", "warmup_epochs": 1},
    "append_joint": {"name": "cam_erasing", "warmup_epochs": 1, "append_bn": "joint"},
    "append_split": {"name": "cam_erasing", "warmup_epochs": 1, "append_bn": "split"},
    "predicted_target": {"name": "cam_erasing", "warmup_epochs": 1,
                         "cam": {"target": "predicted"}},
    "generic_cam_layer2": {"name": "cam_erasing", "warmup_epochs": 1, "append_bn": "split",
                           "cam": {"layer": "layer2"}},
}


def one_spec(method, epochs=2, **train):
    s = parse_suite({"name": "one", "data": {"name": "synthetic", "options": {
        "n_train": 16, "n_test": 8, "size": 16, "seed": 0}},
        "train": {"epochs": epochs, "batch_size": 8, "milestones": [1], "eval_batch_size": 8,
                  "checkpoint_every": 1, **train},
        "models": ["resnet20"], "seeds": [3], "methods": [method]})
    return expand(s)[-1]


def same_outcome(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "finished"
    assert {k: v for k, v in a.items() if k not in TIMES} == \
        {k: v for k, v in b.items() if k not in TIMES}
    wa = torch.load(a["checkpoint"], weights_only=True)["state_dict"]
    wb = torch.load(b["checkpoint"], weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_pack_of_one_trains_bit_identically_to_train_one(name, tmp_path):
    spec = one_spec(METHODS[name])
    ref = train_one(spec, work_dir=tmp_path / "one", data_cache=DATA)
    packed = train_pack([spec], device="cpu", work_dir=tmp_path / "pack", data_cache=DATA)[0]
    same_outcome(ref, packed)
    assert ref["curves"]["epoch"] == [1, 2]
    rec_one, rec_pack = (results.make_record(spec, o, wall_time_s=1.0, device="cpu",
                                             command="test") for o in (ref, packed))
    drop = {"date", "versions", "git_commit", "wall_time_s"} | TIMES
    assert {k: v for k, v in rec_one.items() if k not in drop} == \
        {k: v for k, v in rec_pack.items() if k not in drop}


def test_train_one_records_where_its_cam_came_from(tmp_path):
    fast = train_one(one_spec(METHODS["append_joint"]), work_dir=tmp_path / "a",
                     data_cache=DATA)
    generic = train_one(one_spec(METHODS["generic_cam_layer2"]), work_dir=tmp_path / "b",
                        data_cache=DATA)
    assert (fast["cam_path"], generic["cam_path"]) == ("fast", "generic")
    assert fast["curves"]["erased_fraction"][0] == 0.0 < fast["curves"]["erased_fraction"][1]


class StopAfter(Hooks):
    def __init__(self, epoch):
        self.epoch, self.seen = epoch, 0

    def epoch_end(self, k, row):
        self.seen = row["epoch"]

    def should_stop(self):
        return self.seen == self.epoch


@pytest.mark.parametrize("second", ["one", "pack"])
def test_a_run_stopped_by_train_one_resumes_on_either_path_bit_identically(second, tmp_path):
    spec = one_spec(METHODS["append_joint"], epochs=3, milestones=[2])
    ref = train_one(spec, work_dir=tmp_path / "ref", data_cache=DATA)
    stopped = train_one(spec, work_dir=tmp_path / "w", hooks=StopAfter(1),
                        data_cache=DATA)
    assert stopped["status"] == "interrupted" and stopped["epoch"] == 1
    if second == "one":
        resumed = train_one(spec, work_dir=tmp_path / "w", data_cache=DATA)
    else:
        resumed = train_pack([spec], device="cpu", work_dir=tmp_path / "w", data_cache=DATA)[0]
    assert resumed["resumed_from_epoch"] == 1
    ref["resumed_from_epoch"] = 1
    same_outcome(ref, resumed)
    assert not (tmp_path / "w" / f"{spec.run_id}.resume.pt").exists()


def test_a_non_finite_loss_fails_the_run_with_its_epoch(tmp_path):
    out = train_one(one_spec("plain", lr=1e30), work_dir=tmp_path, data_cache=DATA)
    assert out["status"] == "failed" and out["epoch"] == 1
    assert "non-finite training loss" in out["reason"]
