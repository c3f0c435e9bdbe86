"""Reading and writing records: one strict-JSON file per run, <results>/<run_id>.json, written
atomically. Only the runner, in the results folder it owns, moves a damaged record aside
(`set_aside=True`); every read-only reader skips it with one line and moves nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmark.fileio import atomic_write, move_aside, warn
from benchmark.results.migrate import normalise, renamed
from benchmark.results.schema import (
    FINISHED,
    cpu_time_problem,
    is_record_like,
    record_problem,
    robustness_problem,
    strict,
)


def record_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def write_record(results_dir: str | os.PathLike, record: dict) -> Path:
    """Write `record` as <results_dir>/<run_id>.json: strict JSON (non-finite floats -> null),
    atomically, mode 0644."""
    out = record_path(results_dir, record["run_id"])
    text = json.dumps(strict(record), indent=1, sort_keys=True, allow_nan=False)
    return atomic_write(out, text)


class NotARecord(ValueError):
    """A JSON file in a results folder that does not claim to be a record (see is_record_like)."""


_warned: set[tuple[str, str]] = set()


def read_record(path: str | os.PathLike, *, set_aside: bool = False) -> dict | None:
    """The record in `path` (normalised to schema 2), or None if there is none or it is damaged.

    A damaged record counts as not finished. set_aside=True (only the runner, in the results
    folder it owns) moves it to `<name>.corrupt` with a one-line warning, so the suite redoes the
    run; by default (every read-only reader) it is skipped with a one-line warning (once per file
    and problem in a process) and the file is left exactly where it is."""
    try:
        return _trusted_robustness(Path(path), _parse(Path(path)))
    except FileNotFoundError:
        return None
    except NotARecord as e:
        problem = str(e)
    except ValueError as e:
        problem = f"damaged result record ({e})"
    path = Path(path)
    if set_aside:
        _set_aside(path, problem)
    elif (str(path.resolve()), problem) not in _warned:
        _warned.add((str(path.resolve()), problem))
        warn(f"{path}: {problem}; skipping it (left as it is)")
    return None


def _parse(path: Path) -> dict:
    """A readable record, normalised; FileNotFoundError, NotARecord, or ValueError(problem)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        body = text.strip()
        cut = "; it ends mid-record: truncated?" if body[:1] == "{" and body[-1:] != "}" else ""
        raise ValueError(f"not valid JSON: {e.msg}: line {e.lineno} column {e.colno}{cut}") \
            from None
    rec = renamed(rec)
    problem = record_problem(rec)
    if problem is None and f"{rec['run_id']}.json" != path.name:
        problem = (f"holds run {rec['run_id']!r}, but a record counts only as "
                   f"{rec['run_id']}.json (a copy or a renamed file?)")
    if problem is None:
        return normalise(rec)
    if not is_record_like(rec):
        raise NotARecord(problem if problem.startswith("not a result record")
                         else f"not a result record ({problem})")
    raise ValueError(problem)


def _set_aside(path: Path, what: str, then: str = "the run will be redone") -> None:
    try:
        moved = move_aside(path)
    except OSError as e:  # e.g. another process moved it first, or a read-only folder
        warn(f"{path}: {what}; could not move it aside ({e}); skipping it")
        return
    warn(f"{path}: {what}; moved to {moved.name}; {then}")


def status(results_dir: str | os.PathLike, run_id: str, *, set_aside: bool = True) -> str | None:
    """"finished", "failed", or None (no record, or a damaged one). The runner's question about
    a folder it owns: a damaged record is moved aside (set_aside=False: a read-only caller such
    as --dry-run, which only skips it)."""
    rec = read_record(record_path(results_dir, run_id), set_aside=set_aside)
    return None if rec is None else rec["status"]


def is_finished(results_dir: str | os.PathLike, run_id: str) -> bool:
    """True only for a readable record with status finished: a failed run is redone."""
    return status(results_dir, run_id) == FINISHED


def set_aside_damaged(results_dir: str | os.PathLike) -> None:
    """The runner, in the results folder it owns, before it renders: move every damaged record
    (see read_record, including a copy whose file name is not `<run_id>.json`) to
    `<name>.corrupt` with one line each, so the folder holds each run once. JSON files that are
    not records are left alone."""
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            _parse(p)
        except (FileNotFoundError, NotARecord):
            continue
        except ValueError as e:
            copy = "a record counts only as" in str(e)  # its run keeps its own record
            _set_aside(p, f"damaged result record ({e})",
                       "not counted" if copy else "the run will be redone if the suite has it")


def _trusted_cost(path: Path, rec: dict) -> dict:
    """`rec` as read from `path`, its `cpu_time_s` set to None (so its cost falls back to
    wall-clock) with a one-line warning when it cannot be the CPU time of the record's own
    training (schema.cpu_time_problem); the file is left as it is."""
    problem = cpu_time_problem(rec)
    if problem is None:
        return rec
    if (str(path.resolve()), problem) not in _warned:
        _warned.add((str(path.resolve()), problem))
        warn(f"{path}: {problem}; its cost is shown from wall-clock time (file left as it is)")
    return {**rec, "cpu_time_s": None}


def _trusted_robustness(path: Path, rec: dict) -> dict:
    """`rec` as read from `path`, its `robustness` set to None (so no table, figure or mean reads
    it, and `erasebench evaluate` measures it again) with a one-line warning naming the file and
    key when it is not benchmark/robustness.py's measurement of this run
    (schema.robustness_problem); the rest of the record is kept and the file is left as it is."""
    problem = robustness_problem(rec)
    if problem is None:
        return rec
    if (str(path.resolve()), problem) not in _warned:
        _warned.add((str(path.resolve()), problem))
        warn(f"{path}: {problem}; its robustness to occlusion is not shown (its other numbers "
             "are; `erasebench evaluate` measures it again) (file left as it is)")
    return {**rec, "robustness": None}


def load_records(results_dir: str | os.PathLike, suite: str | None = None) -> list[dict]:
    """The readable records (finished and failed, normalised to schema 2) of a results folder,
    sorted by file name. Read-only: a damaged record is skipped with a one-line warning, a JSON
    that is not a record (package.json) quietly, and no file is moved or renamed. A `cpu_time_s`
    implausible against the record's own `train_time_s` (schema.cpu_time_problem) is read as
    null, with a one-line warning: its cost cell falls back to wall-clock; so is a `robustness`
    that is not the measurement of this run (schema.robustness_problem).

    suite: keep only that suite's records (a record without a `suite` key counts as the named
    one); the others are left out with one warning line naming their suites and counts."""
    records = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = _parse(p)
        except (FileNotFoundError, NotARecord):
            continue
        except ValueError:
            rec = read_record(p)  # the one-line warning, nothing moved
        if rec is not None:
            records.append(_trusted_robustness(p, _trusted_cost(p, rec)))
    if suite is None:
        return records
    other: dict[str, int] = {}
    for r in records:
        if r.get("suite") not in (None, suite):
            other[r["suite"]] = other.get(r["suite"], 0) + 1
    if other:
        n = sum(other.values())
        names = ", ".join(f"{s} ({k})" for s, k in sorted(other.items()))
        warn(f"{results_dir}: left out {n} record{'s' if n != 1 else ''} of other suites "
             f"({names}); only suite {suite!r} is shown")
    return [r for r in records if r.get("suite") in (None, suite)]
