"""Atomic writes (one helper for every temp-file-plus-rename write) and moving damaged files
aside."""

import stat

import pytest
import torch

from benchmark.fileio import DamagedFileError, atomic_write, describe, move_aside


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_writes_text_bytes_and_a_callable_writer_with_mode_0644(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "sub" / "c.pt", lambda f: torch.save({"x": torch.ones(2)}, f))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert torch.equal(torch.load(tmp_path / "sub" / "c.pt")["x"], torch.ones(2))
    for name in ("a.txt", "b.bin", "sub/c.pt"):
        assert mode_of(tmp_path / name) == 0o644  # mkstemp's 0600 is not what readers get


def test_atomic_write_honours_an_explicit_mode(tmp_path):
    assert mode_of(atomic_write(tmp_path / "secret", "x", mode=0o600)) == 0o600


def test_a_failing_writer_leaves_no_temp_file_and_the_old_file_intact(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")

    def writer(f):
        f.write(b"half a fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, writer)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_an_interrupt_also_removes_the_temp_file(tmp_path):
    def writer(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.json", writer)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_rejects_data_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match="str, bytes or a callable"):
        atomic_write(tmp_path / "x", 3)
    assert list(tmp_path.iterdir()) == []


def test_move_aside_renames_to_corrupt_and_numbers_later_ones(tmp_path):
    paths = []
    for content in ("a", "b", "c"):
        (tmp_path / "r.json").write_text(content)
        paths.append(move_aside(tmp_path / "r.json"))
    assert [p.name for p in paths] == ["r.json.corrupt", "r.json.corrupt.1", "r.json.corrupt.2"]
    assert [p.read_text() for p in paths] == ["a", "b", "c"]
    assert not (tmp_path / "r.json").exists()


def test_move_aside_works_on_a_folder(tmp_path):
    (tmp_path / "batches").mkdir()
    assert move_aside(tmp_path / "batches").name == "batches.corrupt"


def test_a_damaged_file_error_is_one_line_naming_the_path_reason_and_hint(tmp_path):
    e = DamagedFileError(tmp_path / "x.pt", "damaged (EOFError)", "delete it")
    assert str(e) == f"{tmp_path / 'x.pt'}: damaged (EOFError); delete it"
    assert isinstance(e, ValueError) and e.path == tmp_path / "x.pt"


def test_describe_puts_an_exception_on_one_short_line():
    assert describe(OSError("a\nb  c")) == "OSError: a b c"
    assert describe(EOFError()) == "EOFError"
    assert len(describe(ValueError("x" * 1000), limit=50)) == 50
