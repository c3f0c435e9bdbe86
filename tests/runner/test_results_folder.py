"""Who may change a results folder: only the runner moves a damaged record aside (and trains its
run again); --dry-run, leaderboard and compare read it and leave every file as it was."""

import json
import textwrap

from benchmark import cli, results
from benchmark.runner.main import main
from benchmark.tools import cost

ONE = """
name: one
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 1, batch_size: 32, milestones: [1], eval_batch_size: 32}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_dry_run_leaderboard_and_compare_never_rename_or_move_a_file_of_a_results_folder(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the estimate measures a real training step (slow on a shared CPU); it touches no file
    monkeypatch.setattr(cost, "estimate", lambda packs, device, **kw: {
        r.run_id: {"images": 0, "seconds": 1.0} for p in packs for r in p.runs})
    (tmp_path / "one.yaml").write_text(textwrap.dedent(ONE))
    folder = tmp_path / "runs" / "results" / "one"  # the default --out of every command
    folder.mkdir(parents=True)
    damaged = {"schema": 2, "status": "finished", "suite": "one", "run_id": "resnet20__plain__s0",
               "model": "resnet20", "method": "plain", "seed": 0, "epochs": 1,
               "final_test_error": -250.0, "best_test_error": 10.0}
    (folder / "resnet20__plain__s0.json").write_text(json.dumps(damaged))
    (folder / "resnet20__cutout__s0.json").write_text('{"run_id": "resnet20__cutout__s0", "sc')
    (folder / "package.json").write_text('{"name": "web"}')
    before = snapshot(folder)

    assert main(["--suite", "one.yaml", "--dry-run",
                 "--rerun-changed"]) == 0
    assert cli.main(["leaderboard", "--suite", "one"]) == 0
    assert cli.main(["leaderboard", "--suite", "one", "--config", "one.yaml"]) == 0
    assert cli.main(["compare", str(folder)]) == 2  # nothing finished to compare: one line
    assert snapshot(folder) == before  # nothing renamed, moved or rewritten
    cap = capsys.readouterr()
    planned = [ln.split() for ln in cap.out.splitlines() if ln.startswith("resnet20__")]
    assert [p[-1] for p in planned] == ["1s", "1s"]  # both to train: neither counts as done
    assert cap.err.count("key 'final_test_error' is -250.0, outside its range") == 1
    assert cap.err.count("resnet20__cutout__s0.json: damaged result record (not valid JSON") == 1
    assert "moved" not in cap.err and "package.json" not in cap.err
    rendered = (tmp_path / "runs" / "leaderboards" / "one.md").read_text()
    assert "0 of 2 planned runs finished" in rendered


def test_the_runner_moves_a_damaged_record_of_its_own_run_aside_in_one_line(tmp_path, capsys):
    path = tmp_path / "resnet20__plain__s0.json"
    path.write_text(json.dumps({"schema": 2, "status": "finished", "run_id": path.stem,
                                "model": "resnet20", "method": "plain", "seed": 0,
                                "final_test_error": 1e300, "best_test_error": 10.0}))
    assert results.status(tmp_path, path.stem) is None  # what the worker asks before training
    assert capsys.readouterr().err == (
        f"warning: {path}: damaged result record (key 'final_test_error' is 1e+300, outside its "
        "range (must be in [0, 100])); moved to resnet20__plain__s0.json.corrupt; the run will be "
        "redone\n")
    assert not path.exists() and (tmp_path / "resnet20__plain__s0.json.corrupt").is_file()


def test_a_dry_run_with_rerun_changed_says_what_it_would_move_and_moves_nothing(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cost, "estimate", lambda packs, device, **kw: {
        r.run_id: {"images": 0, "seconds": 1.0} for p in packs for r in p.runs})
    (tmp_path / "one.yaml").write_text(textwrap.dedent(ONE))
    folder = tmp_path / "results" / "one"
    other = {"schema": 2, "status": "finished", "suite": "one", "run_id": "resnet20__plain__s0",
             "model": "resnet20", "method": "plain", "seed": 0, "epochs": 9,
             "final_test_error": 30.0, "best_test_error": 29.0,
             "config": {"model": "resnet20", "seed": 0, "train": {"epochs": 9}}}
    results.write_record(folder, other)
    before = snapshot(folder)
    args = ["--suite", str(tmp_path / "one.yaml"), "--out", str(tmp_path), "--dry-run"]
    assert main(args) == 2  # another config's record: the one-line error, as a real run
    assert "made by another config" in capsys.readouterr().err
    assert main([*args, "--rerun-changed"]) == 0
    assert ("note: 1 records of another config would be moved aside (*.changed) and their runs "
            "trained again; --dry-run moves nothing\n") in capsys.readouterr().err
    assert snapshot(folder) == before
