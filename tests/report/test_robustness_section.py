"""The leaderboard's 'Robustness to occlusion' section and figure, from records only."""

from __future__ import annotations

from benchmark.report import leaderboard as lb
from benchmark.report import stats
from benchmark.results import value_problem, write_record

FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5]


def record(method, seed, err, *, robust=None, boxes=True):
    """A finished synthetic record; robust: the base of its occluded errors (None: none)."""
    eraser = None if method == "plain" else method
    rec = {
        "schema": 2, "status": "finished", "failure": None, "suite": "occ",
        "run_id": f"resnet20__{method}__s{seed}", "model": "resnet20", "method": method,
        "eraser": eraser, "eraser_params": {}, "mode": None if eraser is None else "replace",
        "cam": None, "ablation": {}, "seed": seed, "dataset": "synthetic", "epochs": 2,
        "final_test_error": err, "best_test_error": err, "best_epoch": 2,
        "curves": {"epoch": [1, 2], "test_error": [err + 5, err]}, "occlusion": None,
        "num_classes": 10, "n_test": 400,
        "config": {"method": {"name": method, "fill": "zero"}},
    }
    if robust is not None:
        rb = {"fractions": FRACTIONS, "seed": 0, "n_test": 400, "fill": "zero",
              "cam_target": "label", "cam_layer": None,
              "random": [robust + 2 * i + seed for i in range(5)],
              "cam_peak": [robust + 4 * i + seed for i in range(5)]}
        if boxes:
            rb["box"] = [robust + 3 * i + seed for i in range(5)]
        rec["robustness"] = rb
    return rec


def rows(text: str, heading: str) -> list[list[str]]:
    part = text.split(heading, 1)[1].split("\n\n", 2)[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in part.splitlines()[2:]]


def test_leaderboard_shows_robustness_with_welch_p_against_plain():
    recs = [record("plain", s, 20.0 + s, robust=30.0 + 3 * s) for s in range(3)]
    recs += [record("cutout", s, 19.0 + s, robust=25.0 + s) for s in range(3)]
    text = lb.render(recs, suite="occ")
    assert "## Robustness to occlusion" in text
    table = rows(text, "### Occluder placed uniformly at random")
    assert [r[:4] for r in table] == [["resnet20", "plain", "zero", "3 of 3"],
                                      ["resnet20", "cutout", "zero", "3 of 3"]]
    # at f = 0.3: plain 34 + 4 s, cutout 29 + 2 s over seeds 0, 1, 2
    plain_03 = [30.0 + 3 * s + 4 + s for s in range(3)]
    cut_03 = [25.0 + s + 4 + s for s in range(3)]
    assert table[1][7] == f"{stats.mean(cut_03):.2f} ± {stats.std(cut_03):.2f}"
    assert table[1][4] == "20.00 ± 1.00"  # f = 0: the clean final error
    assert table[0][-1] == "—"  # plain against itself
    p = stats.welch_p(cut_03, plain_03)
    assert table[1][-1] == (f"{p:.3f}" if p >= 0.001 else "<0.001")
    for heading in ("### Occluder centred on the object box",
                    "### Occluder centred at the model's own CAM peak (true class)"):
        assert len(rows(text, heading)) == 2
    assert value_problem(recs[0]) is None


def test_a_run_at_chance_level_is_marked_in_the_robustness_section_too():
    recs = [record("plain", s, 20.0 + s, robust=30.0) for s in range(2)]
    recs += [record("cutout", 0, 90.0, robust=80.0), record("cutout", 1, 19.0, robust=25.0)]
    cut = rows(lb.render(recs, suite="occ"), "### Occluder placed uniformly at random")[1]
    assert cut[3] == "2 of 2; 1 at chance"


def test_data_without_boxes_has_no_box_placement_rather_than_zeros():
    recs = [record(m, 0, 20.0, robust=30.0, boxes=False) for m in ("plain", "cutout")]
    text = lb.render(recs, suite="occ")
    assert "### Occluder placed uniformly at random" in text
    assert "centred on the object box" not in text


def test_records_without_robustness_are_counted_as_not_evaluated():
    recs = [record("plain", s, 20.0 + s, robust=30.0) for s in range(2)]
    recs += [record("cutout", s, 19.0 + s) for s in range(2)]
    text = lb.render(recs, suite="occ")
    assert ("2 of 4 finished run(s) not evaluated (trained before this measurement existed: run "
            "`erasebench evaluate --suite occ`)") in text
    cut = rows(text, "### Occluder placed uniformly at random")[1]
    assert cut[3] == "0 of 2" and set(cut[4:]) == {"—"}


