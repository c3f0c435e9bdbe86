"""`erasebench evaluate --suite NAME`: add robustness to occlusion (benchmark/robustness.py) to the
finished records of a suite that were trained before it existed, from their final checkpoints,
without retraining; then re-render the suite's leaderboard.

It reads <out>/results/<suite>/*.json and the final checkpoints the runner keeps beside them
(<out>/results/<suite>/checkpoints/<run_id>.final.pt), loaded only through
`benchmark.training.checkpoint.load` (torch.load weights_only=True: a pickled object is refused,
never run). Each record gains the key "robustness" and is rewritten atomically; every other key
keeps its value (the fingerprint included). It writes only under --out.

Before measuring: --device (eraser_cli.device_arg) and the folders it writes (preflight.check_out)
are checked, one line each, exit 2. Only runs of the suite as its file configures them are
measured (`of_suite_config`: runner/gate.py's fingerprint comparison), and only from a checkpoint
that is the record's model (`evaluate_record`); any other is skipped with one line (exit 1). A
write that fails meanwhile is one line (exit 1), never a half-written record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark import results
from benchmark.fileio import DamagedFileError

# A checkpoint that names its run (`run_id`, every checkpoint the runner writes) and whose clean
# test error differs from its record's final error by more than this (percentage points; or two
# test images, whichever is larger) is not the record's model (retrained or replaced since). One
# without a run id (not written by erasebench's runner, which names every run) must give exactly
# the record's error: one image off is already another run's model as often as this one's.
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


def _check_identity(ckpt_path: Path, ckpt: dict, rec: dict) -> None:
    """ValueError (one line) when what the checkpoint stores about its model contradicts the
    record: its run id (where it has one), its model name, its number of classes."""
    if ckpt.get("run_id") not in (None, rec["run_id"]):
        raise ValueError(f"{ckpt_path}: the checkpoint of run {ckpt.get('run_id')!r}, not "
                         f"{rec['run_id']!r}")
    if ckpt.get("model_name") != rec.get("model"):
        raise ValueError(f"{ckpt_path}: key 'model_name' is {ckpt.get('model_name')!r}, but the "
                         f"record's model is {rec.get('model')!r}: not this record's model")
    classes = rec.get("num_classes")
    if isinstance(classes, int) and ckpt.get("num_classes") != classes:
        raise ValueError(f"{ckpt_path}: key 'num_classes' is {ckpt.get('num_classes')!r}, but the "
                         f"record's num_classes is {classes}: not this record's model")


def evaluate_record(path: Path, rec: dict, ckpt_path: Path, *, device, cache: dict) -> dict:
    """The robustness dict of one finished record from its final checkpoint. Raises
    FileNotFoundError (no checkpoint), DamagedFileError (unreadable or refused checkpoint) or
    ValueError (the checkpoint is not this record's model: another run id, model name or number
    of classes, or a clean test error that is not the record's `final_test_error`: within
    MATCH_TOLERANCE points or two test images for a checkpoint naming this run, exactly for one
    without a run id), each one line."""
    from benchmark import robustness
    from benchmark.training import checkpoint

    model, ckpt = checkpoint.load(ckpt_path, device)
    _check_identity(ckpt_path, ckpt, rec)
    cfg = rec.get("config") or {}
    train, method = cfg.get("train") or {}, cfg.get("method") or {}
    ds = _test_set(cfg, cache)
    n_test = rec.get("n_test")
    if isinstance(n_test, int) and n_test != len(ds.labels):
        raise ValueError(f"{path}: key 'n_test' is {n_test}, but the test split its config names "
                         f"has {len(ds.labels)} images now: not the set the run was tested on")
    mean, std = ckpt.get("mean", ds.mean), ckpt.get("std", ds.std)
    batch = int(train.get("eval_batch_size") or 1000)
    clean = _clean_error(model, ds.images, ds.labels, mean=mean, std=std, batch_size=batch)
    recorded = rec.get("final_test_error")
    named = ckpt.get("run_id") is not None
    # unnamed: the same count of wrong images (1e-9: each error is 100 * wrong / n in floats)
    tolerance = max(MATCH_TOLERANCE, 200.0 / len(ds.labels)) if named else 1e-9
    if isinstance(recorded, int | float) and abs(clean - recorded) > tolerance:
        rule = "" if named else (" (a checkpoint without a run id must give exactly the record's "
                                 "error, on the device type the run was tested on: "
                                 f"{rec.get('device', 'not recorded')})")
        raise ValueError(f"{ckpt_path}: its clean test error {clean:.2f}% is not the record's "
                         f"final error {recorded:.2f}%{rule}: not this record's model "
                         "(retrained or replaced since)")
    return robustness.measure(model, ds.images, ds.labels, ds.boxes, mean=mean, std=std,
                              fill=robustness.occluder_fill(method.get("fill")), batch_size=batch,
                              cam_layer=(method.get("cam") or {}).get("layer"))


def main(argv: list[str] | None = None, prog: str = "erasebench evaluate") -> int:
    """`erasebench evaluate --suite NAME`: add robustness to occlusion to a suite's finished
    records from their final checkpoints (no training), then re-render its leaderboard."""
    args = _parser(prog, main.__doc__.split(": ", 1)[1]).parse_args(argv)
    from benchmark.runner.preflight import check_out
    from benchmark.suites.config import ConfigError

    try:
        suite, results_dir = _suite(args.suite, args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # before measuring anything: the records are rewritten here, the leaderboard written there
    problems = [p for p in (check_out(results_dir, f"{results_dir} (the records)"),
                            check_out(args.out / "leaderboards",
                                      f"{args.out / 'leaderboards'} (the leaderboard)")) if p]
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    todo, done = pending(results_dir, suite.name)
    todo, other = of_suite_config(todo, suite)
    try:
        failed_here = evaluate_all(todo, results_dir, device=device, suite=suite.name,
                                   progress=not args.no_progress)
        lb = rerender(args.out, suite.name)
    except Exception as e:
        from benchmark.fileio import write_error

        failed = write_error(e)  # a full or read-only disk: the environment, not a result
        if failed is None:
            raise
        print(f"error: {failed}; no record was half-written (each is replaced whole or not at "
              "all), the ones evaluated before it keep their robustness; rerun the same command "
              "once the write can succeed", file=sys.stderr)
        return 1
    skipped = failed_here + other
    print(f"evaluate {suite.name}: {len(todo) - len(failed_here)} record(s) given robustness, "
          f"{done} already had it, {len(skipped)} skipped; wrote {lb}")
    return 1 if skipped else 0


def _suite(name_or_path: str, out: Path):
    """(the suite config, its results folder under `out`) for --suite: a name (results/<name>/
    must exist; its config is configs/<name>.yaml) or a path to the suite's YAML file, as `run
    --suite` takes. ConfigError (one line) for a bad name, a missing folder or a bad file."""
    from benchmark.suites.config import check_suite_name, load_suite

    given = Path(name_or_path)
    if not (given.suffix in (".yaml", ".yml") or given.exists()):  # a name, as run reads it:
        # it becomes results/<suite>/ and leaderboards/<suite>.md, so never a path
        check_suite_name(name_or_path, "--suite")
        _results_folder(out, name_or_path)
    suite = load_suite(name_or_path)
    return suite, _results_folder(out, suite.name)


def _results_folder(out: Path, name: str) -> Path:
    from benchmark.suites.config import ConfigError

    folder = out / "results" / name
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such results folder (run the suite first, or pass --out)")
    return folder


def of_suite_config(todo: list[tuple[Path, dict]], suite) -> tuple[list[tuple[Path, dict]],
                                                                   list[str]]:
    """(the records of `todo` that are runs of `suite` as its file configures them, the run ids
    of the others). A record that is no planned run of the suite, or whose fingerprint differs
    from its planned run's (runner/gate.py's comparison: model, seed, method, eraser parameters,
    training recipe, data; its own precision, which is a `run` option, not the suite's), is
    skipped with one line naming its file and the keys that differ: its robustness would be
    measured on another config's test set and averaged with the suite's."""
    from benchmark.suites import fingerprint
    from benchmark.suites.expand import expand

    runs = {r.run_id: r for r in expand(suite)}
    keep, other = [], []
    for path, rec in todo:
        spec = runs.get(rec["run_id"])
        if spec is None:
            why = f"not a run that {suite.file} plans (its models x methods x seeds)"
        else:
            precision = fingerprint.of_record(rec).get("precision") or "no"
            diff = fingerprint.diff_record(rec, spec, precision)
            # the test set is loaded from the record's config: it must name the suite's data too
            # (a config edited apart from its stored fingerprint)
            own = fingerprint.diff(fingerprint.of_config(rec.get("config") or {}, {}, None)
                                   ["data"], fingerprint.of_run(spec, precision)["data"],
                                   "config.data.")
            diff += [d for d in own if (d[0].removeprefix("config."), *d[1:]) not in diff]
            if not diff:
                keep.append((path, rec))
                continue
            keys = "; ".join(f"{k}: {a!r} in the record, {b!r} in the suite"
                             for k, a, b in diff[:3])
            more = f" (and {len(diff) - 3} more keys)" if len(diff) > 3 else ""
            why = f"made by another config than {suite.file} ({keys}{more})"
        print(f"skipped {rec['run_id']}: {path}: {why}; not evaluated", file=sys.stderr)
        other.append(rec["run_id"])
    return keep, other


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    from benchmark.eraser_cli import device_arg, one_line_errors
    from benchmark.runner.cli import IMPORTS_RUN_CODE

    p = argparse.ArgumentParser(prog=prog, description=description, epilog=IMPORTS_RUN_CODE)
    p.add_argument("--suite", required=True,
                   help="a name in configs/ or a path to the suite's YAML file, as `erasebench "
                   "run --suite` (its results: results/<name>/ under --out); only records of "
                   "the runs it configures are evaluated; its `imports:` run as Python code")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="the folder holding results/ and leaderboards/, as `erasebench run "
                   "--out` (default: runs); nothing is written outside it")
    p.add_argument("--device", type=device_arg, default=None,
                   help="torch device: cpu, cuda, cuda:N or mps (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return one_line_errors(p)


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

    from benchmark.data import DataUnavailableError

    skipped, cache = [], {}
    for path, rec in tqdm(todo, desc=f"evaluate {suite}", unit="run",
                          disable=not progress or not todo, dynamic_ncols=True):
        ckpt = results_dir / "checkpoints" / f"{rec['run_id']}.final.pt"
        try:
            measured = evaluate_record(path, rec, ckpt, device=device, cache=cache)
        except (OSError, DamagedFileError, ValueError, DataUnavailableError) as e:
            reason = f"no final checkpoint at {ckpt}" if isinstance(e, FileNotFoundError) \
                and not ckpt.is_file() else str(e) if not isinstance(e, PermissionError) \
                else f"{ckpt}: not readable ({e.strerror or e})"
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
