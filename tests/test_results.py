"""Result records: strict JSON, failed runs recorded as results, damaged records moved aside and
redone, schema-1 records still read."""

import json
import stat

import pytest

from benchmark import results
from benchmark.suites.config import load_suite
from benchmark.suites.expand import expand


def refuse(token):
    raise ValueError(f"{token} is not JSON")


def strict_load(path):
    return json.loads(path.read_text(), parse_constant=refuse)


def record(run_id="resnet20__plain__s0", **kw):
    rec = {"schema": 2, "status": "finished", "failure": None, "suite": "smoke", "run_id": run_id,
           "model": "resnet20", "method": "plain", "eraser": None, "eraser_params": {},
           "cam": None, "seed": 0, "dataset": "synthetic", "epochs": 2,
           "final_test_error": 30.0, "best_test_error": 29.5, "best_epoch": 1,
           "curves": {"epoch": [1, 2], "train_loss": [2.0, 1.5], "test_error": [29.5, 30.0]}}
    return {**rec, **kw}


@pytest.fixture(scope="module")
def specs():
    return {r.label: r for r in expand(load_suite("smoke"))}


def test_a_nan_anywhere_in_a_record_is_written_as_null_and_the_file_is_strict_json(tmp_path):
    rec = record(curves={"train_loss": [2.0, float("nan")], "lr": [float("inf"), 0.1]},
                 occlusion={"object_hit_rate": float("-inf")}, extra=[{"x": (1.0, float("nan"))}])
    path = results.write_record(tmp_path, rec)
    loaded = strict_load(path)  # raises on NaN / Infinity tokens
    assert loaded["curves"] == {"train_loss": [2.0, None], "lr": [None, 0.1]}
    assert loaded["occlusion"]["object_hit_rate"] is None
    assert loaded["extra"] == [{"x": [1.0, None]}]


def test_records_are_written_with_mode_0644(tmp_path):
    path = results.write_record(tmp_path, record())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_finished_record_finishes_its_run_and_a_failed_one_does_not(tmp_path):
    results.write_record(tmp_path, record("a"))
    results.write_record(tmp_path, record("b", status="failed",
                                          failure={"epoch": 2, "reason": "loss is NaN"},
                                          final_test_error=None, best_test_error=None))
    assert results.status(tmp_path, "a") == "finished" and results.is_finished(tmp_path, "a")
    assert results.status(tmp_path, "b") == "failed" and not results.is_finished(tmp_path, "b")
    assert results.status(tmp_path, "c") is None and not results.is_finished(tmp_path, "c")


def test_truncated_record_is_moved_aside_and_counts_as_not_finished(tmp_path, capsys):
    path = results.write_record(tmp_path, record())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not results.is_finished(tmp_path, "resnet20__plain__s0")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path}: damaged result record")
    assert "truncated?" in err and "moved to resnet20__plain__s0.json.corrupt" in err
    assert "the run will be redone" in err
    assert not path.exists() and (tmp_path / "resnet20__plain__s0.json.corrupt").is_file()
    assert results.load_records(tmp_path) == []  # a .corrupt file is no longer read


DAMAGED = [
    (b"", "not valid JSON"),
    (b"\xff\xfe garbage", "not UTF-8 text"),
    (b'{"schema": 2, "status": "finished"}', "key 'run_id' is missing"),
    (b'{"run_id": "x"}', "key 'schema' is missing"),
    (b'{"run_id": "x", "schema": 9}', "key 'schema' is 9; this erasebench reads schema 1, 2"),
    (b'{"run_id": "x", "schema": 2, "status": "done"}', "key 'status' is 'done'"),
    (b'{"run_id": "x", "schema": 2, "status": "finished", "model": "m", "method": "p", '
     b'"seed": 0, "best_test_error": 1.0}', "key 'final_test_error' is missing"),
]


@pytest.mark.parametrize("content, problem", DAMAGED)
def test_a_damaged_record_is_skipped_by_load_records_with_one_line_and_left_in_place(
        tmp_path, capsys, content, problem):
    results.write_record(tmp_path, record("good"))
    (tmp_path / "x.json").write_bytes(content)
    assert [r["run_id"] for r in results.load_records(tmp_path)] == ["good"]
    err = capsys.readouterr().err
    assert f"{tmp_path / 'x.json'}: damaged result record (" in err and problem in err
    assert err.count("\n") == 1 and "skipping it (left as it is)" in err
    assert (tmp_path / "x.json").read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "x.json"]


