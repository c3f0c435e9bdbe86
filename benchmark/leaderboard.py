"""Result records -> leaderboards/<suite>.md: the thesis's tables beside its published numbers,
significance, occlusion, cost and reproducibility; and `compare`, which ranks methods across
models and suites.

    python -m benchmark.leaderboard render --suite thesis [--results DIR] [--out FILE]
    python -m benchmark.leaderboard compare leaderboards/thesis.md leaderboards/resnet18.md

Every rendered file ends with a machine-readable block (an HTML comment holding JSON: the
per-seed errors of every cell), so `compare` reads rendered .md files as well as records.
Table placement uses the records' structured fields (eraser, eraser_params["b_h"], cam["source"],
cam["layer"]), never the display label; the label only names a column. `compare` likewise matches
methods across suites by what they do (`method_identity`), showing each with its labels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import results, thesis
from benchmark.fileio import atomic_write, warn
from benchmark.results import load_records

# Columns of the thesis's Table 2 come first in this order; any other method follows alphabetically.
CANONICAL = ("plain", "cam_erasing", "random_erasing", "cutout", "hide_and_seek")
MISSING = "missing"
FAILED = "failed"
DATA_TAG = "erasebench:leaderboard"
# Schema 2 adds each group's mode, fill, append_bn, warmup_epochs and epochs (what `compare`
# matches methods on besides eraser, parameters and CAM); schema-1 blocks are still read.
DATA_SCHEMA = 2
READABLE_DATA_SCHEMAS = (1, 2)
# The method settings a record keeps beside eraser, eraser_params and cam (in config.method).
SETUP_KEYS = ("mode", "fill", "append_bn", "warmup_epochs", "epochs")


# ----------------------------------------------------------------------------- statistics
# Welch's t-test with the Student-t tail from the regularized incomplete beta function, in pure
# Python: a plain install (no scipy, a dev extra only) renders the same p-values as a dev one.

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast on this side
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df may be fractional)."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: list[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances); None when n < 2 on either side
    or both samples are constant (as scipy.stats.ttest_ind(equal_var=False), which gives nan)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = std(a) ** 2 / len(a), std(b) ** 2 / len(b)
    se2 = va + vb
    if se2 == 0.0:
        return None
    t = (mean(a) - mean(b)) / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t_two_sided_p(t, df)


# ----------------------------------------------------------------------------- the suite's grid

@dataclass(frozen=True)
class Method:
    """One column: a display label and the structured fields that place it in the thesis tables."""

    label: str
    eraser: str | None = None
    eraser_params: dict = field(default_factory=dict, hash=False, compare=False)
    cam: dict | None = field(default=None, hash=False, compare=False)
    known: bool = True  # False: no record yet, only the planned label
    # mode, fill, append_bn, warmup_epochs, epochs as the record has them (None: not recorded)
    setup: dict = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def of_record(cls, r: dict) -> Method:
        cfg = (r.get("config") or {}).get("method") or {}
        setup = {k: cfg.get(k) for k in SETUP_KEYS}
        setup.update(mode=r.get("mode", cfg.get("mode")), epochs=r.get("epochs"))
        return cls(r["method"], r.get("eraser"), dict(r.get("eraser_params") or {}), r.get("cam"),
                   setup=setup)

    @property
    def b_h(self):
        return self.eraser_params.get("b_h") if self.eraser == "cam_erasing" else None

    @property
    def cam_source(self) -> str | None:
        return (self.cam or {}).get("source")

    @property
    def cam_layer(self) -> str | None:
        return (self.cam or {}).get("layer")

    def sort_key(self):
        # A planned method without records has only its label; it is ordered by that name alone.
        name = ("plain" if self.eraser is None else self.eraser) if self.known else self.label
        rank = CANONICAL.index(name) if name in CANONICAL else len(CANONICAL)
        b_h = self.b_h if isinstance(self.b_h, int | float) else math.inf
        # Among CAM erasing variants the thesis's proposed configuration comes first.
        proposed = self.eraser == "cam_erasing" and thesis.is_thesis_cam(self.eraser_params, self.cam)
        return (rank, name if rank == len(CANONICAL) else "", not proposed, b_h,
                ("during", "after").index(self.cam_source) if self.cam_source in ("during", "after") else 2,
                self.cam_layer or "", self.label)


@dataclass
class Cell:
    """The finished runs of one (model, method), how many were planned, and the failed runs
    (shown, never averaged)."""

    records: list[dict]
    expected: int
    failed: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.records)

    def values(self, key: str = "final_test_error") -> list[float]:
        return [float(r[key]) for r in self.records]


@dataclass
class Grid:
    suite: str
    models: list[str]
    methods: list[Method]
    cells: dict[tuple[str, str], Cell]
    missing: list[str]  # descriptions of planned runs without a record
    records: list[dict]  # every record, finished and failed
    failed: list[dict] = field(default_factory=list)  # the failed records, by run_id

    @property
    def finished(self) -> int:
        return len(self.records) - len(self.failed)

    @property
    def datasets(self) -> list[str]:
        return sorted({str(r.get("dataset") or "?") for r in self.records})

    @property
    def on_cifar10(self) -> bool:
        return self.datasets == [thesis.DATASET]

    def cell(self, model: str, method: Method) -> Cell:
        return self.cells.get((model, method.label), Cell([], 0))


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _planned_method(e: dict) -> tuple[str, Method]:
    """(label, Method) of a planned run: `method` is a label, or a RunSpec-style dict."""
    m = e["method"]
    if isinstance(m, dict):
        label = m.get("label") or m["name"]
        eraser = None if m["name"] == "plain" else m["name"]
        return label, Method(label, eraser, dict(m.get("params") or {}),
                             m.get("cam") if eraser else None)
    if "eraser" in e:
        return m, Method(m, e["eraser"], dict(e.get("eraser_params") or {}), e.get("cam"))
    return m, Method(m, known=False)


def check_record(r: dict, suite: str) -> None:
    """A record without a key the tables need is an error naming the record and the key
    (records read from files never get here: results.read_record sets those aside)."""
    required = results.REQUIRED.get(r.get("status", results.FINISHED), results.REQUIRED[FAILED])
    for key in required:
        if key not in r:
            raise ValueError(f"results/{suite}/{r.get('run_id', '?')}.json: key {key!r} is "
                             f"missing; a {r.get('status', results.FINISHED)} result record needs "
                             f"{', '.join(required)} (see benchmark/results.py)")


def build_grid(records: list[dict], *, suite: str, expected_runs: list[dict] | None = None) -> Grid:
    """Group records into (model, method) cells over the planned grid; unplanned extras are kept.
    Failed records mark their cells and are listed, but never enter a mean."""
    for r in records:
        check_record(r, suite)
    records = [results.normalise(r) for r in records]
    finished = [r for r in records if r["status"] == results.FINISHED]
    failed = sorted((r for r in records if r["status"] != results.FINISHED),
                    key=lambda r: r["run_id"])
    methods: dict[str, Method] = {}
    for r in finished + failed:  # a finished record's fields place the column when there is one
        methods.setdefault(r["method"], Method.of_record(r))
    done = {r["run_id"] for r in records}
    expected: dict[tuple[str, str], int] = {}
    missing: list[str] = []
    models: list[str] = []
    if expected_runs is None:  # infer: every model x method x seed seen
        seeds = sorted({r["seed"] for r in records})
        models = sorted({r["model"] for r in records}, key=_natural)
        present = {(r["model"], r["method"], r["seed"]) for r in records}
        for mo in models:
            for label in methods:
                expected[(mo, label)] = len(seeds)
                missing += [f"{mo} / {label} / seed {s}" for s in seeds
                            if (mo, label, s) not in present]
    else:
        for e in expected_runs:
            for key in ("run_id", "model", "method", "seed"):
                if key not in e:
                    raise ValueError(f"expected_runs: an entry lacks key {key!r}; each needs "
                                     f"run_id, model, method, seed (got {sorted(e)})")
            label, planned = _planned_method(e)
            methods.setdefault(label, planned)
            if e["model"] not in models:
                models.append(e["model"])
            expected[(e["model"], label)] = expected.get((e["model"], label), 0) + 1
            if e["run_id"] not in done:
                missing.append(e["run_id"])
        models += sorted({r["model"] for r in records} - set(models), key=_natural)
    cells: dict[tuple[str, str], Cell] = {}
    for r in sorted(finished, key=lambda r: (r["seed"], r["run_id"])):
        key = (r["model"], r["method"])
        cells.setdefault(key, Cell([], expected.get(key, 0))).records.append(r)
    for r in failed:
        key = (r["model"], r["method"])
        cells.setdefault(key, Cell([], expected.get(key, 0))).failed.append(r)
    for key, k in expected.items():
        cells.setdefault(key, Cell([], k))
    for c in cells.values():
        # an unplanned extra run counts, it is not "over-complete"
        c.expected = max(c.expected, c.n + len(c.failed))
    return Grid(suite, models, sorted(methods.values(), key=Method.sort_key), cells, missing,
                records, failed)


# ----------------------------------------------------------------------------- formatting

def fmt_err(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def fmt_delta(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def fmt_hours(h: float) -> str:
    return f"{h:.0f}" if h >= 100 else f"{h:#.3g}"  # 3 significant digits, zeros kept


def fmt_cell(c: Cell, key: str = "final_test_error") -> str:
    """'mean ± std (n=k)' over the finished runs; partial cells say how many of the planned runs
    finished and how many failed ('failed (j of k)' when none finished); '—': not planned."""
    if c.n == 0 and c.expected == 0 and not c.failed:
        return "—"
    if c.n == 0:
        if c.failed:
            return f"{FAILED} ({len(c.failed)} of {c.expected})"
        return f"{MISSING} (0 of {c.expected})"
    return fmt_stats(c.values(key), c.expected, len(c.failed))


def fmt_stats(xs: list[float], expected: int, failed: int = 0) -> str:
    """'mean ± std (n=k)' of finished runs' values; 'n=j of k' when fewer than planned finished,
    '; j failed' when some failed. The one cell format of the leaderboards and of `compare`."""
    count = f"n={len(xs)}" if len(xs) >= expected else f"n={len(xs)} of {expected}"
    if failed:
        count += f"; {failed} {FAILED}"
    return f"{mean(xs):.2f} ± {fmt_err(std(xs))} ({count})"


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]


def _mean_or_none(c: Cell, key: str = "final_test_error") -> float | None:
    return mean(c.values(key)) if c.n else None


def _thesis_rows(label: str, ours: list[float | None], refs: list[float | None]) -> list[list[str]]:
    """The two rows printed under a model: the thesis's number and ours minus it."""
    if all(r is None for r in refs):
        return []
    deltas = [None if o is None or r is None else o - r for o, r in zip(ours, refs, strict=True)]
    return [[f"{label} · thesis"] + ["—" if r is None else f"{r:.2f}" for r in refs],
            [f"{label} · ours − thesis"] + [fmt_delta(d) for d in deltas]]


