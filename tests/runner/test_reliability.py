"""A leaderboard only ever shows runs of the config it names; failures are results; many workers
share one results folder; signals and damaged files never cost computed work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import plugins
from benchmark import cli
from benchmark.runner import claims
from benchmark.suites.config import ConfigError, parse_suite
from benchmark.suites.expand import expand

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
name: tiny
data: {name: synthetic, options: {n_train: 128, n_test: 64, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 64}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


def test_a_nan_run_is_recorded_as_failed_shown_as_failed_and_not_retried(
        run, records, suite_file, tmp_path, capsys):
    p = suite_file(SUITE.replace("epochs: 2,", "epochs: 2, lr: 1.0e+30,"))
    out = tmp_path / "out"
    assert run("--suite", p, "--out", out) == 1
    rec = records(out)["resnet20__plain__s0"]
    assert rec["status"] == "failed" and rec["failure"]["epoch"] == 1
    assert "non-finite training loss" in rec["failure"]["reason"]
    path = out / "results" / "tiny" / "resnet20__plain__s0.json"
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in a record"))
    board = (out / "leaderboards" / "tiny.md").read_text()
    assert "| resnet20 | failed (1 of 1) | failed (1 of 1) |" in board
    assert "## Failed runs" in board and "non-finite training loss" in board
    capsys.readouterr()
    assert run("--suite", p, "--out", out) == 1  # kept as a result: not trained again
    again = capsys.readouterr()
    assert "--retry-failed" in again.out and "failed in epoch" not in again.err
    assert run("--suite", p, "--out", out, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("resnet20__plain__s0 ") and ln.split()[-1] == "failed" for ln in lines)
    assert "0 already done, 2 failed (--retry-failed trains them again)" in lines[-1]
    assert run("--suite", p, "--out", out, "--retry-failed") == 1
    assert "run resnet20__plain__s0 failed in epoch 1" in capsys.readouterr().err


def test_an_exception_in_a_run_is_a_failed_record_with_its_reason(
        run, records, suite_file, tmp_path):
    @plugins.register("always_fails")
    class AlwaysFails(plugins.Eraser):
        def forward(self, images, *, cam=None, generator=None):
            raise RuntimeError("this eraser is broken")

    try:
        p = suite_file(SUITE.replace("methods: [plain, cutout]", "methods: [plain, always_fails]"))
        out = tmp_path / "out"
        assert run("--suite", p, "--out", out) == 1
        recs = records(out)
        assert recs["resnet20__plain__s0"]["status"] == "finished"  # the others keep theirs
        bad = recs["resnet20__always_fails__s0"]
        assert bad["status"] == "failed" and "this eraser is broken" in bad["failure"]["reason"]
        assert "this eraser is broken" in (out / "leaderboards" / "tiny.md").read_text()
    finally:
        plugins.unregister("always_fails")


def test_a_rerun_with_changed_epochs_stops_before_training_naming_the_key(
        run, records, suite_file, tmp_path, capsys):
    p = suite_file()
    out = tmp_path / "out"
    assert run("--suite", p, "--out", out, "--erasers", "plain") == 0
    capsys.readouterr()
    assert run("--suite", p, "--out", out, "--erasers", "plain", "--epochs", "3") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.epochs: 2 -> 3" in err and "--rerun-changed" in err
    assert records(out)["resnet20__plain__s0"]["epochs"] == 2  # nothing was trained
    assert run("--suite", p, "--out", out, "--erasers", "plain", "--epochs", "3",
               "--rerun-changed") == 0
    assert records(out)["resnet20__plain__s0"]["epochs"] == 3
    assert list((out / "results" / "tiny").glob("*.changed"))  # the old record is kept aside


def test_changed_data_options_are_a_changed_config(run, suite_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("--suite", suite_file(), "--out", out, "--erasers", "plain") == 0
    other = suite_file(SUITE.replace("seed: 0, size", "seed: 1, size"), "other.yaml")
    assert run("--suite", other, "--out", out, "--erasers", "plain") == 2
    assert "data.options.seed: 0 -> 1" in capsys.readouterr().err


def test_speed_options_do_not_change_the_fingerprint(run, suite_file, tmp_path):
    out = tmp_path / "out"
    assert run("--suite", suite_file(), "--out", out, "--erasers", "plain") == 0
    assert run("--suite", suite_file(), "--out", out, "--erasers", "plain", "--pack", "4",
               "--graphs", "off") == 0


def test_a_truncated_record_is_retrained_and_the_leaderboard_still_renders(
        run, records, suite_file, tmp_path, capsys):
    p, out = suite_file(), tmp_path / "out"
    assert run("--suite", p, "--out", out) == 0
    path = out / "results" / "tiny" / "resnet20__cutout__s0.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    capsys.readouterr()
    assert run("--suite", p, "--out", out) == 0
    captured = capsys.readouterr()
    assert "damaged result record" in captured.err and "1 trained here" in captured.out
    assert records(out)["resnet20__cutout__s0"]["status"] == "finished"
    assert path.with_name(path.name + ".corrupt").is_file()
    assert "| resnet20 |" in (out / "leaderboards" / "tiny.md").read_text()


def test_the_runner_keeps_its_plan_beside_the_leaderboard_for_a_render_by_hand(
        suite_file, tmp_path, monkeypatch, capsys):
    """The runner's plan (here with seeds the suite file does not have, as `--seeds 0,1` makes
    it) is kept in <suite>.plan.json; a render by hand, with no suite file to read, counts it."""
    import yaml

    from benchmark.report import plan as report_plan
    from benchmark.runner.render import render

    monkeypatch.chdir(tmp_path)
    suite = parse_suite({**yaml.safe_load(SUITE), "seeds": [0, 1]})
    runs, out = expand(suite), Path("out")
    lb = out / "leaderboards" / "tiny.md"
    render(suite, runs, out / "results" / "tiny", out / "results" / "tiny" / "checkpoints", lb)
    kept = report_plan.read_plan(lb.with_name("tiny.plan.json"), "tiny")[0]
    assert [e["run_id"] for e in kept] == [r.run_id for r in runs] and len(kept) == 4
    assert "0 of 4 planned runs finished ·" in lb.read_text()
    (out / "results" / "tiny").mkdir(parents=True, exist_ok=True)
    assert cli.main(["leaderboard", "--suite", "tiny", "--results", "out/results/tiny",
                     "--out", str(lb)]) == 0
    text = lb.read_text()
    assert ("0 of 4 planned runs finished (plan: the runner's out/leaderboards/tiny.plan.json)"
            in text)
    assert "`erasebench leaderboard --suite tiny --results out/results/tiny`" in text


def test_a_resume_checkpoint_of_another_config_is_set_aside(suite_file, tmp_path, capsys):
    from benchmark.training.one import train_one
    from benchmark.training.resume import resume_path

    spec = expand(parse_suite({"name": "t", "data": {"name": "synthetic", "options": {
        "n_train": 64, "n_test": 32, "size": 16}}, "train": {"epochs": 2, "batch_size": 32,
                                                             "milestones": [1]}}))[0]
    work = tmp_path / "w"
    path = resume_path(work, spec.run_id)
    torch.save({"format": 2, "fingerprint": {"model": "other"}, "trainer": {}, "epoch": 1,
                "curves": {}, "occ": []}, path.parent.mkdir(parents=True) or path)
    out = train_one(spec, device="cpu", work_dir=work)
    assert out["status"] == "finished" and out["resumed_from_epoch"] is None
    assert "made by another config" in capsys.readouterr().err


def test_labels_seeds_and_models_that_collide_even_in_case_are_rejected_when_the_suite_loads():
    cases = [
        ({"methods": [{"name": "cutout", "label": "cut 8"},
                      {"name": "cutout", "label": "cut-8", "params": {"size": 8}}]},
         "labels 'cut 8' and 'cut-8' make the same run id"),
        ({"methods": ["plain", {"name": "cutout", "label": "Plain"}]},
         "labels 'plain' and 'Plain' make run ids that differ only in case"),
        ({"methods": [{"name": "cutout", "label": "x"}, {"name": "cutout", "label": "X"}]},
         "labels 'x' and 'X' make run ids that differ only in case"),
        ({"models": ["resnet20", "ResNet20"]}, "key 'models' lists resnet20 more than once"),
        ({"seeds": list(range(1001))}, "key 'seeds' lists 1001 seeds; allowed: at most 1000"),
        ({"seeds": [0, 0]}, "key 'seeds' lists 0 more than once"),
        ({"models": ["resnet20", "resnet20"]}, "key 'models' lists resnet20 more than once"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            expand(parse_suite({"name": "x", **extra}, "s.yaml"))


@pytest.mark.parametrize("case", ["out_is_a_file", "out_not_writable", "unknown_model",
                                  "unknown_dataset", "missing_cifar", "damaged_cifar"])
def test_checks_before_training_are_one_line_each_and_exit_2(
        run, case, suite_file, tmp_path, capsys, monkeypatch):
    p, out = suite_file(), tmp_path / "out"
    args = ["--suite", p, "--out", out]
    expect = {"out_is_a_file": "is a file, not a folder", "out_not_writable": "not writable",
              "unknown_model": "unknown model 'resnet21'",
              "unknown_dataset": "unknown dataset 'cifar11'",
              "missing_cifar": "put cifar-10-python.tar.gz",
              "damaged_cifar": "cifar-10-python.tar.gz: damaged or truncated cifar10 archive"}[case]
    if case == "out_is_a_file":
        out.write_text("")
    elif case == "out_not_writable":
        def refuse(self, *a, **k):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(Path, "write_text", refuse)
    elif case == "unknown_model":
        args += ["--models", "resnet21"]
    elif case == "unknown_dataset":
        args += ["--data", "cifar11"]
    elif case == "missing_cifar":
        args += ["--data", "cifar10", "--data-root", tmp_path / "nodata"]
    else:  # a damaged archive is one line before training, not a failed record per run
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "cifar-10-python.tar.gz").write_bytes(b"not a gzip file")
        args += ["--data", "cifar10", "--data-root", tmp_path / "d"]
    for extra in ([], ["--dry-run"]):
        if (case.startswith("out_") or case == "missing_cifar") and extra:
            continue  # a dry run writes nothing, so --out is not checked; it plans CIFAR that is
            # not downloaded yet (tests/runner/test_data_checks.py)
        assert run(*args, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out" / "results").exists()


def test_a_claim_is_exclusive_and_a_stale_one_is_taken_over(tmp_path, monkeypatch):
    first = claims.try_claim(tmp_path, "run-a", timeout_s=60)
    assert first is not None and claims.try_claim(tmp_path, "run-a", timeout_s=60) is None
    assert first.heartbeat()
    later = time.time() + 120  # the first worker has not beaten for two minutes
    monkeypatch.setattr(claims, "_epoch_seconds", lambda: later)
    second = claims.try_claim(tmp_path, "run-a", timeout_s=60)
    assert second is not None and second.info["took_over"]["pid"] == os.getpid()
    assert not first.heartbeat()  # the first worker learns it lost the run
    first.release()
    assert claims.holder(tmp_path, "run-a")["token"] == second.token
    second.release()
    assert claims.holder(tmp_path, "run-a") is None


FOUR = """
name: four
data: {name: synthetic, options: {n_train: 128, n_test: 32, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 64}
models: [resnet20]
seeds: [0, 1]
methods: [plain, cutout, {name: cam_erasing, warmup_epochs: 1}]
"""


def test_two_workers_on_one_folder_train_each_run_exactly_once(records, suite_file, tmp_path):
    p, out = suite_file(FOUR, "four.yaml"), tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmark" / "run.py"), "--suite", str(p), "--out",
           str(out), "--no-wandb", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in logs]
    trained = [int(o.split(" trained here")[0].rsplit("(", 1)[1]) for o, _ in logs]
    assert sum(trained) == 6  # every run once: none twice, none lost
    recs = records(out, "four")
    assert len(recs) == 6 and all(r["status"] == "finished" for r in recs.values())
    assert not list((out / "results" / "four" / "claims").glob("*.claim"))


def test_sigterm_finishes_the_epoch_checkpoints_renders_and_exits_143(
        run, records, suite_file, tmp_path):
    p = suite_file(SUITE.replace("epochs: 2, batch_size: 32, milestones: [1]",
                                "epochs: 12, batch_size: 32, milestones: [6]")
                   .replace("methods: [plain, cutout]", "methods: [plain]"))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmark" / "run.py"), "--suite", str(p), "--out",
           str(out), "--no-wandb", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "results" / "tiny" / "checkpoints" / "resnet20__plain__s0.resume.pt"
    deadline = time.time() + 120
    while not ckpt.is_file() and time.time() < deadline:  # training has begun
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted at epoch" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    assert ckpt.is_file() and (out / "leaderboards" / "tiny.md").is_file()
    state = torch.load(ckpt, weights_only=True)
    assert 1 <= state["epoch"] < 12
    assert run("--suite", p, "--out", out) == 0  # and the same command resumes it
    assert records(out)["resnet20__plain__s0"]["resumed_from_epoch"] == state["epoch"]


def test_a_second_ctrl_c_stops_at_once_in_one_line_and_exits_130(suite_file, tmp_path):
    p = suite_file(SUITE.replace("n_train: 128", "n_train: 4096")  # epochs of a few seconds
                   .replace("epochs: 2, batch_size: 32, milestones: [1]",
                            "epochs: 40, batch_size: 32, milestones: [30]")
                   .replace("methods: [plain, cutout]", "methods: [plain]"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmark", "run", "--suite", str(p), "--out", str(out),
           "--no-wandb", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    ckpt = out / "results" / "tiny" / "checkpoints" / "resnet20__plain__s0.resume.pt"
    deadline = time.time() + 120
    while not ckpt.is_file() and time.time() < deadline:  # training has begun
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stderr:  # the first Ctrl-C was heard: the epoch is finishing; press again
        seen.append(line)
        if line.startswith("SIGINT: finishing the current epoch"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stopped at once; rerun the same command")
    assert not list((out / "results" / "tiny" / "claims").glob("*.claim"))  # released


def test_a_second_ctrl_c_before_any_checkpoint_says_the_runs_start_again(tmp_path):
    from benchmark.runner.main import _stopped_at_once
    from benchmark.suites.config import parse_suite
    from benchmark.suites.expand import expand

    suite = parse_suite({"name": "tiny", "data": {"name": "synthetic"},
                         "train": {"epochs": 4, "milestones": [3], "checkpoint_every": 2},
                         "methods": ["plain", "cutout"]})
    runs = expand(suite)
    line = _stopped_at_once(suite, runs, tmp_path)
    assert "before any run of tiny had a checkpoint (one every 2 epochs)" in line
    assert "from the start" in line and "resume" not in line
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / f"{runs[0].run_id}.resume.pt").write_bytes(b"")
    assert "1 run(s) from their last checkpoint" in _stopped_at_once(suite, runs, tmp_path)