@pytest.mark.parametrize("content, problem", DAMAGED)
def test_the_runner_moves_a_damaged_record_at_its_run_s_path_aside(tmp_path, capsys, content,
                                                                     problem):
    (tmp_path / "x.json").write_bytes(content)
    assert results.status(tmp_path, "x") is None
    err = capsys.readouterr().err
    assert f"{tmp_path / 'x.json'}: damaged result record (" in err and problem in err
    assert (tmp_path / "x.json.corrupt").read_bytes() == content


@pytest.mark.parametrize("content", [b'{"name": "web", "version": "1.0.0"}', b"[1, 2]", b"3"])
def test_a_json_that_is_not_a_record_is_skipped_quietly_and_never_renamed(tmp_path, capsys,
                                                                           content):
    (tmp_path / "package.json").write_bytes(content)
    assert results.load_records(tmp_path) == []
    assert capsys.readouterr().err == ""
    assert (tmp_path / "package.json").read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["package.json"]


@pytest.mark.parametrize("change, problem", [
    ({"final_test_error": -250.0}, "key 'final_test_error' is -250.0, outside its range "
                                   "(must be in [0, 100])"),
    ({"final_test_error": 1e300}, "key 'final_test_error' is 1e+300, outside its range"),
    ({"best_test_error": 100.5}, "key 'best_test_error' is 100.5"),
    ({"final_test_error": "NaN"}, "key 'final_test_error' is 'NaN', not a number"),
    ({"final_test_error": True}, "key 'final_test_error' is True, not a number"),
    ({"curves": {"test_error": [30.0, -1.0]}}, "key 'curves.test_error[1]' is -1.0"),
    ({"curves": {"train_loss": [2.0, -0.5]}}, "key 'curves.train_loss[1]' is -0.5"),
    ({"curves": {"train_acc": [50.0, 1e9]}}, "key 'curves.train_acc[1]' is 1000000000.0"),
    ({"curves": {"lr": "fast"}}, "key 'curves.lr' is 'fast', not a list"),
    ({"occlusion": {"object_hit_rate": 1.5}}, "key 'occlusion.object_hit_rate' is 1.5"),
    ({"wall_time_s": -3.0}, "key 'wall_time_s' is -3.0, outside its range (must be >= 0)"),
    ({"images_per_s": "many"}, "key 'images_per_s' is 'many', not a number"),
    ({"epochs": 0}, "key 'epochs' is 0, outside its range (must be >= 1)"),
])
def test_a_record_with_a_number_outside_its_range_is_a_damaged_record(tmp_path, capsys, change,
                                                                        problem):
    results.write_record(tmp_path, record("good"))
    (tmp_path / "bad.json").write_text(json.dumps(record("bad", **change)))
    assert [r["run_id"] for r in results.load_records(tmp_path)] == ["good"]
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and (tmp_path / "bad.json").is_file()
    assert results.status(tmp_path, "bad") is None  # the runner: moved aside, the run redone
    assert (tmp_path / "bad.json.corrupt").is_file() and problem in capsys.readouterr().err


def test_records_of_other_suites_are_left_out_with_one_line_naming_them(tmp_path, capsys):
    for i, suite in enumerate(["two", "two", "one", "three", "one"]):
        results.write_record(tmp_path, record(f"r{i}", suite=suite))
    assert [r["run_id"] for r in results.load_records(tmp_path, suite="two")] == ["r0", "r1"]
    err = capsys.readouterr().err
    assert err == (f"warning: {tmp_path}: left out 3 records of other suites (one (2), "
                   "three (1)); only suite 'two' is shown\n")