# ----------------------------------------------------------------------------- sections

def _section_table2(g: Grid, key: str) -> list[str]:
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


def _section_table1(g: Grid) -> list[str]:
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


def _section_table3(g: Grid) -> list[str]:
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
            "Final-epoch test error (%) by b_h, the largest offset of the erased rectangle's vertex "
            "from the CAM peak (pixels).", "", *md_table(header, rows), ""]


def _section_table4(g: Grid) -> list[str]:
    rows = []
    for mo in g.models:
        by: dict[tuple, dict[str, Method]] = {}
        for m in _cam_methods(g):
            if (mo, m.label) in g.cells and m.cam_source in ("during", "after"):
                by.setdefault((m.b_h, m.cam_layer), {})[m.cam_source] = m
        for (b_h, layer), pair in sorted(by.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] or "")):
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
            "Final-epoch test error (%): CAM from the model being trained (during) or from a frozen "
            "plain model of the same seed (after).", "",
            *md_table(["model", "CAM during", "CAM after"], rows), ""]


def best_baseline(g: Grid, model: str) -> Method | None:
    """The baseline (Random Erasing, Cutout, Hide-and-Seek) with the lowest mean final error."""
    scored = [(mean(g.cell(model, m).values()), m.sort_key(), m) for m in g.methods
              if m.eraser in thesis.BASELINES and g.cell(model, m).n]
    return min(scored, key=lambda t: t[:2])[2] if scored else None


