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
    """At its default budget (115 s), on a busy 2-core CPU: a speed table with measured rows
    (its op counts left out, and said so), the smoke and study records and leaderboards."""
    import time

    out = tmp_path / "check"
    t0 = time.monotonic()
    gpu_check.main(["--dry", "--out", str(out)])
    assert time.monotonic() - t0 < 120
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
        speed = tar.extractfile("leaderboards/speed.md").read().decode()
        summary = tar.extractfile("logs/summary.txt").read().decode()
    print(summary)
    assert "| resnet20 | plain | (b) eager, on the device | " in speed  # a measured row
    assert "op counts: not counted (--op-count-k 0)" in speed
    assert any(n.startswith("synthetic_study/results/") and n.endswith(".json")
               for n in names), summary
    assert any(n.startswith("smoke/results/") and n.endswith(".json") for n in names), names
    assert any(n.startswith("smoke/leaderboards/") for n in names), names
    assert [line.split(":")[0] for line in summary.splitlines()] == [
        f"step {s}" for s in ("gpu_tests", "speed", "smoke", "size_study", "synthetic_study")]
    assert not any(n.startswith("leaderboards/") and n != "leaderboards/speed.md"
                   for n in names)  # only this check's own files


def test_a_step_stopped_after_finishing_its_work_is_not_a_failure(tmp_path):
    from benchmark.tools.gpu_check import finished_work

    log = tmp_path / "step.log"
    log.write_text("...\n61 skipped, 224 deselected in 4.25s\n")
    assert finished_work("gpu_tests", log) is True
    log.write_text("...\n1 failed, 60 passed in 4.25s\n")
    assert finished_work("gpu_tests", log) is False  # a real failure stays a failure
    log.write_text("tests/x.py ..\n")
    assert finished_work("gpu_tests", log) is None  # cut short: not done
    log.write_text("SIGTERM arrived after every run of smoke had its record\n")
    assert finished_work("smoke", log) is True
    log.write_text("epoch 1 ...\n")
    assert finished_work("synthetic_study", log) is None
    log.write_text("row: ...\nStopped by SIGTERM after 2 rows\nwrote /x/speed.md\n")
    assert finished_work("speed", log) is None
    log.write_text('{"min_epochs": 1}\ntiming the plain step ...\n')
    assert finished_work("size_study", log) is None


def test_the_study_runs_at_its_fewest_epochs_when_the_sizing_was_stopped(tmp_path,
                                                                        monkeypatch):
    ran = {}

    def fake_run(step, log, seconds, env):
        log.write_text('{"min_epochs": 2}\ntiming the plain step ...\n'
                       if step.name == "size_study" else "")
        ran[step.name] = step.cmd
        return (-15, True) if step.name == "size_study" else (0, False)

    monkeypatch.setattr(gpu_check, "run_child", fake_run)
    steps = [Step("size_study", ["x"], 50, 5, 10), Step("synthetic_study", None, None, 15, 10)]
    plan = gpu_check._Plan(steps, ["launch"], ["--suite", "s"], ["--no-wandb"], 300)
    summary, codes, terminated = gpu_check._run_steps(plan, lambda: 200.0, tmp_path, tmp_path,
                                                      {})
    assert ran["synthetic_study"][ran["synthetic_study"].index("--epochs") + 1] == "2"
    assert "at its fewest epochs, 2" in summary[1], summary
    assert codes["size_study"] == -15 and not terminated


@pytest.mark.slow
def test_sigterm_to_the_check_still_writes_its_summary_and_tarball(tmp_path, sigterm_at):
    import sys

    out = tmp_path / "check"
    _, rest, code = sigterm_at([sys.executable, "-m", "benchmark.tools.gpu_check", "--dry",
                                "--budget", "120", "--out", str(out)],
                               "$ ", env={"TMPDIR": str(tmp_path)})  # the first step runs
    assert code == 143, rest
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("step gpu_tests: stopped by SIGTERM to gpu_check"), summary
    assert "step synthetic_study: not run (gpu_check got SIGTERM)" in summary
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        assert "logs/summary.txt" in tar.getnames()
    assert not list(tmp_path.glob("erasebench-gpu-check-*"))  # its work folder is removed


