"""Leaderboards: the rendered markdown of three fixture suites is pinned by golden files; the
statistics, the grid of planned runs and `compare` are specified one by one.

Regenerate the goldens after an intended change with
    ERASEBENCH_REGEN_GOLDEN=1 python -m pytest tests/test_leaderboard.py
and read the diff before committing it.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

import pytest

from benchmark import leaderboard as lb
from benchmark import thesis
from benchmark.results import write_record

FIXTURES = Path(__file__).parent / "fixtures" / "leaderboard"
REGEN = os.environ.get("ERASEBENCH_REGEN_GOLDEN") == "1"

# Per-seed offsets added to a cell's base error: deterministic, with a visible spread.
OFFSETS = [0.00, 0.12, -0.08, 0.05, -0.10]
CAM = {"source": "during", "layer": None, "target": "label", "path": "fast"}
METHODS = {  # label -> (eraser, eraser_params, cam)
    "plain": (None, {}, None),
    "random_erasing": ("random_erasing", {"p": 0.5}, None),
    "cutout": ("cutout", {"size": 16}, None),
    "hide_and_seek": ("hide_and_seek", {"p": 0.5}, None),
    "cam_erasing": ("cam_erasing", {"b_h": 2}, CAM),
    "cam_erasing(b_h=0)": ("cam_erasing", {"b_h": 0}, CAM),
    "cam_erasing(cam_source=after)": ("cam_erasing", {"b_h": 2}, {**CAM, "source": "after"}),
}


def make_record(suite, model, method, seed, err, *, dataset="cifar10", occlusion=None,
                device="NVIDIA H100 80GB HBM3", epochs=4):
    eraser, params, cam = METHODS[method]
    run_id = f"{model}__{method}__s{seed}"
    curve = [err + 30.0 / (e + 1) for e in range(epochs)]
    return {
        "schema": 1, "suite": suite, "run_id": run_id, "model": model, "method": method,
        "eraser": eraser, "eraser_params": params, "mode": None, "cam": cam, "ablation": {},
        "seed": seed, "dataset": dataset, "epochs": epochs,
        "final_test_error": round(err, 4), "best_test_error": round(err - 0.15, 4),
        "best_epoch": epochs - 1,
        "curves": {"epoch": list(range(1, epochs + 1)), "test_error": curve},
        "occlusion": occlusion, "wall_time_s": 1800.0 + 60 * seed, "images_per_s": 41000.0 + seed,
        "device": device,
        "versions": {"python": "3.11.9", "torch": "2.4.0", "erasebench": "0.1.0"},
        "git_commit": "abc1234", "date": f"2025-01-0{seed + 1}T12:00:00",
        "command": f"accelerate launch benchmark/run.py --suite {suite}", "config": {},
    }


def planned(model, method, seed):
    return {"run_id": f"{model}__{method}__s{seed}", "model": model, "method": method, "seed": seed}


BASE = {"plain": 8.0, "cam_erasing": 7.1, "random_erasing": 7.4, "cutout": 7.3,
        "hide_and_seek": 7.6, "cam_erasing(b_h=0)": 7.2, "cam_erasing(cam_source=after)": 7.25}
FIVE = ["plain", "random_erasing", "cutout", "hide_and_seek", "cam_erasing"]


def complete_suite():
    """cifar10, resnet20 (five methods and two CAM ablations) and resnet32 (five methods), 3 seeds."""
    plan = [(m, mo, s) for mo, methods in (("resnet20", list(BASE)), ("resnet32", FIVE))
            for m in methods for s in range(3)]
    recs = [make_record("thesis", mo, m, s, BASE[m] - (1.0 if mo == "resnet32" else 0) + OFFSETS[s])
            for m, mo, s in plan]
    return recs, [planned(mo, m, s) for m, mo, s in plan]


def incomplete_suite():
    """synthetic with object boxes, resnet20, five methods planned x 2 seeds: cutout has one of its
    two runs, hide_and_seek none, and a CPU machine ran it."""
    plan = [(m, s) for m in FIVE for s in range(2)]
    skip = {("cutout", 1), ("hide_and_seek", 0), ("hide_and_seek", 1)}
    recs = []
    for m, s in plan:
        if (m, s) in skip:
            continue
        occ = {"erased_image_rate": 0.5, "object_hit_rate": 0.6 + 0.1 * s,
               "object_covered_mean": 0.2, "random_point_in_box": 0.25,
               "cam_peak_in_box": 0.8 if METHODS[m][2] else None}
        recs.append(make_record("synthetic_study", "resnet20", m, s, 20 + BASE[m] + OFFSETS[s],
                                dataset="synthetic", occlusion=None if m == "plain" else occ,
                                device="cpu"))
    return recs, [planned("resnet20", m, s) for m, s in plan]


def single_seed_suite():
    """synthetic, resnet20, five methods, seed 0 only (std and p-values are n/a)."""
    return [make_record("smoke", "resnet20", m, 0, 30 + BASE[m], dataset="synthetic", device="cpu")
            for m in FIVE]


def check_golden(name: str, text: str):
    path = FIXTURES / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with ERASEBENCH_REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file"


# ----------------------------------------------------------------------------- golden files

def test_complete_suite_matches_golden():
    recs, plan = complete_suite()
    figs = [("test error by epoch, resnet20", "figures/thesis_curves_resnet20.png")]
    check_golden("complete.md", lb.render(recs, suite="thesis", expected_runs=plan, figures=figs))


def test_incomplete_suite_matches_golden():
    recs, plan = incomplete_suite()
    check_golden("incomplete.md", lb.render(recs, suite="synthetic_study", expected_runs=plan))


def test_single_seed_suite_matches_golden():
    check_golden("single_seed.md", lb.render(single_seed_suite(), suite="smoke"))


def test_compare_matches_golden():
    recs, plan = complete_suite()
    a = lb.summary(lb.build_grid(recs, suite="thesis", expected_runs=plan))
    b = lb.summary(lb.build_grid(single_seed_suite(), suite="smoke"))
    check_golden("compare.md", lb.compare([a, b]))


# ----------------------------------------------------------------------------- the tables

def rows_of(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under `## heading`, as lists of cells."""
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def test_table2_puts_methods_in_thesis_order_and_the_thesis_beside_ours():
    recs, plan = complete_suite()
    text = lb.render(recs, suite="thesis", expected_runs=plan)
    header = next(ln for ln in text.splitlines() if ln.startswith("| model | plain"))
    assert header.split(" | ")[1:6] == ["plain", "cam_erasing", "cam_erasing(b_h=0)",
                                        "cam_erasing(cam_source=after)", "random_erasing"]
    rows = {r[0]: r for r in rows_of(text, "Final-epoch test error")}
    assert rows["resnet20"][2] == "7.11 ± 0.10 (n=3)"  # 7.10 + mean(0, 0.12, -0.08)
    assert rows["resnet20 · thesis"][2] == "6.40"  # b_h = 2, CAM during: the proposed method
    assert rows["resnet20 · thesis"][3] == "—"  # b_h = 0 is not a Table 2 configuration
    assert rows["resnet20 · ours − thesis"][2] == "+0.71"
    assert rows["resnet32"][3] == "—"  # the ablations were not planned on resnet32
    assert rows["resnet32 · thesis"][2] == "5.56"


