"""The prepared GPU check: a budget that holds with every step's grace, a study sized to finish
inside it, and a --dry run of the same orchestration on the CPU that brings numbers back."""

import tarfile

import pytest

from benchmark.tools import gpu_check
from benchmark.tools.gpu_check import Step, step_seconds, study_epochs


def test_the_budget_reserves_each_steps_grace_and_the_later_steps_least_time():
    steps = [Step("a", ["x"], 100, 10, 20), Step("b", ["x"], 60, 90, 20),
             Step("study", None, None, 90, 20)]
    left = 400.0
    spent = 0.0
    for i, s in enumerate(steps):  # every step runs to its deadline and then its whole grace
        given = step_seconds(steps, i, left - spent)
        assert given >= s.least
        spent += given + s.grace
    assert spent <= left
    assert step_seconds(steps, 0, 100.0) < steps[0].least  # too little: skipped, not overrun


def test_the_study_is_sized_to_finish_inside_its_time():
    sized = {"per_epoch_s": 2.0, "fixed_s": 5.0, "min_epochs": 2, "clock": "wall"}
    seconds = 200.0
    epochs = study_epochs(sized, seconds, cap=300)
    assert epochs >= sized["min_epochs"]
    assert gpu_check.STARTUP_S + sized["fixed_s"] + epochs * sized["per_epoch_s"] <= seconds
    assert study_epochs(sized, seconds, cap=8) == 8  # never more than the schedule's cap
    assert study_epochs(sized, 40.0, cap=300) is None  # not even the fewest epochs fit
    assert study_epochs(None, seconds, cap=300) is None


@pytest.mark.slow
def test_the_dry_check_brings_back_a_speed_table_smoke_records_and_a_leaderboard(tmp_path):
    out = tmp_path / "check"
    gpu_check.main(["--dry", "--out", str(out), "--budget", "240"])
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
        speed = tar.extractfile("leaderboards/speed.md").read().decode()
        summary = tar.extractfile("logs/summary.txt").read().decode()
    assert "| resnet20 | plain | (b) eager, on the device | " in speed  # a measured row
    assert any(n.startswith("smoke/results/") and n.endswith(".json") for n in names), names
    assert any(n.startswith("smoke/leaderboards/") for n in names), names
    assert [line.split(":")[0] for line in summary.splitlines()] == [
        f"step {s}" for s in ("gpu_tests", "speed", "smoke", "size_study", "synthetic_study")]
    assert not any(n.startswith("leaderboards/") and n != "leaderboards/speed.md"
                   for n in names)  # only this check's own files