def _section_significance(g: Grid) -> list[str]:
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


def _section_occlusion(g: Grid) -> list[str]:
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


def _section_cost(g: Grid) -> list[str]:
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
            "over the cell's runs of the record's `wall_time_s`, the wall-clock time of the session "
            "that trained the run to its end, evaluation and checkpoints included (a resumed run "
            "counts its last session; a run forked from a shared warm-up starts at the fork). "
            "When K runs were stacked in one network on one device (a pack of K; the `pack` column "
            "where records say), each run is charged 1/K of the pack's wall-clock time, so the "
            "hours add up to the device time used. images/s: "
            "training images (erased copies included) per second of that share, which for a pack "
            f"is the whole pack's throughput. Total: {total}.", "",
            *md_table(header, rows), ""]


def _distinct(records: list[dict], get) -> list[str]:
    return sorted({str(v) for v in (get(r) for r in records) if v not in (None, "")})


def _section_reproducibility(g: Grid) -> list[str]:
    recs = g.records
    if not recs:
        return []
    rows = [["command", "<br>".join(f"`{c}`" for c in _distinct(recs, lambda r: r.get("command")))],
            ["git commit", ", ".join(_distinct(recs, lambda r: r.get("git_commit"))) or "n/a"],
            ["device", ", ".join(_distinct(recs, lambda r: r.get("device")))],
            ["dataset", ", ".join(g.datasets)],
            ["epochs", ", ".join(_distinct(recs, lambda r: r.get("epochs")))]]
    dates = _distinct(recs, lambda r: r.get("date"))
    rows.append(["date", dates[0] if len(dates) == 1 else f"{dates[0]} … {dates[-1]}"])
    for k in sorted({k for r in recs for k in (r.get("versions") or {})}):
        rows.append([f"version: {k}", ", ".join(_distinct(recs, lambda r, k=k: (r.get("versions") or {}).get(k)))])
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


