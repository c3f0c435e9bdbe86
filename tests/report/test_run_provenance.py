"""What a leaderboard says about how its runs were made: how each method trains where methods
differ, what a cell's runs cost (one clock, one statistic, slow runs named, shared warm-ups
counted once), which commit and thread count trained which run, and which figures are its own."""

from __future__ import annotations

import pytest

from benchmark.report import leaderboard as lb
from benchmark.report.markdown import fmt_hours
from tests.report.test_leaderboard import make_record, rows_of


def cpu_run(method, seed, *, wall=100.0, train=80.0, images=8000.0, commit="abc1234", threads=1,
            forked_from=None, warmup=None, mode=None):
    """A CPU record from before `cpu_time_s` (its cost is wall-clock) with the given times,
    provenance and training setup."""
    rec = make_record("s", "resnet20", method, seed, 20.0 + seed, dataset="synthetic",
                      device="cpu")
    cfg = dict(rec["config"]["method"])
    if warmup is not None:
        cfg["warmup_epochs"] = warmup
    if mode is not None:
        cfg["mode"] = mode
        rec["mode"] = mode
    return {**rec, "wall_time_s": wall, "train_time_s": train, "images_per_s": images / train,
            "git_commit": commit, "environment": {"threads": threads},
            "forked_from": forked_from, "config": {**rec["config"], "method": cfg}}


def caption(text: str) -> str:
    return text.split("## Cost", 1)[1].split("\n|", 1)[0]


# ----------------------------------------------------------------------------- F1: training setup

def test_the_board_shows_each_methods_mode_and_warm_up_where_methods_train_differently():
    fork = {"run_id": "resnet20__plain__s0", "epoch": 4}
    recs = [cpu_run("plain", 0), cpu_run("cutout", 0),
            cpu_run("cam_erasing", 0, forked_from=fork, warmup=4)]
    text = lb.render(recs, suite="s")
    assert "### How the methods train" in text
    # it sits with the headline table, before the other tables
    assert text.index("### How the methods train") < text.index("## Best-epoch test error")
    rows = {r[0]: r[1:] for r in rows_of(text, "How the methods train")}
    header = next(ln for ln in text.split("### How the methods train", 1)[1].splitlines()
                  if ln.startswith("| setting"))
    assert header == "| setting | plain | cam_erasing | cutout |"
    assert rows["mode"] == ["—", "append", "replace"]
    assert rows["plain warm-up epochs"] == ["—", "4 (forked from plain)", "0"]
    assert set(rows) == {"mode", "plain warm-up epochs"}  # BN, CAM source, epochs: all alike


def test_a_board_whose_methods_all_train_alike_does_not_restate_the_setup():
    recs = [cpu_run("cutout", 0), cpu_run("random_erasing", 0), cpu_run("hide_and_seek", 0)]
    assert "### How the methods train" not in lb.render(recs, suite="s")


def test_a_setup_that_differs_only_in_appends_batchnorm_or_cam_source_is_shown():
    a = cpu_run("cam_erasing", 0)
    b = cpu_run("cam_erasing(cam_source=after)", 0)
    b["config"]["method"]["append_bn"] = "split"
    rows = {r[0]: r[1:] for r in rows_of(lb.render([a, b], suite="s"), "How the methods train")}
    assert rows == {"BatchNorm in append mode": ["joint", "split"],
                    "CAM source": ["during", "after"]}


# ----------------------------------------------------------------------------- F2: cost

def test_one_slow_run_moves_neither_cost_column_and_is_named_below_the_table():
    # plain s1 trained on a loaded machine: 20x the time of its siblings, the same images
    recs = [cpu_run("plain", 0, wall=100.0), cpu_run("plain", 1, wall=2000.0),
            cpu_run("plain", 2, wall=110.0)]
    text = lb.render(recs, suite="s")
    row = rows_of(text, "Cost")[0]
    # the median run (s2, 110 s): its hours, and its images over its own seconds
    assert row[4] == f"{fmt_hours(110.0 / 3600)} h wall-clock"
    assert row[5] == f"{8000 / 110.0:,.0f} per s wall-clock"
    assert "| device-h, median run | training images per device-s, same run |" in text
    slow = [ln for ln in text.split("## Cost", 1)[1].splitlines() if ln.startswith("- `")]
    assert slow == [f"- `resnet20__plain__s1`: {fmt_hours(2000 / 3600)} h wall-clock, 19.0x the "
                    f"others' median, {fmt_hours(105 / 3600)} h wall-clock"]
    # the total is every run's time, said so
    assert f"Total: {fmt_hours(2210 / 3600)} hours wall-clock" in caption(text)


def test_an_even_cells_cost_is_its_two_middle_runs_on_one_clock():
    recs = [cpu_run("cutout", s, wall=w, images=i) for s, (w, i) in
            enumerate(((100.0, 8000.0), (200.0, 8000.0), (300.0, 16000.0), (900.0, 8000.0)))]
    row = rows_of(lb.render(recs, suite="s"), "Cost")[0]
    assert row[4] == f"{fmt_hours(250.0 / 3600)} h wall-clock"  # mean of 200 and 300 s
    assert row[5] == f"{24000 / 500.0:,.0f} per s wall-clock"  # their images / their seconds


