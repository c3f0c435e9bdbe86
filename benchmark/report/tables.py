"""The sections of a leaderboard, one short function each: the thesis's Tables 1-4 beside its
published numbers, best-epoch error, significance, occlusion, cost, failures, missing runs and
reproducibility. Each takes the suite's grid and returns markdown lines."""

from __future__ import annotations

from benchmark.report import thesis
from benchmark.report.grid import AT_CHANCE, Cell, Grid, Method, at_chance, chance_error
from benchmark.report.markdown import (
    fmt_cell,
    fmt_delta,
    fmt_err,
    fmt_hours,
    fmt_p,
    fmt_pct,
    md_table,
)
from benchmark.report.stats import mean, std, welch_p


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
    plain = next((m for m in g.methods if m.known and m.eraser is None), None)
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


def _is_gpu(device: str) -> bool:
    return not str(device).lower().startswith("cpu")


def _pack_sizes(recs: list[dict]) -> str:
    sizes = sorted({r["pack_size"] for r in recs if isinstance(r.get("pack_size"), int)})
    return ", ".join(map(str, sizes)) or "—"


def cost(g: Grid) -> list[str]:
    """Wall-clock device-hours per run (its share of the pack when runs were stacked), with the
    pack size where records have one, and throughput."""
    packed = any(isinstance(r.get("pack_size"), int) for r in g.records)
    rows, totals = [], {"CPU": 0.0, "GPU": 0.0}
    for mo in g.models:
        for m in g.methods:
            recs = g.cell(mo, m).records
            if not recs:
                continue
            recs = [r for r in recs if isinstance(r.get("wall_time_s"), int | float)]
            if not recs:
                continue
            hours = [r["wall_time_s"] / 3600 for r in recs]
            kinds = sorted({"GPU" if _is_gpu(r.get("device", "cpu")) else "CPU" for r in recs})
            for r, h in zip(recs, hours, strict=True):
                totals["GPU" if _is_gpu(r.get("device", "cpu")) else "CPU"] += h
            ips = [r["images_per_s"] for r in recs if r.get("images_per_s")]
            rows.append([mo, m.label, str(len(recs)),
                         ", ".join(sorted({str(r.get("device", "?")) for r in recs})),
                         *([_pack_sizes(recs)] if packed else []),
                         f"{fmt_hours(mean(hours))} {'/'.join(kinds)}-h",
                         f"{mean(ips):,.0f}" if ips else "n/a"])
    if not rows:
        return []
    total = "; ".join(f"{fmt_hours(h)} {k}-hours" for k, h in totals.items() if h > 0)
    header = ["model", "method", "runs", "device", *(["pack"] if packed else []),
              "wall-clock device-h per run", "images/s"]
    return ["## Cost: wall-clock device-hours per run", "",
            "Wall-clock device-hours per finished run (CPU-h on a CPU, GPU-h on a GPU): the mean "
            "over the cell's runs of the record's `wall_time_s`, the wall-clock time of the "
            "session that trained the run to its end, evaluation and checkpoints included (a "
            "resumed run counts its last session; a run forked from a shared warm-up starts at the "
            "fork). "
            "When K runs were stacked in one network on one device (a pack of K; the `pack` column "
            "where records say), each run is charged 1/K of the pack's wall-clock time, so the "
            "hours add up to the device time used. images/s: "
            "training images (erased copies included) per second of that share, which for a pack "
            f"is the whole pack's throughput. Total: {total}.", "",
            *md_table(header, rows), ""]


def _distinct(records: list[dict], get) -> list[str]:
    return sorted({str(v) for v in (get(r) for r in records) if v not in (None, "")})


def reproducibility(g: Grid) -> list[str]:
    recs = g.records
    if not recs:
        return []
    rows = [["command", "<br>".join(f"`{c}`" for c in _distinct(recs, lambda r: r.get("command")))],
            ["git commit", ", ".join(_distinct(recs, lambda r: r.get("git_commit"))) or "n/a"],
            ["device", ", ".join(_distinct(recs, lambda r: r.get("device")))],
            ["dataset", ", ".join(g.datasets)],
            ["epochs", ", ".join(_distinct(recs, lambda r: r.get("epochs")))]]
    dates = _distinct(recs, lambda r: r.get("date"))
    rows.append(["date", "n/a" if not dates else dates[0] if len(dates) == 1
                 else f"{dates[0]} … {dates[-1]}"])
    for k in sorted({k for r in recs for k in (r.get("versions") or {})}):
        rows.append([f"version: {k}",
                     ", ".join(_distinct(recs, lambda r, k=k: (r.get("versions") or {}).get(k)))])
    rows.append(["precision", ", ".join(_distinct(recs, lambda r: r.get("precision"))) or "n/a"])
    for eraser in sorted({r["eraser"] for r in recs if r.get("eraser")}):
        rows.append([f"eraser: {eraser}", ", ".join(_distinct(
            [r for r in recs if r.get("eraser") == eraser], _source)) or "n/a"])
    return ["## Reproducibility", "", "Distinct values over the suite's records.", "",
            *md_table(["field", "value(s)"], rows), ""]


def _source(rec: dict) -> str | None:
    """Where a record's eraser came from: a package and version, or a file and content hash."""
    src = rec.get("eraser_source")
    if not src:
        return None
    if src.get("package"):
        return f"{src['package']} {src.get('version') or '?'} (module {src.get('module')})"
    return f"{src.get('file')} (sha256 {src.get('sha256')})"


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


