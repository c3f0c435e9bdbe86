"""Records written by older erasebench, as the current schema sees them: keys under their old
names (`renamed`: `method` -> `label`), schema 1 gets a status, a diverged run (NaN/Infinity) is
failed (`normalise`); the file is never touched."""

from __future__ import annotations

import math

from benchmark.results.schema import FAILED, FINISHED, non_finite, strict

# A record key's old name -> its name now. Records with the old name are committed results: they
# are read as they are, silently (a reader never rewrites a record, so a note would be noise).
RENAMED = {"method": "label"}


def renamed(rec):
    """`rec` (a parsed record; anything else is returned as it is) with every key in RENAMED under
    both names: the new one from the old where only the old is there, and the old one kept from
    the new for callers that still read it. A new dict; `rec` is not changed."""
    if not isinstance(rec, dict):
        return rec
    out = dict(rec)
    for old, new in RENAMED.items():
        if new not in out and old in out:
            out[new] = out[old]
        elif old not in out and new in out:
            out[old] = out[new]
    return out


def normalise(rec: dict) -> dict:
    """A readable record as schema 2 sees it (a new dict; the file is not touched): schema 1 gets
    status finished; a finished record with NaN/Infinity anywhere (schema 1 wrote them: the run
    diverged) or without a numeric final/best error is failed, with the reason."""
    rec = renamed(rec)
    rec.setdefault("status", FINISHED)
    rec.setdefault("failure", None)
    if rec["status"] != FINISHED:
        return strict(rec)
    bad = non_finite(rec)
    if bad:
        loss = (rec.get("curves") or {}).get("train_loss") or []
        epoch = next((i + 1 for i, x in enumerate(loss)
                      if not isinstance(x, int | float) or not math.isfinite(x)), None)
        rec = strict(rec)
        rec.update(status=FAILED, failure={"epoch": epoch, "reason": "non-finite values in "
                                           f"{', '.join(bad)} (the run diverged)"})
        return rec
    for key in ("final_test_error", "best_test_error"):
        if isinstance(rec.get(key), bool) or not isinstance(rec.get(key), int | float):
            reason = f"{key} is {rec.get(key)!r}, not a number"
            rec.update(status=FAILED, failure={"epoch": None, "reason": reason})
            return rec
    return rec
