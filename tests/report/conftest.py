"""Fixtures of the report's tests: rendered text pinned by golden files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "leaderboard"
REGEN = os.environ.get("ERASEBENCH_REGEN_GOLDEN") == "1"


@pytest.fixture
def golden():
    """check(name, text): `text` equals fixtures/leaderboard/<name> byte for byte (with
    ERASEBENCH_REGEN_GOLDEN=1 the file is written first: read its diff before committing it)."""
    def check(name: str, text: str) -> None:
        path = FIXTURES / name
        if REGEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.is_file(), f"{path} missing: run with ERASEBENCH_REGEN_GOLDEN=1 to create it"
        assert text == path.read_text(), f"{name} differs from its golden file"
    return check
