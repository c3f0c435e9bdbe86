"""A worker's lifecycle: nothing trained is lost (a record is written as each run finishes, a
full disk is one line and never a result), no silent waits on claims, every signal that ends a
session is handled, and nothing a dead writer left behind lingers."""

import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from benchmark import fileio, results
from benchmark.runner import claims

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
name: tiny
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 32}
models: [resnet20]
seeds: [0]
methods: [plain]
"""
PLAIN = "resnet20__plain__s0"


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def write_claim(out, run_id, pid, *, host=None, age=0.0, suite="tiny"):
    d = Path(out) / "results" / suite / "claims"
    d.mkdir(parents=True, exist_ok=True)
    beat = time.time() - age
    (d / f"{run_id}.claim").write_text(json.dumps({
        "run_id": run_id, "host": host or socket.gethostname(), "pid": pid,
        "token": uuid.uuid4().hex, "started": beat, "heartbeat": beat}))
    return d / f"{run_id}.claim"


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs in the worker."""


# B1 ---------------------------------------------------------------------------------------------

def test_a_run_killed_after_its_last_epoch_before_its_record_is_not_trained_again(run, records,
        suite_file, tmp_path, monkeypatch, capsys):
    p = suite_file(SUITE.replace("methods: [plain]", "methods: [plain, cutout]"))
    out = tmp_path / "out"
    real = results.write_record
    calls = []

    def killed_at_the_second_record(results_dir, rec):
        calls.append(rec["run_id"])
        if len(calls) == 2:
            raise Killed
        return real(results_dir, rec)

    monkeypatch.setattr(results, "write_record", killed_at_the_second_record)
    with pytest.raises(Killed):
        run("--suite", p, "--out", out, "--pack", "2")
    monkeypatch.setattr(results, "write_record", real)
    first, second = calls
    assert set(records(out)) == {first}  # the pack's first run: recorded as soon as it finished
    ckpts = out / "results" / "tiny" / "checkpoints"
    assert torch.load(ckpts / f"{second}.resume.pt", weights_only=False)["epoch"] == 2
    assert not (ckpts / f"{first}.resume.pt").exists()  # deleted once its record was on disk
    capsys.readouterr()
    assert run("--suite", p, "--out", out, "--pack", "2") == 0
    rec = records(out)[second]
    assert rec["status"] == "finished" and rec["resumed_from_epoch"] == 2  # no epoch trained again
    assert len(rec["curves"]["test_error"]) == 2
    assert not list(ckpts.glob("*.resume.pt"))


# B2, C3 -----------------------------------------------------------------------------------------

class _FullDisk(io.RawIOBase):
    def writable(self):
        return True

    def write(self, b):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _name(f) -> str:
    """The file name of an open file (os.fdopen's `name` is the descriptor)."""
    name = getattr(f, "name", "")
    return Path(os.readlink(f"/proc/self/fd/{name}") if isinstance(name, int) else name).name


def fill_disk_for(monkeypatch, target: str):
    """Writes of files whose temp name starts with `.<target>` fail as on a full disk: torch.save
    the way torch fails (a RuntimeError whose context is the OSError), text through fsync."""
    real_save, real_fsync = torch.save, os.fsync

    def save(obj, f, *a, **k):
        if _name(f).startswith(f".{target}"):
            return real_save(obj, _FullDisk(), *a, **k)
        return real_save(obj, f, *a, **k)

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{target}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_while_drawing_a_figure_names_the_figure_and_says_the_records_are_safe(
        run, records, suite_file, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    def full(self, path, *a, **k):  # matplotlib's own error names no file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    p, out = suite_file(SUITE.replace("epochs: 2", "epochs: 1").replace("milestones: [1]",
                                                                      "milestones: []")), \
        tmp_path / "out"
    assert run("--suite", p, "--out", out) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "?" not in errors[0].split(":")[1], errors
    assert ".png: no space left on device; the records are safe" in errors[0]
    assert "nothing was recorded" not in errors[0]
    assert records(out)[PLAIN]["status"] == "finished"


@pytest.mark.parametrize("target", [f"{PLAIN}.resume.pt", f"{PLAIN}.final.pt", f"{PLAIN}.json",
                                    "tiny.md"])
def test_a_write_on_a_full_disk_is_one_line_no_result_and_the_same_command_resumes(run, records,
        target, suite_file, tmp_path, monkeypatch, capsys):
    p, out = suite_file(), tmp_path / "out"
    fill_disk_for(monkeypatch, target)
    assert run("--suite", p, "--out", out) == 1
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    if target != "tiny.md":
        assert f"{target}: no space left on device; nothing was recorded" in errors[0]
        assert records(out) == {}  # the disk failed, not the run: no failed record
    else:  # the run is recorded; only its leaderboard is not
        assert f"{target}: no space left on device; the records are safe" in errors[0]
        assert "erasebench leaderboard --suite tiny" in errors[0]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()  # space was freed
    assert run("--suite", p, "--out", out) == 0
    assert records(out)[PLAIN]["status"] == "finished"
    assert (out / "leaderboards" / "tiny.md").is_file()


