"""`erasebench figures`: one subcommand per figure.

    erasebench figures erased-fraction [--draws 2500000] [--erasers cutout:size=8 gridmask]
                                       [--import my_erasers.py] [--out runs/figures]
    erasebench figures cam --checkpoint runs/results/smoke/checkpoints/resnet20__plain__s0.final.pt
                           [--eraser cam_erasing:b_h=2] [--import my_erasers.py]

Both write under runs/figures (untracked) unless --out says otherwise; `--out leaderboards`
regenerates the committed erased-fraction table.

Adding a figure: a module with the figure's function and `register(sub)` (which adds the
subparser and `set_defaults(func=...)`), listed in SUBCOMMANDS. The curves of a suite are drawn
by its leaderboard (benchmark/report/curves.py).
"""

from __future__ import annotations

from benchmark.report import cam_figure, erased_fraction

SUBCOMMANDS = [erased_fraction.register, cam_figure.register]


def main(argv: list[str] | None = None, prog: str = "erasebench figures") -> int:
    from benchmark.cli import subcommands

    return subcommands(argv, prog=prog, description=__doc__, registrars=SUBCOMMANDS)