def _section_missing(g: Grid) -> list[str]:
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


def _section_failed(g: Grid) -> list[str]:
    if not g.failed:
        return []
    rows = [[f"`{r['run_id']}`", _failed_epoch(r), str(_failure(r).get("reason") or "not recorded")]
            for r in g.failed]
    return ["## Failed runs", "",
            f"{len(g.failed)} run(s) failed; they are left out of every mean, p-value and rank, "
            "and a rerun keeps them as results (`--retry-failed` trains them again). Epoch: the "
            "one running when it failed.", "", *md_table(["run", "epoch", "reason"], rows), ""]


def summary(g: Grid) -> dict:
    """The machine-readable content of a leaderboard: what `compare` needs, per cell."""
    groups = []
    for mo in g.models:
        for m in g.methods:
            if (mo, m.label) not in g.cells:
                continue
            c = g.cell(mo, m)
            group = {"model": mo, "method": m.label, "eraser": m.eraser if m.known else None,
                     "eraser_params": m.eraser_params, "cam": m.cam, "expected": c.expected,
                     "seeds": [r["seed"] for r in c.records],
                     "final": c.values("final_test_error"), "best": c.values("best_test_error"),
                     **{k: m.setup.get(k) for k in SETUP_KEYS}}
            if c.failed:  # present only when some failed: older readers see no change
                group["failed"] = len(c.failed)
            groups.append(group)
    return {"schema": DATA_SCHEMA, "suite": g.suite, "datasets": g.datasets, "models": g.models,
            "groups": groups}


def _data_block(data: dict) -> str:
    # "--" may not appear inside an HTML comment; JSON lets us spell the second dash as \u002d.
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("--", "-\\u002d")
    return f"<!-- {DATA_TAG} {text} -->"