def test_placement_uses_structured_fields_not_labels():
    recs = [dict(make_record("x", "resnet20", "cam_erasing", s, 7.0 + OFFSETS[s]), method="mine")
            for s in range(2)]
    text = lb.render(recs, suite="x")
    rows = {r[0]: r for r in rows_of(text, "Final-epoch test error")}
    assert rows["resnet20 · thesis"][1] == "6.40"  # label "mine", but eraser cam_erasing, b_h 2


def test_a_variant_with_other_settings_gets_no_thesis_number():
    recs = [dict(make_record("x", "resnet20", "random_erasing", s, 7.0 + OFFSETS[s]),
                 method="random_erasing(p=1)", eraser_params={"p": 1.0, "sl": 0.02})
            for s in range(2)]
    rows = {r[0]: r for r in rows_of(lb.render(recs, suite="x"), "Final-epoch test error")}
    assert "resnet20 · thesis" not in rows  # p = 1 is not the thesis's Random Erasing (p = 0.5)


def test_thesis_numbers_are_not_printed_beside_other_data():
    text = lb.render(single_seed_suite(), suite="smoke")
    assert "· thesis" not in text
    assert "not printed beside results on other data" in text


def test_missing_cells_are_marked_never_dropped():
    recs, plan = incomplete_suite()
    rows = rows_of(lb.render(recs, suite="s", expected_runs=plan), "Final-epoch test error")
    by_header = dict(zip(["model", "plain", "cam_erasing", "random_erasing", "cutout",
                          "hide_and_seek"], rows[0], strict=True))
    assert by_header["hide_and_seek"] == "missing (0 of 2)"
    assert by_header["cutout"].endswith("(n=1 of 2)")


