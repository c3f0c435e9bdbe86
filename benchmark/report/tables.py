"""The tables of a leaderboard, one short function each: the thesis's Tables 1-4 beside its
published numbers (and the Table 2 layout for best-epoch error), significance, occlusion and
reproducibility. Each takes the suite's grid and returns markdown lines. The lists of runs
(failed, rising loss, at chance, missing) are in run_lists.py; robustness to occlusion in
robustness_table.py; cost in cost_table.py; how the methods train in setup_table.py."""

from __future__ import annotations

from benchmark.report import thesis
from benchmark.report.grid import Cell, Grid, Method
from benchmark.report.markdown import (
    fmt_cell,
    fmt_delta,
    fmt_err,
    fmt_p,
    fmt_pct,
    md_table,
)
from benchmark.report.stats import mean, welch_p


def _mean_or_none(c: Cell, key: str = "final_test_error") -> float | None:
    return mean(c.values(key)) if c.n else None


def _thesis_rows(label: str, ours: list[float | None], refs: list[float | None]) -> list[list[str]]:
    """The two rows printed under a model: the thesis's number and ours minus it."""
    if all(r is None for r in refs):
        return []
    deltas = [None if o is None or r is None else o - r for o, r in zip(ours, refs, strict=True)]
    return [[f"{label} · thesis"] + ["—" if r is None else f"{r:.2f}" for r in refs],
            [f"{label} · ours − thesis"] + [fmt_delta(d) for d in deltas]]


def table2(g: Grid, key: str) -> list[str]:
    header = ["model"] + [m.label for m in g.methods]
    rows = []
    for mo in g.models:
        cells = [g.cell(mo, m) for m in g.methods]
        rows.append([mo] + [fmt_cell(c, key) for c in cells])
        if g.on_cifar10:
            refs = [thesis.table_reference(thesis.TABLE_2, mo, m.eraser, m.eraser_params, m.cam)
                    if m.known else None for m in g.methods]
            rows += _thesis_rows(mo, [_mean_or_none(c, key) for c in cells], refs)
    return md_table(header, rows)


def table1(g: Grid) -> list[str]:
    model = "resnet20"
    base = [m for m in g.methods if m.eraser in thesis.BASELINES and (model, m.label) in g.cells]
    if model not in g.models or not base:
        return []
    header = ["method", "final error"] + (["thesis", "ours − thesis"] if g.on_cifar10 else [])
    rows = []
    for m in base:
        c = g.cell(model, m)
        row = [m.label, fmt_cell(c)]
        if g.on_cifar10:
            ref = thesis.table_reference(thesis.TABLE_1, model, m.eraser, m.eraser_params, m.cam)
            o = _mean_or_none(c)
            row += [fmt_err(ref), fmt_delta(None if o is None or ref is None else o - ref)]
        rows.append(row)
    return ["## Table 1: ResNet20 baselines", "",
            "Final-epoch test error (%) of the three baseline erasers on resnet20.", "",
            *md_table(header, rows), ""]


def _cam_methods(g: Grid, source: str | None = None) -> list[Method]:
    return [m for m in g.methods if m.eraser == "cam_erasing"
            and (source is None or m.cam_source == source)]


def table3(g: Grid) -> list[str]:
    sweep = _cam_methods(g, "during")
    rows_by: dict[tuple[str, str | None], dict] = {}
    for mo in g.models:
        for m in sweep:
            if (mo, m.label) in g.cells and m.b_h is not None:
                rows_by.setdefault((mo, m.cam_layer), {})[m.b_h] = m
    rows_by = {k: v for k, v in rows_by.items() if len(v) >= 2}
    if not rows_by:
        return []
    values = sorted({b for v in rows_by.values() for b in v})
    header = ["model"] + [f"b_h = {b:g}" for b in values]
    rows = []
    for (mo, layer), by in rows_by.items():
        name = mo if layer is None else f"{mo}, CAM {layer}"
        rows.append([name] + [fmt_cell(g.cell(mo, by[b])) if b in by else "—" for b in values])
        if g.on_cifar10:
            rows += _thesis_rows(
                name, [_mean_or_none(g.cell(mo, by[b])) if b in by else None for b in values],
                [thesis.table3_reference(mo, by[b].eraser_params, by[b].cam) if b in by else None
                 for b in values])
    return ["## Table 3: b_h sweep (CAM erasing, CAM during training)", "",
            "Final-epoch test error (%) by b_h, the largest offset of the erased rectangle's "
            "vertex from the CAM peak (pixels).", "", *md_table(header, rows), ""]