def test_without_any_evaluated_record_the_section_says_so_and_how_to_add_it():
    text = lb.render([record("plain", 0, 20.0), record("cutout", 0, 19.0)], suite="occ")
    section = text.split("## Robustness to occlusion\n\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip() == ("2 of 2 finished run(s) not evaluated (trained before this "
                               "measurement existed: run `erasebench evaluate --suite occ`).")
    assert "### Occluder" not in text


def test_without_finished_runs_there_is_no_robustness_section():
    failed = {**record("plain", 0, 20.0), "status": "failed", "final_test_error": None,
              "best_test_error": None, "failure": {"epoch": 1, "reason": "loss is NaN"}}
    assert "Robustness to occlusion" not in lb.render([failed], suite="occ")


def test_a_record_whose_robustness_is_not_the_measurement_keeps_its_clean_error_only(tmp_path):
    """Fractions in another order (or other values), or lists of another length: that record's
    robustness is left out of every robustness cell (one warning), never matched by position;
    its clean error stays in the other tables."""
    folder = tmp_path / "results" / "occ"
    for s in range(2):
        write_record(folder, record("plain", s, 20.0 + s, robust=30.0))
    reversed_ = record("cutout", 0, 19.0, robust=25.0)
    reversed_["robustness"]["fractions"] = FRACTIONS[::-1]
    short = record("cutout", 1, 21.0, robust=40.0)
    short["robustness"]["random"] = [1.0, 2.0]
    good = record("cutout", 2, 23.0, robust=27.0)
    for r in (reversed_, short, good):
        write_record(folder, r)
    text = lb.render_suite("occ", folder, tmp_path / "leaderboards" / "occ.md").read_text()
    cut = rows(text, "### Occluder placed uniformly at random")[1]
    assert cut[:5] == ["resnet20", "cutout", "zero", "1 of 3", "23.00 ± n/a"]
    assert cut[5:10] == [f"{27.0 + 2 * i + 2:.2f} ± n/a" for i in range(5)]  # seed 2's only
    assert ("2 of 5 finished run(s) not evaluated (trained before this measurement existed, or "
            "its measurement failed or was unreadable: run `erasebench evaluate --suite occ`)"
            ) in text
    final = text.split("## Final-epoch test error", 1)[1].split("\n## ", 1)[0]
    assert "21.00 ± 2.00" in final  # all three cutout runs' clean errors: 19, 21, 23


def test_the_robustness_figure_is_written_and_linked_from_its_section(tmp_path):
    folder = tmp_path / "results" / "occ"
    for s in range(2):
        for m in ("plain", "cutout"):
            write_record(folder, record(m, s, 20.0, robust=30.0))
    out = lb.render_suite("occ", folder, tmp_path / "leaderboards" / "occ.md")
    text = out.read_text()
    figure = tmp_path / "leaderboards" / "figures" / "occ_robustness_resnet20.png"
    assert figure.is_file() and figure.stat().st_size > 0
    link = "![test error vs occluded fraction, resnet20](figures/occ_robustness_resnet20.png)"
    section = text.split("## Robustness to occlusion", 1)[1].split("\n## ", 1)[0]
    assert link in section
    assert text.count(link) == 1  # not repeated under Figures



def test_the_robustness_section_renders_as_its_golden_file(golden):
    """The whole leaderboard of a suite with every case of the section (two models, a model
    without plain, runs not evaluated, a run at chance, data without boxes for one model, a fill
    other than zero, its figure), pinned byte for byte: a refactor of the section cannot change a
    character of it. Regenerate with ERASEBENCH_REGEN_GOLDEN=1 and read the diff."""
    recs = [record("plain", s, 20.0 + s, robust=30.0 + 3 * s) for s in range(3)]
    recs += [record("cutout", s, 19.0 + s, robust=25.0 + s) for s in range(3)]
    recs += [record("random_erasing", 0, 90.0, robust=80.0), record("random_erasing", 1, 18.5)]
    recs[-1]["run_id"] = "resnet20__random_erasing__s1"
    other = [record(m, s, 22.0 + s, robust=31.0 + s, boxes=False)
             for m in ("cutout", "random_erasing") for s in range(2)]
    for r in other:
        r["model"], r["run_id"] = "resnet32", r["run_id"].replace("resnet20", "resnet32")
        r["robustness"]["fill"] = "random"
    figures = [("test error vs occluded fraction, resnet20", "figures/occ_robustness_resnet20.png"),
               ("test error by epoch, resnet20", "figures/occ_curves_resnet20.png")]
    plan = [{"run_id": r["run_id"], "model": r["model"], "label": r["method"], "seed": r["seed"]}
            for r in recs + other]
    plan.append({"run_id": "resnet32__cutout__s2", "model": "resnet32", "label": "cutout",
                 "seed": 2})
    golden("robustness.md", lb.render(recs + other, suite="occ", expected_runs=plan,
                                      figures=figures, results="runs/results/occ"))
