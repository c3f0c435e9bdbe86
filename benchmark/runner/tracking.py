"""Weights & Biases logging: one W&B run per training run, offline unless the user is logged in.

We call wandb directly rather than through Accelerate's tracker: Accelerate logs only from the
main process, while run-level parallelism has every process train (and log) its own runs.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path


def logged_in() -> bool:
    """True when W&B credentials are present (env key or a netrc entry); never touches the
    network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(path).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in h for h in hosts)


def wandb_mode() -> str:
    """The user's WANDB_MODE wins; else online when logged in, offline otherwise (sync later)."""
    return os.environ.get("WANDB_MODE") or ("online" if logged_in() else "offline")


class NullTracker:
    """Used with --no-wandb: same interface, does nothing."""

    dir = None

    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def finish(self) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass


class WandbTracker:
    def __init__(self, *, project: str, group: str, name: str, config: dict,
                 out_dir: str | os.PathLike, run_id: str, job_type: str = "train"):
        import wandb

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project, group=group, name=name, id=run_id, config=config, job_type=job_type,
            dir=str(out_dir), mode=wandb_mode(), reinit="create_new", resume="allow",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        self.dir = self._run.dir
        self.id = self._run.id

    def log(self, metrics: dict, step: int) -> None:
        self._run.log(metrics, step=step)

    def summary(self, values: dict) -> None:
        self._run.summary.update(values)

    def finish(self) -> None:
        self._run.finish()

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        import wandb

        self._run.log({key: wandb.Table(columns=columns, data=rows)})


# An epoch's row (benchmark.training.train) -> W&B metric names: grouped by where they were
# measured, with their units, so train and test quantities of the same name never collide.
METRICS = {
    "train_loss": "train/loss", "train_acc": "train/acc_pct", "lr": "train/lr",
    "erased_fraction": "train/erased_fraction", "object_hit_rate": "train/object_hit_rate",
    "cam_peak_in_box": "train/cam_peak_in_box", "test_error": "test/error_pct",
    "images_per_s": "speed/images_per_s", "epoch": "epoch",
}


def metrics(row: dict) -> dict:
    """An epoch's row under its W&B names."""
    return {METRICS.get(k, k): v for k, v in row.items()}


def new_run_id() -> str:
    """A random W&B run id: each experiment a new W&B run, kept in the run's resume state so a
    resumed run continues its own."""
    import secrets

    return secrets.token_hex(4)


def start(*, enabled: bool, project: str, group: str, name: str, config: dict,
          out_dir: str | os.PathLike, run_id: str, job_type: str = "train"):
    """The run's tracker. A W&B that cannot start (a bad WANDB_MODE, a broken install, no
    network when online) costs the run its W&B logging, not its training or its record."""
    if not enabled:
        return NullTracker()
    try:
        return WandbTracker(project=project, group=group, name=name, config=config,
                            out_dir=out_dir, run_id=run_id, job_type=job_type)
    except Exception as e:  # noqa: BLE001 - logging must never fail a training run
        msg = " ".join(str(e).split())
        print(f"warning: W&B could not start for {name} ({type(e).__name__}: {msg[:200]}); "
              "training it without W&B logging (--no-wandb silences this)", file=sys.stderr,
              flush=True)
        return NullTracker()


LEADERBOARD_COLUMNS = ["model", "method", "eraser", "runs", "planned", "failed",
                       "final_error_pct_mean", "final_error_pct_std", "best_error_pct_mean"]


def leaderboard_rows(data: dict) -> list[list]:
    """A rendered leaderboard's data block (report.leaderboard.summary) as table rows: one per
    (model, method) cell, the same numbers as the markdown."""
    from benchmark.report.stats import mean, std

    rows = []
    for g in data["groups"]:
        final, best = g["final"], g["best"]
        rows.append([g["model"], g["method"], g["eraser"], len(final), g["expected"],
                     g.get("failed", 0), mean(final) if final else None,
                     std(final), mean(best) if best else None])
    return rows


def log_leaderboard(data: dict, *, project: str, out_dir: str | os.PathLike) -> None:
    """One W&B run per rendered leaderboard (job type "leaderboard", in the suite's group) with
    the leaderboard as a table, beside the suite's training runs."""
    suite = data["suite"]
    tracker = start(enabled=True, project=project, group=suite, name=f"{suite}/leaderboard",
                    config={"suite": suite, "datasets": data["datasets"],
                            "models": data["models"]},
                    out_dir=out_dir, run_id=new_run_id(), job_type="leaderboard")
    tracker.table("leaderboard", LEADERBOARD_COLUMNS, leaderboard_rows(data))
    tracker.finish()


def offline_runs(out_dir: str | os.PathLike) -> list[Path]:
    """The offline W&B runs under out_dir/wandb, to be uploaded with `wandb sync`."""
    return sorted((Path(out_dir) / "wandb").glob("offline-run-*"))


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The rows logged to an offline W&B run, read from its run-*.wandb file without syncing.

    The file is W&B's LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks
    (crc32 u32 | length u16 | type u8: 1 full, 2 first, 3 middle, 4 last) holding protobuf Records.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("run-*.wandb")
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, block, rows, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):  # block padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            if rec.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                             for i in rec.history.item})
    return rows
