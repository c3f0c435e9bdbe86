"""Markdown formatting of the leaderboards: numbers, cells and tables."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.report.grid import AT_CHANCE, FAILED, MISSING, Cell
from benchmark.report.stats import mean, std


def fmt_err(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def fmt_delta(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def fmt_hours(h: float) -> str:
    return f"{h:.0f}" if h >= 100 else f"{h:#.3g}"  # 3 significant digits, zeros kept


def fmt_cell(c: Cell, key: str = "final_test_error") -> str:
    """'mean ± std (n=k)' over the finished runs; partial cells say how many of the planned runs
    finished and how many failed ('failed (j of k)' when none finished); '—': not planned."""
    if c.n == 0 and c.expected == 0 and not c.failed:
        return "—"
    if c.n == 0:
        if c.failed:
            return f"{FAILED} ({len(c.failed)} of {c.expected})"
        return f"{MISSING} (0 of {c.expected})"
    return fmt_stats(c.values(key), c.expected, len(c.failed), c.at_chance)


def fmt_stats(xs: list[float], expected: int, failed: int = 0, chance: int = 0) -> str:
    """'mean ± std (n=k)' of finished runs' values; 'n=j of k' when fewer than planned finished,
    '; j failed' when some failed, '; j at chance' when j of the runs ended at the error of
    guessing. The one cell format of the leaderboards and of `compare`."""
    count = f"n={len(xs)}" if len(xs) >= expected else f"n={len(xs)} of {expected}"
    if failed:
        count += f"; {failed} {FAILED}"
    if chance:
        count += f"; {chance} {AT_CHANCE}"
    return f"{mean(xs):.2f} ± {fmt_err(std(xs))} ({count})"


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]


def shown_path(path) -> str:
    """`path` as a leaderboard prints it (posix): as given when relative, relative to the working
    folder when inside it, else `…/` and its last two parts: never this machine's absolute path."""
    p = Path(path)
    if not p.is_absolute():
        return Path(os.path.normpath(p)).as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return "…/" + "/".join(p.parts[-2:])
