"""The record's schema and what makes a record readable: its keys and types (`record_problem`),
the ranges of its numbers (`RANGES`, `value_problem`) and strict JSON (`strict`).

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
    label           display label of the augmentation: "plain", an eraser name, or the suite's label
                    for a variant (e.g. "cam_erasing(b_h=3)")
    method          the same label, under its old name: written too, so erasebench versions that
                    read `method` still read new records; a record with only `method` (written
                    before `label` existed) is read as if it had `label` (migrate.renamed)
    eraser          registry name or None for plain training
    eraser_params   dict of the eraser's constructor arguments (after defaults)
    mode            "replace" | "append" | None
    cam             None, or {"source": "during"|"after", "layer": str|None,
                    "target": "label"|"predicted", "path": "fast"|"generic"|None (None: failed
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
                    "fill", "cam_target", "cam_layer"}. One that is not that measurement (other
                    fractions, a list of another length, an error outside [0, 100], another seed
                    or test set: `robustness_problem`) is read as absent, with one warning line
                    naming the file and key; the run's other numbers are kept
    wall_time_s     float (the whole run); train_time_s: training epochs only; images_per_s:
                    training images per second, erased copies included; resumed_from_epoch: int
                    or None (each None when a failed run did not get that far)
    forked_from     None, or (a run that continued another run's warm-up checkpoint) {"run_id",
                    "epoch": the fork epoch, "train_time_s", "cpu_time_s": the warm-up's training
                    and CPU time this run inherited, counted in its own times too; absent in
                    records from before they were kept}
    cpu_time_s      float: the process's CPU time in the training epochs (every session summed;
                    a pack's shared by its K runs like its wall time), on a CPU only: the
                    leaderboard's cost there, which other jobs on the machine barely change. None
                    on a GPU, or when a session's checkpoint predates it; absent in older records
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
folder it owns, moves it aside to
`<name>.corrupt` (`set_aside=True`, one line); every read-only reader (leaderboard, compare,
figures, --dry-run) skips it with one line and never renames or moves a file. A JSON file that is
not a record at all (neither `run_id` nor `schema`, e.g. a `package.json`) is not damaged:
readers skip it quietly.
"""


from __future__ import annotations

import math

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
FINISHED, FAILED = "finished", "failed"
STATUSES = (FINISHED, FAILED)
# The keys the leaderboard needs to place a record, by status.
REQUIRED = {FINISHED: ("run_id", "model", "label", "seed", "final_test_error", "best_test_error"),
            FAILED: ("run_id", "model", "label", "seed")}


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


def non_finite(obj, where: str = "") -> list[str]:
    """Dotted paths of the non-finite floats in `obj` (lists: the path of the list, once)."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "value"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite(v, f"{where}.{k}" if where else k)]
    if isinstance(obj, list | tuple):
        return [where] if any(non_finite(v, where) for v in obj) else []
    return []


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
        bad = non_finite(rec)
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
          "cpu_time_s": COUNT,
          "images_per_s": COUNT, "pack_size": (1, math.inf), "num_classes": (2, math.inf),
          "n_test": (1, math.inf),
          "curves.epoch": COUNT, "curves.train_loss": COUNT, "curves.train_acc": PERCENT,
          "curves.test_error": PERCENT, "curves.lr": COUNT, "curves.erased_fraction": PERCENT,
          **{f"occlusion.{k}": FRACTION for k in (
              "erased_image_rate", "object_hit_rate", "object_covered_mean",
              "train_cam_peak_in_box", "cam_peak_in_box", "random_point_in_box")}}
# `robustness` is checked apart (`robustness_problem`): it is measured after training, often by
# another command (`erasebench evaluate`), so a bad one says nothing about the run's own numbers.


# What benchmark/robustness.py measures and every record's `robustness` holds: the occluded
# fractions (in this order), the placements ("box" only on data with boxes) and the occluders' seed.
ROBUSTNESS_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
ROBUSTNESS_PLACEMENTS = ("random", "box", "cam_peak")
ROBUSTNESS_SEED = 0


def robustness_problem(rec: dict) -> str | None:
    """Why `rec`'s `robustness` cannot be read as benchmark/robustness.py's measurement of this
    run, as one line naming the key; None when it is absent, null or fine. Its `fractions` must be
    ROBUSTNESS_FRACTIONS in that order, "random" and "cam_peak" (and "box" if present) one error
    in [0, 100] % per fraction, `seed` ROBUSTNESS_SEED (every run sees the same occluded test set)
    and `n_test` the record's own `n_test` where both are known. The readers then drop only the
    robustness (`benchmark.results.store`): the run's other numbers stay."""
    rb = rec.get("robustness")
    if not isinstance(rb, dict):
        return None  # absent or null; another type is record_problem's
    fractions = rb.get("fractions")
    standard = list(ROBUSTNESS_FRACTIONS)
    if not (isinstance(fractions, list) and len(fractions) == len(standard)
            and all(isinstance(f, int | float) and not isinstance(f, bool) and f == g
                    for f, g in zip(fractions, standard, strict=True))):
        return (f"key 'robustness.fractions' is {_short(fractions)}, not "
                f"{standard} (the occluded fractions erasebench measures, in this order)")
    for placement in ROBUSTNESS_PLACEMENTS:
        errors = rb.get(placement)
        if errors is None and placement == "box":
            continue  # data without object boxes
        key = f"robustness.{placement}"
        if not isinstance(errors, list) or len(errors) != len(standard):
            n = f"{len(errors)} values" if isinstance(errors, list) else _short(errors)
            return f"key {key!r} is {n}, not one error per fraction ({len(standard)})"
        for i, e in enumerate(errors):
            if e is None:
                return f"key '{key}[{i}]' is null, not an error in [0, 100] %"
            problem = _number_problem(f"{key}[{i}]", e, *PERCENT)
            if problem:
                return problem
    if rb.get("seed") != ROBUSTNESS_SEED or isinstance(rb.get("seed"), bool):
        return (f"key 'robustness.seed' is {_short(rb.get('seed'))}, not {ROBUSTNESS_SEED} (every "
                "run is occluded from the same seed)")
    n, own = rb.get("n_test"), rec.get("n_test")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        return f"key 'robustness.n_test' is {_short(n)}, not a count of test images"
    if isinstance(own, int) and not isinstance(own, bool) and n != own:
        return (f"key 'robustness.n_test' is {n}, but the record's n_test is {own}: not measured "
                "on this run's test set")
    return None


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