def test_inferred_grid_is_models_x_methods_x_seeds_seen():
    recs, _ = complete_suite()
    recs = [r for r in recs if not (r["model"] == "resnet32" and r["method"] == "cutout")]
    g = lb.build_grid(recs, suite="thesis")
    assert g.cell("resnet32", next(m for m in g.methods if m.label == "cutout")).expected == 3
    assert "resnet32 / cutout / seed 0" in g.missing
    # the CAM ablations ran on resnet20 only, so the inferred grid expects them on resnet32 too
    assert "resnet32 / cam_erasing(b_h=0) / seed 2" in g.missing


def test_tables_3_and_4_appear_only_with_their_ablations():
    recs, plan = complete_suite()
    text = lb.render(recs, suite="thesis", expected_runs=plan)
    t3 = {r[0]: r for r in rows_of(text, "Table 3")}
    assert t3["resnet20 · thesis"][1:] == ["6.43", "6.40"]
    t4 = {r[0]: r for r in rows_of(text, "Table 4")}
    assert t4["resnet20 (b_h = 2) · thesis"][1:] == ["6.40", "6.44"]
    plain_only = lb.render(single_seed_suite(), suite="smoke")
    assert "## Table 3" not in plain_only and "## Table 4" not in plain_only


def test_single_seed_has_no_std_and_no_p_values():
    text = lb.render(single_seed_suite(), suite="smoke")
    rows = rows_of(text, "Significance")
    assert all(r[4] == "n/a" and r[6] == "n/a" for r in rows)
    assert rows[1][2] == "37.10 ± n/a (n=1)"


def test_best_baseline_is_the_lowest_mean_baseline():
    recs, plan = complete_suite()
    g = lb.build_grid(recs, suite="thesis", expected_runs=plan)
    assert lb.best_baseline(g, "resnet20").label == "cutout"


def test_data_block_survives_double_dashes_and_round_trips(tmp_path):
    recs, plan = complete_suite()
    text = lb.render(recs, suite="thesis", expected_runs=plan)
    block = re.search(r"<!-- erasebench:leaderboard (.*?) -->", text, re.S).group(1)
    assert "--" not in block  # an HTML comment may not contain "--"
    md = tmp_path / "thesis.md"
    md.write_text(text)
    assert lb.read_summary(str(md)) == lb.summary(lb.build_grid(recs, suite="thesis",
                                                                  expected_runs=plan))


# ----------------------------------------------------------------------------- failed runs

def failed(rec, epoch, reason):
    """`rec` as the runner records a failed run: status failed, no errors, epoch and reason."""
    return {**rec, "schema": 2, "status": "failed", "failure": {"epoch": epoch, "reason": reason},
            "final_test_error": None, "best_test_error": None, "best_epoch": None}


def test_a_failed_run_renders_failed_1_of_1_and_is_listed_with_its_reason():
    recs = single_seed_suite()
    recs[4] = failed(recs[4], 3, "loss is NaN")  # cam_erasing: its column still comes second
    text = lb.render(recs, suite="smoke")
    rows = {r[0]: r for r in rows_of(text, "Final-epoch test error")}
    header = next(ln for ln in text.splitlines() if ln.startswith("| model | plain"))
    assert header.split(" | ")[2] == "cam_erasing"
    assert rows["resnet20"][2] == "failed (1 of 1)"
    assert "4 of 5 planned runs finished, 1 failed" in text
    assert rows_of(text, "Failed runs") == [["`resnet20__cam_erasing__s0`", "3 of 4",
                                             "loss is NaN"]]
    assert rows_of(text, "Significance")[1][2] == "failed (1 of 1)"
    assert "Missing runs" not in text  # a failed run has a record: it is not missing


def test_a_mixed_cell_averages_only_the_finished_runs_and_counts_the_failed():
    recs, plan = complete_suite()
    i = next(i for i, r in enumerate(recs) if r["run_id"] == "resnet20__cutout__s1")
    recs[i] = failed(recs[i], None, "ValueError: plugin raised")
    text = lb.render(recs, suite="thesis", expected_runs=plan)
    rows = {r[0]: r for r in rows_of(text, "Final-epoch test error")}
    col = next(ln for ln in text.splitlines() if ln.startswith("| model | plain")).split(" | ")
    cutout = rows["resnet20"][col.index("cutout")]
    assert cutout == "7.26 ± 0.06 (n=2 of 3; 1 failed)"  # 7.30 + mean(0, -0.08): seed 1 left out
    assert rows_of(text, "Failed runs") == [["`resnet20__cutout__s1`", "before epoch 1",
                                             "ValueError: plugin raised"]]
    g = lb.build_grid(recs, suite="thesis", expected_runs=plan)
    group = next(gr for gr in lb.summary(g)["groups"]
                 if gr["model"] == "resnet20" and gr["method"] == "cutout")
    assert group["final"] == [7.3, 7.22] and group["seeds"] == [0, 2] and group["failed"] == 1
    assert "*" in lb.compare([lb.summary(g)]).split("| cutout |")[1].splitlines()[0]