def render(records: list[dict], *, suite: str, expected_runs: list[dict] | None = None,
           figures: list[tuple[str, str]] | None = None) -> str:
    """The leaderboard markdown of one suite (pure: same records, same text).
    figures: (caption, relative path) pairs to show below the tables."""
    g = build_grid(records, suite=suite, expected_runs=expected_runs)
    planned = sum(c.expected for c in g.cells.values())
    epochs = _distinct(records, lambda r: r.get("epochs"))
    failed = f", {len(g.failed)} failed" if g.failed else ""
    out = [f"# Leaderboard: {suite}", "",
           f"Generated by `python -m benchmark.leaderboard render --suite {suite}` from "
           f"`results/{suite}/`; do not edit by hand.", "",
           f"Data: {', '.join(g.datasets) or 'n/a'} · models: {', '.join(g.models) or 'none'} · "
           f"{g.finished} of {planned} planned runs finished{failed} · "
           f"epochs: {', '.join(epochs) or 'n/a'}.", ""]
    if g.on_cifar10:
        note = (f"The rows `· thesis` are the thesis's published CIFAR-10 numbers (mean of "
                f"{thesis.SEEDS} runs, {thesis.EPOCHS} epochs; `—` where it published none) and "
                f"`· ours − thesis` the difference.")
        if epochs != [str(thesis.EPOCHS)]:
            note += f" These runs trained {', '.join(epochs)} epochs, the thesis {thesis.EPOCHS}."
    else:
        note = ("The thesis's published numbers are CIFAR-10 results, so they are not printed "
                "beside results on other data (see THESIS.md).")
    out += ["## Final-epoch test error (Table 2 layout)", "",
            "Top-1 test error (%) after the last epoch: mean ± sample std over seeds (n runs). "
            f"`{MISSING} (0 of k)` and `n=j of k` mark cells whose planned runs have not all finished.",
            *([f"`{FAILED} (j of k)` (none finished) and `; j {FAILED}` mark cells with failed "
               "runs (see Failed runs): they never enter a mean."] if g.failed else []),
            note, "", *_section_table2(g, "final_test_error"), ""]
    out += _section_table1(g) + _section_table3(g) + _section_table4(g)
    out += ["## Best-epoch test error", "",
            "The same layout with the lowest test error over epochs: what the Random Erasing code "
            "reports; it selects on the test set, so it is optimistic next to the final epoch.", "",
            *_section_table2(g, "best_test_error"), ""]
    out += _section_significance(g) + _section_occlusion(g) + _section_cost(g)
    if figures:
        out += ["## Figures", ""] + [f"![{cap}]({path})" for cap, path in figures] + [""]
    out += _section_failed(g) + _section_missing(g) + _section_reproducibility(g)
    out.append(_data_block(summary(g)))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- files

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


def write_figures(records: list[dict], *, suite: str, figures_dir, out_dir,
                  expected_runs: list[dict] | None = None) -> list[tuple[str, str]]:
    """Plot the test-error curves per model; link the erased-fraction and CAM figures that exist.
    Returns (caption, path relative to out_dir) pairs."""
    from benchmark import plots

    figures_dir = Path(figures_dir)
    g = build_grid(records, suite=suite, expected_runs=expected_runs)
    found: list[tuple[str, Path]] = []
    for mo in g.models:
        curves = {}
        for m in g.methods:
            c = g.cell(mo, m)
            epochs, values = plots.mean_curve(c.records)
            if values:
                curves[m.label] = (epochs, values, c.n)
        if curves:
            path = figures_dir / f"{suite}_curves_{_slug(mo)}.png"
            plots.plot_curves(curves, path, title=f"{suite}: {mo}, test error by epoch")
            found.append((f"test error by epoch, {mo}", path))
    for eraser in sorted({m.eraser for m in g.methods if m.eraser}):
        path = figures_dir / f"erased_fraction_{eraser}.png"
        if path.is_file():
            found.append((f"erased fraction, {eraser}", path))
    for path in sorted(figures_dir.glob(f"cam_{suite}*.png")):
        found.append((f"CAM examples, {path.stem}", path))
    return [(cap, os.path.relpath(p, out_dir).replace(os.sep, "/")) for cap, p in found]


def render_suite(suite: str, results_dir, out_path, *, figures_dir=None,
                 expected_runs: list[dict] | None = None) -> Path:
    """Render results_dir's records into out_path (figures under figures_dir, default
    <out_path's folder>/figures) and return out_path."""
    out = Path(out_path)
    records = load_records(results_dir) if Path(results_dir).is_dir() else []
    figures = write_figures(records, suite=suite, out_dir=out.parent, expected_runs=expected_runs,
                            figures_dir=figures_dir if figures_dir is not None else out.parent / "figures")
    # atomic: a reader (or a crashed renderer) never sees half a leaderboard
    atomic_write(out, render(records, suite=suite, expected_runs=expected_runs, figures=figures))
    return out