def test_a_schema_1_record_is_read_as_finished(tmp_path):
    old = record("old", schema=1)
    del old["status"], old["failure"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert results.status(tmp_path, "old") == "finished"
    rec = results.read_record(tmp_path / "old.json")
    assert rec["status"] == "finished" and rec["failure"] is None and rec["schema"] == 1


def test_a_schema_1_record_holding_nan_is_read_as_a_failed_run(tmp_path):
    # what erasebench wrote before schema 2 when the loss diverged: NaN tokens, rc 0, a "result"
    old = record("r", schema=1, final_test_error=92.58,
                 curves={"epoch": [1, 2], "train_loss": [2.3, float("nan")]})
    del old["status"], old["failure"]
    (tmp_path / "r.json").write_text(json.dumps(old))
    assert "NaN" in (tmp_path / "r.json").read_text()
    rec = results.read_record(tmp_path / "r.json")
    assert rec["status"] == "failed" and rec["curves"]["train_loss"] == [2.3, None]
    assert rec["failure"] == {"epoch": 2, "reason": "non-finite values in curves.train_loss "
                                                    "(the run diverged)"}
    assert (tmp_path / "r.json").is_file()  # a readable record is never moved aside


@pytest.mark.parametrize("text", ["null", "NaN", "Infinity"])
def test_a_finished_record_without_a_finite_error_is_damaged_not_a_failed_run(tmp_path, capsys,
                                                                              text):
    (tmp_path / "r.json").write_text(json.dumps(record("r")).replace('"final_test_error": 30.0',
                                                                     f'"final_test_error": {text}'))
    assert results.load_records(tmp_path) == []
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "r.json" in err and "final_test_error" in err
    assert results.status(tmp_path, "r", set_aside=True) is None  # the runner: redo it
    assert (tmp_path / "r.json.corrupt").is_file()


def test_a_real_failed_record_keeps_its_meaning(tmp_path):
    results.write_record(tmp_path, record("r", status="failed", final_test_error=float("nan"),
                                          best_test_error=None,
                                          failure={"epoch": 2, "reason": "loss is NaN"}))
    rec = results.read_record(tmp_path / "r.json")
    assert rec["status"] == "failed" and rec["failure"]["reason"] == "loss is NaN"


@pytest.mark.parametrize("name", ["resnet20__plain__s5.json", "resnet20__plain__s0 (copy).json"])
def test_a_record_counts_only_under_its_own_run_id_so_a_copy_is_not_a_second_seed(
        tmp_path, capsys, name):
    path = results.write_record(tmp_path, record())
    (tmp_path / name).write_text(path.read_text())
    recs = results.load_records(tmp_path)
    assert [r["run_id"] for r in recs] == ["resnet20__plain__s0"]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "resnet20__plain__s0.json" in err
    assert (tmp_path / name).is_file()  # read-only: left where it is
    results.set_aside_damaged(tmp_path)  # the runner, before it renders
    assert not (tmp_path / name).exists() and (tmp_path / (name + ".corrupt")).is_file()
    assert path.is_file()


def test_failed_record_places_the_cell_and_says_why(tmp_path, specs):
    spec = specs["cam_erasing"]
    rec = results.failed_record(spec, epoch=3, reason="loss is NaN\n(lr 1e4)",
                                curves={"epoch": [1, 2], "train_loss": [2.0, float("nan")]},
                                wall_time_s=12.5, device="cpu", command="benchmark/run.py")
    assert rec["status"] == "failed" and rec["schema"] == results.SCHEMA
    assert rec["failure"] == {"epoch": 3, "reason": "loss is NaN (lr 1e4)"}
    assert (rec["run_id"], rec["model"], rec["method"], rec["seed"], rec["suite"]) == (
        spec.run_id, "resnet20", "cam_erasing", 0, "smoke")
    assert rec["eraser"] == "cam_erasing" and rec["eraser_params"]["b_h"] == 2
    assert rec["eraser_params"]["sl"] == 0.02  # resolved like a finished record's
    assert rec["cam"]["source"] == "during" and rec["cam"]["path"] is None
    assert rec["final_test_error"] is None and rec["config"]["model"] == "resnet20"
    path = results.write_record(tmp_path, rec)
    assert strict_load(path)["curves"]["train_loss"] == [2.0, None]
    assert results.status(tmp_path, spec.run_id) == "failed"
    assert results.read_record(path)["failure"]["epoch"] == 3


def test_failed_record_takes_the_exception_as_its_reason(specs):
    try:
        raise RuntimeError("plugin raised\nwhile drawing")
    except RuntimeError as e:
        rec = results.failed_record(specs["cutout"], epoch=None, reason=e)
    assert rec["failure"] == {"epoch": None, "reason": "RuntimeError: plugin raised while drawing"}
    assert rec["eraser_params"] == {"size": 16, "holes": 1, "p": 1.0}


def test_a_rendered_leaderboard_does_not_make_the_commit_dirty(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "smoke.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init")
    (tmp_path / "leaderboards" / "smoke.md").write_text("re-rendered\n")
    assert not results.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert results.git_commit(tmp_path).endswith("-dirty")