def test_the_check_writes_into_the_untracked_runs_folder_by_default():
    assert gpu_check._parser().parse_args([]).out == "runs/gpu_check"


def _fake_check(monkeypatch, took: dict, sized: dict):
    """gpu_check's steps replaced by instant fakes on a fake clock: step `name` "takes"
    took[name] seconds; the sizing prints `sized`. Returns {step: its command}."""
    import json
    from types import SimpleNamespace

    now = [0.0]
    ran = {}

    def fake_run(step, log, seconds, env):
        ran[step.name] = step.cmd
        log.write_text(json.dumps(sized) + "\n" if step.name == "size_study" else "ok\n")
        now[0] += min(took.get(step.name, 1.0), seconds)
        return 0, False

    monkeypatch.setattr(gpu_check, "run_child", fake_run)
    monkeypatch.setattr(gpu_check, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return ran


def test_the_dry_check_on_a_slow_machine_plans_at_least_one_epoch_of_the_study(tmp_path,
                                                                             monkeypatch):
    """t18b's loaded machine: the steps took 5, 6, 17 and 5 s and an epoch of the study 0.54 s;
    the default --dry budget (115 s) leaves the study 56 s. Sized with the GPU's 30 s start-up
    and a half of it kept, it planned no epoch; with the start-up measured here it runs."""
    ran = _fake_check(monkeypatch, {"gpu_tests": 5, "speed": 6, "smoke": 17, "size_study": 5},
                      {"per_epoch_s": 0.5388, "fixed_s": 0.0767, "min_epochs": 1,
                       "clock": "cpu"})
    code = gpu_check.main(["--dry", "--out", str(tmp_path / "check")])
    study = ran.get("synthetic_study")
    assert study is not None, ran
    assert int(study[study.index("--epochs") + 1]) >= 1
    assert code == 0


def test_a_study_that_does_not_fit_says_what_did_not_fit(tmp_path, monkeypatch):
    _fake_check(monkeypatch, {"gpu_tests": 5, "speed": 6, "smoke": 17, "size_study": 5},
                {"per_epoch_s": 30.0, "fixed_s": 2.0, "min_epochs": 2, "clock": "cpu"})
    gpu_check.main(["--dry", "--out", str(tmp_path / "check")])
    line = (tmp_path / "check" / "summary.txt").read_text().splitlines()[-1]
    assert line.startswith("step synthetic_study: skipped (")
    assert "17 s start-up" in line and "fewer than the 2 epochs of 30 s the study needs" in line
    print(line)


def test_a_stray_old_log_in_out_is_not_in_the_tarball(tmp_path, monkeypatch):
    _fake_check(monkeypatch, {}, {"per_epoch_s": 0.1, "fixed_s": 0.0, "min_epochs": 1,
                                  "clock": "cpu"})
    out = tmp_path / "check"
    out.mkdir()
    (out / "old_h100.log").write_text("graphed: 0.10 ms/step (from an old check)\n")
    gpu_check.main(["--dry", "--out", str(out)])
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
    assert "logs/old_h100.log" not in names
    assert {f"logs/{s}.log" for s in ("gpu_tests", "speed", "smoke", "size_study",
                                      "synthetic_study")} <= set(names), names


def test_the_dry_speed_step_makes_no_op_counts_so_its_rows_come_first(tmp_path):
    """On a busy 2-core CPU the K = 16 op counts took longer than the dry speed step's share,
    before its first row: --dry leaves them out (its table says so); the GPU check keeps them."""
    dry = {s.name: s for s in gpu_check._plan(True, 115, tmp_path).steps}
    real = {s.name: s for s in gpu_check._plan(False, 470, tmp_path).steps}
    cmd = dry["speed"].cmd
    assert cmd[cmd.index("--op-count-k") + 1] == "0"
    assert "--op-count-k" not in real["speed"].cmd  # K = 16, the default
