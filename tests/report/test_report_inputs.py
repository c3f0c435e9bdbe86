"""What the reports do with the results folders users really have: a hand render knows the plan
(or says it does not), only the named suite is shown, damaged numbers never enter a mean or a
rank, runs at chance level are flagged, and no read-only command renames or moves a file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.report import grid, plan
from benchmark.report import leaderboard as lb
from benchmark.results import write_record

TWO = """
name: two
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 16, milestones: [1]}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


def record(suite="two", method="plain", seed=0, err=30.0, **kw):
    eraser = None if method == "plain" else method
    rec = {"schema": 2, "status": "finished", "failure": None, "suite": suite,
           "run_id": f"resnet20__{method}__s{seed}", "model": "resnet20", "method": method,
           "eraser": eraser, "eraser_params": {} if eraser is None else {"size": 8}, "cam": None,
           "mode": None if eraser is None else "replace", "ablation": {}, "seed": seed,
           "dataset": "synthetic", "epochs": 2, "final_test_error": err,
           "best_test_error": err, "best_epoch": 2,
           "curves": {"epoch": [1, 2], "train_loss": [2.0, 1.5],
                      "test_error": [] if err is None else [min(100.0, err + 5), err]},
           "config": {"method": {"name": method, "fill": "zero", "warmup_epochs": 0}}}
    return {**rec, **kw}


