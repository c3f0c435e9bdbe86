"""The runner end to end on tiny synthetic data: records, resume, skip, W&B offline, 2 processes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmark import results
from benchmark.runner.main import main
from benchmark.runner.tracking import read_history
from benchmark.suites.config import load_suite
from benchmark.suites.expand import expand

ROOT = Path(__file__).resolve().parents[2]

TINY = """
name: tiny
data: {name: synthetic, options: {n_train: 128, n_test: 64, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 64}
models: [resnet20]
seeds: [0]
methods:
  - plain
  - random_erasing
  - cutout
  - hide_and_seek
  - {name: cam_erasing, warmup_epochs: 1}
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(TINY))
    return p


def run(args):
    assert main([*map(str, args), "--no-progress"]) == 0


def records(out, suite="tiny"):
    return {r["run_id"]: r for r in results.load_records(out / "results" / suite)}


def test_tiny_suite_writes_one_record_per_run_and_a_leaderboard(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    run(["--suite", tiny, "--out", out, "--no-wandb"])
    # without a progress bar, every run logs one line per epoch (for batch-job log files)
    assert "resnet20__cutout__s0 epoch 2/2: train loss " in capsys.readouterr().out
    recs = records(out)
    assert len(recs) == 5
    for r in recs.values():
        assert len(r["curves"]["test_error"]) == 2
        assert 0 <= r["final_test_error"] <= 100
        assert r["config"]["train"]["epochs"] == 2 and r["versions"]["torch"] == torch.__version__
        assert r["occlusion"] is not None  # synthetic data has boxes
        assert (r["num_classes"], r["n_test"]) == (10, 64)  # the error of guessing is known
    cam = recs["resnet20__cam_erasing__s0"]
    assert (cam["mode"] == "append" and cam["cam"]["path"] == "fast"
            and cam["cam"]["source"] == "during")
    assert (cam["curves"]["erased_fraction"][0] == 0.0
            < cam["curves"]["erased_fraction"][1])  # warm-up
    assert cam["occlusion"]["train_cam_peak_in_box"] is not None
    cut = recs["resnet20__cutout__s0"]
    assert cut["occlusion"]["erased_image_rate"] == 1.0  # Cutout erases every image (p = 1)
    assert 0 < cut["occlusion"]["object_hit_rate"] <= 1
    plain = recs["resnet20__plain__s0"]
    assert plain["eraser"] is None and plain["curves"]["erased_fraction"] == [0.0, 0.0]
    assert (out / "leaderboards" / "tiny.md").is_file()


def test_a_finished_run_is_skipped_when_the_suite_runs_again(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    run(["--suite", tiny, "--out", out, "--no-wandb", "--erasers", "plain"])
    first = records(out)["resnet20__plain__s0"]["date"]
    run(["--suite", tiny, "--out", out, "--no-wandb", "--erasers", "plain,cutout"])
    recs = records(out)
    assert recs["resnet20__plain__s0"]["date"] == first and len(recs) == 2
    assert "1 already done" in capsys.readouterr().out


def test_interrupted_run_resumes_from_its_checkpoint_and_ends_identical(tiny, tmp_path):
    from benchmark.training.train import Hooks, train_pack

    spec = next(r for r in expand(load_suite(str(tiny))) if r.method.name == "random_erasing")
    spec.train.epochs = 3
    ref = train_pack([spec], device="cpu", work_dir=tmp_path / "a")[0]

    class Crash(Hooks):
        def epoch_end(self, k, row):
            if row["epoch"] == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_pack([spec], device="cpu", work_dir=tmp_path / "b", hooks=Crash())
    assert (tmp_path / "b" / f"{spec.run_id}.resume.pt").is_file()
    resumed = train_pack([spec], device="cpu", work_dir=tmp_path / "b")[0]
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["curves"]["test_error"] == ref["curves"]["test_error"]
    assert resumed["curves"]["train_loss"] == ref["curves"]["train_loss"]


def test_cam_after_training_uses_the_frozen_plain_model(tmp_path):
    p = tmp_path / "after.yaml"
    p.write_text(TINY.replace("name: tiny", "name: after").split("methods:")[0]
                 + "methods:\n"
                   "  - {name: cam_erasing, warmup_epochs: 1, sweep: {cam.source: [after]}}\n")
    out = tmp_path / "out"
    run(["--suite", p, "--out", out, "--no-wandb"])
    recs = records(out, "after")
    assert set(recs) == {"resnet20__plain__s0", "resnet20__cam_erasing-cam_source=after__s0"}
    after = recs["resnet20__cam_erasing-cam_source=after__s0"]
    assert after["cam"]["source"] == "after" and after["ablation"] == {"cam_source": "after"}


def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_wandb_runs_offline_without_credentials_and_keeps_the_history(tiny, tmp_path, monkeypatch,
                                                                     capsys):
    offline_wandb(monkeypatch, tmp_path)
    out = tmp_path / "out"
    run(["--suite", tiny, "--out", out, "--erasers", "cutout"])
    runs = {r: read_history(r) for r in (out / "wandb").glob("offline-run-*")}
    assert len(runs) == 2  # the training run, and the suite's leaderboard as a W&B table
    (history,) = [h for h in runs.values() if "epoch" in h[0]]
    (board,) = [r for r, h in runs.items() if h[0].get("leaderboard/_type") == "table-file"]
    (table,) = board.glob("files/media/table/leaderboard_*.table.json")
    table = json.loads(table.read_text())
    row = dict(zip(table["columns"], table["data"][0], strict=True))
    assert [row["epoch"] for row in history] == [1, 2]
    rec = records(out)["resnet20__cutout__s0"]
    assert [h["test/error_pct"] for h in history] == rec["curves"]["test_error"]
    assert row["method"] == "cutout" and row["runs"] == 1
    assert row["final_error_pct_mean"] == rec["final_test_error"]
    assert {"train/loss", "train/acc_pct", "train/lr", "train/erased_fraction",
            "train/object_hit_rate", "speed/images_per_s"} <= set(history[0])
    assert f"wandb sync {out / 'wandb'}/offline-run-*" in capsys.readouterr().out


def test_a_wandb_that_cannot_start_costs_the_run_its_logging_not_its_result(tiny, tmp_path,
                                                                            monkeypatch, capsys):
    offline_wandb(monkeypatch, tmp_path)
    monkeypatch.setenv("WANDB_MODE", "sideways")  # wandb itself refuses this value
    out = tmp_path / "out"
    run(["--suite", tiny, "--out", out, "--erasers", "cutout"])
    assert records(out)["resnet20__cutout__s0"]["status"] == "finished"
    err = capsys.readouterr().err
    assert "warning: W&B could not start for resnet20__cutout__s0" in err
    assert "training it without W&B logging" in err


def test_each_experiment_is_a_new_wandb_run_and_a_resumed_run_continues_its_own(tiny, tmp_path,
                                                                               monkeypatch):
    from benchmark.runner import tracking

    offline_wandb(monkeypatch, tmp_path)
    seen = []
    real_start = tracking.start

    def spy(**kw):
        if kw.get("job_type", "train") == "train":  # not the suite's leaderboard run
            seen.append((kw["name"], kw["run_id"], kw["config"]))
        return real_start(**kw)

    monkeypatch.setattr(tracking, "start", spy)
    for out in ("a", "b"):  # the same run in two experiments
        run(["--suite", tiny, "--out", tmp_path / out, "--erasers", "cutout"])
    (name_a, id_a, config), (name_b, id_b, _) = seen
    assert name_a == name_b and id_a != id_b
    assert config["eraser_params"] == {"size": 16, "holes": 1, "p": 1.0}  # resolved, not as written
    assert config["eraser_source"]["package"] == "erasebench"
    from benchmark.training.train import Hooks, train_pack

    class Crash(Hooks):
        def __init__(self):
            self.extra = None

        def started(self, k, progress, source):
            progress.extra.setdefault("wandb_id", "abc123")  # what the runner keeps

        def epoch_end(self, k, row):
            raise KeyboardInterrupt

    spec = next(r for r in expand(load_suite(str(tiny))) if r.method.name == "cutout")
    with pytest.raises(KeyboardInterrupt):
        train_pack([spec], device="cpu", work_dir=tmp_path / "w", hooks=Crash())
    got = []

    class Resume(Hooks):
        def started(self, k, progress, source):
            got.append((source, progress.extra.get("wandb_id")))

    train_pack([spec], device="cpu", work_dir=tmp_path / "w", hooks=Resume())
    assert got == [("resume", "abc123")]


def test_dry_run_lists_runs_with_a_cost_estimate_and_trains_nothing(tiny, tmp_path, capsys):
    run(["--suite", tiny, "--out", tmp_path, "--dry-run"])
    text = capsys.readouterr().out
    assert "resnet20__cam_erasing__s0" in text and "5 runs in 5 packs" in text
    assert "estimated" in text and "(forks resnet20__plain__s0 at epoch 1)" in text
    assert not (tmp_path / "results").exists()
    # what the estimate covers, and what not (the robustness evaluation of every run is in it)
    assert "each run's robustness evaluation" in text and "not the process's start-up" in text


def test_dry_run_shows_finished_runs_as_done_at_no_cost(tiny, tmp_path, capsys):
    run(["--suite", tiny, "--out", tmp_path, "--no-wandb", "--erasers", "plain"])
    capsys.readouterr()
    run(["--suite", tiny, "--out", tmp_path, "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    plain = next(line for line in lines if line.startswith("resnet20__plain__s0"))
    assert plain.split()[-1] == "done" and "1 already done" in lines[-1]
    assert not any(line.split()[-1] == "done" for line in lines
                   if line.startswith("resnet20__cutout__s0"))


def test_bad_suite_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nseeds: [0]\nmodel: [resnet20]\n")
    assert main(["--suite", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'model'" in err and "did you mean 'models'" in err


@pytest.mark.slow
def test_two_processes_share_the_runs(tiny, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Accelerate's --cpu launcher starts one process unless it goes through mpirun; --multi_gpu
    # (torchrun underneath) starts two, which run.py turns into gloo CPU processes without CUDA.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", str(ROOT / "benchmark" / "run.py"), "--suite", str(tiny),
           "--out", str(out), "--no-wandb", "--no-progress", "--erasers",
           "plain,cutout,cam_erasing"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(out)
    assert len(recs) == 3
    assert {r["process"]["index"] for r in recs.values()} == {0, 1}
    assert {r["process"]["count"] for r in recs.values()} == {2}
    assert "suite tiny: 3/3 runs finished" in proc.stdout


def test_a_run_without_out_writes_into_the_untracked_runs_folder_not_the_committed_leaderboards(
        tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(["--suite", tiny, "--no-wandb", "--erasers", "plain", "--epochs", "1"])
    assert records(tmp_path / "runs")["resnet20__plain__s0"]["status"] == "finished"
    assert (tmp_path / "runs" / "leaderboards" / "tiny.md").is_file()
    assert not (tmp_path / "leaderboards").exists() and not (tmp_path / "results").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/results/x.json"], cwd=ROOT)
    assert ignored.returncode == 0  # runs/ is untracked in the repository
