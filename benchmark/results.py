"""One strict-JSON record per run, finished or failed, written atomically; the suite resumes
from them.

A record is the only thing the leaderboard reads. Its keys (schema 2):

    schema          2 (schema-1 records, written before failures were recorded, are still read:
                    as finished, or as failed when they hold NaN/Infinity, i.e. the run diverged)
    status          "finished" | "failed"; a failed run is a result too: a rerun keeps it
                    (the runner's --retry-failed trains it again)
    failure         None, or (failed) {"epoch": the 1-based epoch running when it failed, None
                    before the first epoch began; "reason": one line, e.g. "loss is NaN"}
    suite           suite name, e.g. "thesis"
    run_id          unique within the suite, e.g. "resnet20__cam_erasing-bh2__s0"
    model           model name as given to benchmark.models.create, e.g. "resnet20", "timm/resnet18"
    method          display label of the augmentation: "plain", an eraser name, or the suite's label
                    for a variant (e.g. "cam_erasing(b_h=3)")
    eraser          registry name or None for plain training
    eraser_params   dict of the eraser's constructor arguments (after defaults)
    mode            "replace" | "append" | None
    cam             None, or {"source": "during"|"after", "layer": str|None,
                    "target": "label"|"pred", "path": "fast"|"generic"|None (None: failed
                    before the CAM path was known)}
    ablation        dict: the axis values that set this run apart from its siblings, e.g. {"b_h": 3}
    seed            int
    dataset         e.g. "cifar10", "synthetic"
    data_identity   {"train": {"images": N, "sha256": 16 hex digits}, "test": {...}}: the data the
                    run trained and was tested on (benchmark.data.identity: a hash of the arrays);
                    absent in records written before it existed, and then not compared
    epochs          int (planned)
    final_test_error  float, percent, after the last epoch (the headline number); None if failed
    best_test_error   float, percent, best over epochs (what the Random Erasing code reports);
                    None if failed
    best_epoch      int (1-based); None if failed
    num_classes     int: the classes the model predicts; n_test: int, the test images the errors
                    are over (finished records; absent in older ones). They tell the error of
                    guessing, 100 (1 - 1/num_classes) %, which the leaderboard flags
    curves          {"epoch": [...], "train_loss": [...], "train_acc": [...], "test_error": [...],
                     "lr": [...], "erased_fraction": [...]}  (percent for acc/error); a failed
                    run's curves hold the epochs it completed (possibly none)
    occlusion       None, or (data with boxes) {"erased_image_rate", "object_hit_rate",
                    "object_covered_mean", "train_cam_peak_in_box", "cam_peak_in_box",
                    "random_point_in_box"}: fractions in [0, 1]. The first three are over the
                    erasing epochs' training batches; train_cam_peak_in_box over the CAMs the eraser
                    used (None without one); cam_peak_in_box is the final model's CAM peak (true
                    class) on the test set, random_point_in_box the mean box area fraction
    robustness      (finished runs; absent in records trained before it, until `erasebench
                    evaluate` adds it) test error (%) of the final model on occluded copies of the
                    test set (benchmark/robustness.py): {"fractions": [f...], "random": [err per
                    f], "box": [...] (data with boxes only), "cam_peak": [...], "seed", "n_test",
                    "fill", "cam_target", "cam_layer"}
    wall_time_s     float (the whole run); train_time_s: training epochs only; images_per_s:
                    training images per second, erased copies included; resumed_from_epoch: int
                    or None (each None when a failed run did not get that far)
    process         {"index", "count"}: which Accelerate process trained it
    environment     how the process that wrote it ran (CPU results depend on it: the thread
                    count changes the order of float reductions): {"threads":
                    torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                    "threads_option": the --threads given or None (None: the cores shared out
                    between the processes), "omp_num_threads": $OMP_NUM_THREADS or None,
                    "cpu_count", "launcher": "plain" | "accelerate launch" | "torchrun" |
                    "runs-per-device worker", "processes": processes of the launch,
                    "runs_per_device": the --runs-per-device N, "slurm": {"job", "array_task"}
                    or None}
    device          e.g. "cpu", "NVIDIA H100 80GB HBM3"
    versions        {"python", "torch", "torchvision", "timm", "accelerate", "erasebench"}
    git_commit      str or None; date: ISO 8601; command: the command line that ran the suite
    config          the full resolved run config (dict)

Records are strict JSON: a non-finite float anywhere is written as null. A damaged record
(truncated, not JSON, an unknown schema, a key of the wrong type, or a number outside its range:
an error outside [0, 100] %, a negative loss or time, a fraction outside [0, 1]; see `RANGES`)
counts as not finished, and so does a record whose file name is not `<run_id>.json` (a copy, a
backup: each run counts once), a schema 2 record holding NaN/Infinity (schema 2 is strict JSON),
or a finished schema 2 record whose final or best error is null. Only the runner, in the results
folder it owns, moves it aside to `<name>.corrupt` (`set_aside=True`, one line); every read-only
reader (leaderboard, compare, figures, --dry-run) skips it with one line and never renames or
moves a file. A JSON file that is not a record at all (neither `run_id` nor `schema`, e.g. a
`package.json`) is not damaged: readers skip it quietly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from benchmark.fileio import atomic_write, describe, move_aside, warn

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
FINISHED, FAILED = "finished", "failed"
STATUSES = (FINISHED, FAILED)
# The keys the leaderboard needs to place a record, by status.
REQUIRED = {FINISHED: ("run_id", "model", "method", "seed", "final_test_error", "best_test_error"),
            FAILED: ("run_id", "model", "method", "seed")}
_REASON_LIMIT = 500


def record_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def strict(obj):
    """`obj` with every non-finite float (NaN, ±Infinity), in nested dicts/lists/tuples, as None:
    what JSON can hold (json.dumps would write the invalid tokens NaN / Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def _non_finite(obj, where: str = "") -> list[str]:
    """Dotted paths of the non-finite floats in `obj` (lists: the path of the list, once)."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "value"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _non_finite(v, f"{where}.{k}" if where else k)]
    if isinstance(obj, list | tuple):
        return [where] if any(_non_finite(v, where) for v in obj) else []
    return []


def write_record(results_dir: str | os.PathLike, record: dict) -> Path:
    """Write `record` as <results_dir>/<run_id>.json: strict JSON (non-finite floats -> null),
    atomically, mode 0644."""
    out = record_path(results_dir, record["run_id"])
    text = json.dumps(strict(record), indent=1, sort_keys=True, allow_nan=False)
    return atomic_write(out, text)


def record_problem(rec) -> str | None:
    """What makes a parsed record unreadable (None: nothing): not an object, no run_id or schema,
    an unknown schema or status, or a key the leaderboard needs is missing."""
    if not isinstance(rec, dict):
        return f"not a result record (a JSON {type(rec).__name__}, not an object)"
    for key in ("run_id", "schema"):
        if key not in rec:
            return f"key {key!r} is missing"
    if rec["schema"] not in READABLE_SCHEMAS:
        return (f"key 'schema' is {rec['schema']!r}; this erasebench reads schema "
                f"{', '.join(map(str, READABLE_SCHEMAS))}")
    status = rec.get("status", FINISHED) if rec["schema"] == 1 else rec.get("status")
    if status not in STATUSES:
        return f"key 'status' is {status!r}; expected {' or '.join(map(repr, STATUSES))}"
    missing = [k for k in REQUIRED[status] if k not in rec]
    if missing:
        return f"key {missing[0]!r} is missing"
    for key, types, what in _TYPES:
        if key in rec and not (isinstance(rec[key], types) and not isinstance(rec[key], bool)):
            return f"key {key!r} is {_short(rec[key])}, not {what}"
    if rec["schema"] >= 2:
        # schema 2 is strict JSON and records a diverged run as failed: a NaN/Infinity token, or
        # a finished run without a finite error, was not written by erasebench
        bad = _non_finite(rec)
        if bad:
            return f"key {bad[0]!r} holds NaN or Infinity, which erasebench never writes"
        if status == FINISHED:
            for key in ("final_test_error", "best_test_error"):
                if rec[key] is None:
                    return (f"key {key!r} is null in a finished record (a finished run has a "
                            "number; a diverged one is recorded as failed)")
    return value_problem(rec)


# Every number the reports read, with the range it can take (units as in the schema above):
# dotted key -> (lowest, highest). A finite number outside it, or a value that is neither a
# number nor null, makes the record damaged: no real run writes it, and one such value would
# enter (and dominate) a mean, a ranking or a plot's axis. null, NaN and +-Infinity stay what
# they were (a failed or diverged run, see `normalise`).
PERCENT, FRACTION, COUNT = (0.0, 100.0), (0.0, 1.0), (0.0, math.inf)
RANGES = {"final_test_error": PERCENT, "best_test_error": PERCENT,
          "epochs": (1, math.inf), "wall_time_s": COUNT, "train_time_s": COUNT,
          "images_per_s": COUNT, "pack_size": (1, math.inf), "num_classes": (2, math.inf),
          "n_test": (1, math.inf),
          "curves.epoch": COUNT, "curves.train_loss": COUNT, "curves.train_acc": PERCENT,
          "curves.test_error": PERCENT, "curves.lr": COUNT, "curves.erased_fraction": PERCENT,
          **{f"occlusion.{k}": FRACTION for k in (
              "erased_image_rate", "object_hit_rate", "object_covered_mean",
              "train_cam_peak_in_box", "cam_peak_in_box", "random_point_in_box")},
          # benchmark/robustness.py: test error (%) per placement, at each occluded fraction
          "robustness.fractions": FRACTION, "robustness.n_test": (1, math.inf),
          "robustness.seed": COUNT,
          **{f"robustness.{k}": PERCENT for k in ("random", "box", "cam_peak")}}


def _number_problem(key: str, value, lo, hi) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"key {key!r} is {_short(value)}, not a number"
    if not lo <= value <= hi:
        span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        return f"key {key!r} is {value!r}, outside its range (must be {span})"
    return None


def value_problem(rec: dict) -> str | None:
    """The first number of `rec` outside its range in `RANGES` (None: all fine), as one line:
    "key 'final_test_error' is -250, outside its range (must be in [0, 100])". Lists (curves)
    are checked element by element; null, NaN and +-Infinity are left to `normalise`."""
    for key, (lo, hi) in RANGES.items():
        head, _, leaf = key.partition(".")
        value = rec.get(head)
        if leaf:
            value = value.get(leaf) if isinstance(value, dict) else None
        if leaf and (head == "curves" or isinstance(value, list)):
            if value is None:
                continue
            if not isinstance(value, list):
                return f"key {key!r} is {_short(value)}, not a list"
            for i, x in enumerate(value):
                problem = _number_problem(f"{key}[{i}]", x, lo, hi)
                if problem:
                    return problem
            continue
        problem = _number_problem(key, value, lo, hi)
        if problem:
            return problem
    return None


def is_record_like(obj) -> bool:
    """Whether a parsed JSON file claims to be a result record (an object with `run_id` or
    `schema`): one that does not (a package.json, a config) is not a damaged record."""
    return isinstance(obj, dict) and ("run_id" in obj or "schema" in obj)


# Keys the leaderboard reads, with the types it can use (None: absent or not known).
_TYPES = [("run_id", str, "a string"), ("model", str, "a string"), ("method", str, "a string"),
          ("seed", int, "an integer"), ("suite", str | None, "a string"),
          ("eraser", str | None, "a string or null"),
          *[(k, dict | None, "an object or null")
            for k in ("eraser_params", "cam", "curves", "occlusion", "failure", "versions",
                      "robustness")]]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def normalise(rec: dict) -> dict:
    """A readable record as schema 2 sees it (a new dict; the file is not touched): schema 1 gets
    status finished; a finished record with NaN/Infinity anywhere (schema 1 wrote them: the run
    diverged) or without a numeric final/best error is failed, with the reason."""
    rec = dict(rec)
    rec.setdefault("status", FINISHED)
    rec.setdefault("failure", None)
    if rec["status"] != FINISHED:
        return strict(rec)
    bad = _non_finite(rec)
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
        return _parse(Path(path))
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


def load_records(results_dir: str | os.PathLike, suite: str | None = None) -> list[dict]:
    """The readable records (finished and failed, normalised to schema 2) of a results folder,
    sorted by file name. Read-only: a damaged record is skipped with a one-line warning, a JSON
    that is not a record (package.json) quietly, and no file is moved or renamed. A record counts
    only under its own name `<run_id>.json` (a copy such as `<run_id> (copy).json` is skipped
    with one line), so each run is counted once.

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
            records.append(rec)
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


def _versions() -> dict:
    import importlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    # module versions carry the build (+cu130)
    for pkg in ("torch", "torchvision", "timm", "accelerate"):
        out[pkg] = getattr(importlib.import_module(pkg), "__version__", None)
    try:
        out["erasebench"] = version("erasebench")
    except PackageNotFoundError:
        out["erasebench"] = None
    return out


GENERATED = ("leaderboards", "results", "wandb")


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """HEAD of the erasebench checkout (with '-dirty' when tracked source files changed), or
    None."""
    import subprocess

    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        # Generated outputs (leaderboards a suite just rendered, results, W&B runs) do not make
        # the code that produced them dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){d}" for d in GENERATED)], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _launch_option(argv: list[str], option: str) -> str | None:
    """The value of `--option N` or `--option=N` in a command line (the last one wins)."""
    value = None
    for i, token in enumerate(argv):
        if token == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(option + "="):
            value = token.split("=", 1)[1]
    return value


def environment(command: str | None, process: tuple[int, int] = (0, 1)) -> dict:
    """How this process runs the suite: its torch CPU threads and how the suite was launched
    (see the module docstring's `environment`). Two records that differ only here may differ
    in their last digits on the CPU. Never raises: a detail it cannot read is None."""
    import shlex

    env = os.environ
    try:
        argv = shlex.split(command or "")
    except ValueError:
        argv = (command or "").split()
    if "--device" in argv or any(a.startswith("--device=") for a in argv):
        launcher = "runs-per-device worker"   # spawned by --runs-per-device, env cleaned
    elif env.get("TORCHELASTIC_RUN_ID"):
        launcher = "accelerate launch" if any(k.startswith("ACCELERATE_") for k in env) \
            else "torchrun"
    elif any(k.startswith("ACCELERATE_") for k in env):
        launcher = "accelerate launch"
    else:
        launcher = "plain"

    def number(text):
        try:
            return int(text)
        except (TypeError, ValueError):
            return None

    try:
        import torch

        threads, interop = torch.get_num_threads(), torch.get_num_interop_threads()
    except Exception:  # noqa: BLE001 - a record is never lost for a detail
        threads = interop = None
    slurm = None
    if env.get("SLURM_JOB_ID"):
        slurm = {"job": env.get("SLURM_JOB_ID"), "array_task": env.get("SLURM_ARRAY_TASK_ID")}
    return {"threads": threads, "interop_threads": interop,
            "threads_option": number(_launch_option(argv, "--threads")),
            "omp_num_threads": env.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
            "launcher": launcher, "processes": process[1],
            "runs_per_device": number(_launch_option(argv, "--runs-per-device")) or 1,
            "slurm": slurm}


def _run_fields(spec, *, eraser_params: dict, cam: dict | None, wall_time_s, device, command,
                process: tuple[int, int]) -> dict:
    """The keys every record has, finished or failed: what places it in the leaderboard's grid
    and how it was run."""
    m = spec.method
    return {
        "schema": SCHEMA, "suite": spec.suite, "run_id": spec.run_id, "model": spec.model,
        "method": spec.label, "eraser": None if m.is_plain else m.name,
        "eraser_params": eraser_params, "mode": m.mode, "cam": cam, "ablation": spec.ablation,
        "seed": spec.seed, "dataset": spec.data.name, "epochs": spec.train.epochs,
        "wall_time_s": wall_time_s, "device": device, "versions": _versions(),
        "git_commit": git_commit(), "date": _now(), "command": command,
        "process": {"index": process[0], "count": process[1]},
        "environment": environment(command, process), "config": spec.to_dict(),
    }


def make_record(spec, metrics: dict, *, wall_time_s: float, device, command: str,
                process: tuple[int, int] = (0, 1)) -> dict:
    """A finished run's record (schema above) from a RunSpec and the outcome that train_pack
    (or train_one) returned."""
    m = spec.method
    cam = None
    if metrics.get("cam_path"):
        cam = {"source": m.cam.source, "layer": m.cam.layer, "target": m.cam.target,
               "path": metrics["cam_path"]}
    return {
        **_run_fields(spec, eraser_params=metrics.get("eraser_params", dict(m.params)), cam=cam,
                      wall_time_s=wall_time_s, device=device_name(device), command=command,
                      process=process),
        "status": FINISHED, "failure": None,
        **{k: metrics[k] for k in ("final_test_error", "best_test_error", "best_epoch", "curves",
                                   "occlusion", "images_per_s", "train_time_s",
                                   "resumed_from_epoch")},
        **{k: metrics.get(k) for k in ("forked_from", "pack_size", "graphs", "num_classes",
                                       "n_test")},
        **({"robustness": metrics["robustness"]} if metrics.get("robustness") else {}),
    }


def one_line(reason: str | BaseException, limit: int = _REASON_LIMIT) -> str:
    """A failure reason on one line: an exception as `Type: message`, whitespace collapsed."""
    text = describe(reason, limit) if isinstance(reason, BaseException) else " ".join(
        str(reason).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failed_record(spec, *, epoch: int | None, reason: str | BaseException,
                  curves: dict | None = None, wall_time_s: float | None = None, device=None,
                  command: str | None = None, process: tuple[int, int] = (0, 1),
                  eraser_params: dict | None = None, resumed_from_epoch: int | None = None,
                  train_time_s: float | None = None) -> dict:
    """A failed run's record: call it with what the runner has when a run fails, then
    `write_record` it. It places the cell like a finished record and says why it failed.

    epoch: the 1-based epoch running when it failed (None: before the first epoch began);
    reason: a one-line text ("loss is NaN") or the exception; curves: the completed epochs'
    curves so far. Never raises for a detail it cannot fill (that field is None instead)."""
    m = spec.method
    if eraser_params is None:
        eraser_params = _resolved_params(m)
    cam = None
    try:
        if m.needs_cam:
            cam = {"source": m.cam.source, "layer": m.cam.layer, "target": m.cam.target,
                   "path": None}
    except Exception:  # noqa: BLE001 - e.g. the eraser is unknown: that may be why it failed
        cam = None
    try:
        dev = None if device is None else device_name(device)
    except Exception:  # noqa: BLE001 - a broken CUDA context must not lose the record
        dev = str(device)
    return {
        **_run_fields(spec, eraser_params=eraser_params, cam=cam, wall_time_s=wall_time_s,
                      device=dev, command=command, process=process),
        "status": FAILED,
        "failure": {"epoch": None if epoch is None else int(epoch), "reason": one_line(reason)},
        "final_test_error": None, "best_test_error": None, "best_epoch": None,
        "curves": curves or {}, "occlusion": None, "images_per_s": None,
        "train_time_s": train_time_s, "resumed_from_epoch": resumed_from_epoch,
    }


def _resolved_params(m) -> dict:
    """The eraser's parameters after defaults, as a finished record stores them; the given ones
    when the eraser cannot be built (which may be why the run failed)."""
    if m.is_plain:
        return {}
    try:
        import plugins

        return plugins.build(m.name, **m.params).params()
    except Exception:  # noqa: BLE001
        return dict(m.params)
