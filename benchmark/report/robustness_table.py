"""The leaderboard's section 'Robustness to occlusion' (measured by benchmark/robustness.py):
per placement of the occluder, model x method, the test error on occluded test sets at each
occluded fraction, from the records only."""

from __future__ import annotations

from benchmark.report.grid import AT_CHANCE, Cell, Grid, Method, at_chance
from benchmark.report.markdown import fmt_err, fmt_p, md_table
from benchmark.report.stats import mean, std, welch_p

ROBUSTNESS_PLACEMENTS = {"random": "placed uniformly at random",
                         "box": "centred on the object box",
                         "cam_peak": "centred at the model's own CAM peak (true class)"}
ROBUSTNESS_P_AT = 0.3  # the occluded fraction of the Welch test against plain
ROBUSTNESS_FIGURE = "test error vs occluded fraction"  # the caption prefix of its figures
INTRO = (
    "Top-1 test error (%) of each run's final model on occluded copies of its test set "
    "(Zhong et al. 2017, the occlusion experiment of Random Erasing): one square per image "
    "covering the fraction f of the image, filled with the run's fill value (`fill`; a "
    "mixing eraser's `paste` fill, which has no colour, occludes with `zero`; in "
    "normalised space, where `zero` is the dataset's mean colour). The random placements "
    "come from one fixed seed, so every method and seed sees the same occluded test set; "
    "the CAM peak is each model's own. f = 0 is the clean final error. Mean ± sample std "
    f"over the evaluated runs; `p vs plain`: Welch's two-sided t-test at f = "
    f"{ROBUSTNESS_P_AT:g} (n < 2 on either side: n/a); `; j {AT_CHANCE}`: j of the "
    "evaluated runs ended at the error of guessing (see Runs at chance level). How it is "
    "measured: benchmark/robustness.py.")


def robustness_errors(rec: dict, placement: str) -> dict[float, float]:
    """{fraction: test error %} of one record's occluded test sets at `placement` ({} when the
    record has no robustness, or none at that placement, e.g. "box" on data without boxes)."""
    rb = rec.get("robustness")
    if not isinstance(rb, dict) or not isinstance(rb.get(placement), list):
        return {}
    return {float(f): float(e) for f, e in zip(rb.get("fractions") or [], rb[placement],
                                               strict=False)
            if isinstance(e, int | float) and not isinstance(e, bool)}


def evaluated_errors(records: list[dict], placement: str) -> list[tuple[dict, dict[float, float]]]:
    """(record, robustness_errors) of the records measured at `placement`, in their order."""
    return [(r, e) for r in records if (e := robustness_errors(r, placement))]


def robustness(g: Grid, figures: list[tuple[str, str]] | None = None) -> list[str]:
    """'Robustness to occlusion': per placement, model x method, the mean ± std over seeds of the
    test error on occluded test sets at each occluded fraction, and Welch's p against plain at
    f = 0.3; then the links of its figures (captions starting with ROBUSTNESS_FIGURE). When no
    finished run has been evaluated (records trained before the measurement existed), the section
    is its title and one line saying so and how to add it (`not_evaluated`); absent only without
    finished runs."""
    recs = [r for mo in g.models for m in g.methods for r in g.cell(mo, m).records]
    evaluated = [r for r in recs if isinstance(r.get("robustness"), dict)]
    if not recs:
        return []
    out = ["## Robustness to occlusion", ""]
    # a null robustness: measured and failed, or dropped as unreadable (not merely too old)
    unread = any("robustness" in r and r["robustness"] is None for r in recs)
    if not evaluated:
        return out + [not_evaluated(len(recs), len(recs), g.suite, unread) + ".", ""]
    fractions = sorted({float(f) for r in evaluated for f in r["robustness"].get("fractions", [])})
    out += [INTRO, ""]
    missing = len(recs) - len(evaluated)
    if missing:
        out += [not_evaluated(missing, len(recs), g.suite, unread) + "; their cells count only the "
                "evaluated runs, `—` where none is.", ""]
    header = ["model", "method", "fill", "evaluated", "f = 0 (clean)",
              *[f"f = {f:g}" for f in fractions], f"p vs plain (f = {ROBUSTNESS_P_AT:g})"]
    for placement, what in ROBUSTNESS_PLACEMENTS.items():
        if evaluated_errors(evaluated, placement):  # e.g. "box" without boxes: absent, not zero
            out += [f"### Occluder {what}", "",
                    *md_table(header, _placement_rows(g, placement, fractions)), ""]
    links = [f"![{cap}]({path})" for cap, path in figures or []
             if cap.startswith(ROBUSTNESS_FIGURE)]
    return out + links + ([""] if links else [])


def not_evaluated(missing: int, total: int, suite: str, unread: bool = False) -> str:
    """The line (no final period) for `missing` of `total` finished runs without robustness;
    `unread`: some of them hold a null one (the measurement failed, or a reader dropped it as not
    the measurement: results.robustness_problem), not only records from before it existed."""
    why = ", or its measurement failed or was unreadable" if unread else ""
    return (f"{missing} of {total} finished run(s) not evaluated (trained before this measurement "
            f"existed{why}: run `erasebench evaluate --suite {suite}`)")


def _placement_rows(g: Grid, placement: str, fractions: list[float]) -> list[list[str]]:
    """The rows of one placement's table: every planned model x method with finished runs."""
    plain, rows = g.plain, []
    for mo in g.models:
        ref = [] if plain is None else _at_p(evaluated_errors(g.cell(mo, plain).records,
                                                             placement))
        for m in g.methods:
            if (mo, m.label) in g.cells and g.cell(mo, m).n:
                rows.append(_row(mo, m, g.cell(mo, m), placement, fractions, ref,
                                 is_plain=plain is not None and m.label == plain.label))
    return rows


def _row(model: str, m: Method, c: Cell, placement: str, fractions: list[float],
         ref: list[float], *, is_plain: bool) -> list[str]:
    """One cell's row: fills, how many runs were evaluated (and at chance), the clean error, the
    error at each fraction, and Welch's p against plain's errors `ref` at ROBUSTNESS_P_AT."""
    errs = evaluated_errors(c.records, placement)
    fills = sorted({str(r["robustness"].get("fill")) for r, _ in errs}) or ["—"]
    chance = sum(at_chance(r) for r, _ in errs)
    mine = _at_p(errs)
    return [model, m.label, ", ".join(fills),
            f"{len(errs)} of {c.n}" + (f"; {chance} {AT_CHANCE}" if chance else ""),
            _mean_std([r["final_test_error"] for r, _ in errs]),
            *[_mean_std([e[f] for _, e in errs if f in e]) for f in fractions],
            "—" if is_plain or not mine or not ref else fmt_p(welch_p(mine, ref))]


def _at_p(errs: list[tuple[dict, dict[float, float]]]) -> list[float]:
    return [e[ROBUSTNESS_P_AT] for _, e in errs if ROBUSTNESS_P_AT in e]


def _mean_std(xs: list[float]) -> str:
    if not xs:
        return "—"
    return f"{mean(xs):.2f} ± {fmt_err(std(xs))}"
