"""Building a record from a RunSpec: a finished run's (`make_record`) and a failed run's
(`failed_record`), with the fields every record has."""

from __future__ import annotations

from benchmark.fileio import describe
from benchmark.results import provenance
from benchmark.results.provenance import device_name, environment, git_commit
from benchmark.results.schema import FAILED, FINISHED, SCHEMA

_REASON_LIMIT = 500


def run_costs(wall_time_s: float | None, train_time_s: float | None) -> float | None:
    """A record's wall_time_s: every session of the run (the runner passes the sum), and never
    below its train_time_s (the training epochs are part of the wall time; a forked run's
    train_time_s includes the warm-up it inherits)."""
    if wall_time_s is None or train_time_s is None:
        return wall_time_s
    return max(float(wall_time_s), float(train_time_s))


def cpu_cost(device_name: str | None, cpu_time_s: float | None) -> float | None:
    """A record's cpu_time_s: the CPU time the run's training consumed (every session, its share
    of a pack), kept on a CPU only: on a GPU the cost is the wall-clock GPU time, and the host's
    CPU time says nothing about it (None)."""
    if cpu_time_s is None or device_name != "cpu":
        return None
    return float(cpu_time_s)


def _run_fields(spec, *, eraser_params: dict, cam: dict | None, wall_time_s, device, command,
                process: tuple[int, int]) -> dict:
    """The keys every record has, finished or failed: what places it in the leaderboard's grid
    and how it was run."""
    m = spec.method
    return {
        "schema": SCHEMA, "suite": spec.suite, "run_id": spec.run_id, "model": spec.model,
        "label": spec.label, "method": spec.label, "eraser": None if m.is_plain else m.name,
        "eraser_params": eraser_params, "mode": m.mode, "cam": cam, "ablation": spec.ablation,
        "seed": spec.seed, "dataset": spec.data.name, "epochs": spec.train.epochs,
        "wall_time_s": wall_time_s, "device": device, "versions": provenance.versions(),
        "git_commit": git_commit(), "date": provenance.utc_date(), "command": command,
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
    dev = device_name(device)
    return {
        **_run_fields(spec, eraser_params=metrics.get("eraser_params", dict(m.params)), cam=cam,
                      wall_time_s=run_costs(wall_time_s, metrics.get("train_time_s")),
                      device=dev, command=command, process=process),
        "status": FINISHED, "failure": None,
        "cpu_time_s": cpu_cost(dev, metrics.get("cpu_time_s")),
        **{k: metrics[k] for k in ("final_test_error", "best_test_error", "best_epoch", "curves",
                                   "occlusion", "images_per_s", "train_time_s",
                                   "resumed_from_epoch")},
        **{k: metrics.get(k) for k in ("forked_from", "pack_size", "graphs", "graphs_eager",
                                       "unstacked", "num_classes", "n_test")},
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
                  train_time_s: float | None = None, cpu_time_s: float | None = None) -> dict:
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
        **_run_fields(spec, eraser_params=eraser_params, cam=cam,
                      wall_time_s=run_costs(wall_time_s, train_time_s), device=dev,
                      command=command, process=process),
        "status": FAILED,
        "failure": {"epoch": None if epoch is None else int(epoch), "reason": one_line(reason)},
        "final_test_error": None, "best_test_error": None, "best_epoch": None,
        "curves": curves or {}, "occlusion": None, "images_per_s": None,
        "train_time_s": train_time_s, "cpu_time_s": cpu_cost(dev, cpu_time_s),
        "resumed_from_epoch": resumed_from_epoch,
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