def table4(g: Grid) -> list[str]:
    rows = []
    for mo in g.models:
        by: dict[tuple, dict[str, Method]] = {}
        for m in _cam_methods(g):
            if (mo, m.label) in g.cells and m.cam_source in ("during", "after"):
                by.setdefault((m.b_h, m.cam_layer), {})[m.cam_source] = m
        for (b_h, layer), pair in sorted(by.items(),
                                         key=lambda kv: (str(kv[0][0]), kv[0][1] or "")):
            if len(pair) < 2:
                continue
            name = f"{mo} (b_h = {b_h:g}{'' if layer is None else ', CAM ' + layer})" \
                if isinstance(b_h, int | float) else mo
            both = [pair["during"], pair["after"]]
            rows.append([name] + [fmt_cell(g.cell(mo, m)) for m in both])
            if g.on_cifar10:
                rows += _thesis_rows(name, [_mean_or_none(g.cell(mo, m)) for m in both],
                                     [thesis.table4_reference(mo, m.eraser_params, m.cam)
                                      for m in both])
    if not rows:
        return []
    return ["## Table 4: CAM during vs after training", "",
            "Final-epoch test error (%): CAM from the model being trained (during) or from a "
            "frozen plain model of the same seed (after).", "",
            *md_table(["model", "CAM during", "CAM after"], rows), ""]


def best_baseline(g: Grid, model: str) -> Method | None:
    """The baseline (Random Erasing, Cutout, Hide-and-Seek) with the lowest mean final error."""
    scored = [(mean(g.cell(model, m).values()), m.sort_key(), m) for m in g.methods
              if m.eraser in thesis.BASELINES and g.cell(model, m).n]
    return min(scored, key=lambda t: t[:2])[2] if scored else None


def significance(g: Grid) -> list[str]:
    plain = g.plain
    rows, bests = [], []
    for mo in g.models:
        best = best_baseline(g, mo)
        bests.append(f"{mo}: {best.label if best else 'none'}")
        ref_plain = g.cell(mo, plain).values() if plain else []
        ref_best = g.cell(mo, best).values() if best else []
        for m in g.methods:
            if (mo, m.label) not in g.cells:  # not planned for this model
                continue
            c = g.cell(mo, m)
            if not c.n:
                rows.append([mo, m.label, fmt_cell(c), "—", "n/a", "—", "n/a"])
                continue
            xs, o = c.values(), mean(c.values())
            row = [mo, m.label, fmt_cell(c)]
            for ref, other in ((ref_plain, plain), (ref_best, best)):
                if other is None or other.label == m.label or not ref:
                    row += ["—", "n/a"]
                else:
                    row += [fmt_delta(o - mean(ref)), fmt_p(welch_p(xs, ref))]
            rows.append(row)
    header = ["model", "method", "final error", "Δ vs plain", "p vs plain", "Δ vs best baseline",
              "p vs best baseline"]
    return ["## Significance", "",
            "Welch's two-sided t-test on the per-seed final-epoch errors (unequal variances; "
            "n < 2 on either side: n/a). With a handful of seeds a gap of a few tenths of a point "
            "is usually within noise: read the p-value before the difference.",
            f"Best baseline (lowest mean among {', '.join(thesis.BASELINES)}): {'; '.join(bests)}.",
            "", *md_table(header, rows), ""]


def occlusion(g: Grid) -> list[str]:
    keys = ("erased_image_rate", "object_hit_rate", "object_covered_mean", "cam_peak_in_box",
            "random_point_in_box")
    rows = []
    for mo in g.models:
        for m in g.methods:
            occ = [r["occlusion"] for r in g.cell(mo, m).records if r.get("occlusion")]
            if not occ:
                continue
            avg = [None if any(o.get(k) is None for o in occ) else mean([o[k] for o in occ])
                   for k in keys]
            rows.append([mo, m.label, str(len(occ))] + [fmt_pct(a) for a in avg])
    if not rows:
        return []
    header = ["model", "method", "runs", "images erased", "erasures hitting the object",
              "object share covered", "CAM peak in box", "random point in box"]
    return ["## Occlusion (data with object boxes)", "",
            "Means over runs: the share of training images with an erased region, the share of "
            "erasures that touch the object box, the mean share of the object covered, and how "
            "often the CAM peak (vs a uniformly random point) falls inside the box.", "",
            *md_table(header, rows), ""]


def distinct_values(records: list[dict], get) -> list[str]:
    return sorted({str(v) for v in (get(r) for r in records) if v not in (None, "")})