def test_a_failed_run_never_enters_means_p_values_or_ranks():
    recs = [make_record("x", "resnet20", m, s, BASE[m] + OFFSETS[s])
            for m in ("plain", "cutout") for s in range(3)]
    recs.append(failed(make_record("x", "resnet20", "random_erasing", 0, 99.0), 1, "boom"))
    g = lb.build_grid(recs, suite="x")
    assert lb.best_baseline(g, "resnet20").label == "cutout"
    rows = {r[1]: r for r in rows_of(lb.render(recs, suite="x"), "Significance")}
    assert rows["random_erasing"][2:] == ["failed (1 of 3)", "—", "n/a", "—", "n/a"]
    ranks = {r[0]: r for r in rows_of("## x\n" + lb.compare([lb.summary(g)]), "x")}
    assert "random_erasing" not in ranks and ranks["cutout"][1] == "7.31 (1)"


def test_render_suite_skips_a_damaged_record_with_a_warning_and_never_crashes(tmp_path, capsys):
    results_dir = tmp_path / "results"
    for r in single_seed_suite():
        write_record(results_dir, r)
    broken = results_dir / "resnet20__cutout__s0.json"
    broken.write_bytes(broken.read_bytes()[:100])
    (results_dir / "resnet20__zzz__s0.json").write_text('{"run_id": "z", "schema": 1, "seed": 0}')
    plan = [planned("resnet20", m, 0) for m in FIVE]
    out = lb.render_suite("smoke", results_dir, tmp_path / "lb" / "smoke.md", expected_runs=plan)
    err = capsys.readouterr().err
    assert f"warning: {broken}: damaged result record (not valid JSON" in err
    assert "resnet20__zzz__s0.json: damaged result record (key 'model' is missing)" in err
    text = out.read_text()
    assert "4 of 5 planned runs finished" in text and "missing (0 of 1)" in text  # cutout
    assert (results_dir / "resnet20__cutout__s0.json.corrupt").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_render_suite_shows_a_failed_record_from_disk(tmp_path):
    recs = single_seed_suite()
    recs[0] = failed(recs[0], 2, "loss is inf")
    for r in recs:
        write_record(tmp_path / "results", r)
    text = lb.render_suite("smoke", tmp_path / "results", tmp_path / "smoke.md").read_text()
    assert "| resnet20 | failed (1 of 1) |" in text
    assert "| `resnet20__plain__s0` | 2 of 4 | loss is inf |" in text


# ----------------------------------------------------------------------------- statistics

def test_welch_p_matches_the_closed_form_for_two_degrees_of_freedom():
    # a = [0, 2], b = [3, 5]: both variances 2, t = -3 / sqrt(2), df = 2; for df = 2 the
    # two-sided tail is 1 - |t| / sqrt(2 + t^2) = 1 - 3 / sqrt(13).
    assert lb.welch_p([0, 2], [3, 5]) == pytest.approx(1 - 3 / math.sqrt(13), abs=1e-12)


def test_welch_p_matches_the_closed_form_for_four_degrees_of_freedom():
    # a = [1, 2, 3], b = [4, 5, 6]: t = -3 / sqrt(2/3), df = 4; for df = 4 the t CDF is
    # 1/2 + (3/4) x - (1/4) x^3 with x = t / sqrt(4 + t^2).
    t = -3 / math.sqrt(2 / 3)
    x = t / math.sqrt(4 + t * t)
    cdf = 0.5 + 0.75 * x - 0.25 * x ** 3
    assert lb.welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 * cdf, abs=1e-12)


def test_welch_p_matches_scipy_for_unequal_variances():
    stats = pytest.importorskip("scipy.stats")
    a, b = [6.4, 6.55, 6.31, 6.47, 6.38], [6.75, 6.6, 7.02, 6.71, 6.9, 6.5]
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert lb.welch_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_welch_p_is_none_below_two_runs_or_without_spread():
    assert lb.welch_p([6.4], [6.7, 6.8]) is None
    assert lb.welch_p([6.4, 6.4], [6.7, 6.7]) is None
    assert lb.welch_p([6.4, 6.4], [6.7, 6.8]) is not None


def test_p_values_are_formatted_with_a_floor():
    assert [lb.fmt_p(p) for p in (None, 0.0004, 0.0123, 0.5)] == ["n/a", "<0.001", "0.012", "0.500"]


# ----------------------------------------------------------------------------- compare

