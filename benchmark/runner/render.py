"""After a suite trained: its CAM figure (drawn here, from the runner's own runs and checkpoints),
its leaderboard (which reads the records only), and where the offline W&B runs are."""

from __future__ import annotations

from pathlib import Path

from benchmark.fileio import warn
from benchmark.report.grid import planned_run
from benchmark.report.plan import write_plan


def render(suite, runs, results_dir: Path, work_dir: Path, lb: Path) -> None:
    """Draw the suite's CAM figure into <lb's folder>/figures/, keep the runner's plan beside `lb`
    (<suite>.plan.json), then render the leaderboard `lb` from the records in results_dir with
    that plan. The figure comes first so that the leaderboard, which lists the figures it finds,
    links it; a figure never costs the suite its leaderboard (a failure is one warning line)."""
    from benchmark.report import leaderboard

    figures_dir = lb.parent / "figures"
    cam_figure(suite.name, runs, work_dir, figures_dir)
    plan = [planned_run(r) for r in runs]
    write_plan(lb, suite.name, plan)  # for a render by hand after an interrupt (report/plan.py)
    leaderboard.render_suite(suite.name, results_dir, lb, figures_dir=figures_dir,
                             expected_runs=plan)


def cam_figure(suite: str, runs, work_dir: Path, figures_dir: Path) -> None:
    """The suite's CAM figure, figures_dir/cam_<suite>.png, from the checkpoints in work_dir."""
    from benchmark.report import cam_figure as figure
    from benchmark.report.leaderboard import suite_cam_figure

    try:
        figure.cam_for_suite(runs, work_dir, figures_dir / suite_cam_figure(suite))
    except Exception as e:  # noqa: BLE001
        warn(f"CAM figure not written: {type(e).__name__}: {e}")


def wandb_hint(args) -> None:
    """Say where the offline W&B runs are and how to upload them."""
    from benchmark.runner import tracking

    runs = tracking.offline_runs(args.out)
    if args.no_wandb or not runs or tracking.wandb_mode() != "offline":
        return
    folder = Path(args.out) / "wandb"
    print(f"W&B: {len(runs)} offline run{'s' if len(runs) != 1 else ''} in {folder}/ (not "
          f"logged in); upload {'them' if len(runs) != 1 else 'it'} with: "
          f"wandb sync {folder}/offline-run-*")