# --------------------------------------------------------------------------- robustness

ROBUSTNESS_PLACEMENTS = {"random": "placed uniformly at random",
                         "box": "centred on the object box",
                         "cam_peak": "centred at the model's own CAM peak (true class)"}
ROBUSTNESS_P_AT = 0.3  # the occluded fraction of the Welch test against plain
ROBUSTNESS_FIGURE = "test error vs occluded fraction"  # the caption prefix of its figures


def robustness_errors(rec: dict, placement: str) -> dict[float, float]:
    """{fraction: test error %} of one record's occluded test sets at `placement` ({} when the
    record has no robustness, or none at that placement, e.g. "box" on data without boxes)."""
    rb = rec.get("robustness")
    if not isinstance(rb, dict) or not isinstance(rb.get(placement), list):
        return {}
    return {float(f): float(e) for f, e in zip(rb.get("fractions") or [], rb[placement],
                                               strict=False)
            if isinstance(e, int | float) and not isinstance(e, bool)}


def robustness(g: Grid, figures: list[tuple[str, str]] | None = None) -> list[str]:
    """'Robustness to occlusion': per placement, model x method, the mean ± std over seeds of the
    test error on occluded test sets at each occluded fraction, and Welch's p against plain at
    f = 0.3. Absent when no record has been evaluated (records trained before the measurement
    existed: `erasebench evaluate` adds it)."""
    recs = [r for mo in g.models for m in g.methods for r in g.cell(mo, m).records]
    evaluated = [r for r in recs if isinstance(r.get("robustness"), dict)]
    if not evaluated:
        return []
    fractions = sorted({float(f) for r in evaluated for f in r["robustness"].get("fractions", [])})
    plain = next((m for m in g.methods if m.known and m.eraser is None), None)
    out = ["## Robustness to occlusion", "",
           "Top-1 test error (%) of each run's final model on occluded copies of its test set "
           "(Zhong et al. 2017, the occlusion experiment of Random Erasing): one square per image "
           "covering the fraction f of the image, filled with the run's fill value (`fill`; in "
           "normalised space, where `zero` is the dataset's mean colour). The random placements "
           "come from one fixed seed, so every method and seed sees the same occluded test set; "
           "the CAM peak is each model's own. f = 0 is the clean final error. Mean ± sample std "
           f"over the evaluated runs; `p vs plain`: Welch's two-sided t-test at f = "
           f"{ROBUSTNESS_P_AT:g} (n < 2 on either side: n/a); `; j {AT_CHANCE}`: j of the "
           "evaluated runs ended at the error of guessing (see Runs at chance level). How it is "
           "measured: "
           "benchmark/robustness.py.", ""]
    missing = len(recs) - len(evaluated)
    if missing:
        out += [f"{missing} of {len(recs)} finished run(s) not evaluated (trained before this "
                f"measurement existed: run `erasebench evaluate --suite {g.suite}`); their cells "
                "count only the evaluated runs, `—` where none is.", ""]
    for placement, what in ROBUSTNESS_PLACEMENTS.items():
        if not any(robustness_errors(r, placement) for r in evaluated):
            continue  # e.g. "box" on data without boxes: absent, not zero
        header = ["model", "method", "fill", "evaluated", "f = 0 (clean)",
                  *[f"f = {f:g}" for f in fractions], f"p vs plain (f = {ROBUSTNESS_P_AT:g})"]
        rows = []
        for mo in g.models:
            ref = ([e[ROBUSTNESS_P_AT] for r in g.cell(mo, plain).records
                    if ROBUSTNESS_P_AT in (e := robustness_errors(r, placement))]
                   if plain is not None else [])
            for m in g.methods:
                if (mo, m.label) not in g.cells or not g.cell(mo, m).n:
                    continue
                c = g.cell(mo, m)
                errs = [(r, robustness_errors(r, placement)) for r in c.records]
                errs = [(r, e) for r, e in errs if e]
                fills = sorted({str(r["robustness"].get("fill")) for r, _ in errs}) or ["—"]
                chance = sum(at_chance(r) for r, _ in errs)
                row = [mo, m.label, ", ".join(fills),
                       f"{len(errs)} of {c.n}" + (f"; {chance} {AT_CHANCE}" if chance else ""),
                       _mean_std([r["final_test_error"] for r, _ in errs])]
                row += [_mean_std([e[f] for _, e in errs if f in e]) for f in fractions]
                mine = [e[ROBUSTNESS_P_AT] for _, e in errs if ROBUSTNESS_P_AT in e]
                same = plain is not None and m.label == plain.label
                row.append("—" if same or plain is None or not mine or not ref
                           else fmt_p(welch_p(mine, ref)))
                rows.append(row)
        out += [f"### Occluder {what}", "", *md_table(header, rows), ""]
    out += [f"![{cap}]({path})" for cap, path in figures or []
            if cap.startswith(ROBUSTNESS_FIGURE)]
    return out + ([""] if figures and any(c.startswith(ROBUSTNESS_FIGURE) for c, _ in figures)
                  else [])


def _mean_std(xs: list[float]) -> str:
    if not xs:
        return "—"
    return f"{mean(xs):.2f} ± {fmt_err(std(xs))}"
