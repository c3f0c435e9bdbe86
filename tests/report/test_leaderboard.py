"""Leaderboards: the rendered markdown of three fixture suites is pinned by golden files; the
statistics, the grid of planned runs and `compare` are specified one by one.

Regenerate the goldens after an intended change with
    ERASEBENCH_REGEN_GOLDEN=1 python -m pytest tests/report
and read the diff before committing it.
"""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.report import compare as cmp
from benchmark.report import grid, markdown, tables, thesis
from benchmark.report import leaderboard as lb
from benchmark.report import stats as report_stats
from benchmark.results import write_record

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
    curve = [min(100.0, err + 30.0 / (e + 1)) for e in range(epochs)]
    # as the runner resolves them: CAM erasers append after a plain warm-up of half the epochs
    mode = None if eraser is None else "append" if cam else "replace"
    setup = {"name": eraser or "plain", "mode": mode, "fill": "zero", "append_bn": "joint",
             "warmup_epochs": epochs // 2 if cam else 0}
    return {
        "schema": 1, "suite": suite, "run_id": run_id, "model": model, "method": method,
        "eraser": eraser, "eraser_params": params, "mode": mode, "cam": cam, "ablation": {},
        "seed": seed, "dataset": dataset, "epochs": epochs,
        "final_test_error": round(err, 4), "best_test_error": round(err - 0.15, 4),
        "best_epoch": epochs - 1,
        "curves": {"epoch": list(range(1, epochs + 1)), "test_error": curve},
        "occlusion": occlusion, "wall_time_s": 1800.0 + 60 * seed, "images_per_s": 41000.0 + seed,
        "train_time_s": 1500.0 + 60 * seed, "device": device,
        "versions": {"python": "3.11.9", "torch": "2.4.0", "erasebench": "0.1.0"},
        "git_commit": "abc1234", "date": f"2025-01-0{seed + 1}T12:00:00",
        "command": f"accelerate launch benchmark/run.py --suite {suite}",
        "config": {"method": setup},
    }


def planned(model, method, seed):
    return {"run_id": f"{model}__{method}__s{seed}", "model": model, "label": method, "seed": seed}


BASE = {"plain": 8.0, "cam_erasing": 7.1, "random_erasing": 7.4, "cutout": 7.3,
        "hide_and_seek": 7.6, "cam_erasing(b_h=0)": 7.2, "cam_erasing(cam_source=after)": 7.25}
FIVE = ["plain", "random_erasing", "cutout", "hide_and_seek", "cam_erasing"]


def complete_suite():
    """cifar10, resnet20 (five methods and two CAM ablations) and resnet32 (five methods), 3
    seeds."""
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


# ----------------------------------------------------------------------------- golden files

def test_complete_suite_matches_golden(golden):
    recs, plan = complete_suite()
    figs = [("test error by epoch, resnet20", "figures/thesis_curves_resnet20.png")]
    golden("complete.md", lb.render(recs, suite="thesis", expected_runs=plan, figures=figs))


def test_incomplete_suite_matches_golden(golden):
    recs, plan = incomplete_suite()
    golden("incomplete.md", lb.render(recs, suite="synthetic_study", expected_runs=plan))


def test_single_seed_suite_matches_golden(golden):
    golden("single_seed.md", lb.render(single_seed_suite(), suite="smoke"))


def test_compare_matches_golden(golden):
    recs, plan = complete_suite()
    a = lb.summary(grid.build_grid(recs, suite="thesis", expected_runs=plan))
    b = lb.summary(grid.build_grid(single_seed_suite(), suite="smoke"))
    golden("compare.md", cmp.compare([a, b]))


def test_compare_names_where_each_column_came_from_when_a_suite_meets_a_copy_of_itself():
    mine = {**lb.summary(grid.build_grid(single_seed_suite(), suite="smoke")),
            "source": "runs/leaderboards/smoke.md"}
    committed = {**mine, "source": "leaderboards/smoke.md"}
    header = next(ln for ln in cmp.compare([mine, committed]).splitlines()
                  if ln.startswith("| method"))
    assert "resnet20 (smoke, runs/leaderboards/smoke.md)" in header
    assert "resnet20 (smoke, leaderboards/smoke.md)" in header


def test_compare_numbers_columns_that_still_read_the_same_in_input_order():
    board = {**lb.summary(grid.build_grid(single_seed_suite(), suite="smoke")),
             "source": "leaderboards/smoke.md"}
    header = next(ln for ln in cmp.compare([board, board]).splitlines()
                  if ln.startswith("| method"))
    assert "resnet20 (smoke, leaderboards/smoke.md) [input 1]" in header
    assert "resnet20 (smoke, leaderboards/smoke.md) [input 2]" in header


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


def test_a_label_is_only_a_column_name_and_never_read_as_the_eraser():
    """Labels swapped on purpose: column `hide_and_seek` runs Cutout and `cutout` runs
    Hide-and-Seek. Order, thesis numbers, Table 1, reproducibility and the data block follow the
    eraser; the label only names the column."""
    swap = {"cutout": "hide_and_seek", "hide_and_seek": "cutout"}
    recs = [make_record("x", "resnet20", m, s, BASE[m] + OFFSETS[s])
            for m in ("plain", "cutout", "hide_and_seek") for s in range(2)]
    for r in recs:
        label = swap.get(r["method"], r["method"])
        r.update(method=label, run_id=f"resnet20__{label}__s{r['seed']}")
    text = lb.render(recs, suite="x")
    table = rows_of(text, "Final-epoch test error")
    assert table[0][1:] == ["8.06 ± 0.08 (n=2)", "7.36 ± 0.08 (n=2)", "7.66 ± 0.08 (n=2)"]
    header = text.split("## Final-epoch test error", 1)[1].split("\n| model |", 1)[1]
    assert header.startswith(" plain | hide_and_seek | cutout |")  # Cutout's rank, then H&S's
    thesis_row = {r[0]: r for r in table}["resnet20 · thesis"]
    published = thesis.TABLE_2["resnet20"]
    assert thesis_row[2:] == [f"{published['cutout']:.2f}", f"{published['hide_and_seek']:.2f}"]
    assert {r[0]: r[1] for r in rows_of(text, "Table 1")} == {"hide_and_seek": "7.36 ± 0.08 (n=2)",
                                                             "cutout": "7.66 ± 0.08 (n=2)"}
    assert "| eraser: cutout |" in text and "| eraser: hide_and_seek |" in text
    groups = {g["method"]: g["eraser"] for g in lb.summary(grid.build_grid(recs, suite="x"))
              ["groups"]}
    assert groups == {"plain": None, "hide_and_seek": "cutout", "cutout": "hide_and_seek"}


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
    g = grid.build_grid(recs, suite="thesis")
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
    g = grid.build_grid(recs, suite="thesis", expected_runs=plan)
    assert tables.best_baseline(g, "resnet20").label == "cutout"


def test_data_block_survives_double_dashes_and_round_trips(tmp_path):
    recs, plan = complete_suite()
    text = lb.render(recs, suite="thesis", expected_runs=plan)
    block = re.search(r"<!-- erasebench:leaderboard (.*?) -->", text, re.S).group(1)
    assert "--" not in block  # an HTML comment may not contain "--"
    md = tmp_path / "thesis.md"
    md.write_text(text)
    assert cmp.read_summary(str(md)) == lb.summary(grid.build_grid(recs, suite="thesis",
                                                                  expected_runs=plan))


def test_cost_says_it_is_device_hours_per_run_and_shows_the_pack_size():
    recs = [{**r, "pack_size": 4 if r["method"] != "plain" else 1} for r in single_seed_suite()]
    text = lb.render(recs, suite="smoke")
    assert "## Cost: device-hours per run" in text
    caption = text.split("## Cost", 1)[1].split("\n|", 1)[0]
    assert "Device-hours of the cell's median run" in caption
    assert "each run is charged 1/K of the pack's time" in caption
    rows = {r[1]: r for r in rows_of(text, "Cost")}
    header = next(ln for ln in text.split("## Cost", 1)[1].splitlines() if ln.startswith("| model"))
    assert header == ("| model | method | runs | device | pack | device-h, median run "
                      "| training images per device-s, same run |")
    # these CPU records predate cpu_time_s: wall-clock, and said so
    assert rows["plain"][4:6] == ["1", "0.500 h wall-clock"] and rows["cutout"][4] == "4"
    assert "Total: 2.50 hours wall-clock" in caption
    # records without a pack size: no pack column
    assert "| pack |" not in lb.render(single_seed_suite(), suite="smoke")


def _same_work(method, seed, wall, cpu):
    """A CPU record of the smoke suite's work: 8,000 training images in `wall` seconds of
    training, `cpu` CPU-seconds of them."""
    rec = make_record("smoke", "resnet20", method, seed, 30.0, dataset="synthetic", device="cpu")
    return {**rec, "wall_time_s": wall + 5.0, "train_time_s": wall, "images_per_s": 8000 / wall,
            "cpu_time_s": cpu}


def test_cpu_cost_cells_use_cpu_time_so_load_does_not_change_them():
    # identical work; hide_and_seek trained alone, plain beside a busy loop: 7x the wall time
    # (139 vs 947 images/s, as seen on a loaded machine), about the same CPU time
    recs = [_same_work("hide_and_seek", 0, wall=8.45, cpu=8.1),
            _same_work("plain", 0, wall=57.6, cpu=8.6)]
    text = lb.render(recs, suite="smoke")
    rows = {r[1]: r for r in rows_of(text, "Cost")}
    hours = {m: float(rows[m][4].split()[0]) for m in rows}
    assert rows["plain"][4].endswith(" CPU-h") and "wall" not in rows["plain"][4]
    assert hours["plain"] == pytest.approx(8.6 / 3600, rel=0.01)
    assert hours["plain"] / hours["hide_and_seek"] < 1.1  # not 6.8
    assert rows["plain"][5] == "930 per CPU-s" and rows["hide_and_seek"][5] == "988 per CPU-s"
    caption = text.split("## Cost", 1)[1].split("\n|", 1)[0]
    assert "CPU time the run's training consumed" in caption
    assert f"Total: {markdown.fmt_hours((8.1 + 8.6) / 3600)} CPU-hours, " in caption


def test_a_cpu_cell_with_a_record_from_before_cpu_time_falls_back_to_wall_clock_labelled():
    old = {k: v for k, v in _same_work("plain", 1, wall=57.6, cpu=0).items() if k != "cpu_time_s"}
    recs = [_same_work("plain", 0, wall=8.45, cpu=8.1), old,
            {**_same_work("cutout", 0, wall=9.0, cpu=8.0), "cpu_time_s": None}]
    rows = {r[1]: r for r in rows_of(lb.render(recs, suite="smoke"), "Cost")}
    assert rows["plain"][4] == f"{markdown.fmt_hours((8.45 + 5 + 57.6 + 5) / 2 / 3600)} h " \
        "wall-clock"
    assert rows["plain"][5].endswith(" per s wall-clock")
    assert rows["cutout"][4].endswith(" h wall-clock")


def test_a_wall_clock_cells_hours_and_throughput_come_from_the_same_clock():
    # 8,000 training images; 9 s of training, 14 s of run (evaluation included)
    rec = {**_same_work("cutout", 0, wall=9.0, cpu=8.0), "cpu_time_s": None}
    rows = {r[1]: r for r in rows_of(lb.render([rec], suite="smoke"), "Cost")}
    assert rows["cutout"][4] == f"{markdown.fmt_hours(14.0 / 3600)} h wall-clock"
    assert rows["cutout"][5] == f"{8000 / 14.0:,.0f} per s wall-clock"  # not 8000 / 9 s
    caption = lb.render([rec], suite="smoke").split("## Cost", 1)[1].split("\n|", 1)[0]
    assert "per wall-clock second of the whole run, evaluation included" in caption


def test_a_record_whose_cpu_time_is_implausible_against_its_training_time_costs_wall_clock(
        tmp_path, capsys):
    from benchmark.results import load_records
    env = {"threads": 1, "cpu_count": 2}
    # seeds 0-3: 1e-9 s (tiny), above 2x the 2 cores, a real 1-thread and a 2-thread run
    for i, cpu in enumerate((1e-9, 9.0 * 2 * 2 + 5, 7.5, 17.0)):
        rec = {**_same_work("plain", i, wall=9.0, cpu=cpu), "environment": env}
        (tmp_path / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    got = {r["seed"]: r for r in load_records(tmp_path)}
    err = capsys.readouterr().err
    assert got[0]["cpu_time_s"] is None and got[1]["cpu_time_s"] is None  # tiny, huge
    assert got[2]["cpu_time_s"] == 7.5 and got[3]["cpu_time_s"] == 17.0  # real 1 and 2 threads
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all("'cpu_time_s'" in ln and "wall-clock" in ln for ln in lines)
    assert "plain__s0.json" in lines[0] and "below 1/50" in lines[0]
    assert "plain__s1.json" in lines[1] and "more than 2x" in lines[1]
    cell = rows_of(lb.render([got[0]], suite="smoke"), "Cost")[0]
    assert cell[4].endswith(" h wall-clock") and "per CPU-s" not in cell[5]


def test_a_gpu_cell_costs_wall_clock_gpu_hours_whatever_cpu_time_says():
    rec = make_record("smoke", "resnet20", "plain", 0, 30.0, dataset="synthetic")  # an H100
    rows = rows_of(lb.render([{**rec, "cpu_time_s": 1.0}], suite="smoke"), "Cost")
    # one clock: 41,000 images/s over 1,500 s of training, per second of the 1,800 s run
    assert rows[0][4] == "0.500 GPU-h" and rows[0][5] == f"{41000 * 1500 / 1800:,.0f} per GPU-s"


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
    assert "4 runs finished, 1 failed · the plan is unknown, so runs without a record" in text
    assert rows_of(text, "Failed runs") == [["`resnet20__cam_erasing__s0`", "3 of 4",
                                             "loss is NaN"]]
    assert rows_of(text, "Significance")[1][2] == "failed (1 of 1)"
    assert "Missing runs" not in text  # a failed run has a record: it is not missing


def test_a_finished_run_whose_training_loss_rose_is_named_not_passed_off_as_good():
    recs = single_seed_suite()
    recs[0]["curves"]["train_loss"] = [5.0e7, 3.9e17]  # lr too high: finite, but diverged
    recs[1]["curves"]["train_loss"] = [2.1, 0.4]  # trained normally
    text = lb.render(recs, suite="smoke")
    assert "5 runs finished, 1 with a rising training loss (see below)" in text
    assert rows_of(text, "Runs whose training loss rose") == [
        [f"`{recs[0]['run_id']}`", "5e+07", "3.9e+17", f"{recs[0]['final_test_error']:.2f}"]]
    assert "rising training loss" not in lb.render(recs[1:], suite="smoke")


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
    g = grid.build_grid(recs, suite="thesis", expected_runs=plan)
    group = next(gr for gr in lb.summary(g)["groups"]
                 if gr["model"] == "resnet20" and gr["method"] == "cutout")
    assert group["final"] == [7.3, 7.22] and group["seeds"] == [0, 2] and group["failed"] == 1
    row = cmp.compare([lb.summary(g)]).split("| cutout |")[1].splitlines()[0]
    assert row.startswith(" 7.26 ± 0.06 (n=2 of 3; 1 failed) #")


def test_a_failed_run_never_enters_means_p_values_or_ranks():
    recs = [make_record("x", "resnet20", m, s, BASE[m] + OFFSETS[s])
            for m in ("plain", "cutout") for s in range(3)]
    recs.append(failed(make_record("x", "resnet20", "random_erasing", 0, 99.0), 1, "boom"))
    g = grid.build_grid(recs, suite="x")
    assert tables.best_baseline(g, "resnet20").label == "cutout"
    rows = {r[1]: r for r in rows_of(lb.render(recs, suite="x"), "Significance")}
    assert rows["random_erasing"][2:] == ["failed (1 of 3)", "—", "n/a", "—", "n/a"]
    ranks = {r[0]: r for r in rows_of("## x\n" + cmp.compare([lb.summary(g)]), "x")}
    assert "random_erasing" not in ranks and ranks["cutout"][1] == "7.31 ± 0.10 (n=3) #1"


def test_render_suite_skips_a_damaged_record_with_a_warning_leaves_it_and_never_crashes(
        tmp_path, capsys):
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
    assert broken.is_file() and not list(results_dir.glob("*.corrupt"))  # read-only: left as is
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
    assert report_stats.welch_p([0, 2], [3, 5]) == pytest.approx(1 - 3 / math.sqrt(13), abs=1e-12)


def test_welch_p_matches_the_closed_form_for_four_degrees_of_freedom():
    # a = [1, 2, 3], b = [4, 5, 6]: t = -3 / sqrt(2/3), df = 4; for df = 4 the t CDF is
    # 1/2 + (3/4) x - (1/4) x^3 with x = t / sqrt(4 + t^2).
    t = -3 / math.sqrt(2 / 3)
    x = t / math.sqrt(4 + t * t)
    cdf = 0.5 + 0.75 * x - 0.25 * x ** 3
    assert report_stats.welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 * cdf, abs=1e-12)


def test_welch_p_matches_scipy_for_unequal_variances():
    stats = pytest.importorskip("scipy.stats")
    a, b = [6.4, 6.55, 6.31, 6.47, 6.38], [6.75, 6.6, 7.02, 6.71, 6.9, 6.5]
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert report_stats.welch_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_welch_p_is_none_below_two_runs_or_without_spread():
    assert report_stats.welch_p([6.4], [6.7, 6.8]) is None
    assert report_stats.welch_p([6.4, 6.4], [6.7, 6.7]) is None
    assert report_stats.welch_p([6.4, 6.4], [6.7, 6.8]) is not None


def test_p_values_are_formatted_with_a_floor():
    assert ([markdown.fmt_p(p) for p in (None, 0.0004, 0.0123, 0.5)]
            == ["n/a", "<0.001", "0.012", "0.500"])


# ----------------------------------------------------------------------------- compare

def compare_rows(*summaries) -> dict[str, list[str]]:
    """The compare table's body rows by method name."""
    return {r[0]: r for r in rows_of("## x\n" + cmp.compare(list(summaries)), "x")}


def suite_summary(suite, errors, *, variants=None, epochs=4, seeds=(0,)):
    """The data block of a one-model suite from records: errors {label: error}; a label is a
    METHODS key, or in variants {label: (METHODS key, changed config.method settings)}."""
    recs = []
    for label, err in errors.items():
        base, settings = (variants or {}).get(label, (label, {}))
        for s in seeds:
            r = make_record(suite, "resnet20", base, s, err + OFFSETS[s], epochs=epochs)
            setup = {**r["config"]["method"], **settings}
            recs.append({**r, "method": label, "run_id": f"resnet20__{label}__s{s}",
                         "mode": setup["mode"], "config": {"method": setup}})
    return lb.summary(grid.build_grid(recs, suite=suite))


def test_compare_ranks_per_column_and_averages_the_ranks():
    recs, plan = complete_suite()
    a = lb.summary(grid.build_grid(recs, suite="thesis", expected_runs=plan))
    rows = compare_rows(a)
    assert rows["cam_erasing"][1:3] == ["7.11 ± 0.10 (n=3) #1", "6.11 ± 0.10 (n=3) #1"]
    assert rows["cam_erasing(b_h=0)"][2] == "—"  # not run on resnet32
    assert rows["plain"][1] == "8.01 ± 0.10 (n=3) #7"
    # the ablations ran on resnet20 only: that is the one column every method has
    assert rows["cam_erasing"][-1] == "1.00" and rows["plain"][-1] == "7.00"


def test_compare_ties_share_the_better_rank():
    rows = compare_rows(suite_summary("t", {"plain": 5.0, "cutout": 5.0, "random_erasing": 6.0}))
    assert [rows[k][1] for k in ("plain", "cutout", "random_erasing")] == [
        "5.00 ± n/a (n=1) #1", "5.00 ± n/a (n=1) #1", "6.00 ± n/a (n=1) #3"]


def test_compare_cells_are_mean_std_n_and_the_rank_in_that_column():
    a = suite_summary("a", {"plain": 8.0, "cutout": 7.3}, seeds=(0, 1, 2))
    b = suite_summary("b", {"plain": 9.0, "cutout": 9.5}, seeds=(0, 1))
    rows = compare_rows(a, b)
    assert rows["cutout"][1:] == ["7.31 ± 0.10 (n=3) #1", "9.56 ± 0.08 (n=2) #2", "1.50"]
    assert rows["plain"][1:] == ["8.01 ± 0.10 (n=3) #2", "9.06 ± 0.08 (n=2) #1", "1.50"]


def test_the_data_block_carries_what_a_method_does_beside_its_label():
    a = suite_summary("a", {"plain": 8.0, "cam_erasing": 7.1}, epochs=6)
    cam = next(gr for gr in a["groups"] if gr["method"] == "cam_erasing")
    assert a["schema"] == 2
    assert {k: cam[k] for k in ("eraser", "eraser_params", "mode", "fill", "append_bn",
                                "warmup_epochs", "epochs")} == {
        "eraser": "cam_erasing", "eraser_params": {"b_h": 2}, "mode": "append", "fill": "zero",
        "append_bn": "joint", "warmup_epochs": 3, "epochs": 6}


def test_one_method_under_two_labels_is_one_row_showing_both():
    # the default CAM erasing, labelled by two suites differently (and trained for different
    # lengths: the default warm-up is half the epochs in both)
    a = suite_summary("a", {"plain": 8.0, "cam_erasing": 7.1}, epochs=4)
    b = suite_summary("b", {"plain": 9.0, "cam(b_h=2)": 8.5}, epochs=6,
                      variants={"cam(b_h=2)": ("cam_erasing", {"warmup_epochs": 3})})
    rows = compare_rows(a, b)
    assert sorted(rows) == ["cam_erasing / cam(b_h=2)", "plain"]
    assert rows["cam_erasing / cam(b_h=2)"][1:] == ["7.10 ± n/a (n=1) #1", "8.50 ± n/a (n=1) #1",
                                                    "1.00"]


def test_two_methods_with_one_label_are_kept_apart_and_told_apart():
    a = suite_summary("a", {"plain": 8.0, "cam_erasing": 7.1})
    b = suite_summary("b", {"plain": 9.0, "cam_erasing": 8.5},
                      variants={"cam_erasing": ("cam_erasing", {"append_bn": "split"})})
    c = suite_summary("c", {"plain": 9.0, "cam_erasing": 8.7},
                      variants={"cam_erasing": ("cam_erasing(b_h=0)", {})})
    rows = compare_rows(a, b, c)
    assert list(rows) == ["plain", "cam_erasing [b_h=2, append_bn=joint]",
                          "cam_erasing [b_h=2, append_bn=split]",
                          "cam_erasing [b_h=0, append_bn=joint]"]
    assert rows["cam_erasing [b_h=2, append_bn=split]"][1:] == ["—", "8.50 ± n/a (n=1) #1", "—"]
    assert rows["plain"][1:] == ["8.00 ± n/a (n=1) #2", "9.00 ± n/a (n=1) #2",
                                 "9.00 ± n/a (n=1) #2"]  # no column has all four: no mean rank


def test_a_method_sharing_one_of_another_rows_labels_is_told_apart_too():
    a = suite_summary("a", {"plain": 8.0, "cam_erasing": 7.1})
    b = suite_summary("b", {"plain": 9.0, "cam(b_h=2)": 8.5, "cam_erasing": 8.4}, variants={
        "cam(b_h=2)": ("cam_erasing", {}), "cam_erasing": ("cam_erasing", {"append_bn": "split"})})
    assert list(compare_rows(a, b)) == ["cam_erasing [append_bn=split]",
                                        "cam_erasing / cam(b_h=2) [append_bn=joint]", "plain"]


# Ranks per column for the case: cam_erasing(b_h=0) ran in 1 of 3 suites. Averaged over
# the columns each method ran in it would rank first (2.00, the others 2.67 to 3.67); it is
# second in the one column every method ran in.
RANKS = {"plain": (1, 5, 5), "cam_erasing(b_h=0)": (2, None, None), "random_erasing": (3, 4, 4),
         "cutout": (4, 3, 3), "hide_and_seek": (5, 2, 2), "cam_erasing": (6, 1, 1)}


def test_mean_rank_is_over_the_columns_every_method_has_and_says_how_many():
    suites = [suite_summary(name, {m: 10.0 + r[i] for m, r in RANKS.items() if r[i]})
              for i, name in enumerate("abc")]
    text = cmp.compare(suites)
    assert "Mean rank over 1 of 3 columns (the columns every method ran in): resnet20 (a)." in text
    assert "| mean rank (1 of 3) |" in text
    rows = [r for r in rows_of("## x\n" + text, "x")]
    assert [r[0] for r in rows[:2]] == ["plain", "cam_erasing(b_h=0)"]
    assert rows[1][1:] == ["12.00 ± n/a (n=1) #2", "—", "—", "2.00"]


def test_without_a_column_every_method_has_there_is_no_mean_rank():
    # cam_erasing(b_h=0) ran in c only, beside plain alone; the others never ran in c
    a = suite_summary("a", {"plain": 8.0, "cam_erasing": 7.1, "random_erasing": 7.4})
    b = suite_summary("b", {"plain": 8.0, "cam_erasing": 7.5, "random_erasing": 7.4})
    c = suite_summary("c", {"plain": 8.0, "cam_erasing(b_h=0)": 7.0})
    text = cmp.compare([a, b, c])
    assert "No column of the 3 has every method, so there is no mean rank" in text
    assert "mean rank" not in text.split("\n|")[1]  # the header: no mean-rank column
    rows = rows_of("## x\n" + text, "x")
    assert rows[0][0] == "plain" and len(rows[0]) == 4


def old_block(summary: dict) -> dict:
    """`summary` as a schema-1 data block wrote it: no mode, fill, append_bn, warm-up."""
    return {**summary, "schema": 1, "groups": [{k: v for k, v in gr.items() if k not in
                                                grid.SETUP_KEYS} for gr in summary["groups"]]}


def test_a_schema_1_block_is_compared_by_label_with_a_footnote(tmp_path):
    old = tmp_path / "old.md"
    old.write_text("# Leaderboard: old\n\n" + lb._data_block(old_block(
        suite_summary("old", {"plain": 8.0, "cam_erasing": 7.1, "cutout": 7.3}))) + "\n")
    new = suite_summary("new", {"plain": 9.0, "cam_erasing": 8.1, "cutout": 8.3},
                        variants={"cutout": ("cutout", {"fill": "random"})})
    text = cmp.compare([cmp.read_summary(str(old)), new])
    rows = {r[0]: r for r in rows_of("## x\n" + text, "x")}
    # joined by label to the one method of that label and those settings: † says how
    assert rows["cam_erasing †"][1:3] == ["7.10 ± n/a (n=1) #1", "8.10 ± n/a (n=1) #1"]
    assert rows["plain"][1:3] == ["8.00 ± n/a (n=1) #3", "9.00 ± n/a (n=1) #3"]  # plain is plain
    assert "†: matched by label, eraser, parameters and CAM: old do not record" in text
    assert "cutout †" in rows and rows["cutout †"][2] == "8.30 ± n/a (n=1) #2"  # fill unknown


# ----------------------------------------------------------------------------- files and CLI

def test_render_suite_writes_markdown_and_curve_figures(tmp_path):
    recs, plan = complete_suite()
    for r in recs:
        write_record(tmp_path / "results", r)
    figs = tmp_path / "lb" / "figures"
    figs.mkdir(parents=True)
    (figs / "erased_fraction_cutout.png").write_bytes(b"png")  # `erasebench figures`', not ours
    out = lb.render_suite("thesis", tmp_path / "results", tmp_path / "lb" / "thesis.md",
                          expected_runs=plan)
    text = out.read_text()
    assert (figs / "thesis_curves_resnet20.png").stat().st_size > 1000
    assert "](figures/thesis_curves_resnet32.png)" in text
    assert "erased_fraction" not in text


def test_cli_render_and_compare_read_and_write_the_untracked_runs_folder_by_default(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for r in single_seed_suite():
        write_record(tmp_path / "runs" / "results" / "smoke", r)  # where `erasebench run` writes
    assert cli.main(["leaderboard", "--suite", "smoke"]) == 0
    assert not (tmp_path / "leaderboards").exists()  # never over the committed leaderboards
    md = tmp_path / "runs" / "leaderboards" / "smoke.md"
    assert md.is_file()
    capsys.readouterr()
    assert cli.main(["compare", str(md), "smoke"]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| method"))
    # one column from the .md, one from the records, each saying where it was read from
    assert "resnet20 (smoke, runs/leaderboards/smoke.md)" in header
    assert "resnet20 (smoke, runs/results/smoke)" in header


def test_compare_skips_a_file_without_a_data_block_with_one_warning(tmp_path, capsys):
    good = tmp_path / "smoke.md"
    good.write_text(lb.render(single_seed_suite(), suite="smoke"))
    figures = tmp_path / "erased_fraction.md"
    figures.write_text("# Erased fraction per eraser\n\n| eraser | mean |\n|---|---|\n")
    assert cli.main(["compare", str(figures), str(good)]) == 0
    out, err = capsys.readouterr()
    assert err == (f"warning: {figures}: no 'erasebench:leaderboard' data block (not a rendered "
                   "leaderboard); skipped\n")
    assert "| method | resnet20 (smoke) | mean rank (1 of 1) |" in out


def test_compare_reads_the_committed_leaderboards_and_skips_the_other_files(capsys):
    files = sorted(Path(__file__).parents[2].joinpath("leaderboards").glob("*.md"))
    assert cli.main(["compare", *map(str, files)]) == 0
    err = capsys.readouterr().err
    for f in files:  # e.g. erased_fraction.md and speed.md: tables of another kind
        if lb.DATA_TAG not in f.read_text():
            assert f"warning: {f}: no 'erasebench:leaderboard' data block" in err


def test_compare_with_nothing_comparable_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "old.md"
    bad.write_text("# a leaderboard without a data block\n")
    assert cli.main(["compare", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"warning: {bad}: no 'erasebench:leaderboard' data block")
    assert err[1:] == ["error: nothing to compare: none of the 1 input(s) is a leaderboard or "
                       "results folder with finished runs"]


def test_expected_runs_without_a_required_key_is_a_one_line_error():
    with pytest.raises(ValueError, match="expected_runs: an entry lacks key 'seed'"):
        grid.build_grid([], suite="x", expected_runs=[{"run_id": "a", "model": "m", "label": "p"}])


@pytest.mark.parametrize("entry, key", [
    ({"run_id": "a", "model": "m", "method": "p", "seed": 0}, "lacks key 'label'"),  # old name
    ({"model": "m", "method": "p", "expected": 3}, "lacks key 'run_id'"),  # a data block's cell
    ({"run_id": "a", "model": "m", "label": "p", "seed": 0, "eraser": "cutout"},
     "entry 'a' has key 'eraser'"),  # what a run does is read from its record, not the plan
])
def test_the_report_takes_one_plan_shape_run_id_model_label_seed(entry, key):
    with pytest.raises(ValueError, match=f"expected_runs: .*{key}.*run_id, model, label, seed"):
        grid.build_grid([], suite="x", expected_runs=[entry])


def test_a_record_without_a_needed_key_is_a_one_line_error():
    rec = single_seed_suite()[0]
    del rec["final_test_error"]
    with pytest.raises(ValueError, match=r"results/smoke/resnet20__plain__s0.json: key "
                                         r"'final_test_error' is missing"):
        lb.render([rec], suite="smoke")


def test_cli_render_names_a_missing_results_folder(tmp_path, capsys):
    assert cli.main(["leaderboard", "--suite", "none", "--results", str(tmp_path / "nope")]) == 2
    assert "nope: no such results folder" in capsys.readouterr().err


def test_thesis_tables_are_the_published_numbers():
    assert thesis.TABLE_2["resnet44"]["cam_erasing"] == 5.15
    assert thesis.TABLE_1["resnet20"] == {k: thesis.TABLE_2["resnet20"][k]
                                          for k in thesis.BASELINES}
    assert (min(thesis.TABLE_3["resnet20"], key=thesis.TABLE_3["resnet20"].get)
            == thesis.PROPOSED_B_H)
    assert json.dumps(thesis.TABLE_4) == '{"resnet20": {"during": 6.4, "after": 6.44}}'


def test_random_erasing_with_several_rectangles_is_not_compared_with_the_thesis():
    one = {"p": 0.5, "sl": 0.02, "sh": 0.4, "r1": 0.3, "min_count": 1, "max_count": 1}
    assert thesis.settings_match("random_erasing", one)
    assert not thesis.settings_match("random_erasing", {**one, "max_count": 3})
    assert thesis.settings_match("random_erasing", {"p": 0.5})  # older records lack the counts