def reproducibility(g: Grid) -> list[str]:
    recs = g.records
    if not recs:
        return []

    def values(get, records=recs) -> str:
        return ", ".join(distinct_values(records, get))

    rows = [["command", "<br>".join(f"`{c}`" for c in distinct_values(recs,
                                                                      lambda r: r.get("command")))],
            ["device", values(lambda r: r.get("device"))],
            ["dataset", ", ".join(g.datasets)],
            ["epochs", values(lambda r: r.get("epochs"))]]
    dates = distinct_values(recs, lambda r: r.get("date"))
    rows.append(["date", "n/a" if not dates else dates[0] if len(dates) == 1
                 else f"{dates[0]} … {dates[-1]}"])
    for k in sorted({k for r in recs for k in (r.get("versions") or {})}):
        rows.append([f"version: {k}", values(lambda r, k=k: (r.get("versions") or {}).get(k))])
    rows.append(["precision", values(lambda r: r.get("precision")) or "n/a"])
    for eraser in sorted({r["eraser"] for r in recs if r.get("eraser")}):
        rows.append([f"eraser: {eraser}",
                     values(_source, [r for r in recs if r.get("eraser") == eraser]) or "n/a"])
    return ["## Reproducibility", "", "Distinct values over the suite's records.", "",
            *md_table(["field", "value(s)"], rows), "", *provenance(g)]


def _threads(r: dict) -> str:
    t = (r.get("environment") or {}).get("threads")
    return str(t) if isinstance(t, int) and not isinstance(t, bool) else "n/a"


def _runs_text(recs: list[dict], models: int) -> str:
    """'plain s0, s1; cutout s2' (with the model first when the suite has several)."""
    by: dict[str, list[str]] = {}
    for r in recs:
        name = f"{r.get('model')} {r.get('label')}" if models > 1 else str(r.get("label"))
        by.setdefault(name, []).append(f"s{r.get('seed')}")
    return "; ".join(f"{k} {', '.join(sorted(v, key=lambda s: (len(s), s)))}"
                     for k, v in by.items())


def provenance(g: Grid) -> list[str]:
    """Which runs were trained by which commit with how many torch threads (records'
    `git_commit` and `environment.threads`): on a CPU the same seed gives other bits on another
    thread count, so runs of one cell trained differently are not exact repeats. Forked runs
    whose warm-up was trained under another commit or thread count are listed below it."""
    rank = {m.label: i for i, m in enumerate(g.methods)}
    recs = sorted(g.records, key=lambda r: (g.models.index(r["model"]) if r.get("model") in
                                            g.models else len(g.models),
                                            rank.get(r.get("label"), len(rank)), r.get("seed")))
    key = {id(r): (str(r.get("git_commit") or "n/a"), _threads(r)) for r in recs}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in recs:
        groups.setdefault(key[id(r)], []).append(r)
    rows = [[c if c == "n/a" else f"`{c}`", t, str(len(rs)),
             "all" if len(groups) == 1 else _runs_text(rs, len(g.models))]
            for (c, t), rs in sorted(groups.items())]
    out = ["Which runs each commit trained, and on how many torch threads (the records' "
           "`environment.threads`; on a CPU a seed's bits depend on the thread count, "
           "docs/running.md):", "",
           *md_table(["git commit", "torch threads", "runs", "which"], rows), ""]
    by_id = {r.get("run_id"): r for r in recs}
    inherited: dict[tuple[str, str], tuple[list[dict], list[dict]]] = {}
    for r in recs:
        p = by_id.get((r.get("forked_from") or {}).get("run_id"))
        if p is not None and key[id(p)] != key[id(r)]:
            forks, providers = inherited.setdefault(key[id(p)], ([], []))
            forks.append(r)
            providers += [] if p in providers else [p]
    if inherited:
        out += ["Forked runs whose warm-up epochs were trained under another commit or thread "
                "count than their own epochs:", ""]
    for (c, t), (forks, providers) in sorted(inherited.items()):
        out.append(f"- {_runs_text(forks, len(g.models))}: warm-up by "
                   f"{_runs_text(providers, len(g.models))} (`{c}`, {t} threads)")
    return out + ([""] if inherited else [])


def _source(rec: dict) -> str | None:
    """Where a record's eraser came from: a package and version, or a file and content hash."""
    src = rec.get("eraser_source")
    if not src:
        return None
    if src.get("package"):
        return f"{src['package']} {src.get('version') or '?'} (module {src.get('module')})"
    return f"{src.get('file')} (sha256 {src.get('sha256')})"
