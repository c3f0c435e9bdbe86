"""The leaderboard's lists of runs to read with care: failed runs (never averaged), finished runs
whose training loss rose or whose error is at the level of guessing (averaged, and named here),
and planned runs without a record. Each takes the suite's grid and returns markdown lines."""

from __future__ import annotations

from benchmark.report.grid import AT_CHANCE, Grid, at_chance, chance_error
from benchmark.report.markdown import fmt_err, md_table


def missing_runs(g: Grid) -> list[str]:
    if not g.missing:
        return []
    shown = g.missing[:30]
    more = f" … and {len(g.missing) - len(shown)} more" if len(g.missing) > len(shown) else ""
    return ["## Missing runs", "", f"{len(g.missing)} planned run(s) have no record yet: "
            + ", ".join(f"`{x}`" for x in shown) + more + ".", ""]


def _failed_epoch(r: dict) -> str:
    epoch = _failure(r).get("epoch")
    if epoch is None:
        return "before epoch 1"
    return f"{epoch} of {r['epochs']}" if isinstance(r.get("epochs"), int) else str(epoch)


def _failure(r: dict) -> dict:
    f = r.get("failure")
    return f if isinstance(f, dict) else {}


def rising_loss(g: Grid) -> list[dict]:
    """Finished runs whose last training loss is above their first epoch's: training made them
    worse (a finite divergence, e.g. too high a learning rate). They finish and are averaged like
    any run, so the leaderboard names them instead of letting a chance-level cell pass as good."""
    failed = {r["run_id"] for r in g.failed}

    def rose(r: dict) -> bool:
        loss = (r.get("curves") or {}).get("train_loss") or []
        return len(loss) >= 2 and loss[-1] > loss[0]

    return [r for r in g.records if r["run_id"] not in failed and rose(r)]


def rising_loss_runs(g: Grid) -> list[str]:
    runs = rising_loss(g)
    if not runs:
        return []
    rows = [[f"`{r['run_id']}`", f"{r['curves']['train_loss'][0]:.4g}",
             f"{r['curves']['train_loss'][-1]:.4g}", fmt_err(r["final_test_error"])] for r in runs]
    return ["## Runs whose training loss rose", "",
            f"{len(runs)} finished run(s) ended with a higher training loss than in their first "
            "epoch: they did not train (diverged, or too short to start). Their errors are in the "
            "cells above, in the means; read those cells with this in mind.", "",
            *md_table(["run", "first-epoch loss", "last-epoch loss", "final error"], rows), ""]


def chance_runs(g: Grid) -> list[str]:
    """Finished runs whose final error is at the level of guessing: listed with the error of
    guessing, since their cells' means include them."""
    runs = [r for mo in g.models for m in g.methods for r in g.cell(mo, m).records
            if at_chance(r)]
    if not runs:
        return []
    rows = []
    for r in sorted(runs, key=lambda r: r["run_id"]):
        guess, floor = chance_error(r)
        rows.append([f"`{r['run_id']}`", str(r.get("num_classes") or r.get("dataset")),
                     f"{guess:.2f}", f"{floor:.2f}", fmt_err(r["final_test_error"])])
    return ["## Runs at chance level", "",
            f"{len(runs)} finished run(s) ended with a test error no better than guessing (within "
            "two standard errors of 100 (1 - 1/classes) % on the test set's size): they did not "
            f"learn. Their cells say `{AT_CHANCE}`; their errors are in those cells' means.", "",
            *md_table(["run", "classes (or data)", "guessing error", "counted from",
                       "final error"], rows), ""]


def failed_runs(g: Grid) -> list[str]:
    if not g.failed:
        return []
    rows = [[f"`{r['run_id']}`", _failed_epoch(r), str(_failure(r).get("reason") or "not recorded")]
            for r in g.failed]
    return ["## Failed runs", "",
            f"{len(g.failed)} run(s) failed; they are left out of every mean, p-value and rank, "
            "and a rerun keeps them as results (`--retry-failed` trains them again). Epoch: the "
            "one running when it failed.", "", *md_table(["run", "epoch", "reason"], rows), ""]
