"""How the methods of a leaderboard train, where they differ: the training mode (replace or
append, and append's BatchNorm batches), the plain warm-up epochs (and the run a forked run
continues), the CAM source and the epochs, read from each record's resolved config. A method's
error is not its eraser's alone when it also trains differently, so the leaderboard shows these
beside its headline table; settings every method shares are not restated."""

from __future__ import annotations

from benchmark.report.grid import Grid, Method
from benchmark.report.markdown import md_table

NONE = "—"


def _mode(r: dict) -> str | None:
    return r.get("mode", ((r.get("config") or {}).get("method") or {}).get("mode"))


def _method_cfg(r: dict) -> dict:
    return (r.get("config") or {}).get("method") or {}


def _warmup(r: dict, labels: dict[str, str]) -> str | None:
    """Plain epochs before erasing, with the run whose checkpoint of them a forked run
    continues (by its label when that run is in the suite)."""
    if r.get("eraser") is None:
        return None
    w = _method_cfg(r).get("warmup_epochs")
    if w is None:
        return None
    fork = (r.get("forked_from") or {}).get("run_id")
    return f"{w} (forked from {labels.get(fork, fork)})" if fork and w else str(w)


def _bn(r: dict) -> str | None:
    return _method_cfg(r).get("append_bn") if _mode(r) == "append" else None


def _cam(r: dict) -> str | None:
    cam = r.get("cam")
    if not cam:
        return None
    layer = cam.get("layer")
    return f"{cam.get('source')}" + (f", layer {layer}" if layer else "")


def _rows(labels: dict[str, str]) -> list[tuple[str, object]]:
    return [("mode", _mode), ("plain warm-up epochs", lambda r: _warmup(r, labels)),
            ("BatchNorm in append mode", _bn), ("CAM source", _cam),
            ("epochs", lambda r: r.get("epochs"))]


def _value(recs: list[dict], get) -> str:
    """One method's value of a setting: distinct values over its records joined by ' / '."""
    vals = sorted({str(v) for v in (get(r) for r in recs) if v not in (None, "")})
    return " / ".join(vals) or NONE


def training_setup(g: Grid) -> list[str]:
    """Markdown lines: a table with the headline table's columns and one row per setting in which
    the methods differ (see the module doc); nothing when every method trains alike."""
    labels = {r["run_id"]: r["label"] for r in g.records if r.get("run_id") and r.get("label")}
    methods: list[tuple[Method, list[dict]]] = []
    for m in g.methods:
        recs = [r for mo in g.models for r in g.cell(mo, m).records + g.cell(mo, m).failed]
        if recs:
            methods.append((m, recs))
    rows = []
    for name, get in _rows(labels):
        values = [_value(recs, get) for _, recs in methods]
        if len({v for v in values if v != NONE}) > 1:
            rows.append([name, *values])
    if not rows:
        return []
    return ["### How the methods train", "",
            "The settings in which the methods differ, from each record's resolved config "
            "(those all methods share are not repeated). `replace`: each batch's erased images "
            "replace its clean ones; `append`: each batch trains on its clean images and erased "
            "copies of them, twice the images a step. Warm-up: plain epochs before erasing "
            "starts; `forked from` a run: the run continues that run's checkpoint of those "
            "epochs. A method that also differs here differs from the others by more than its "
            "eraser: compare such methods with that in mind (docs/method.md).", "",
            *md_table(["setting", *[m.label for m, _ in methods]], rows), ""]
