"""`erasebench evaluate --suite NAME`: add robustness to occlusion (benchmark/robustness.py) to the
finished records of a suite that were trained before it existed, from their final checkpoints,
without retraining; then re-render the suite's leaderboard.

It reads <out>/results/<suite>/*.json and the final checkpoints the runner keeps beside them
(<out>/results/<suite>/checkpoints/<run_id>.final.pt), loaded only through
`benchmark.training.checkpoint.load` (torch.load weights_only=True: a pickled object is refused,
never run). Each record gains the key "robustness" and is rewritten atomically; every other key
keeps its value (the fingerprint included). It writes only under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark import results
from benchmark.fileio import DamagedFileError

# A checkpoint whose clean test error differs from its record's final error by more than this
# (percentage points; or two test images, whichever is larger) is not the record's model.
MATCH_TOLERANCE = 0.5


def _clean_error(model, images, labels, *, mean, std, batch_size: int) -> float:
    import torch

    from benchmark.data import augment

    device = next(model.parameters()).device
    wrong = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for x, y in augment.eval_batches(images, labels, batch_size=batch_size, mean=mean,
                                         std=std, device=device):
            wrong += (model(x).argmax(1) != y).sum()
    return 100.0 * wrong.item() / len(labels)


def _test_set(cfg: dict, cache: dict):
    """The test split a record's run used (from its stored config), loaded once per data config;
    never downloaded."""
    from benchmark import data

    d = cfg.get("data") or {}
    key = json.dumps(d, sort_keys=True)
    if key not in cache:
        root = d.get("root", d.get("data_dir"))  # data_dir: its name in older records
        cache[key] = data.load(d.get("name", "synthetic"), "test", root=root, download=False,
                               **dict(d.get("options") or {}))
    return cache[key]


def evaluate_record(path: Path, rec: dict, ckpt_path: Path, *, device, cache: dict) -> dict:
    """The robustness dict of one finished record from its final checkpoint. Raises
    FileNotFoundError (no checkpoint), DamagedFileError (unreadable or refused checkpoint) or
    ValueError (the checkpoint is not this record's model), each one line."""
    from benchmark import robustness
    from benchmark.training import checkpoint

    model, ckpt = checkpoint.load(ckpt_path, device)
    if ckpt.get("run_id") not in (None, rec["run_id"]):
        raise ValueError(f"{ckpt_path}: the checkpoint of run {ckpt.get('run_id')!r}, not "
                         f"{rec['run_id']!r}")
    cfg = rec.get("config") or {}
    train, method = cfg.get("train") or {}, cfg.get("method") or {}
    ds = _test_set(cfg, cache)
    mean, std = ckpt.get("mean", ds.mean), ckpt.get("std", ds.std)
    batch = int(train.get("eval_batch_size") or 1000)
    clean = _clean_error(model, ds.images, ds.labels, mean=mean, std=std, batch_size=batch)
    recorded = rec.get("final_test_error")
    tolerance = max(MATCH_TOLERANCE, 200.0 / len(ds.labels))
    if isinstance(recorded, int | float) and abs(clean - recorded) > tolerance:
        raise ValueError(f"{ckpt_path}: its clean test error {clean:.2f}% is not the record's "
                         f"final error {recorded:.2f}%: not this record's model (retrained or "
                         "replaced since)")
    return robustness.measure(model, ds.images, ds.labels, ds.boxes, mean=mean, std=std,
                              fill=robustness.occluder_fill(method.get("fill")), batch_size=batch,
                              cam_layer=(method.get("cam") or {}).get("layer"))


def main(argv: list[str] | None = None, prog: str = "erasebench evaluate") -> int:
    """`erasebench evaluate --suite NAME`: add robustness to occlusion to a suite's finished
    records from their final checkpoints (no training), then re-render its leaderboard."""
    args = _parser(prog, main.__doc__.split(": ", 1)[1]).parse_args(argv)
    from benchmark.suites.config import ConfigError, check_suite_name

    try:  # the name becomes results/<suite>/ and leaderboards/<suite>.md: never a path
        check_suite_name(args.suite, "--suite")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results_dir = args.out / "results" / args.suite
    if not results_dir.is_dir():
        print(f"error: {results_dir}: no such results folder (run the suite first, or pass "
              "--out)", file=sys.stderr)
        return 2
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    todo, done = pending(results_dir, args.suite)
    skipped = evaluate_all(todo, results_dir, device=device, suite=args.suite,
                           progress=not args.no_progress)
    lb = rerender(args.out, args.suite)
    print(f"evaluate {args.suite}: {len(todo) - len(skipped)} record(s) given robustness, "
          f"{done} already had it, {len(skipped)} skipped; wrote {lb}")
    return 1 if skipped else 0


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--suite", required=True, help="the suite name (results/<suite>/ under --out)")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="the folder holding results/ and leaderboards/, as `erasebench run "
                   "--out` (default: runs); nothing is written outside it")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def pending(results_dir: Path, suite: str) -> tuple[list[tuple[Path, dict]], int]:
    """([(path, record)] of the suite's finished records without robustness, how many have it).
    A damaged record is one warning line and left where it is."""
    todo, done = [], 0
    for path in sorted(results_dir.glob("*.json")):
        rec = results.read_record(path)
        if rec is None or rec.get("status") != results.FINISHED or rec.get("suite") != suite:
            continue
        if isinstance(rec.get("robustness"), dict):
            done += 1
            continue
        todo.append((path, rec))
    return todo, done


def evaluate_all(todo: list[tuple[Path, dict]], results_dir: Path, *, device, suite: str,
                 progress: bool = True) -> list[str]:
    """Measure each record of `todo` from its final checkpoint and rewrite it with the key
    "robustness" (atomically; every other key as the file has it); the run ids skipped, each
    with one line saying why (no checkpoint, a damaged or refused one, another model's)."""
    from tqdm.auto import tqdm

    skipped, cache = [], {}
    for path, rec in tqdm(todo, desc=f"evaluate {suite}", unit="run",
                          disable=not progress or not todo, dynamic_ncols=True):
        ckpt = results_dir / "checkpoints" / f"{rec['run_id']}.final.pt"
        try:
            measured = evaluate_record(path, rec, ckpt, device=device, cache=cache)
        except (FileNotFoundError, DamagedFileError, ValueError) as e:
            reason = f"no final checkpoint at {ckpt}" if isinstance(e, FileNotFoundError) \
                and not ckpt.is_file() else str(e)
            print(f"skipped {rec['run_id']}: {reason}", file=sys.stderr)
            skipped.append(rec["run_id"])
            continue
        raw = json.loads(path.read_text(encoding="utf-8"))  # the file as it is, not normalised
        raw["robustness"] = measured
        results.write_record(results_dir, raw)
    return skipped


def rerender(out: Path, suite: str) -> Path:
    """Render <out>/leaderboards/<suite>.md again from the records, with the plan a hand render
    finds (report/plan.py: find_plan); its path."""
    from benchmark.report.leaderboard import render_suite
    from benchmark.report.plan import find_plan

    lb = out / "leaderboards" / f"{suite}.md"
    plan, source = find_plan(suite, lb)
    return render_suite(suite, out / "results" / suite, lb, figures_dir=lb.parent / "figures",
                        expected_runs=plan, plan_source=source)
