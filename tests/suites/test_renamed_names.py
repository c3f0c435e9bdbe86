"""One name per concept: a suite key, an option or a record field under its old name is still
read (a suite's or an option's with a one-line note, once), so no user suite or committed result
breaks."""

import json

import pytest

from benchmark import results
from benchmark.report import grid
from benchmark.runner.cli import build_suite, parse_args
from benchmark.suites import renamed
from benchmark.suites.config import ConfigError, parse_suite


def suite_with(data: dict, name="renamed"):
    return {"name": name, "data": {"name": "synthetic", **data}, "train": {"epochs": 2}}


def test_a_suites_old_key_data_dir_is_read_as_root_with_one_note_once(capsys, monkeypatch):
    monkeypatch.setattr(renamed, "_noted", set())
    first = parse_suite(suite_with({"data_dir": "/datasets"}), source="old.yaml")
    second = parse_suite(suite_with({"data_dir": "/elsewhere"}), source="old2.yaml")
    assert (first.data.root, second.data.root) == ("/datasets", "/elsewhere")
    assert first.data.data_dir == "/datasets"  # code that reads the old name still works
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: old.yaml: key 'data.data_dir' is now called 'data.root'; the old name "
                   "is still read"]


def test_a_suite_giving_a_key_under_both_names_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"keys 'data.data_dir' and 'data.root' are one key"):
        parse_suite(suite_with({"data_dir": "/a", "root": "/b"}), source="both.yaml")


def test_the_new_key_root_is_read_without_a_note(capsys):
    assert parse_suite(suite_with({"root": "/datasets"})).data.root == "/datasets"
    assert capsys.readouterr().err == ""


def test_the_old_option_data_dir_is_read_as_data_root_with_one_note(capsys):
    suite = build_suite(parse_args(["--suite", "smoke", "--data-dir", "/datasets"]))
    assert suite.data.root == "/datasets"
    assert capsys.readouterr().err.splitlines() == [
        "note: --data-dir is now called --data-root; the old name is still read"]
    assert build_suite(parse_args(["--suite", "smoke", "--data-root", "/d"])).data.root == "/d"


def test_a_record_with_its_label_under_the_old_key_method_is_read_as_label(tmp_path):
    rec = {"schema": 2, "status": "finished", "suite": "s", "run_id": "r", "model": "resnet20",
           "method": "cutout(size=8)", "seed": 0, "final_test_error": 10.0,
           "best_test_error": 9.0}
    (tmp_path / "r.json").write_text(json.dumps(rec))
    read = results.read_record(tmp_path / "r.json")
    assert read["label"] == read["method"] == "cutout(size=8)"
    g = grid.build_grid([rec], suite="s")
    assert [m.label for m in g.methods] == ["cutout(size=8)"]


def test_a_new_record_holds_its_label_under_label_and_under_method():
    from benchmark.suites.expand import expand

    spec = expand(parse_suite(suite_with({})))[0]
    rec = results.failed_record(spec, epoch=None, reason="stopped")
    assert rec["label"] == rec["method"] == spec.label
    assert results.record_problem(rec) is None


def test_the_old_cam_target_pred_is_read_as_predicted_with_one_note(capsys, monkeypatch):
    monkeypatch.setattr(renamed, "_noted", set())
    suite = parse_suite({**suite_with({}), "methods": [
        {"name": "cam_erasing", "cam": {"target": "pred"}},
        {"name": "cam_erasing", "label": "again", "cam": {"target": "pred"}}]}, source="old.yaml")
    assert [m.cam.target for m in suite.methods] == ["predicted", "predicted"]
    assert capsys.readouterr().err.splitlines() == [
        "note: old.yaml: key 'methods[0].cam.target': 'pred' is now called 'predicted'; the old "
        "name is still read"]