# ----------------------------------------------------------------------------- compare

class NotALeaderboard(ValueError):
    """An input that exists but holds no data block `compare` can read: skipped with a warning."""


def read_summary(source: str) -> dict:
    """A leaderboard .md (its data block), a results folder, or a suite name (results/<name>/)."""
    p = Path(source)
    if p.suffix == ".md":
        if not p.is_file():
            raise ValueError(f"{p}: no such leaderboard file")
        m = re.search(rf"<!-- {DATA_TAG} (.*?) -->", p.read_text(), re.S)
        if not m:
            raise NotALeaderboard(f"{p}: no '{DATA_TAG}' data block (not a rendered "
                                  "leaderboard)")
        try:
            data = json.loads(m.group(1))
        except json.JSONDecodeError as e:
            raise NotALeaderboard(f"{p}: its '{DATA_TAG}' data block is not valid JSON ({e})") \
                from None
        if not isinstance(data, dict) or data.get("schema") not in READABLE_DATA_SCHEMAS:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise NotALeaderboard(f"{p}: data block key 'schema' is {schema!r}; this erasebench "
                                  f"reads schema {', '.join(map(str, READABLE_DATA_SCHEMAS))}")
        for key in ("suite", "models", "groups"):
            if key not in data:
                raise NotALeaderboard(f"{p}: data block key {key!r} is missing")
        return data
    if p.is_file():
        raise NotALeaderboard(f"{p}: not a leaderboard .md file")
    folder = p if p.is_dir() else Path("results") / source
    if not folder.is_dir():
        raise ValueError(f"{source}: neither a leaderboard .md, a results folder, nor a suite "
                         f"with records in {folder}/")
    records = load_records(folder)
    suite = str(records[0].get("suite") or folder.name) if records else folder.name
    return summary(build_grid(records, suite=suite))


def _canon(v):
    """A parameter value compared by value: 1.0 and 1 are one setting; dicts in key order."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in sorted(v.items())}
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    return v


def _warmup_share(warmup: int, epochs: int, cam: bool) -> float:
    """The warm-up as a share of the run's epochs, so the default schedule (half the epochs for a
    CAM eraser, epochs // 2) is one setting whatever a suite's length."""
    return 0.5 if cam and warmup == epochs // 2 else round(warmup / epochs, 3)


def method_identity(group: dict) -> tuple[dict, bool]:
    """(what a method does, complete?) from a data-block group: eraser, resolved parameters, CAM
    and mode, fill, append_bn (append mode only), warm-up; never the label. Incomplete (an older
    block or records): the identity without the settings that are not recorded."""
    if "eraser" not in group:  # nothing recorded but the label
        return {}, False
    eraser = group["eraser"]
    if eraser is None:  # plain training: no other setting changes what it does
        return {"eraser": "plain"}, True
    cam = group.get("cam")
    ident = {"eraser": eraser, "params": _canon(group.get("eraser_params") or {}),
             "cam": {k: cam.get(k) for k in ("source", "layer", "target")} if cam else None}
    mode, fill, warmup, epochs = (group.get(k) for k in ("mode", "fill", "warmup_epochs", "epochs"))
    append_bn = group.get("append_bn") if mode == "append" else None
    if (mode is None or fill is None or not isinstance(warmup, int) or not isinstance(epochs, int)
            or epochs < 1 or (mode == "append" and append_bn is None)):
        return ident, False
    return {**ident, "mode": mode, "fill": fill, "append_bn": append_bn,
            "warmup": _warmup_share(warmup, epochs, cam is not None)}, True


