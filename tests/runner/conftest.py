"""Fixtures of the runner's end-to-end tests on tiny synthetic suites: a suite file written into
the test's tmp_path (the test module's `SUITE` unless given other text), the runner run quietly
(no W&B, no progress bar, one CPU thread), and the records it wrote."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark import results
from benchmark.runner.main import main


@pytest.fixture
def suite_file(tmp_path, request):
    """write(text=<the module's SUITE>, name="tiny.yaml") -> the path of the suite file."""
    def write(text: str | None = None, name: str = "tiny.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(request.module.SUITE if text is None else text))
        return p
    return write


@pytest.fixture
def run():
    """run(*args) -> the exit code of `erasebench run *args` (quiet, no W&B, one thread)."""
    def run_quietly(*args) -> int:
        return main([*map(str, args), "--no-wandb", "--no-progress", "--threads", "1"])
    return run_quietly


@pytest.fixture
def records():
    """records(out, suite="tiny") -> {run_id: record} of <out>/results/<suite>/."""
    def read(out, suite: str = "tiny") -> dict[str, dict]:
        return {r["run_id"]: r for r in results.load_records(Path(out) / "results" / suite)}
    return read
