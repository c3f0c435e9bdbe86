"""One JSON record per finished run, written atomically; the suite resumes from them.

A record is the only thing the leaderboard reads. Its keys (schema 1):

    schema          1
    suite           suite name, e.g. "thesis"
    run_id          unique within the suite, e.g. "resnet20__cam_erasing-bh2__s0"
    model           model name as given to benchmark.models.create, e.g. "resnet20", "timm/resnet18"
    method          display label of the augmentation: "plain", an eraser name, or the suite's label
                    for a variant (e.g. "cam_erasing(b_h=3)")
    eraser          registry name or None for plain training
    eraser_params   dict of the eraser's constructor arguments (after defaults)
    mode            "replace" | "append" | None
    cam             None, or {"source": "during"|"after", "layer": str|None, "target": "label"|"pred",
                    "path": "fast"|"generic"}
    ablation        dict: the axis values that set this run apart from its siblings, e.g. {"b_h": 3}
    seed            int
    dataset         e.g. "cifar10", "synthetic"
    epochs          int
    final_test_error  float, percent, after the last epoch (the headline number)
    best_test_error   float, percent, best over epochs (what the Random Erasing code reports)
    best_epoch      int (1-based)
    curves          {"epoch": [...], "train_loss": [...], "train_acc": [...], "test_error": [...],
                     "lr": [...], "erased_fraction": [...]}  (percent for acc/error)
    occlusion       None, or (data with boxes) {"erased_image_rate", "object_hit_rate",
                    "object_covered_mean", "train_cam_peak_in_box", "cam_peak_in_box",
                    "random_point_in_box"}: fractions in [0, 1]. The first three are over the
                    erasing epochs' training batches; train_cam_peak_in_box over the CAMs the eraser
                    used (None without one); cam_peak_in_box is the final model's CAM peak (true
                    class) on the test set, random_point_in_box the mean box area fraction
    wall_time_s     float (the whole run); train_time_s: training epochs only; images_per_s: training
                    images per second, erased copies included; resumed_from_epoch: int or None
    process         {"index", "count"}: which Accelerate process trained it
    device          e.g. "cpu", "NVIDIA H100 80GB HBM3"
    versions        {"python", "torch", "torchvision", "timm", "accelerate", "erasebench"}
    git_commit      str or None; date: ISO 8601; command: the command line that ran the suite
    config          the full resolved run config (dict)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SCHEMA = 1


def record_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def write_record(results_dir: str | os.PathLike, record: dict) -> Path:
    """Write `record` as <results_dir>/<run_id>.json atomically (temp file + rename)."""
    out = record_path(results_dir, record["run_id"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def is_finished(results_dir: str | os.PathLike, run_id: str) -> bool:
    return record_path(results_dir, run_id).is_file()


def load_records(results_dir: str | os.PathLike) -> list[dict]:
    """All records in a suite's results folder, sorted by run_id; a broken file raises naming it."""
    records = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not a valid result record ({e})") from e
        if rec.get("schema") != SCHEMA:
            raise ValueError(f"{p}: key 'schema' is {rec.get('schema')!r}; this erasebench reads schema {SCHEMA}")
        records.append(rec)
    return records


def _versions() -> dict:
    import importlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "accelerate"):  # module versions carry the build (+cu130)
        out[pkg] = getattr(importlib.import_module(pkg), "__version__", None)
    try:
        out["erasebench"] = version("erasebench")
    except PackageNotFoundError:
        out["erasebench"] = None
    return out


def git_commit() -> str | None:
    """HEAD of the erasebench checkout (with '-dirty' when tracked files changed), or None."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
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


def make_record(spec, metrics: dict, *, wall_time_s: float, device, command: str,
                process: tuple[int, int] = (0, 1)) -> dict:
    """A result record (schema above) from a RunSpec and the metrics train_run returned."""
    import datetime

    m = spec.method
    cam = None
    if metrics.get("cam_path"):
        cam = {"source": m.cam.source, "layer": m.cam.layer, "target": m.cam.target,
               "path": metrics["cam_path"]}
    return {
        "schema": SCHEMA, "suite": spec.suite, "run_id": spec.run_id, "model": spec.model,
        "method": spec.label, "eraser": None if m.is_plain else m.name,
        "eraser_params": metrics.get("eraser_params", dict(m.params)), "mode": m.mode, "cam": cam,
        "ablation": spec.ablation, "seed": spec.seed, "dataset": spec.data.name,
        "epochs": spec.train.epochs,
        **{k: metrics[k] for k in ("final_test_error", "best_test_error", "best_epoch", "curves",
                                   "occlusion", "images_per_s", "train_time_s", "resumed_from_epoch")},
        **{k: metrics.get(k) for k in ("forked_from", "pack_size", "graphs")},
        "wall_time_s": wall_time_s, "device": device_name(device), "versions": _versions(),
        "git_commit": git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "process": {"index": process[0], "count": process[1]},
        "config": spec.to_dict(),
    }