def _settings(ident: dict) -> dict[str, str]:
    """An identity as flat `key=value` settings, to tell apart methods that share a label."""
    out = {"eraser": str(ident["eraser"])} if "eraser" in ident else {}
    out.update({k: str(v) for k, v in (ident.get("params") or {}).items()})
    for k, v in (ident.get("cam") or {}).items():
        out[f"cam.{k}"] = str(v)
    for k in ("mode", "fill", "append_bn"):
        if ident.get(k) is not None:
            out[k] = str(ident[k])
    if "warmup" in ident:
        out["warmup"] = f"{100 * ident['warmup']:g}% of epochs"
    return out


@dataclass
class _Row:
    """One compared method: its identity, every label it has, and its group per column."""

    ident: dict
    by_label: bool  # matched by label: its settings are not all recorded
    labels: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    cells: dict[int, dict] = field(default_factory=dict)
    name: str = ""

    def add(self, column: int, suite: str, group: dict) -> None:
        self.cells[column] = group
        if group["method"] not in self.labels:
            self.labels.append(group["method"])
        if suite not in self.suites:
            self.suites.append(suite)

    def sort_key(self):
        g = self.cells[min(self.cells)]
        return Method(self.labels[0], g.get("eraser"), dict(g.get("eraser_params") or {}),
                      g.get("cam")).sort_key()


def _match(columns: list[tuple[str, str, list[dict]]]) -> list[_Row]:
    """Methods matched across columns by identity; groups without a complete one by label (and
    eraser, parameters, CAM), joined to the one complete method with that label if there is one.
    Two groups of one column never share a row (a suite may run one configuration twice)."""
    full: dict[tuple[str, int], _Row] = {}
    partial: dict[tuple[str, str, int], _Row] = {}
    for i, (suite, _, groups) in enumerate(columns):
        for gr in groups:
            ident, complete = method_identity(gr)
            key = json.dumps(ident, sort_keys=True)
            rows, base = (full, (key,)) if complete else (partial, (gr["method"], key))
            n = 0
            while (*base, n) in rows and i in rows[(*base, n)].cells:
                n += 1
            rows.setdefault((*base, n), _Row(ident, not complete)).add(i, suite, gr)
    out = list(full.values())
    for row in partial.values():
        same = [r for r in full.values() if row.labels[0] in r.labels
                and {k: r.ident.get(k) for k in row.ident} == row.ident
                and not set(r.cells) & set(row.cells)]
        if len(same) == 1:
            same[0].by_label = True
            for i, gr in sorted(row.cells.items()):
                same[0].add(i, columns[i][0], gr)
        else:
            out.append(row)
    for r in out:
        r.name = " / ".join(r.labels)
    for rows in _sharing_a_label(out):  # one label, different methods: say what sets them apart
        settings = [_settings(r.ident) for r in rows]
        keys = [k for k in settings[0] if all(k in s for s in settings)
                and len({s[k] for s in settings}) > 1]
        for r, s in zip(rows, settings, strict=True):
            r.name += f" [{', '.join(f'{k}={s[k]}' for k in keys) or ', '.join(r.suites)}]"
    for r in out:
        r.name += " †" if r.by_label else ""
    return out