def test_the_total_counts_a_warm_up_that_runs_were_forked_from_once():
    fork = {"run_id": "resnet20__plain__s0", "epoch": 2, "train_time_s": 30.0}
    recs = [cpu_run("plain", 0, wall=100.0, train=80.0),
            cpu_run("cam_erasing", 0, wall=150.0, train=120.0, forked_from=fork),
            cpu_run("cutout", 0, wall=150.0, train=120.0, forked_from=fork)]
    cap = caption(lb.render(recs, suite="s"))
    # 400 s recorded, less the 2 x 30 s the forks inherited (and plain's 100 s count)
    assert f"Total: {fmt_hours(340 / 3600)} hours wall-clock" in cap
    assert f"less {fmt_hours(60 / 3600)} h of warm-up that 2 forked runs inherited" in cap
    assert "as the forked records keep it" in cap


def test_a_fork_from_before_records_kept_its_inherited_time_is_estimated_and_said_so():
    fork = {"run_id": "resnet20__plain__s0", "epoch": 2}  # plain trained 4 epochs in 80 s
    recs = [cpu_run("plain", 0, wall=100.0, train=80.0),
            cpu_run("cam_erasing", 0, wall=150.0, train=120.0, forked_from=fork)]
    cap = caption(lb.render(recs, suite="s"))
    assert f"Total: {fmt_hours(210 / 3600)} hours wall-clock" in cap  # 250 - 80 x 2/4
    assert "estimated pro rata by epochs" in cap


def test_a_fork_whose_warm_up_run_has_no_record_here_is_counted_whole():
    fork = {"run_id": "resnet20__plain__s9", "epoch": 2, "train_time_s": 30.0}
    recs = [cpu_run("cam_erasing", 0, wall=150.0, forked_from=fork)]
    cap = caption(lb.render(recs, suite="s"))
    assert f"Total: {fmt_hours(150 / 3600)} hours wall-clock" in cap and "less" not in cap


# ----------------------------------------------------------------------------- F3: provenance

def test_reproducibility_says_which_commit_and_how_many_threads_trained_each_run():
    fork = {"run_id": "resnet20__plain__s0", "epoch": 2}
    recs = [cpu_run("plain", 0, commit="old0001", threads=2),
            cpu_run("plain", 1, commit="new0002", threads=2),
            cpu_run("cutout", 0, commit="new0002"), cpu_run("cutout", 1, commit="new0002"),
            cpu_run("cam_erasing", 0, commit="new0002", forked_from=fork)]
    text = lb.render(recs, suite="s")
    section = text.split("## Reproducibility", 1)[1]
    table = section.split("Which runs each commit trained", 1)[1]
    rows = [[c.strip() for c in ln.strip("|").split(" | ")]
            for ln in table.splitlines() if ln.startswith("|")][2:]
    assert rows == [["`new0002`", "1", "3", "cam_erasing s0; cutout s0, s1"],
                    ["`new0002`", "2", "1", "plain s1"],
                    ["`old0001`", "2", "1", "plain s0"]]
    assert "- cam_erasing s0: warm-up by plain s0 (`old0001`, 2 threads)" in section
    assert "| git commit | old0001" not in section  # no separate, unattributed commit list


def test_a_record_without_environment_shows_its_thread_count_as_unknown():
    rec = {k: v for k, v in cpu_run("plain", 0).items() if k != "environment"}
    section = lb.render([rec], suite="s").split("## Reproducibility", 1)[1]
    assert "| `abc1234` | n/a | 1 | all |" in section
    assert "warm-up by" not in section


# ----------------------------------------------------------------------------- F14: figures

def test_the_figures_section_links_only_figures_made_for_this_suite(tmp_path):
    from benchmark.results import write_record

    recs = [cpu_run("plain", 0), cpu_run("cutout", 0)]
    for r in recs:
        write_record(tmp_path / "results", r)
    figs = tmp_path / "lb" / "figures"
    figs.mkdir(parents=True)
    for name in ("erased_fraction_cutout.png", "cam_s.png", "cam_s_old.png", "cam_s2.png",
                 "s2_curves_resnet20.png", "cam_examples.png"):
        (figs / name).write_bytes(b"png")
    text = lb.render_suite("s", tmp_path / "results", tmp_path / "lb" / "s.md").read_text()
    links = sorted(ln.split("](", 1)[1].rstrip(")") for ln in text.splitlines()
                   if ln.startswith("!["))
    assert links == ["figures/cam_s.png", "figures/s_curves_resnet20.png"]


@pytest.mark.parametrize("suite", ["erasers", "synthetic_study"])
def test_another_suites_cam_figure_is_not_this_suites(tmp_path, suite):
    from benchmark.results import write_record

    for r in (cpu_run("plain", 0),):
        write_record(tmp_path / "results", {**r, "suite": suite})
    figs = tmp_path / "lb" / "figures"
    figs.mkdir(parents=True)
    (figs / f"cam_{suite}_synthetic.png").write_bytes(b"png")  # e.g. erasers_synthetic's
    text = lb.render_suite(suite, tmp_path / "results", tmp_path / "lb" / f"{suite}.md")
    assert f"cam_{suite}_synthetic" not in text.read_text()