def test_compare_ranks_per_column_and_averages_the_ranks():
    recs, plan = complete_suite()
    a = lb.summary(lb.build_grid(recs, suite="thesis", expected_runs=plan))
    rows = {r[0]: r for r in rows_of("## x\n" + lb.compare([a]), "x")}
    assert rows["cam_erasing"][1] == "7.11 (1)" and rows["cam_erasing"][2] == "6.11 (1)"
    assert rows["cam_erasing"][-1] == "1.00 (2 of 2)"
    assert rows["cam_erasing(b_h=0)"][2] == "—"  # not run on resnet32
    assert rows["plain"][1] == "8.01 (7)"


def test_compare_ties_share_the_better_rank():
    s = {"suite": "t", "models": ["m"], "groups": [
        {"model": "m", "method": k, "expected": 1, "final": [v]}
        for k, v in (("a", 5.0), ("b", 5.0), ("c", 6.0))]}
    rows = {r[0]: r for r in rows_of("## x\n" + lb.compare([s]), "x")}
    assert [rows[k][1] for k in "abc"] == ["5.00 (1)", "5.00 (1)", "6.00 (3)"]


# ----------------------------------------------------------------------------- files and CLI

def test_render_suite_writes_markdown_and_curve_figures(tmp_path):
    recs, plan = complete_suite()
    for r in recs:
        write_record(tmp_path / "results", r)
    figs = tmp_path / "lb" / "figures"
    figs.mkdir(parents=True)
    (figs / "erased_fraction_cutout.png").write_bytes(b"png")
    (figs / "erased_fraction_unused.png").write_bytes(b"png")
    out = lb.render_suite("thesis", tmp_path / "results", tmp_path / "lb" / "thesis.md",
                          expected_runs=plan)
    text = out.read_text()
    assert (figs / "thesis_curves_resnet20.png").stat().st_size > 1000
    assert "](figures/thesis_curves_resnet32.png)" in text
    assert "](figures/erased_fraction_cutout.png)" in text
    assert "erased_fraction_unused" not in text


def test_cli_render_and_compare_from_records_and_markdown(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for r in single_seed_suite():
        write_record(tmp_path / "results" / "smoke", r)
    assert lb.main(["render", "--suite", "smoke"]) == 0
    md = tmp_path / "leaderboards" / "smoke.md"
    assert md.is_file()
    capsys.readouterr()
    assert lb.main(["compare", str(md), "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count("resnet20 (smoke)") == 2  # one column from the .md, one from the records


def test_compare_names_a_bad_input(tmp_path, capsys):
    bad = tmp_path / "old.md"
    bad.write_text("# a leaderboard without a data block\n")
    assert lb.main(["compare", str(bad)]) == 2
    assert f"{bad}: no 'erasebench:leaderboard' data block" in capsys.readouterr().err


def test_expected_runs_without_a_required_key_is_a_one_line_error():
    with pytest.raises(ValueError, match="expected_runs: an entry lacks key 'seed'"):
        lb.build_grid([], suite="x", expected_runs=[{"run_id": "a", "model": "m", "method": "p"}])


def test_a_record_without_a_needed_key_is_a_one_line_error():
    rec = single_seed_suite()[0]
    del rec["final_test_error"]
    with pytest.raises(ValueError, match=r"results/smoke/resnet20__plain__s0.json: key "
                                         r"'final_test_error' is missing"):
        lb.render([rec], suite="smoke")


def test_cli_render_names_a_missing_results_folder(tmp_path, capsys):
    assert lb.main(["render", "--suite", "none", "--results", str(tmp_path / "nope")]) == 2
    assert "nope: no such results folder" in capsys.readouterr().err


def test_thesis_tables_are_the_published_numbers():
    assert thesis.TABLE_2["resnet44"]["cam_erasing"] == 5.15
    assert thesis.TABLE_1["resnet20"] == {k: thesis.TABLE_2["resnet20"][k] for k in thesis.BASELINES}
    assert min(thesis.TABLE_3["resnet20"], key=thesis.TABLE_3["resnet20"].get) == thesis.PROPOSED_B_H
    assert json.dumps(thesis.TABLE_4) == '{"resnet20": {"during": 6.4, "after": 6.44}}'


def test_random_erasing_with_several_rectangles_is_not_compared_with_the_thesis():
    one = {"p": 0.5, "sl": 0.02, "sh": 0.4, "r1": 0.3, "min_count": 1, "max_count": 1}
    assert thesis.settings_match("random_erasing", one)
    assert not thesis.settings_match("random_erasing", {**one, "max_count": 3})
    assert thesis.settings_match("random_erasing", {"p": 0.5})  # older records lack the counts