def _sharing_a_label(rows: list[_Row]) -> list[list[_Row]]:
    """The groups (of two or more) of rows linked by a label they share, in row order."""
    group = list(range(len(rows)))  # union-find over row indices

    def find(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        for label in r.labels:
            group[find(i)] = find(first.setdefault(label, i))
    out: dict[int, list[_Row]] = {}
    for i, r in enumerate(rows):
        out.setdefault(find(i), []).append(r)
    return [g for g in out.values() if len(g) > 1]


def compare(summaries: list[dict]) -> str:
    """One table: methods (matched by what they do, shown with their labels) x (model, suite)
    columns of mean ± std (n) final error with the rank in that column, and the mean rank over
    the columns every method ran in, saying how many those are."""
    columns: list[tuple[str, str, list[dict]]] = []
    for s in summaries:
        for mo in s["models"]:
            groups = [gr for gr in s["groups"] if gr["model"] == mo and gr["final"]]
            if groups:
                columns.append((s["suite"], mo, groups))
    rows = _match(columns)
    ranks: dict[tuple[int, int], int] = {}  # (row, column) -> rank
    for i in range(len(columns)):
        means = {j: mean(r.cells[i]["final"]) for j, r in enumerate(rows) if i in r.cells}
        for j, mu in means.items():
            ranks[(j, i)] = 1 + sum(other < mu for other in means.values())  # ties: better rank
    shared = [i for i in range(len(columns)) if all(i in r.cells for r in rows)]
    mean_rank = {j: mean([ranks[(j, i)] for i in shared]) for j in range(len(rows))} \
        if shared else {}
    order = sorted(range(len(rows)), key=lambda j: (mean_rank.get(j, 0), rows[j].sort_key()))
    names = [f"{mo} ({suite})" for suite, mo, _ in columns]
    header = ["method"] + names + ([f"mean rank ({len(shared)} of {len(columns)})"]
                                   if shared else [])
    body = []
    for j in order:
        cells = []
        for i in range(len(columns)):
            gr = rows[j].cells.get(i)
            cells.append("—" if gr is None else
                         f"{fmt_stats(gr['final'], gr.get('expected', 0), gr.get('failed', 0))} "
                         f"#{ranks[(j, i)]}")
        body.append([rows[j].name] + cells + ([f"{mean_rank[j]:.2f}"] if shared else []))
    out = ["# Comparison: " + ", ".join(s["suite"] for s in summaries), "",
           "Final-epoch test error (%) per (model, suite) column: mean ± sample std over the "
           "finished runs (n; `n=j of k`: j of the k planned runs finished; failed runs never "
           "enter) and `#r`, the method's rank in that column (1 = lowest; ties share the better "
           "rank). A row is one method, matched across suites by what it does (eraser and its "
           "resolved parameters, mode, fill, append_bn, CAM source, layer and target, warm-up as "
           "a share of the epochs), never by its label; it shows every label the method has. "
           "`—`: not run there.", ""]
    if shared:
        out += [f"Mean rank over {len(shared)} of {len(columns)} columns (the columns every "
                f"method ran in): {', '.join(names[i] for i in shared)}.", ""]
    else:
        out += [f"No column of the {len(columns)} has every method, so there is no mean rank; "
                "rows are in the leaderboards' method order.", ""]
    out += md_table(header, body)
    legacy = dict.fromkeys(columns[i][0] for r in rows for i, g in sorted(r.cells.items())
                           if not method_identity(g)[1])
    if legacy:
        out += ["", f"†: matched by label, eraser, parameters and CAM: "
                f"{', '.join(legacy)} do not record every method setting (mode, "
                "fill, append_bn, warm-up: a data block older than schema 2, or older records); "
                "re-render with `python -m benchmark.leaderboard render` to match by settings."]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- CLI

def cmd_render(args) -> int:
    results_dir = args.results or Path("results") / args.suite
    if not Path(results_dir).is_dir():
        raise ValueError(f"{results_dir}: no such results folder (run the suite first, or pass --results)")
    out = args.out or Path("leaderboards") / f"{args.suite}.md"
    path = render_suite(args.suite, results_dir, out, figures_dir=args.figures)
    print(f"wrote {path}")
    return 0


def cmd_compare(args) -> int:
    summaries = []
    for source in args.inputs:
        try:
            s = read_summary(source)
        except NotALeaderboard as e:
            warn(f"{e}; skipped")
            continue
        if not any(gr["final"] for gr in s["groups"]):
            warn(f"{source}: no finished runs; skipped")
            continue
        summaries.append(s)
    if not summaries:
        raise ValueError(f"nothing to compare: none of the {len(args.inputs)} input(s) is a "
                         "leaderboard or results folder with finished runs")
    text = compare(summaries)
    if args.out:
        atomic_write(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render leaderboards/<suite>.md from results/<suite>/")
    r.add_argument("--suite", required=True)
    r.add_argument("--results", type=Path, help="records folder (default: results/<suite>)")
    r.add_argument("--out", type=Path, help="markdown file (default: leaderboards/<suite>.md)")
    r.add_argument("--figures", type=Path, help="figures folder (default: <out's folder>/figures)")
    r.set_defaults(func=cmd_render)
    c = sub.add_parser("compare", help="rank methods across models and suites")
    c.add_argument("inputs", nargs="+", help="leaderboard .md files, results folders or suite names")
    c.add_argument("--out", help="write the table here instead of stdout")
    c.set_defaults(func=cmd_compare)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
