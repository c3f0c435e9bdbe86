"""Checkpoints: atomic 0644 writes; a damaged final checkpoint is one error line naming the file;
a damaged resume checkpoint is moved aside and the run restarts from scratch."""

import stat

import pytest
import torch

from benchmark import models
from benchmark.fileio import DamagedFileError
from benchmark.training import checkpoint


@pytest.fixture
def saved(tmp_path):
    model = models.create("resnet20")
    return checkpoint.save(tmp_path / "ckpts" / "r.final.pt", model, model_name="resnet20",
                           num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_checkpoint_is_written_atomically_with_mode_0644_and_loads(saved):
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    assert [p.name for p in saved.parent.iterdir()] == ["r.final.pt"]  # no temp file left
    model, ckpt = checkpoint.load(saved)
    assert ckpt["model_name"] == "resnet20" and not model.training


def test_a_truncated_checkpoint_is_a_one_line_error_naming_the_file(saved):
    truncate(saved)
    with pytest.raises(DamagedFileError) as info:
        checkpoint.load(saved)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{saved}: damaged or truncated checkpoint (")
    assert ("PytorchStreamReader failed reading zip archive: failed finding central "
            "directory)") in msg
    assert msg.endswith("; delete it and rerun the run that wrote it (delete its result record "
                        "too)")
    assert saved.is_file()  # a final checkpoint is never moved: the user decides


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_an_empty_or_garbage_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(DamagedFileError, match=r"x\.pt: damaged or truncated checkpoint \("):
        checkpoint.load(path)


def test_a_checkpoint_of_something_else_names_the_missing_key(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: key 'model_name' missing; not an erasebench"):
        checkpoint.load(tmp_path / "other.pt")


def test_load_resume_returns_the_saved_state_or_none_without_a_file(tmp_path):
    path = checkpoint.save_resume(tmp_path / "r.resume.pt",
                                  {"epoch": 2, "rng": torch.get_rng_state()})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    state = checkpoint.load_resume(path, required=("epoch",))
    assert state["epoch"] == 2 and state["rng"].device.type == "cpu"
    assert checkpoint.load_resume(tmp_path / "none.pt") is None


def test_a_corrupt_resume_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path, capsys):
    path = checkpoint.save_resume(tmp_path / "r.resume.pt", {"epoch": 2, "x": torch.ones(5000)})
    truncate(path)
    assert checkpoint.load_resume(path) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # torch's reason varies with where the file was cut
    assert err.startswith(f"warning: {path}: damaged or truncated resume checkpoint (")
    assert err.endswith("); moved to r.resume.pt.corrupt; the run restarts from scratch\n")
    assert not path.exists() and (tmp_path / "r.resume.pt.corrupt").is_file()


def test_a_resume_checkpoint_without_a_required_key_is_set_aside(tmp_path, capsys):
    path = checkpoint.save_resume(tmp_path / "r.resume.pt", {"trainer": {}})
    assert checkpoint.load_resume(path, required=("trainer", "epoch")) is None
    assert "key 'epoch' missing; not an erasebench resume checkpoint" in capsys.readouterr().err
