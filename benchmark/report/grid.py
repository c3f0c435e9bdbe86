"""The grid of a suite's records: model x method cells, each with its finished and failed runs
and how many were planned. Placement uses the records' structured fields (eraser, params, CAM),
never the display label; the label only names a column."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from benchmark import results
from benchmark.report import thesis

# Columns of the thesis's Table 2 come first in this order; any other method follows alphabetically.
CANONICAL = ("plain", "cam_erasing", "random_erasing", "cutout", "hide_and_seek")
MISSING = "missing"
FAILED = "failed"
AT_CHANCE = "at chance"
# The method settings a record keeps beside eraser, eraser_params and cam (in config.method).
SETUP_KEYS = ("mode", "fill", "append_bn", "warmup_epochs", "epochs")

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
        return cls(r["label"], r.get("eraser"), dict(r.get("eraser_params") or {}), r.get("cam"),
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
        proposed = (self.eraser == "cam_erasing"
                    and thesis.is_thesis_cam(self.eraser_params, self.cam))
        return (rank, name if rank == len(CANONICAL) else "", not proposed, b_h,
                (("during", "after").index(self.cam_source)
                 if self.cam_source in ("during", "after") else 2),
                self.cam_layer or "", self.label)


# Classes of the datasets whose records predate the `num_classes` key (synthetic: its ten shapes).
KNOWN_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
# Test images of those datasets' test splits (synthetic: its n_test option, default 2000).
KNOWN_TEST_IMAGES = {"cifar10": 10000, "cifar100": 10000}
CHANCE_SIGMAS = 2.0  # how close to guessing counts as at chance, in standard errors (see below)
CHANCE_MARGIN_MIN = 1.0  # percentage points: the margin when the test set's size is not known


def chance_error(r: dict) -> tuple[float, float] | None:
    """(the error of guessing, the lowest error that counts as at chance), both percent, for a
    record; None when its number of classes is unknown.

    Guessing (or always answering one class of a balanced test set) errs on a share p = 1 - 1/C
    of the images. On n test images its error has a standard error of 100 sqrt(p (1 - p) / n)
    percentage points, so an error within CHANCE_SIGMAS of those below 100 p cannot be told
    apart from guessing: 89.4% and up on CIFAR-10 (n = 10000), 54.5% and up for 3 classes
    and 60 test images. Without a known n the margin is CHANCE_MARGIN_MIN points."""
    classes = r.get("num_classes") or KNOWN_CLASSES.get(str(r.get("dataset")))
    if not isinstance(classes, int) or classes < 2:
        return None
    p = 1 - 1 / classes
    n = r.get("n_test") or KNOWN_TEST_IMAGES.get(str(r.get("dataset")))
    if n is None and r.get("dataset") == "synthetic":
        n = (((r.get("config") or {}).get("data") or {}).get("options") or {}).get("n_test", 2000)
    margin = CHANCE_MARGIN_MIN
    if isinstance(n, int) and n > 0:
        margin = CHANCE_SIGMAS * 100 * math.sqrt(p * (1 - p) / n)
    return 100 * p, 100 * p - margin


def at_chance(r: dict) -> bool:
    """A finished run whose final test error is at the level of guessing (see chance_error)."""
    chance = chance_error(r)
    err = r.get("final_test_error")
    return (r.get("status", results.FINISHED) == results.FINISHED and chance is not None
            and isinstance(err, int | float) and err >= chance[1])


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

    @property
    def at_chance(self) -> int:
        """How many of its finished runs ended at chance level (they are in its mean)."""
        return sum(at_chance(r) for r in self.records)

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
    plan_known: bool = True  # False: no plan was given; the cells are only what has records

    @property
    def finished(self) -> int:
        return len(self.records) - len(self.failed)

    @property
    def datasets(self) -> list[str]:
        return sorted({str(r.get("dataset") or "?") for r in self.records})

    @property
    def on_cifar10(self) -> bool:
        return self.datasets == [thesis.DATASET]

    @property
    def plain(self) -> Method | None:
        """The column of plain training (no eraser; None when the suite has none)."""
        return next((m for m in self.methods if m.known and m.eraser is None), None)

    def cell(self, model: str, method: Method) -> Cell:
        return self.cells.get((model, method.label), Cell([], 0))


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def check_record(r: dict, suite: str) -> None:
    """A record without a key the tables need, or with a number outside its range
    (results.RANGES), is an error naming the record and the key (records read from files never
    get here: results.load_records skips those)."""
    required = results.REQUIRED.get(r.get("status", results.FINISHED), results.REQUIRED[FAILED])
    for key in required:
        if key not in r:
            raise ValueError(f"results/{suite}/{r.get('run_id', '?')}.json: key {key!r} is "
                             f"missing; a {r.get('status', results.FINISHED)} result record needs "
                             f"{', '.join(required)} (see benchmark/results/schema.py)")
    problem = results.value_problem(r)
    if problem:
        raise ValueError(f"results/{suite}/{r.get('run_id', '?')}.json: {problem}")


def _plan_inferred(records, methods) -> tuple[list[str], dict, list[str]]:
    """Without a plan: every model x method x seed seen was planned."""
    seeds = sorted({r["seed"] for r in records})
    models = sorted({r["model"] for r in records}, key=_natural)
    present = {(r["model"], r["label"], r["seed"]) for r in records}
    expected, missing = {}, []
    for mo in models:
        for label in methods:
            expected[(mo, label)] = len(seeds)
            missing += [f"{mo} / {label} / seed {s}" for s in seeds
                        if (mo, label, s) not in present]
    return models, expected, missing


PLAN_KEYS = ("run_id", "model", "label", "seed")


def planned_run(r) -> dict:
    """A planned run as the report takes it, {"run_id", "model", "label", "seed"}, from a RunSpec
    (benchmark.suites.expand): everything else about the run is read from its record."""
    return {"run_id": r.run_id, "model": r.model, "label": r.label, "seed": r.seed}


def check_planned_run(e) -> None:
    """The report's one plan shape: a dict with exactly the keys PLAN_KEYS (run_id, model, label,
    seed; see planned_run). Anything else is a ValueError naming the key."""
    if not isinstance(e, dict):
        raise ValueError(f"expected_runs: an entry is {type(e).__name__}, not a dict of "
                         f"{', '.join(PLAN_KEYS)}")
    for key in PLAN_KEYS:
        if key not in e:
            raise ValueError(f"expected_runs: an entry lacks key {key!r}; each has exactly "
                             f"{', '.join(PLAN_KEYS)} (got {', '.join(sorted(map(str, e)))})")
    extra = sorted(map(str, set(e) - set(PLAN_KEYS)))
    if extra:
        raise ValueError(f"expected_runs: entry {e['run_id']!r} has key {extra[0]!r}; each has "
                         f"exactly {', '.join(PLAN_KEYS)} (the rest is read from its record)")


def _plan_given(records, methods, expected_runs) -> tuple[list[str], dict, list[str]]:
    """The plan (planned_run entries): (models, runs expected per cell, planned run ids without a
    record)."""
    done = {r["run_id"] for r in records}
    models, expected, missing = [], {}, []
    for e in expected_runs:
        check_planned_run(e)
        label = e["label"]
        methods.setdefault(label, Method(label, known=False))  # a record, if any, places it
        if e["model"] not in models:
            models.append(e["model"])
        expected[(e["model"], label)] = expected.get((e["model"], label), 0) + 1
        if e["run_id"] not in done:
            missing.append(e["run_id"])
    models += sorted({r["model"] for r in records} - set(models), key=_natural)
    return models, expected, missing


def build_grid(records: list[dict], *, suite: str, expected_runs: list[dict] | None = None) -> Grid:
    """Group records into (model, method) cells over the planned grid; unplanned extras are kept.
    Failed records mark their cells and are listed, but never enter a mean.
    expected_runs: the plan, a list of planned_run entries (None: unknown); ValueError for an
    entry of any other shape."""
    records = [results.renamed(r) for r in records]  # a record's `method` is its `label`
    for r in records:
        check_record(r, suite)
    records = [results.normalise(r) for r in records]
    finished = [r for r in records if r["status"] == results.FINISHED]
    failed = sorted((r for r in records if r["status"] != results.FINISHED),
                    key=lambda r: r["run_id"])
    methods: dict[str, Method] = {}
    for r in finished + failed:  # a finished record's fields place the column when there is one
        methods.setdefault(r["label"], Method.of_record(r))
    models, expected, missing = (_plan_inferred(records, methods) if expected_runs is None
                                 else _plan_given(records, methods, expected_runs))
    cells: dict[tuple[str, str], Cell] = {}
    for r in sorted(finished, key=lambda r: (r["seed"], r["run_id"])):
        key = (r["model"], r["label"])
        cells.setdefault(key, Cell([], expected.get(key, 0))).records.append(r)
    for r in failed:
        key = (r["model"], r["label"])
        cells.setdefault(key, Cell([], expected.get(key, 0))).failed.append(r)
    for key, k in expected.items():
        cells.setdefault(key, Cell([], k))
    for c in cells.values():
        # an unplanned extra run counts, it is not "over-complete"
        c.expected = max(c.expected, c.n + len(c.failed))
    return Grid(suite, models, sorted(methods.values(), key=Method.sort_key), cells, missing,
                records, failed, plan_known=expected_runs is not None)
