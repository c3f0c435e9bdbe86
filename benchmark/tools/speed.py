"""`erasebench speed`: throughput benchmarks, one subcommand each.

    erasebench speed erasers [--batch 512] [--repeats 7]
    erasebench speed cam [--models resnet20 timm/resnet18]
    erasebench speed train [--models resnet20 resnet44] [--steps 20]

Adding a benchmark: a module with the measurement and `register(sub)` (which adds the
subparser and `set_defaults(func=...)`), listed in SUBCOMMANDS.
"""

from __future__ import annotations

from benchmark.tools import speed_cam, speed_erasers, speed_train

SUBCOMMANDS = [speed_erasers.register, speed_cam.register, speed_train.register]


def main(argv: list[str] | None = None, prog: str = "erasebench speed") -> int:
    from benchmark.cli import subcommands

    return subcommands(argv, prog=prog, description=__doc__, registrars=SUBCOMMANDS)
