"""The fingerprint gate: a record or resume checkpoint made by another config stops the suite
before training (one line naming the keys that differ), unless --rerun-changed moves them aside."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark import results
from benchmark.suites import fingerprint
from benchmark.suites.expand import RunSpec


def check_fingerprints(runs: list[RunSpec], results_dir: Path, precision: str,
                       rerun_changed: bool, data_identity: dict | None = None,
                       dry_run: bool = False) -> str | None:
    """A record or resume checkpoint made by another config stops the suite (one line naming the
    keys that differ), unless --rerun-changed, which moves those files aside so the runs train
    again (a dry run only says how many it would retrain). `data_identity`: the data this run
    would train on (`benchmark.data.identity`), compared with the records' own."""
    from benchmark.fileio import move_aside
    from benchmark.training.resume import resume_path

    changed, keys = [], {}
    for r in runs:
        path = results.record_path(results_dir, r.run_id)
        rec = results.read_record(path, set_aside=not dry_run) if path.is_file() else None
        if rec is not None:
            diff = fingerprint.diff_record(rec, r, precision, data_identity)
        else:
            path = resume_path(results_dir / "checkpoints", r.run_id)
            diff = fingerprint.diff_resume(path, r, precision)
        if diff:
            changed.append(path)
            for key, old, new in diff:
                keys.setdefault(key, (old, new))
    if not changed:
        return None
    if rerun_changed and dry_run:
        print(f"note: {len(changed)} records of another config would be moved aside (*.changed) "
              "and their runs trained again; --dry-run moves nothing", file=sys.stderr)
        return None
    if rerun_changed:
        for path in changed:
            move_aside(path, ".changed")
        print(f"note: {len(changed)} records of another config moved aside (*.changed); their "
              "runs train again", file=sys.stderr)
        return None
    return fingerprint.refusal(results_dir, len(changed), keys)