def test_a_claim_that_cannot_be_written_is_removed_and_says_so_in_one_line(tmp_path,
                                                                            monkeypatch):
    def full(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(claims.json, "dump", full)
    with pytest.raises(fileio.WriteError) as e:
        claims.try_claim(tmp_path, "run-a")
    assert str(e.value) == f"{tmp_path / 'run-a.claim'}: no space left on device"
    assert not list(tmp_path.iterdir())  # no 0-byte claim left to wait on


def test_an_empty_claim_is_taken_over_once_it_is_a_few_seconds_old(tmp_path):
    path = tmp_path / "run-a.claim"
    path.write_text("")
    assert claims.try_claim(tmp_path, "run-a") is None  # its creator may be writing it now
    old = time.time() - 2 * claims.UNREADABLE_STALE_S
    os.utime(path, (old, old))
    c = claims.try_claim(tmp_path, "run-a")
    assert c is not None and "unreadable claim" in c.info["took_over"]["why"]


# B3 ---------------------------------------------------------------------------------------------

AFTER = SUITE.replace("methods: [plain]",
                    "methods: [plain, {name: cam_erasing, cam: {source: after}}]")
CAM = "resnet20__cam_erasing__s0"


def test_a_cam_provider_whose_model_is_gone_is_trained_again_before_its_cam_run(run, records,
        suite_file, tmp_path, capsys):
    p, out = suite_file(AFTER), tmp_path / "out"
    assert run("--suite", p, "--out", out, "--erasers", "plain") == 0
    ckpts = out / "results" / "tiny" / "checkpoints"
    (ckpts / f"{PLAIN}.final.pt").unlink()  # e.g. checkpoints/ deleted to save space
    capsys.readouterr()
    assert run("--suite", p, "--out", out) == 0
    err = capsys.readouterr().err
    assert f"run {PLAIN} is finished but its model" in err and "training it again" in err
    recs = records(out)
    assert recs[CAM]["status"] == "finished" and recs[PLAIN]["status"] == "finished"
    assert (ckpts / f"{PLAIN}.final.pt").is_file()


def test_retry_failed_retrains_the_missing_provider_of_a_failed_cam_run(
        run, records, suite_file, tmp_path):
    p, out = suite_file(AFTER), tmp_path / "out"
    assert run("--suite", p, "--out", out, "--erasers", "plain") == 0
    (out / "results" / "tiny" / "checkpoints" / f"{PLAIN}.final.pt").unlink()
    from benchmark.suites.config import load_suite
    from benchmark.suites.expand import expand

    spec = {r.run_id: r for r in expand(load_suite(str(p)))}[CAM]
    # what earlier versions recorded for it: the CAM run failed for want of the model
    results.write_record(out / "results" / "tiny", results.failed_record(
        spec, epoch=None, reason="FileNotFoundError: no such checkpoint", curves=None,
        wall_time_s=0.0, device="cpu", command="", process=(0, 1), train_time_s=None))
    assert run("--suite", p, "--out", out, "--retry-failed") == 0
    assert records(out)[CAM]["status"] == "finished"


# B4 ---------------------------------------------------------------------------------------------

def test_a_worker_removes_temp_files_of_dead_writers_and_only_those(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".x.resume.pt.{host}~{dead_pid()}~abc123.tmp"
    live = tmp_path / f".y.resume.pt.{host}~{os.getppid()}~abc123.tmp"
    other_host = tmp_path / f".z.resume.pt.elsewhere~{dead_pid()}~abc123.tmp"
    old_style_old = tmp_path / ".w.resume.pt.k2j3h4x_.tmp"
    old_style_new = tmp_path / ".v.resume.pt.k2j3h4x_.tmp"
    not_ours = tmp_path / "notes.tmp"
    hidden_not_ours = tmp_path / ".my-notes.tmp"
    for f in (dead, live, other_host, old_style_old, old_style_new, not_ours, hidden_not_ours):
        f.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old_style_old, (two_hours_ago, two_hours_ago))
    os.utime(not_ours, (two_hours_ago, two_hours_ago))
    os.utime(hidden_not_ours, (two_hours_ago, two_hours_ago))
    removed = fileio.remove_stale_temps(tmp_path)
    assert set(removed) == {dead, old_style_old}
    assert live.exists() and other_host.exists() and old_style_new.exists()
    assert not_ours.exists() and hidden_not_ours.exists()


def test_the_temp_file_of_a_write_names_its_host_and_pid(tmp_path):
    seen = []
    fileio.atomic_write(tmp_path / "a.json", lambda f: seen.append(_name(f)))
    assert seen[0].startswith(f".a.json.{socket.gethostname()}~{os.getpid()}~")


def test_a_worker_cleans_its_folders_before_it_trains(run, suite_file, tmp_path, capsys):
    out = tmp_path / "out"
    ckpts = out / "results" / "tiny" / "checkpoints"
    ckpts.mkdir(parents=True)
    left = ckpts / f".{PLAIN}.resume.pt.{socket.gethostname()}~{dead_pid()}~q1w2e3.tmp"
    left.write_bytes(b"half a checkpoint")
    assert run("--suite", suite_file(), "--out", out, "--epochs", "1") == 0
    assert not left.exists() and f"note: removed {left}" in capsys.readouterr().err


# C1 ---------------------------------------------------------------------------------------------

def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(run, suite_file, tmp_path,
                                                                     capsys):
    out = tmp_path / "out"
    pid = dead_pid()
    write_claim(out, PLAIN, pid)
    t0 = time.time()
    assert run("--suite", suite_file(), "--out", out, "--epochs", "1") == 0
    assert time.time() - t0 < 60  # not the 600 s claim timeout
    err = capsys.readouterr().err
    assert (f"note: took over run {PLAIN} from {socket.gethostname()} pid {pid} (its process "
            f"{pid} on this host is gone)") in err


def test_a_live_claim_is_waited_for_in_one_line_and_taken_over_when_silent(
        run, suite_file, tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_claim(out, PLAIN, holder.pid)
        assert run("--suite", suite_file(), "--out", out, "--epochs", "1",
                   "--claim-timeout", "2") == 0
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.splitlines()
    waiting = [ln for ln in err if ln.startswith("waiting for run")]
    assert len(waiting) == 1, err
    assert (f"waiting for run {PLAIN}: held by {socket.gethostname()} pid {holder.pid}, "
            "heartbeat 0 s ago; taken over at ") in waiting[0]
    assert waiting[0].endswith("if it stays silent (--claim-timeout 2)")
    assert any(ln.startswith(f"note: took over run {PLAIN}") and "(no heartbeat for" in ln
               for ln in err)


# C2, C4 -----------------------------------------------------------------------------------------

def _start(p, out, *extra):
    cmd = [sys.executable, "-m", "benchmark", "run", "--suite", str(p), "--out", str(out),
           "--no-wandb", "--no-progress", "--threads", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR2])
def test_sighup_and_submitits_sigusr2_are_handled_like_sigterm(sig, suite_file, tmp_path):
    p = suite_file(SUITE.replace("epochs: 2, batch_size: 32, milestones: [1]",
                               "epochs: 30, batch_size: 32, milestones: [20]"))
    out = tmp_path / "out"
    proc = _start(p, out)
    ckpt = out / "results" / "tiny" / "checkpoints" / f"{PLAIN}.resume.pt"
    deadline = time.time() + 120
    while not ckpt.is_file() and time.time() < deadline:  # training has begun
        time.sleep(0.2)
    proc.send_signal(sig)  # the terminal was closed; submitit's warning before the time limit
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert f"{sig.name}: finishing the current epoch" in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at epoch ") and f"of run {PLAIN}; 1 of 1 runs left; " \
        "rerun the same command to resume" in last
    assert ckpt.is_file() and not list((out / "results" / "tiny" / "claims").glob("*.claim"))


def test_sigterm_while_waiting_on_a_claim_says_whose_claim(suite_file, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        write_claim(out, PLAIN, holder.pid)
        proc = _start(suite_file(), out)
        for line in proc.stderr:
            if line.startswith("waiting for run"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        f"interrupted while waiting for run {PLAIN} (held by {socket.gethostname()} pid "
        f"{holder.pid}); 1 of 1 runs left; rerun the same command to resume")


def test_a_signal_after_every_run_has_its_record_gives_no_rerun_hint(run, suite_file, tmp_path,
                                                                      monkeypatch, capsys):
    from benchmark.runner import worker

    real = worker.Worker.run

    def run_then_sigterm(self, packs):
        real(self, packs)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. SLURM's TERM while the leaderboard renders
        time.sleep(0.1)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(worker.Worker, "run", run_then_sigterm)
    try:
        code = run("--suite", suite_file(), "--out", tmp_path / "out", "--epochs", "1")
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "SIGTERM arrived after every run of tiny had its record; nothing left to resume" in err
    assert "rerun the same command" not in err


def test_a_signal_when_no_run_is_training_does_not_speak_of_an_epoch(capsys):
    from benchmark.runner.worker import Stop

    stop = Stop()
    stop._handle(signal.SIGTERM, None)
    err = capsys.readouterr().err.strip()
    assert err.startswith("SIGTERM: no run is training") and "epoch" not in err
    stop, stop.training = Stop(), True
    stop._handle(signal.SIGTERM, None)
    assert capsys.readouterr().err.strip().startswith("SIGTERM: finishing the current epoch")
    assert stop.code == 143