def header(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Data:"))


def row(text: str, section: str, first: str) -> list[str]:
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in {section!r}")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def two(tmp_path, monkeypatch):
    """Suite `two` (plain, cutout) while it trains: only plain has a record."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.yaml").write_text(textwrap.dedent(TWO))
    write_record(tmp_path / "runs" / "results" / "two", record())
    return tmp_path


# --- the plan of a hand render (row A5) ---------------------------------------------------------

def test_a_hand_render_while_the_suite_trains_shows_the_suite_files_plan(two, capsys):
    assert cli.main(["leaderboard", "--suite", "two", "--config", "two.yaml"]) == 0
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert "1 of 2 planned runs finished (plan: two.yaml)" in header(text)
    assert row(text, "Final-epoch test error", "resnet20")[1:] == ["30.00 ± n/a (n=1)",
                                                                   "missing (0 of 1)"]
    assert "`resnet20__cutout__s0`" in text.split("## Missing runs", 1)[1]


def test_a_hand_render_after_an_interrupt_keeps_the_runners_missing_cells(two, capsys):
    from benchmark.suites.config import load_suite
    from benchmark.suites.expand import expand

    runner_plan = [grid.planned_run(r) for r in expand(load_suite("two.yaml"))]
    out = two / "runs" / "leaderboards" / "two.md"
    plan.write_plan(out, "two", runner_plan)  # as runner/render.py keeps it
    lb.render_suite("two", two / "runs" / "results" / "two", out, expected_runs=runner_plan)
    assert "1 of 2 planned runs finished ·" in header(out.read_text())
    for _ in range(2):  # by hand, twice: the plan survives its own renders
        assert cli.main(["leaderboard", "--suite", "two"]) == 0
        text = out.read_text()
        kept = "runs/leaderboards/two.plan.json"
        assert f"1 of 2 planned runs finished (plan: the runner's {kept})" in header(text)
        assert row(text, "Final-epoch test error", "resnet20")[2] == "missing (0 of 1)"
        assert "`resnet20__cutout__s0`" in text.split("## Missing runs", 1)[1]


def test_a_damaged_copy_of_the_runners_plan_is_one_warning_and_not_a_plan(two, capsys):
    out = two / "runs" / "leaderboards" / "two.md"
    out.parent.mkdir(parents=True)
    plan.plan_path(out).write_text('{"suite": "two", "runs": [{"model": "resnet20", '
                                   '"method": "cutout", "expected": 1}]}')
    assert cli.main(["leaderboard", "--suite", "two"]) == 0
    err = capsys.readouterr().err
    assert "runs/leaderboards/two.plan.json: expected_runs: an entry lacks key 'run_id'" in err
    assert "the plan is unknown" in header(out.read_text())


def test_without_a_known_plan_the_header_says_the_plan_is_unknown(two, capsys):
    assert cli.main(["leaderboard", "--suite", "two"]) == 0
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert header(text) == ("Data: synthetic · models: resnet20 · 1 runs finished · the plan is "
                            "unknown, so runs without a record are not shown · epochs: 2.")
    assert '"plan":"unknown"' in text  # so the next render does not take it for a plan
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the plan of suite 'two' is unknown" in err
    assert "pass --config" in err


def test_the_leaderboard_never_runs_a_suite_files_imports(two, capsys):
    (two / "evil.py").write_text("open('ran', 'w').write('yes')\n")
    (two / "two.yaml").write_text(textwrap.dedent(TWO) + "imports: [evil.py]\n")
    assert cli.main(["leaderboard", "--suite", "two", "--config", "two.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --config two.yaml: key 'imports' names Python code; the leaderboard "
                   "does not run it, so it does not read this file's plan\n")
    assert not (two / "ran").exists()


def test_a_suite_file_of_another_suite_is_a_one_line_error(two, capsys):
    (two / "other.yaml").write_text(textwrap.dedent(TWO).replace("name: two", "name: other"))
    assert cli.main(["leaderboard", "--suite", "two", "--config", "other.yaml"]) == 2
    assert capsys.readouterr().err == ("error: --config other.yaml: key 'name' is 'other', not "
                                       "'two'\n")


# --- one suite per leaderboard (row A7) ---------------------------------------------------------

def test_records_of_other_suites_in_the_folder_are_left_out_with_one_line(two, capsys):
    folder = two / "mixed"
    write_record(folder, record())
    write_record(folder, record(method="cutout", err=99.0, suite="one"))
    write_record(folder, record(seed=1, err=1.0, suite="three"))
    assert cli.main(["leaderboard", "--suite", "two", "--results", str(folder),
                     "--config", "two.yaml"]) == 0
    err = capsys.readouterr().err
    assert err == (f"warning: {folder}: left out 2 records of other suites (one (1), three (1)); "
                   "only suite 'two' is shown\n")
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert row(text, "Final-epoch test error", "resnet20")[1:] == ["30.00 ± n/a (n=1)",
                                                                   "missing (0 of 1)"]


def test_compare_refuses_a_folder_of_several_suites_in_one_line(two, capsys):
    folder = two / "mixed"
    write_record(folder, record())
    write_record(folder, record(method="cutout", suite="one"))
    assert cli.main(["compare", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds records of 2 suites (one, two)" in err


# --- a number outside its range is a damaged record (row A6) ------------------------------------

@pytest.mark.parametrize("bad", [-250.0, 1e300])
def test_a_record_with_an_error_outside_0_100_enters_no_mean_and_no_rank(two, capsys, bad):
    folder = two / "runs" / "results" / "two"
    write_record(folder, record(method="cutout", err=40.0))
    write_record(folder, record(method="cutout", seed=1, err=bad))
    before = snapshot(two / "runs" / "results")
    assert cli.main(["leaderboard", "--suite", "two", "--config", "two.yaml"]) == 0
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert row(text, "Final-epoch test error", "resnet20")[2] == "40.00 ± n/a (n=1)"
    assert "key 'final_test_error' is" in capsys.readouterr().err
    assert cli.main(["compare", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "| cutout | 40.00 ± n/a (n=1) #2 |" in out and "| plain | 30.00 ± n/a (n=1) #1 |" in out
    assert snapshot(two / "runs" / "results") == before


def test_direct_render_of_an_out_of_range_record_is_a_one_line_error_not_a_traceback():
    with pytest.raises(ValueError, match=r"^results/two/resnet20__plain__s0.json: key "
                       r"'final_test_error' is 1e\+300, outside its range \(must be in "
                       r"\[0, 100\]\)"):
        lb.render([record(err=1e300)], suite="two")


def test_compare_skips_a_leaderboard_whose_data_block_holds_an_error_outside_0_100(two, capsys):
    good = two / "good.md"
    good.write_text(lb.render([record()], suite="two"))
    bad = two / "bad.md"
    bad.write_text(good.read_text().replace('"final":[30.0]', '"final":[-250.0]'))
    assert cli.main(["compare", str(bad), str(good)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'final' is [-250.0], not a list of errors" in err


# --- runs at chance level (row A9) ---------------------------------------------------------------

def test_a_finished_run_at_chance_level_is_flagged_in_its_cell_and_the_header():
    three = {"num_classes": 3, "n_test": 600, "dataset": "hf:shapes"}
    recs = [record(err=20.0, **three), record(method="cutout", err=66.67, **three)]
    text = lb.render(recs, suite="two")
    assert "2 runs finished, 1 at chance level (see below)" in header(text)
    assert row(text, "Final-epoch test error", "resnet20")[1:] == [
        "20.00 ± n/a (n=1)", "66.67 ± n/a (n=1; 1 at chance)"]
    assert row(text, "Runs at chance level", "`resnet20__cutout__s0`") == [
        "`resnet20__cutout__s0`", "3", "66.67", "62.82", "66.67"]


@pytest.mark.parametrize("dataset, extra, err, flagged", [
    ("cifar10", {}, 89.5, True),       # 90% is guessing; 2 standard errors on 10000 images: 0.6
    ("cifar10", {}, 89.3, False),
    ("cifar100", {}, 98.9, True),
    ("synthetic", {"config": {"data": {"options": {"n_test": 64}}}}, 83.0, True),  # 10 classes
    ("synthetic", {"config": {"data": {"options": {"n_test": 64}}}}, 82.0, False),
    ("hf:x", {}, 99.0, False),  # classes unknown: nothing is claimed
    ("hf:x", {"num_classes": 2}, 49.2, True),  # n unknown: 1 point below 50%
    ("hf:x", {"num_classes": 2}, 48.9, False),
])
def test_chance_level_is_the_error_of_guessing_less_two_standard_errors(dataset, extra, err,
                                                                        flagged):
    rec = record(err=err, dataset=dataset, **extra)
    if "config" in extra:
        rec["config"] = {**extra["config"], "method": {"name": "plain"}}
    assert grid.at_chance(rec) is flagged


def test_a_failed_run_is_never_counted_at_chance():
    rec = record(err=None, status="failed", failure={"epoch": 1, "reason": "loss is NaN"},
                 best_test_error=None, num_classes=3)
    assert not grid.at_chance(rec)


# --- read-only commands never rename or move a file (row D4) ------------------------------------

def test_leaderboard_and_compare_never_rename_or_move_a_file_in_a_results_folder(two, capsys):
    folder = two / "runs" / "results" / "two"
    (folder / "package.json").write_text(json.dumps({"name": "web", "version": "1.0.0"}))
    (folder / "resnet20__cutout__s0.json").write_text('{"run_id": "resnet20__cutout__s0", "sch')
    write_record(folder, record(seed=1, err=-3.0))
    before = snapshot(two / "runs" / "results")
    assert cli.main(["leaderboard", "--suite", "two", "--config", "two.yaml"]) == 0
    assert cli.main(["leaderboard", "--suite", "two", "--results", str(folder)]) == 0
    assert cli.main(["compare", str(folder)]) == 0
    assert cli.main(["compare", "two"]) == 0
    assert snapshot(two / "runs" / "results") == before
    err = capsys.readouterr().err
    assert "package.json" not in err  # not a record: skipped quietly
    assert err.count("resnet20__cutout__s0.json: damaged result record (not valid JSON") == 1
    assert "skipping it (left as it is)" in err and "moved" not in err


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", ""])
def test_a_leaderboard_suite_name_that_is_not_a_plain_file_name_is_one_line(two, capsys, name):
    before = sorted(p.relative_to(two) for p in two.rglob("*"))
    assert cli.main(["leaderboard", "--suite", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --suite is {name!r}; a suite name is a plain file name")
    assert err.count("\n") == 1
    assert sorted(p.relative_to(two) for p in two.rglob("*")) == before


# --- the header names where the records were ----------------------------------------------------

def generated_line(text: str) -> str:
    return text.splitlines()[2]


def test_the_header_names_the_results_folder_the_records_were_read_from(two, capsys):
    assert cli.main(["leaderboard", "--suite", "two"]) == 0
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert generated_line(text) == lb.generated_by("two", "runs/results/two")
    assert "`erasebench leaderboard --suite two --results runs/results/two`" in text
    (two / "elsewhere").mkdir()
    (two / "runs" / "results").rename(two / "elsewhere" / "results")
    assert cli.main(["leaderboard", "--suite", "two", "--results", "elsewhere/results/two"]) == 0
    text = (two / "runs" / "leaderboards" / "two.md").read_text()
    assert "--results elsewhere/results/two`;" in generated_line(text)


def test_the_header_never_shows_an_absolute_path_of_this_machine(two, tmp_path_factory):
    inside = lb.render_suite("two", two / "runs" / "results" / "two", two / "in.md")
    assert "--results runs/results/two`" in generated_line(inside.read_text())
    other = tmp_path_factory.mktemp("other")  # a folder outside the working folder
    (two / "runs" / "results").rename(other / "results")
    text = lb.render_suite("two", other / "results" / "two", two / "out.md").read_text()
    assert "--results …/results/two`" in generated_line(text)
    assert str(other) not in text and str(two) not in text


def test_every_committed_leaderboard_has_the_header_the_renderer_writes():
    """They were rendered with `--out .` (records in results/<suite>/, not committed): the line
    is the renderer's, so a new render differs from them only where the records do."""
    found = 0
    for path in sorted((Path(__file__).parents[2] / "leaderboards").glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines[0].startswith("# Leaderboard: "):
            suite = lines[0].removeprefix("# Leaderboard: ")
            assert lines[2] == lb.generated_by(suite, f"results/{suite}"), path.name
            found += 1
    assert found >= 3
