"""Where a leaderboard's plan comes from: the runs a suite planned, as the report takes them (a
list of `grid.planned_run` entries, {"run_id", "model", "label", "seed"}; everything else about a
run is read from its record).

The runner hands its plan to the renderer and keeps a copy beside the leaderboard,
`<out>/leaderboards/<suite>.plan.json` (`write_plan`), so that a render by hand after an interrupt
counts the runner's plan (with its `--seeds`/`--models`/`--erasers` overrides). A render by hand
takes `--config SUITE.yaml`, else that copy, else `configs/<suite>.yaml` (`find_plan`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmark.fileio import atomic_write, warn
from benchmark.report.grid import check_planned_run, planned_run
from benchmark.report.markdown import shown_path

PLAN_SUFFIX = ".plan.json"


def plan_path(leaderboard) -> Path:
    """The runner's plan beside a leaderboard: <folder>/<suite>.plan.json for <folder>/<suite>.md.
    """
    lb = Path(leaderboard)
    return lb.with_name(lb.stem + PLAN_SUFFIX)


def write_plan(leaderboard, suite: str, plan: list[dict]) -> Path:
    """Keep the runner's plan (planned_run entries) beside `leaderboard`, atomically; its path."""
    for e in plan:
        check_planned_run(e)
    text = json.dumps({"suite": suite, "runs": plan}, indent=1, sort_keys=True) + "\n"
    return atomic_write(plan_path(leaderboard), text)


def read_plan(path: Path, suite: str) -> tuple[list[dict] | None, str]:
    """(the planned runs kept at `path`, "") or (None, why not: one line naming the file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path}: not readable as a plan ({type(e).__name__})"
    if not isinstance(data, dict) or data.get("suite") != suite:
        name = data.get("suite") if isinstance(data, dict) else None
        return None, f"{path}: key 'suite' is {name!r}, not {suite!r}"
    runs = data.get("runs")
    if not isinstance(runs, list):
        return None, f"{path}: key 'runs' is not a list of planned runs"
    try:
        for e in runs:
            check_planned_run(e)
    except ValueError as e:
        return None, f"{path}: {e}"
    return runs, ""


def suite_file_plan(path: Path, suite: str) -> tuple[list[dict] | None, str]:
    """(planned runs, "") of a suite file, or (None, why it cannot give them). A file with
    `imports:` is not loaded: that would run its Python code, and a leaderboard runs none."""
    import yaml

    from benchmark.suites.config import ConfigError, load_suite, safe_load
    from benchmark.suites.expand import expand

    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return None, f"{path}: not readable as YAML ({' '.join(str(e).split())[:120]})"
    if not isinstance(data, dict) or data.get("name") != suite:
        name = data.get("name") if isinstance(data, dict) else None
        return None, f"{path}: key 'name' is {name!r}, not {suite!r}"
    if data.get("imports"):
        return None, (f"{path}: key 'imports' names Python code; the leaderboard does not run it, "
                      "so it does not read this file's plan")
    try:
        return [planned_run(r) for r in expand(load_suite(str(path)))], ""
    except ConfigError as e:
        return None, str(e)


def find_plan(suite: str, out_path, config=None) -> tuple[list[dict] | None, str | None]:
    """The plan of a suite rendered by hand, and where it came from: the suite file given
    (`config`), else the runner's plan kept beside out_path (plan_path), else
    configs/<suite>.yaml; (None, None) when none is known (a copy or suite file that cannot give
    it is one warning line). A given `config` that cannot give the plan is a ValueError (one
    line)."""
    from benchmark.suites.config import CONFIG_DIR

    if config is not None:
        runs, why = suite_file_plan(Path(config), suite)
        if runs is None:
            raise ValueError(why)
        return runs, shown_path(config)
    kept = plan_path(out_path)
    if kept.is_file():
        runs, why = read_plan(kept, suite)
        if runs is not None:
            return runs, f"the runner's {shown_path(kept)}"
        warn(why)
    default = CONFIG_DIR / f"{suite}.yaml"
    if default.is_file():
        runs, why = suite_file_plan(default, suite)
        if runs is not None:
            return runs, os.path.relpath(default)
        warn(why)
    return None, None