# How far a record's CPU time may stray from its own training wall time before the leaderboard
# stops trusting it (`cpu_time_problem`). Both are the process's clocks over the same training
# epochs (a pack's shares of them, divided alike), so their ratio is how many cores the run kept
# busy: about 1 on one torch thread, up to about the thread count on several. Below 1/50 the run
# would have had 2% of one core through its whole training (a machine 50 times oversubscribed, or
# a process stopped for most of it); above 2x the cores of its machine (its `environment`'s
# cpu_count or threads, whichever is larger) the process would have used more CPU than exists.
# Neither happens in a real run; 1 s of slack covers the clocks' granularity in tiny runs.
CPU_TIME_MIN_RATIO, CPU_TIME_MAX_PER_CORE, CPU_TIME_SLACK_S = 1 / 50, 2.0, 1.0


def cpu_time_problem(rec: dict) -> str | None:
    """Why `rec`'s `cpu_time_s` (seconds) cannot be the CPU time of its `train_time_s` seconds of
    training (see CPU_TIME_MIN_RATIO), as one line naming the key; None when it is plausible or
    either is absent, null or not a positive number (those are `value_problem`'s or fall back to
    wall-clock anyway). The leaderboard then charges the record by wall-clock time."""
    cpu, train = rec.get("cpu_time_s"), rec.get("train_time_s")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
               and x > 0 for x in (cpu, train)):
        return None
    env = rec.get("environment") if isinstance(rec.get("environment"), dict) else {}
    cores = max([c for c in (env.get("cpu_count"), env.get("threads"))
                 if isinstance(c, int) and not isinstance(c, bool) and c > 0] or [0])
    if cpu < train * CPU_TIME_MIN_RATIO:
        return (f"key 'cpu_time_s' is {cpu:g} s against {train:g} s of training (train_time_s), "
                f"below 1/{1 / CPU_TIME_MIN_RATIO:g} of it")
    if cores and cpu > train * cores * CPU_TIME_MAX_PER_CORE + CPU_TIME_SLACK_S:
        return (f"key 'cpu_time_s' is {cpu:g} s against {train:g} s of training (train_time_s), "
                f"more than {CPU_TIME_MAX_PER_CORE:g}x that on all {cores} cores")
    return None


def is_record_like(obj) -> bool:
    """Whether a parsed JSON file claims to be a result record (an object with `run_id` or
    `schema`): one that does not (a package.json, a config) is not a damaged record."""
    return isinstance(obj, dict) and ("run_id" in obj or "schema" in obj)


# Keys the leaderboard reads, with the types it can use (None: absent or not known).
_TYPES = [("run_id", str, "a string"), ("model", str, "a string"), ("label", str, "a string"),
          ("seed", int, "an integer"), ("suite", str | None, "a string"),
          ("eraser", str | None, "a string or null"),
          *[(k, dict | None, "an object or null")
            for k in ("eraser_params", "cam", "curves", "occlusion", "failure", "versions",
                      "robustness")]]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
